package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/switchboard-mcp/switchboard"
)

// The tools/call fast path. mcp-go decodes a request body about six times and
// decodes then re-encodes the result; for a 64 KiB payload that is most of the
// gateway's cost. A plain tools/call on a live, owned session, with no progress
// token, is handled here instead: the same filter, admission and audit, the
// caller's raw arguments to the child, and the child's result bytes back as
// they are. Everything else (unknown or hidden tools, progress, other methods,
// anything unusual) goes through mcp-go unchanged, so errors stay identical.

// fastEnvelope is the part of a tools/call the fast path needs. scanMessage
// fills it while it checks the body; the JSON fields hold what json.Unmarshal
// would give, the raw ones as subslices of the body.
type fastEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
		Meta      json.RawMessage `json:"_meta"`
	} `json:"params"`
	// params is the raw "params" member (the tools/list fast path needs to
	// know it is empty).
	params json.RawMessage
	// progress is params._meta being present, not null, and either not an
	// object or holding a progressToken that is not null.
	progress bool
}

// tryFastCall handles r if it can and reports whether it did. env is the
// request body, already decoded once by the edge.
func (s *Server) tryFastCall(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, env *fastEnvelope, sid string) bool {
	if env.JSONRPC != "2.0" || env.Method != "tools/call" || len(env.ID) == 0 || hasProgressToken(env) || !fastProtocol(r) {
		return false
	}
	p := switchboard.PrincipalFromContext(ctx)
	info := s.fastSession(sid, p, ep)
	if info == nil {
		return false // mcp-go answers 404, or delivers queued notifications
	}
	e := s.tbl.Load().tools[env.Params.Name]
	if e == nil || !s.toolVisible(ctx, p, e) {
		return false // mcp-go answers "not found" and the hook audits it
	}
	ci := &CallInfo{
		RequestID: switchboard.RequestIDFromContext(ctx), SessionID: sid, Principal: p, Endpoint: ep,
		Client: info.client, Provider: e.Provider, Tool: e.Original, Exposed: e.Exposed,
		Args: env.Params.Arguments, Start: time.Now(), Decision: "allow",
	}
	if rs := requestStateFrom(ctx); rs != nil {
		rs.call = ci
	}
	// The caller normally gets its answer before the call is recorded (the
	// audit append, metrics and access log follow the flush); an observer
	// that needs the record first (audit.wait_for_write) says so.
	recordFirst := false
	if rf, ok := s.opts.Observer.(RecordFirst); ok {
		recordFirst = rf.RecordBeforeAnswer()
	}
	finished := false
	finish := func() {
		if !finished {
			finished = true
			s.finish(ctx, ci)
		}
	}
	defer finish()
	answer := func(body []byte) {
		if recordFirst {
			finish()
		}
		writeAndFlush(w, body)
	}
	reply := func(result []byte) {
		buf := make([]byte, 0, len(result)+len(env.ID)+40)
		buf = append(buf, `{"jsonrpc":"2.0","id":`...)
		buf = append(buf, env.ID...)
		buf = append(buf, `,"result":`...)
		buf = append(buf, result...)
		buf = append(buf, "}\n"...)
		answer(buf)
	}
	toolError := func(msg string) {
		b, _ := json.Marshal(mcp.NewToolResultError(msg))
		reply(b)
	}
	if s.opts.Observer != nil {
		if err := s.opts.Observer.Admit(ctx, ci); err != nil {
			ci.Outcome, ci.Err = "refused", err
			toolError(switchboard.ErrorMessage(err))
			return true
		}
	}
	up, err := s.upstream(ctx, e.Provider, p)
	if err != nil {
		ci.Outcome, ci.Err = outcomeOf(err), err
		toolError(switchboard.ErrorMessage(err))
		return true
	}
	raw, err := up.Call(ctx, "tools/call", rawCallParams(e.Original, env.Params.Arguments))
	if err != nil {
		var rpcErr *switchboard.RPCError
		if errors.As(err, &rpcErr) {
			ci.Outcome, ci.Err = "error", err
			answer(rpcErrorBody(env.ID, rpcErr.Code, rpcErr.Message))
			return true
		}
		ci.Outcome, ci.Err = outcomeOf(err), err
		toolError(e.Provider + ": " + switchboard.ErrorMessage(err))
		return true
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' || !validJSON(raw) {
		ci.Outcome, ci.Err = "error", errors.New("invalid tool result")
		toolError(e.Provider + ": the provider returned a result that is not a valid CallToolResult")
		return true
	}
	ci.Outcome = "ok"
	if isErrorResult(raw) {
		ci.Outcome = "tool_error"
	}
	reply(raw)
	return true
}

// fastProtocol reports whether r's protocol version lets a fast path answer:
// a session-era version, or none. mcp-go answers a version error, and the
// stateless era has no sessions.
func fastProtocol(r *http.Request) bool {
	v := r.Header.Get(mcp.HeaderProtocolVersion)
	return v == "" || slices.Contains(SessionProtocolVersions, v)
}

// writeAndFlush sends a complete 200 JSON answer and flushes it at once, so the
// caller has its answer before the bookkeeping that follows (audit record,
// metrics, access log) runs. Content-Length is set so that net/http sends no
// chunked framing and has nothing left to write when the handler returns.
func writeAndFlush(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	_ = http.NewResponseController(w).Flush()
}

// rawCallParams builds {"name":…,"arguments":…} around the caller's argument
// bytes without re-validating or re-encoding them (json.Marshal would compact
// a RawMessage: one more pass over a large payload).
func rawCallParams(name string, args json.RawMessage) json.RawMessage {
	q, _ := json.Marshal(name)
	args = bytes.TrimSpace(args)
	buf := make([]byte, 0, len(q)+len(args)+24)
	buf = append(buf, `{"name":`...)
	buf = append(buf, q...)
	if len(args) > 0 {
		buf = append(buf, `,"arguments":`...)
		buf = append(buf, args...)
	}
	return append(buf, '}')
}

// hasProgressToken reports whether the caller asked for progress
// notifications, which only mcp-go sends. A _meta that is not an object
// counts as asking, so that mcp-go decides. scanMessage worked it out while
// it checked the body.
func hasProgressToken(env *fastEnvelope) bool {
	return env.progress
}

// isErrorResult reports whether a CallToolResult has "isError": true, reading
// only its top-level members (as json.Unmarshal into struct{ IsError bool }
// would: a case-insensitive name, the last one wins), not its content.
func isErrorResult(raw []byte) bool {
	if !bytes.Contains(raw, []byte(`"isError"`)) {
		return false
	}
	return resultIsError(raw)
}

// --- session idleness: the mux tracks activity itself, because fast-path
// calls never reach mcp-go's own idle timer. ---

// touch records activity on a session; streaming marks an open GET stream.
func (ss *sessions) touch(id string, streamDelta int) {
	ss.mu.Lock()
	if info := ss.m[id]; info != nil {
		info.lastSeen = time.Now()
		info.streams += streamDelta
	}
	ss.mu.Unlock()
}

// reapIdle terminates sessions idle for longer than ttl (no request, no open
// GET stream) through mcp-go's own DELETE path, as the owner, so its state and
// ours are cleaned up together.
func (s *Server) reapIdle(ttl time.Duration) {
	type victim struct {
		id string
		p  *switchboard.Principal
		ep switchboard.Endpoint
	}
	var victims []victim
	now := time.Now()
	s.sessions.mu.Lock()
	for id, info := range s.sessions.m {
		switch {
		case info.streams > 0:
		case !info.registered && now.Sub(info.created) > time.Minute: // initialize never completed
			delete(s.sessions.m, id)
		case info.registered && now.Sub(info.lastSeen) > ttl:
			victims = append(victims, victim{id, info.principal, info.endpoint})
		}
	}
	s.sessions.mu.Unlock()
	for _, v := range victims {
		h := s.http[v.ep]
		if h == nil {
			continue
		}
		ctx := switchboard.NewContextWithPrincipal(context.Background(), v.p)
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://switchboard"+string(v.ep), nil)
		if err != nil {
			continue
		}
		req.Header.Set(server.HeaderKeySessionID, v.id)
		req.Header.Set(mcp.HeaderProtocolVersion, SessionProtocolVersions[0])
		h.ServeHTTP(discardWriter{header: http.Header{}}, req)
		s.log.Debug().Str("session", shortID(v.id)).Msg("idle session reaped")
	}
}

// sweep runs reapIdle until ctx ends.
func (s *Server) sweep(ctx context.Context) {
	ttl := s.opts.SessionIdleTTL
	every := min(ttl/2, 30*time.Second)
	every = max(every, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reapIdle(ttl)
		}
	}
}

// discardWriter is the response writer of the gateway's own internal requests.
type discardWriter struct{ header http.Header }

func (w discardWriter) Header() http.Header         { return w.header }
func (w discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w discardWriter) WriteHeader(int)             {}
