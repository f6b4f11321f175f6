package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// SessionProtocolVersions are the protocol versions the front end negotiates.
// The 2026-07-28 stateless era is not advertised: the gateway binds sessions to
// principals and targets list_changed per session, which needs the session era.
var SessionProtocolVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

// Handler returns the MCP endpoint for ep. Authentication runs before it (the
// caller wraps it); it adds strict JSON-RPC checks, request IDs, the
// one-line-per-request log, and mcp-go's streamable-HTTP transport with session
// IDs bound to the authenticated principal.
func (s *Server) Handler(ep switchboard.Endpoint) http.Handler {
	h := server.NewStreamableHTTPServer(s.mcp,
		server.WithSessionIdManagerResolver(resolver{ss: s.sessions, endpoint: ep}),
		server.WithHeartbeatInterval(25*time.Second),
		server.WithStreamableHTTPProtocolVersions(SessionProtocolVersions...),
		server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
			rctx := r.Context()
			ctx = switchboard.NewContextWithPrincipal(ctx, switchboard.PrincipalFromContext(rctx))
			ctx = switchboard.NewContextWithRequestID(ctx, switchboard.RequestIDFromContext(rctx))
			ctx = context.WithValue(ctx, endpointKey{}, ep)
			if rs := requestStateFrom(rctx); rs != nil {
				ctx = context.WithValue(ctx, requestStateKey{}, rs)
			}
			return ctx
		}),
	)
	s.http[ep] = h
	s.sweepOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopSweep = cancel
		go s.sweep(ctx)
	})
	return s.strict(ep, h)
}

// Shutdown closes every session of every endpoint.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.stopSweep != nil {
		s.stopSweep()
	}
	var errs []error
	for _, h := range s.http {
		if err := h.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type endpointKey struct{}

func endpointFromContext(ctx context.Context) switchboard.Endpoint {
	ep, _ := ctx.Value(endpointKey{}).(switchboard.Endpoint)
	return ep
}

// requestState follows one HTTP request through mcp-go for the access log.
type requestState struct {
	client string
	call   *CallInfo
}

type requestStateKey struct{}

func requestStateFrom(ctx context.Context) *requestState {
	rs, _ := ctx.Value(requestStateKey{}).(*requestState)
	return rs
}

// envelope is the part of a JSON-RPC message the edge reads.
type envelope struct {
	Method string          `json:"method"`
	ID     json.RawMessage `json:"id"`
	Params struct {
		Name string `json:"name"`
	} `json:"params"`
}

var requestSeq atomic.Uint64

// strict rejects what mcp-go would otherwise accept too loosely: batches,
// invalid UTF-8, duplicate or case-variant keys (so the tool that is authorized
// is the tool that runs: CVE-2026-27896), and a missing session ID. Then it logs
// one line per request.
func (s *Server) strict(ep switchboard.Endpoint, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := r.Header.Get("X-Request-Id")
		if reqID == "" || len(reqID) > 64 {
			reqID = uuid.NewString()
		}
		w.Header().Set("X-Request-Id", reqID)
		ctx := switchboard.NewContextWithRequestID(r.Context(), reqID)
		rs := &requestState{}
		ctx = context.WithValue(ctx, requestStateKey{}, rs)
		sw := &statusWriter{ResponseWriter: w}

		var env envelope
		if sid := r.Header.Get(server.HeaderKeySessionID); sid != "" && r.Method != http.MethodPost && !s.ownsSession(r, ep, sid) {
			// mcp-go does not validate the session of a GET (it would attach
			// the caller to any session whose ID it presents) or check the
			// owner on DELETE; the edge does.
			writeRPCError(sw, http.StatusNotFound, nil, mcp.INVALID_REQUEST, "unknown session")
			s.logRequest(ctx, ep, r, sw, env, rs, start)
			return
		}
		if r.Method == http.MethodPost && !acceptsMCP(r.Header.Values("Accept")) {
			// Refused before the body is read: nothing runs.
			writeRPCError(sw, http.StatusNotAcceptable, nil, mcp.INVALID_REQUEST,
				"Accept must list application/json and text/event-stream")
			s.logRequest(ctx, ep, r, sw, env, rs, start)
			return
		}
		if r.Method == http.MethodPost {
			body, err := readBody(r)
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					writeRPCError(sw, http.StatusRequestEntityTooLarge, nil, mcp.INVALID_REQUEST, "request body too large")
				} else {
					writeRPCError(sw, http.StatusBadRequest, nil, mcp.PARSE_ERROR, "cannot read request body")
				}
				s.logRequest(ctx, ep, r, sw, env, rs, start)
				return
			}
			var fe fastEnvelope
			if code, msg := scanMessage(body, &fe); code != 0 {
				status := http.StatusBadRequest
				writeRPCError(sw, status, nil, code, msg)
				s.logRequest(ctx, ep, r, sw, env, rs, start)
				return
			}
			env.Method, env.ID, env.Params.Name = fe.Method, fe.ID, fe.Params.Name
			if env.Method != "" && env.Method != "initialize" && len(env.ID) > 0 &&
				r.Header.Get(server.HeaderKeySessionID) == "" && !isModern(r) {
				writeRPCError(sw, http.StatusBadRequest, env.ID, mcp.INVALID_REQUEST, "missing Mcp-Session-Id header: send initialize first")
				s.logRequest(ctx, ep, r, sw, env, rs, start)
				return
			}
			if sid := r.Header.Get(server.HeaderKeySessionID); sid != "" {
				s.sessions.touch(sid, 0)
				if env.Method == "tools/call" && !isModern(r) && s.tryFastCall(ctx, ep, sw, r, &fe, sid) {
					s.logRequest(ctx, ep, r, sw, env, rs, start)
					return
				}
				if s.tryFastList(ctx, ep, sw, r, &fe, sid) {
					s.logRequest(ctx, ep, r, sw, env, rs, start)
					return
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		if sid := r.Header.Get(server.HeaderKeySessionID); r.Method == http.MethodGet && sid != "" {
			s.sessions.touch(sid, +1)
			defer s.sessions.touch(sid, -1)
		}
		next.ServeHTTP(sw, r.WithContext(ctx))
		s.logRequest(ctx, ep, r, sw, env, rs, start)
	})
}

// readBody reads a request body. With a Content-Length (the usual case; the
// edge's body limit has already refused one that is too large) it allocates
// once, where io.ReadAll would grow its buffer step by step: for a 64 KiB
// payload that is ~8 allocations and ~128 KiB of garbage per request.
func readBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 || n > maxPreallocBody {
		return io.ReadAll(r.Body)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fmt.Errorf("request body shorter than its Content-Length: %w", err)
		}
		return nil, err
	}
	return body, nil
}

// maxPreallocBody caps what readBody allocates on the word of a header alone,
// so a client that announces a large body and then trickles it cannot make
// the gateway reserve much memory per connection ahead of the bytes.
const maxPreallocBody = 1 << 20

// ownsSession reports whether the caller of r created session sid on ep.
func (s *Server) ownsSession(r *http.Request, ep switchboard.Endpoint, sid string) bool {
	info := s.sessions.get(sid)
	p := switchboard.PrincipalFromContext(r.Context())
	return info != nil && !info.terminated && info.owner == p.String() && info.endpoint == ep
}

// acceptsMCP reports whether a POST's Accept header allows an MCP response.
// The spec asks clients to list application/json and text/event-stream; a
// missing header or a wildcard (curl's default */*) is tolerated, a header
// that rules both out is not.
func acceptsMCP(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "text/event-stream", "*/*", "application/*", "text/*":
				return true
			}
		}
	}
	return false
}

func isModern(r *http.Request) bool {
	return mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion))
}

func (s *Server) logRequest(ctx context.Context, ep switchboard.Endpoint, r *http.Request, sw *statusWriter, env envelope, rs *requestState, start time.Time) {
	lvl := zerolog.InfoLevel
	latency := time.Since(start)
	slow := s.opts.SlowCall > 0 && latency > s.opts.SlowCall && r.Method == http.MethodPost
	if sw.status >= 500 || slow {
		lvl = zerolog.WarnLevel
	}
	if r.Method == http.MethodGet || env.Method == "notifications/initialized" || env.Method == "ping" {
		lvl = zerolog.DebugLevel
	}
	e := s.log.WithLevel(lvl).
		Str("request_id", switchboard.RequestIDFromContext(ctx)).
		Str("endpoint", string(ep)).
		Str("http_method", r.Method).
		Int("status", sw.statusCode()).
		Dur("latency", latency)
	if slow {
		e = e.Bool("slow", true).Dur("slow_threshold", s.opts.SlowCall)
	}
	if env.Method != "" {
		e = e.Str("method", env.Method)
	}
	if sid := r.Header.Get(server.HeaderKeySessionID); sid != "" {
		e = e.Str("session", shortID(sid))
		if info := s.sessions.get(sid); info != nil && info.client != "" {
			e = e.Str("client", info.client)
		}
	} else if rs.client != "" {
		e = e.Str("client", rs.client)
	}
	if p := switchboard.PrincipalFromContext(ctx); p != nil {
		e = e.Str("principal", p.String())
	}
	if c := rs.call; c != nil {
		e = e.Str("provider", c.Provider).Str("tool", c.Tool).Str("outcome", c.Outcome)
	} else if env.Method == "tools/call" {
		e = e.Str("tool", env.Params.Name)
	}
	e.Msg("mcp request")
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Flush lets mcp-go stream SSE through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(rpcErrorBody(id, code, msg))
}

// rpcErrorBody encodes a JSON-RPC error answer, newline-terminated.
func rpcErrorBody(id json.RawMessage, code int, msg string) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"error":   map[string]any{"code": code, "message": msg},
	})
	return append(b, '\n')
}

// knownKeys are the protocol keys whose spelling must be exact: a key that
// differs from one of them only by case (or Unicode folding, as "paramſ") is
// refused, because encoding/json would match it case-insensitively. The
// scanner's knownSpelling lists them again, by fold, without hashing
// (TestKnownSpelling keeps the two in step).
var knownKeys = []string{"jsonrpc", "id", "method", "params", "result", "error", "name", "arguments", "_meta", "uri", "cursor", "progressToken", "protocolVersion", "capabilities", "clientInfo", "ref", "argument", "level", "requestId", "reason"}

// maxDepth bounds nesting; deeper documents are refused without recursion blowup.
const maxDepth = 200

// foldKey maps every rune to the lower case of the smallest rune of its
// Unicode simple-fold orbit, so two strings are EqualFold exactly when their folds are equal
// ("paramſ", "PARAMS" and "params" all fold alike).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	for _, r := range s {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(unicode.ToLower(min)) // agrees with the ASCII path
	}
	return b.String()
}
