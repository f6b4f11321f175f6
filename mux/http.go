package mux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
)

// Protocol versions the front end speaks.
var (
	// SessionProtocolVersions are the session-era versions, newest first:
	// initialize negotiates one of them.
	SessionProtocolVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}
	// StatelessProtocolVersions are the stateless-era versions.
	StatelessProtocolVersions = []string{mcp.ProtocolVersion20260728}
	// supportedVersions is what an UnsupportedProtocolVersionError lists.
	supportedVersions = append(slices.Clone(StatelessProtocolVersions), SessionProtocolVersions...)
)

// Error codes of the 2026-07-28 specification.
const (
	codeHeaderMismatch          = -32020
	codeMissingClientCapability = -32021
	codeUnsupportedVersion      = -32022
	codeResourceNotFoundLegacy  = -32002
)

// Handler returns the MCP endpoint ep. Authentication runs before it (the
// caller wraps it and puts the principal in the request's context). It
// serves POST, GET and DELETE in both protocol eras.
func (s *Server) Handler(ep switchboard.Endpoint) http.Handler {
	return endpoint{s: s, ep: ep}
}

type endpoint struct {
	s  *Server
	ep switchboard.Endpoint
}

func (h endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := r.Header.Get("X-Request-Id")
	if reqID == "" || len(reqID) > 64 {
		reqID = uuid.NewString()
	}
	w.Header().Set("X-Request-Id", reqID)
	ctx := switchboard.NewContextWithRequestID(r.Context(), reqID)
	acc := &access{}
	if h.s.tr != nil && tracing.RequestFrom(ctx) == nil {
		// Served without the edge's tracing middleware: trace the request
		// from here.
		var q *tracing.Request
		ctx, q = h.s.tr.StartRequest(ctx, r, string(h.ep))
		defer func() { q.End(acc.status) }()
	}
	switch r.Method {
	case http.MethodPost:
		h.s.post(ctx, h.ep, w, r, acc)
	case http.MethodGet:
		h.s.get(ctx, h.ep, w, r, acc)
	case http.MethodDelete:
		h.s.delete(ctx, h.ep, w, r, acc)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		acc.status = http.StatusMethodNotAllowed
		writeJSONBody(w, http.StatusMethodNotAllowed, rpcError(nil, jsonrpc.CodeInvalidRequest, "method not allowed", nil))
	}
	h.s.logRequest(ctx, h.ep, r, acc, start)
}

// access is what the access log line says about one request.
type access struct {
	status   int
	method   string
	session  string
	client   string
	tool     string
	provider string
	outcome  string
	modern   bool
}

// post serves one JSON-RPC message.
func (s *Server) post(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, acc *access) {
	reply := func(status int, body []byte) {
		acc.status = status
		writeJSONBody(w, status, body)
	}
	if !acceptsMCP(r.Header.Values("Accept")) {
		reply(http.StatusNotAcceptable, rpcError(nil, jsonrpc.CodeInvalidRequest, "Accept must list application/json and text/event-stream", nil))
		return
	}
	body, err := readBody(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			reply(http.StatusRequestEntityTooLarge, rpcError(nil, jsonrpc.CodeInvalidRequest, "request body too large", nil))
		} else {
			reply(http.StatusBadRequest, rpcError(nil, jsonrpc.CodeParseError, "cannot read request body", nil))
		}
		return
	}
	m := new(jsonrpc.Message)
	if perr := jsonrpc.Parse(body, m, jsonrpc.EdgeDepth); perr != nil {
		reply(http.StatusBadRequest, rpcError(nil, perr.Code, perr.Message, nil))
		return
	}
	acc.method = m.Method
	if s.tr != nil {
		ctx = tracing.RequestFrom(ctx).Begin(ctx, m.P.M.TraceParent, m.P.M.TraceState, m.Method)
	}
	if m.JSONRPC != "2.0" {
		reply(http.StatusBadRequest, rpcError(m.ID, jsonrpc.CodeInvalidRequest, `"jsonrpc" must be "2.0"`, nil))
		return
	}
	if m.Method == "" && !m.IsResponse() || m.Method != "" && m.ID != nil && !validID(m.ID) {
		reply(http.StatusBadRequest, rpcError(nil, jsonrpc.CodeInvalidRequest, "not a JSON-RPC request, notification or response", nil))
		return
	}
	p := principal(ctx)
	hv := r.Header.Get(mcp.HeaderProtocolVersion)
	stateless := mcp.IsModernProtocol(hv) || hv == "" && m.P.M.HasProtocolVersion
	if m.Method == "initialize" && !stateless {
		s.initialize(ctx, ep, w, r, m, acc)
		return
	}
	if stateless { // initialize too: the stateless era has none, and says so
		acc.modern = true
		s.postStateless(ctx, ep, w, r, m, hv, acc)
		return
	}
	if hv != "" && !slices.Contains(SessionProtocolVersions, hv) {
		reply(http.StatusBadRequest, unsupportedVersion(m.ID, hv))
		return
	}
	sid := r.Header.Get(mcp.HeaderSessionID)
	if sid == "" {
		reply(http.StatusBadRequest, rpcError(m.ID, jsonrpc.CodeInvalidRequest, "missing Mcp-Session-Id header: send initialize first", nil))
		return
	}
	acc.session = sid
	ss := s.sessions.lookup(sid, p, ep)
	if ss == nil {
		reply(http.StatusNotFound, rpcError(m.ID, jsonrpc.CodeInvalidRequest, "unknown session", nil))
		return
	}
	ss.touch()
	acc.client = ss.client
	switch {
	case m.IsResponse():
		ss.answer(m)
		acc.status = http.StatusAccepted
		w.WriteHeader(http.StatusAccepted)
	case m.IsNotification():
		s.clientNotification(ss, m)
		acc.status = http.StatusAccepted
		w.WriteHeader(http.StatusAccepted)
	default:
		x := s.newExchange(ctx, ep, w, r, m, acc)
		x.ss, x.caps = ss, ss.caps
		x.level = ss.logLevel.Load()
		ctx, cancel := context.WithCancel(x.ctx)
		x.ctx = ctx
		ss.begin(m.ID, cancel)
		defer ss.end(m.ID)
		defer cancel()
		for _, f := range ss.takeQueue() { // notifications that found no stream
			x.out.event(f)
		}
		s.serve(x)
	}
}

// validID reports whether a request id is a string or a number (not null,
// not an object or array).
func validID(id []byte) bool {
	if len(id) == 0 {
		return false
	}
	switch id[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// postStateless checks a stateless-era (2026-07-28) request's version,
// metadata and headers, then serves it. Every request stands alone: the
// principal is the one the edge authenticated for it.
func (s *Server) postStateless(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, hv string, acc *access) {
	bad := func(status, code int, msg string, data []byte) {
		acc.status = status
		writeJSONBody(w, status, rpcError(m.ID, code, msg, data))
	}
	meta := &m.P.M
	switch {
	case hv == "":
		bad(http.StatusBadRequest, codeHeaderMismatch, "Header mismatch: the MCP-Protocol-Version header is missing", nil)
		return
	case meta.HasProtocolVersion && meta.ProtocolVersion != hv:
		bad(http.StatusBadRequest, codeHeaderMismatch, fmt.Sprintf("Header mismatch: MCP-Protocol-Version header value %q does not match body value %q", hv, meta.ProtocolVersion), nil)
		return
	case !slices.Contains(StatelessProtocolVersions, hv):
		acc.status = http.StatusBadRequest
		writeJSONBody(w, http.StatusBadRequest, unsupportedVersion(m.ID, hv))
		return
	}
	if m.IsResponse() {
		bad(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "the stateless protocol has no responses from clients", nil)
		return
	}
	if m.IsNotification() {
		// This revision defines no client notifications over HTTP; accept
		// and ignore them (cancellation is closing the stream).
		acc.status = http.StatusAccepted
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if hm := r.Header.Get(mcp.HeaderMethod); hm != m.Method {
		if hm == "" {
			bad(http.StatusBadRequest, codeHeaderMismatch, "Header mismatch: the Mcp-Method header is missing", nil)
		} else {
			bad(http.StatusBadRequest, codeHeaderMismatch, fmt.Sprintf("Header mismatch: Mcp-Method header value %q does not match body value %q", hm, m.Method), nil)
		}
		return
	}
	if mcp.MethodRequiresNameHeader(mcp.MCPMethod(m.Method)) {
		want := m.P.Name
		if m.Method == "resources/read" {
			want = m.P.URI
		}
		raw, present := r.Header[http.CanonicalHeaderKey(mcp.HeaderName)]
		got := ""
		if present && len(raw) > 0 {
			got = raw[0]
		}
		decoded, ok := mcp.DecodeHeaderValue(got)
		switch {
		case !present:
			bad(http.StatusBadRequest, codeHeaderMismatch, "Header mismatch: the Mcp-Name header is missing", nil)
			return
		case !ok || len(raw) > 1:
			bad(http.StatusBadRequest, codeHeaderMismatch, "Header mismatch: the Mcp-Name header is malformed", nil)
			return
		case decoded != want:
			bad(http.StatusBadRequest, codeHeaderMismatch, fmt.Sprintf("Header mismatch: Mcp-Name header value %q does not match body value %q", got, want), nil)
			return
		}
	}
	if !meta.HasProtocolVersion {
		bad(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "params._meta must carry "+jsonrpc.MetaProtocolVersion, nil)
		return
	}
	if len(meta.ClientCapabilities) == 0 || meta.ClientCapabilities[0] != '{' {
		bad(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "params._meta must carry "+jsonrpc.MetaClientCapabilities+" (an object)", nil)
		return
	}
	level := levelNone
	if meta.HasLogLevel {
		l, ok := parseLevel(meta.LogLevel)
		if !ok {
			bad(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "invalid "+jsonrpc.MetaLogLevel+": "+quote(meta.LogLevel), nil)
			return
		}
		level = l
	}
	x := s.newExchange(ctx, ep, w, r, m, acc)
	x.modern, x.caps, x.level = true, meta.ClientCapabilities, level
	acc.client = clientName(meta.ClientInfo)
	s.serve(x)
}

// unsupportedVersion is the UnsupportedProtocolVersionError body.
func unsupportedVersion(id []byte, requested string) []byte {
	data, _ := json.Marshal(map[string]any{"supported": supportedVersions, "requested": requested})
	return rpcError(id, codeUnsupportedVersion, "Unsupported protocol version", data)
}

// get opens the session-era GET stream for server-to-client messages of a
// session. The stateless era has no GET: it answers 405.
func (s *Server) get(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, acc *access) {
	sid := r.Header.Get(mcp.HeaderSessionID)
	if sid == "" {
		w.Header().Set("Allow", "POST")
		acc.status = http.StatusMethodNotAllowed
		writeJSONBody(w, http.StatusMethodNotAllowed, rpcError(nil, jsonrpc.CodeInvalidRequest, "GET needs an Mcp-Session-Id (stateless clients use subscriptions/listen)", nil))
		return
	}
	acc.session = sid
	if !acceptsSSE(r.Header.Values("Accept")) {
		acc.status = http.StatusNotAcceptable
		writeJSONBody(w, http.StatusNotAcceptable, rpcError(nil, jsonrpc.CodeInvalidRequest, "Accept must list text/event-stream", nil))
		return
	}
	ss := s.sessions.lookup(sid, principal(ctx), ep)
	if ss == nil {
		acc.status = http.StatusNotFound
		writeJSONBody(w, http.StatusNotFound, rpcError(nil, jsonrpc.CodeInvalidRequest, "unknown session", nil))
		return
	}
	acc.client = ss.client
	st := newStream(w, s.opts.Heartbeat)
	ss.mu.Lock()
	if ss.get != nil {
		ss.mu.Unlock()
		acc.status = http.StatusConflict
		writeJSONBody(w, http.StatusConflict, rpcError(nil, jsonrpc.CodeInvalidRequest, "this session already has a GET stream", nil))
		return
	}
	ss.get = st
	queued := ss.queue
	ss.queue = nil
	ss.mu.Unlock()
	st.open()
	for _, f := range queued {
		st.event(f)
	}
	select {
	case <-ctx.Done():
	case <-s.closing:
	case <-st.done: // the session ended and finished it
	}
	ss.mu.Lock()
	if ss.get == st {
		ss.get = nil
	}
	ss.mu.Unlock()
	ss.touch()
	st.finish(http.StatusOK, nil)
	acc.status = st.status
}

// delete ends a session at its client's request.
func (s *Server) delete(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, acc *access) {
	sid := r.Header.Get(mcp.HeaderSessionID)
	if sid == "" {
		w.Header().Set("Allow", "POST")
		acc.status = http.StatusMethodNotAllowed
		writeJSONBody(w, http.StatusMethodNotAllowed, rpcError(nil, jsonrpc.CodeInvalidRequest, "DELETE needs an Mcp-Session-Id", nil))
		return
	}
	acc.session = sid
	ss := s.sessions.lookup(sid, principal(ctx), ep)
	if ss == nil {
		acc.status = http.StatusNotFound
		writeJSONBody(w, http.StatusNotFound, rpcError(nil, jsonrpc.CodeInvalidRequest, "unknown session", nil))
		return
	}
	s.closeSession(ss, "client")
	acc.status = http.StatusOK
	w.WriteHeader(http.StatusOK)
}

// readBody reads a request body. With a Content-Length (the usual case; the
// edge's body limit has already refused one that is too large) it allocates
// once, where io.ReadAll would grow its buffer step by step.
func readBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 || n > maxPreallocBody {
		return io.ReadAll(r.Body)
	}
	body := make([]byte, n, n+1) // the spare byte is the probe's below
	if _, err := io.ReadFull(r.Body, body); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fmt.Errorf("request body shorter than its Content-Length: %w", err)
		}
		return nil, err
	}
	// Read to the end, so that whoever watches the body (the edge's body
	// deadline) sees it finished; net/http answers this from its own state.
	_, _ = r.Body.Read(body[n : n+1])
	return body, nil
}

// maxPreallocBody caps what readBody allocates on the word of a header alone,
// so a client that announces a large body and then trickles it cannot make
// the gateway reserve much memory per connection ahead of the bytes.
const maxPreallocBody = 1 << 20

// acceptsMCP reports whether a POST's Accept header allows an MCP response.
// The spec asks clients to list application/json and text/event-stream; a
// missing header or a wildcard (curl's default */*) is tolerated, a header
// that rules both out is not.
func acceptsMCP(values []string) bool { return accepts(values, mcpMediaRanges) }

// acceptsSSE reports whether a GET's Accept header allows an SSE stream.
func acceptsSSE(values []string) bool { return accepts(values, sseMediaRanges) }

var (
	mcpMediaRanges = []string{"application/json", "text/event-stream", "*/*", "application/*", "text/*"}
	sseMediaRanges = []string{"text/event-stream", "*/*", "text/*"}
)

// accepts reports whether an Accept header (all its values) lists one of
// ranges, ignoring parameters and case; no header accepts anything. It
// allocates nothing: every POST goes through it.
func accepts(values []string, ranges []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			mt = strings.TrimSpace(mt)
			for _, r := range ranges {
				if strings.EqualFold(mt, r) {
					return true
				}
			}
		}
	}
	return false
}

// rpcError encodes a JSON-RPC error answer, newline-terminated.
func rpcError(id []byte, code int, msg string, data []byte) []byte {
	b := jsonrpc.AppendError(make([]byte, 0, 96+len(msg)), id, code, msg, data)
	return append(b, '\n')
}

// clientName returns "name/version" from a raw clientInfo.
func clientName(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var ci struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if json.Unmarshal(raw, &ci) != nil || ci.Name == "" {
		return ""
	}
	n := ci.Name + "/" + ci.Version
	if len(n) > 128 {
		n = n[:128]
	}
	return n
}

func (s *Server) logRequest(ctx context.Context, ep switchboard.Endpoint, r *http.Request, acc *access, start time.Time) {
	lvl := zerolog.InfoLevel
	latency := time.Since(start)
	slow := s.opts.SlowCall > 0 && latency > s.opts.SlowCall && r.Method == http.MethodPost && acc.method != "subscriptions/listen"
	if acc.status >= 500 || slow {
		lvl = zerolog.WarnLevel
	}
	if r.Method == http.MethodGet || acc.method == "notifications/initialized" || acc.method == "ping" {
		lvl = zerolog.DebugLevel
	}
	e := s.log.WithLevel(lvl) // nil when lvl is off
	if e == nil {
		return
	}
	status := acc.status
	if status == 0 {
		status = http.StatusOK
	}
	e = e.Str("request_id", switchboard.RequestIDFromContext(ctx)).
		Str("endpoint", string(ep)).
		Str("http_method", r.Method).
		Int("status", status).
		Dur("latency", latency)
	if slow {
		e = e.Bool("slow", true).Dur("slow_threshold", s.opts.SlowCall)
	}
	if acc.method != "" {
		e = e.Str("method", acc.method)
	}
	if acc.modern {
		e = e.Str("era", "stateless")
	}
	if acc.session != "" {
		e = e.Str("session", shortID(acc.session))
	}
	if acc.client != "" {
		e = e.Str("client", acc.client)
	}
	if p := switchboard.PrincipalFromContext(ctx); p != nil {
		e = e.Str("principal", p.String())
	}
	if acc.provider != "" {
		e = e.Str("provider", acc.provider)
	}
	if acc.tool != "" {
		e = e.Str("tool", acc.tool)
	}
	if acc.outcome != "" {
		e = e.Str("outcome", acc.outcome)
	}
	if s.tr != nil {
		if id := tracing.RequestFrom(ctx).TraceID(); id != "" {
			e = e.Str("trace_id", id)
		}
	}
	e.Msg("mcp request")
}
