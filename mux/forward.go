package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
)

// Requests that reach a provider (tools/call, prompts/get, resources/read,
// completion/complete) take one path: find the owner, forward the request
// with the provider's own name, relay what the child says about it (progress,
// log messages, its own requests) to this client, and answer with the
// child's result as it is.

// errNoSuchTool is the audit reason for a call of a tool that does not
// exist or that the caller cannot see: the two are not told apart.
var errNoSuchTool = errors.New("no such tool")

// upstream finds the instance that serves provider for p, starting p's own
// instance of a user-scoped provider and waiting for it.
func (s *Server) upstream(ctx context.Context, provider string, p *switchboard.Principal) (switchboard.Upstream, error) {
	if s.opts.Instances == nil {
		s.mu.Lock()
		up := s.ups[s.latest[provider]]
		s.mu.Unlock()
		if up == nil {
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", provider)
		}
		return up, nil
	}
	key := switchboard.InstanceKey{Provider: provider}
	if s.opts.Instances.UserScoped(provider) {
		if p == nil || p.Kind != switchboard.PrincipalUser {
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s runs per user and needs a user", provider)
		}
		key.User = p.ID
	}
	return s.opts.Instances.Upstream(ctx, key)
}

// toolsCall serves tools/call.
func (s *Server) toolsCall(x *exchange) {
	m := x.m
	x.acc.tool = m.P.Name
	if m.P.RequestState != "" {
		s.resume(x)
		return
	}
	e := s.tbl.Load().byKey[kindTools][m.P.Name]
	ci := &CallInfo{
		RequestID: switchboard.RequestIDFromContext(x.ctx), Principal: x.p, Endpoint: x.ep,
		Client: x.acc.client, Exposed: m.P.Name, Args: m.P.Arguments, ReqBytes: len(m.P.Arguments),
		Start: time.Now(), Decision: "allow",
	}
	if x.ss != nil {
		ci.SessionID = x.ss.id
	}
	if m.P.Name == "" {
		x.fail(jsonrpc.CodeInvalidParams, "tools/call needs params.name", nil)
		return
	}
	visible := e != nil && s.toolVisible(x.ctx, x.p, e)
	if s.tr != nil {
		ci.TraceID = tracing.TraceID(x.ctx)
		s.tr.Policy(x.ctx, ci.Start, visible, m.P.Name)
	}
	if !visible {
		// A tool the caller cannot see and one that does not exist get the
		// same answer; the audit log says which.
		ci.Decision, ci.Outcome, ci.Err = "deny", "denied", errNoSuchTool
		if e != nil {
			ci.Provider, ci.Tool = e.provider, e.original
		}
		x.acc.outcome = ci.Outcome
		s.done(x.ctx, ci)
		x.fail(jsonrpc.CodeInvalidParams, "tool not found: "+m.P.Name, nil)
		return
	}
	ci.Provider, ci.Tool = e.provider, e.original
	x.acc.provider = e.provider
	if x.modern && e.tool != nil {
		lookup := func(name string) (string, bool) {
			v, ok := x.r.Header[http.CanonicalHeaderKey(name)]
			if !ok || len(v) == 0 {
				return "", false
			}
			return v[0], true
		}
		if err := mcp.ValidateParamHeadersLookup(lookup, e.tool, m.Params); err != nil {
			x.failStatus(http.StatusBadRequest, codeHeaderMismatch, "Header mismatch: "+err.Error(), nil)
			return
		}
	}
	ctx := x.ctx
	if s.tr != nil {
		ctx, ci.span = s.startCall(x, "tools/call", m.P.Name, e.provider)
	}
	if s.opts.Observer != nil {
		if err := s.opts.Observer.Admit(ctx, ci); err != nil {
			ci.Outcome, ci.Err = "refused", err
			x.acc.outcome = ci.Outcome
			s.answerTool(x, ci, nil, err, e.provider)
			return
		}
	}
	up, err := s.upstream(ctx, e.provider, x.p)
	if err != nil {
		s.answerTool(x, ci, nil, err, e.provider)
		return
	}
	fw := &forwarded{ci: ci, ctx: ctx, provider: e.provider, suspendable: true, finish: func(x *exchange, raw json.RawMessage, err error) {
		s.answerTool(x, ci, raw, err, e.provider)
	}}
	req := &switchboard.Request{Method: "tools/call", Params: rawCallParams(e.original, m.P.Arguments), Progress: m.P.M.ProgressToken, Meta: s.traceMeta(&m.P.M), LogLevel: x.logLevel()}
	s.run(x, fw, up, req)
}

// startCall starts the span of a request the gateway forwards to provider
// (target is the exposed name the client asked for, "" for a URI) and
// returns the context the call runs in.
func (s *Server) startCall(x *exchange, method, target, provider string) (context.Context, trace.Span) {
	name := method
	if target != "" {
		name = method + " " + target
	}
	// The method and the tool (or prompt) are in the span's name: each
	// attribute costs about as much as a span. The instance is named when
	// it is a user's own (a shared provider's instance is the provider).
	if s.opts.Instances != nil && s.opts.Instances.UserScoped(provider) && x.p != nil {
		return s.tr.Start(x.ctx, name, tracing.KeyProvider.String(provider),
			tracing.KeyInstance.String(switchboard.InstanceKey{Provider: provider, User: x.p.ID}.String()))
	}
	return s.tr.Start(x.ctx, name, tracing.KeyProvider.String(provider))
}

// answerTool answers a tools/call and records it: a child's JSON-RPC error
// as that error, any other failure as a tool error result, and the child's
// result as it is.
func (s *Server) answerTool(x *exchange, ci *CallInfo, raw json.RawMessage, err error, provider string) {
	var body []byte // the JSON-RPC error frame, if any
	var result []byte
	status := http.StatusOK
	switch {
	case err != nil:
		status, body, result = s.toolFailure(x, ci, err, provider)
	default:
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] != '{' {
			ci.Outcome, ci.Err = "error", errors.New("invalid tool result")
			result = toolError(provider + ": the provider returned a result that is not a JSON object")
			break
		}
		ci.Outcome = "ok"
		result = raw
		if jsonrpc.ResultIsError(raw) {
			ci.Outcome = "tool_error"
			result = []byte(s.opts.Redact(string(raw)))
		}
	}
	if body == nil {
		// What the client gets: shaped for its era (shapeResult).
		result = shapeResult(result, x.modern)
	}
	ci.RespBytes = len(result) + len(body)
	x.acc.outcome = ci.Outcome
	if ci.span != nil {
		tracing.End(ci.span, ci.Outcome)
	}
	if rf, ok := s.opts.Observer.(RecordFirst); ok && rf.RecordBeforeAnswer() {
		s.done(x.ctx, ci)
		s.send(x, status, body, result)
		return
	}
	s.send(x, status, body, result)
	s.done(x.ctx, ci)
}

// toolFailure is answerTool's answer to a call that failed: a JSON-RPC
// error frame (body) for a missing client capability or the child's own
// error, else a tool error result. (Apart from answerTool, so that a call
// that succeeds makes none of the error targets.)
func (s *Server) toolFailure(x *exchange, ci *CallInfo, err error, provider string) (status int, body, result []byte) {
	var rpcErr *switchboard.RPCError
	var missing missingCapability
	switch {
	case errors.As(err, &missing):
		ci.Outcome, ci.Err = "refused", err
		return http.StatusBadRequest, rpcError(x.m.ID, codeMissingClientCapability, "Missing required client capability: "+string(missing), missing.data()), nil
	case errors.As(err, &rpcErr):
		ci.Outcome, ci.Err = "error", err
		return http.StatusOK, rpcError(x.m.ID, rpcErr.Code, s.opts.Redact(rpcErr.Message), nil), nil
	}
	if ci.Outcome == "" {
		ci.Outcome = switchboard.Outcome(err)
	}
	ci.Err = err
	msg := switchboard.ErrorMessage(err)
	if ci.Outcome != "refused" {
		msg = provider + ": " + msg
	}
	return http.StatusOK, nil, toolError(msg)
}

// send answers with an error frame, or else with result, already shaped
// for the client's era.
func (s *Server) send(x *exchange, status int, errFrame, result []byte) {
	if errFrame != nil {
		x.finish(status, errFrame)
		return
	}
	x.reply(result)
}

// toolError is a CallToolResult carrying msg as an error.
func toolError(msg string) []byte {
	b := append([]byte(`{"content":[{"type":"text","text":`), jsonrpc.AppendString(nil, msg)...)
	return append(b, `}],"isError":true}`...)
}

// done tells the observer a call ended.
func (s *Server) done(ctx context.Context, ci *CallInfo) {
	ci.Latency = time.Since(ci.Start)
	if s.opts.Observer != nil {
		s.opts.Observer.Done(ctx, ci)
	}
	if s.opts.SlowCall > 0 && ci.Latency > s.opts.SlowCall {
		e := s.log.Warn().Str("request_id", ci.RequestID).Str("provider", ci.Provider).Str("tool", ci.Tool).
			Dur("latency", ci.Latency).Dur("threshold", s.opts.SlowCall)
		if ci.TraceID != "" {
			e = e.Str("trace_id", ci.TraceID)
		}
		e.Msg("slow tool call")
	}
}

// rawCallParams builds {"name":…,"arguments":…} around the caller's argument
// bytes without re-validating or re-encoding them.
func rawCallParams(name string, args json.RawMessage) json.RawMessage {
	args = bytes.TrimSpace(args)
	buf := make([]byte, 0, len(name)+len(args)+32)
	buf = append(buf, `{"name":`...)
	buf = jsonrpc.AppendString(buf, name)
	if len(args) > 0 {
		buf = append(buf, `,"arguments":`...)
		buf = append(buf, args...)
	}
	return append(buf, '}')
}

// traceMeta carries the client's W3C trace context to the child in _meta
// when the gateway does not trace; when it does, the supervisor gives the
// child the context of the gateway's own span instead.
func (s *Server) traceMeta(m *jsonrpc.Meta) []byte {
	if m.TraceParent == "" || s.tr != nil {
		return nil
	}
	b := append([]byte(`"traceparent":`), jsonrpc.AppendString(nil, m.TraceParent)...)
	if m.TraceState != "" {
		b = append(b, `,"tracestate":`...)
		b = jsonrpc.AppendString(b, m.TraceState)
	}
	return b
}

// promptsGet serves prompts/get: the gateway's own prompts (skills) by the
// gateway, the others by their provider.
func (s *Server) promptsGet(x *exchange) {
	m := x.m
	if m.P.RequestState != "" {
		s.resume(x)
		return
	}
	e := s.tbl.Load().byKey[kindPrompts][m.P.Name]
	visible := e != nil && s.visibleTraced(x, e, m.P.Name)
	if !visible {
		x.fail(jsonrpc.CodeInvalidParams, "prompt not found: "+m.P.Name, nil)
		return
	}
	x.acc.provider = e.provider
	if e.text != nil {
		var msg struct {
			Description string `json:"description"`
		}
		_ = json.Unmarshal(e.json, &msg)
		res, _ := json.Marshal(map[string]any{
			"description": msg.Description,
			"messages":    []any{map[string]any{"role": "user", "content": map[string]string{"type": "text", "text": *e.text}}},
		})
		x.replyChild(res)
		return
	}
	params := append([]byte(`{"name":`), jsonrpc.AppendString(nil, e.original)...)
	if args := bytes.TrimSpace(m.P.Arguments); len(args) > 0 && string(args) != "null" {
		params = append(params, `,"arguments":`...)
		params = append(params, args...)
	}
	params = append(params, '}')
	s.forwardPlain(x, e.provider, "prompts/get", m.P.Name, params, true)
}

// visibleTraced reports whether the caller may see e's provider, recording
// the decision in the trace.
func (s *Server) visibleTraced(x *exchange, e *entry, target string) bool {
	if s.tr == nil {
		return s.providerVisible(x.ctx, x.p, e.provider)
	}
	start := time.Now()
	ok := s.providerVisible(x.ctx, x.p, e.provider)
	s.tr.Policy(x.ctx, start, ok, target)
	return ok
}

// resourcesRead serves resources/read: the gateway's own resources by the
// gateway, the others by the provider that lists the URI or whose template
// matches it, under the provider's own URI. A resource the caller cannot see
// and one that does not exist get the same error.
func (s *Server) resourcesRead(x *exchange) {
	if x.m.P.RequestState != "" {
		s.resume(x)
		return
	}
	uri := x.m.P.URI
	e := s.tbl.Load().resource(uri)
	if e == nil || !s.visibleTraced(x, e, "") {
		code := codeResourceNotFoundLegacy
		if x.modern {
			code = jsonrpc.CodeInvalidParams
		}
		data, _ := json.Marshal(map[string]string{"uri": uri})
		x.fail(code, "Resource not found", data)
		return
	}
	x.acc.provider = e.provider
	if e.text != nil {
		res, _ := json.Marshal(map[string]any{"contents": []any{map[string]string{"uri": e.key, "mimeType": e.mimeType, "text": *e.text}}})
		if x.modern {
			res = s.appendCacheHints(res[:len(res)-1], 0)
			res = append(res, '}')
		}
		x.replyChild(res)
		return
	}
	original := uri
	if e.kind == kindResources {
		original = e.original
	}
	params := append([]byte(`{"uri":`), jsonrpc.AppendString(nil, original)...)
	params = append(params, '}')
	ctx, sp := x.ctx, trace.Span(nil)
	if s.tr != nil {
		ctx, sp = s.startCall(x, "resources/read", "", e.provider)
	}
	fw := &forwarded{ctx: ctx, span: sp, provider: e.provider, suspendable: true}
	fw.finish = func(x *exchange, raw json.RawMessage, err error) {
		if err == nil && original != uri {
			raw = exposedContents(raw, original, uri)
		}
		if err == nil && x.modern && len(raw) > 0 && raw[0] == '{' && !hasResultType(raw) {
			// A session-era child's read result, cacheable in this era:
			// the hints, not cached anywhere shared.
			raw = bytes.TrimSpace(raw)
			raw = append(append([]byte(nil), raw[:len(raw)-1]...), `,"ttlMs":0,"cacheScope":"private"}`...)
		}
		fw.end(err)
		s.answerPlain(x, e.provider, raw, err)
	}
	up, err := s.upstream(ctx, e.provider, x.p)
	if err != nil {
		fw.end(err)
		s.answerPlain(x, e.provider, nil, err)
		return
	}
	s.run(x, fw, up, &switchboard.Request{Method: "resources/read", Params: params, Progress: x.m.P.M.ProgressToken, Meta: s.traceMeta(&x.m.P.M), LogLevel: x.logLevel()})
}

// exposedContents rewrites the uri of a read result's contents from the
// provider's URI to the one the client asked for.
func exposedContents(raw []byte, original, exposed string) []byte {
	var res map[string]json.RawMessage
	if json.Unmarshal(raw, &res) != nil {
		return raw
	}
	var contents []map[string]json.RawMessage
	if json.Unmarshal(res["contents"], &contents) != nil {
		return raw
	}
	want := jsonrpc.AppendString(nil, original)
	for _, c := range contents {
		if string(c["uri"]) == string(want) {
			c["uri"] = jsonrpc.AppendString(nil, exposed)
		}
	}
	b, err := json.Marshal(contents)
	if err != nil {
		return raw
	}
	res["contents"] = b
	out, err := json.Marshal(res)
	if err != nil {
		return raw
	}
	return out
}

// forwardPlain forwards a request whose answer is the child's result as it
// is, or its error. target is the exposed name the client asked for.
func (s *Server) forwardPlain(x *exchange, provider, method, target string, params []byte, suspendable bool) {
	x.acc.provider = provider
	fw := &forwarded{ctx: x.ctx, provider: provider, suspendable: suspendable}
	if s.tr != nil {
		fw.ctx, fw.span = s.startCall(x, method, target, provider)
	}
	fw.finish = func(x *exchange, raw json.RawMessage, err error) {
		fw.end(err)
		s.answerPlain(x, provider, raw, err)
	}
	up, err := s.upstream(fw.ctx, provider, x.p)
	if err != nil {
		fw.end(err)
		s.answerPlain(x, provider, nil, err)
		return
	}
	s.run(x, fw, up, &switchboard.Request{Method: method, Params: params, Progress: x.m.P.M.ProgressToken, Meta: s.traceMeta(&x.m.P.M), LogLevel: x.logLevel()})
}

// answerPlain answers with a child's result or error.
func (s *Server) answerPlain(x *exchange, provider string, raw json.RawMessage, err error) {
	var rpcErr *switchboard.RPCError
	var missing missingCapability
	switch {
	case err != nil && errors.As(err, &missing):
		x.failStatus(http.StatusBadRequest, codeMissingClientCapability, "Missing required client capability: "+string(missing), missing.data())
	case err != nil && errors.As(err, &rpcErr):
		x.fail(rpcErr.Code, s.opts.Redact(rpcErr.Message), nil)
	case err != nil:
		x.fail(jsonrpc.CodeInternalError, provider+": "+switchboard.ErrorMessage(err), nil)
	case len(bytes.TrimSpace(raw)) == 0 || bytes.TrimSpace(raw)[0] != '{':
		x.fail(jsonrpc.CodeInternalError, provider+": the provider returned a result that is not a JSON object", nil)
	default:
		x.replyChild(bytes.TrimSpace(raw))
	}
}

// forwarded is one request on its way to a provider: how to answer it once
// the child has.
type forwarded struct {
	ci *CallInfo // tools/call only
	// ctx is the context the call runs in (the request's, with the
	// provider call's span when traced); span is that span for methods
	// other than tools/call (whose span is ci's), or nil.
	ctx      context.Context
	span     trace.Span
	provider string
	// suspendable: the method may answer input_required (tools/call,
	// prompts/get, resources/read).
	suspendable bool
	finish      func(x *exchange, raw json.RawMessage, err error)
}

// end ends the span of a forwarded request other than tools/call with the
// outcome err makes.
func (fw *forwarded) end(err error) {
	if fw.span == nil {
		return
	}
	tracing.End(fw.span, switchboard.Outcome(err))
	fw.span = nil
}

// run forwards req through up and answers x. A stateless-era client that
// can answer requests (elicitation, sampling, roots) may be asked for input
// in the middle of the call: then the call runs on its own goroutine,
// detached from this HTTP request, and x is answered with input_required;
// the client's retry picks the call up again (see resume).
func (s *Server) run(x *exchange, fw *forwarded, up switchboard.Upstream, req *switchboard.Request) {
	f := &flight{s: s, provider: fw.provider}
	f.attach(x)
	req.Caller = f
	if fw.ctx == nil {
		fw.ctx = x.ctx
	}
	if !x.modern || !fw.suspendable || !clientCanRelay(x.caps) {
		ctx := fw.ctx
		if x.modern { // only the stateless era aborts a call (Request)
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			f.abort = cancel
		}
		raw, err := up.Call(ctx, req)
		if err = f.failure(err); err != nil {
			raw = nil
		}
		fw.finish(x, raw, err)
		return
	}
	c := s.conts.newCall(x, fw, f)
	f.abort = c.cancel
	go func() {
		raw, err := up.Call(c.ctx, req)
		if err = f.failure(err); err != nil {
			raw = nil
		}
		c.result <- callResult{raw, err}
	}()
	s.await(x, c)
}

// flight is the switchboard.Caller of one forwarded request: it takes the
// child's messages about the request to the client's response stream. In the
// stateless era the request may span several HTTP requests (multi-round
// trips); attach points it at the current one.
type flight struct {
	s        *Server
	provider string
	mu       sync.Mutex
	x        *exchange
	c        *continuation // set when the call can ask the client for input
	// missing is set when the child asked a stateless-era client for
	// something it did not declare; abort then ends the call.
	missing missingCapability
	abort   context.CancelFunc
}

// failure returns the error the call ended with: err, unless the client
// lacks a capability the child asked for, which fails the call whatever
// the child answered.
func (f *flight) failure(err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing != "" {
		return f.missing
	}
	return err
}

var _ switchboard.Caller = (*flight)(nil)

func (f *flight) attach(x *exchange) {
	f.mu.Lock()
	f.x = x
	f.mu.Unlock()
}

func (f *flight) current() (*exchange, *continuation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.x, f.c
}

// Key implements switchboard.Caller.
func (f *flight) Key() string {
	x, c := f.current()
	if c != nil {
		return "cont:" + c.id
	}
	return x.key()
}

// Notify implements switchboard.Caller: progress goes to the client as it
// is; a log message goes when the client asked for its level, with the
// logger named after the provider.
func (f *flight) Notify(method string, params json.RawMessage) {
	x, _ := f.current()
	switch method {
	case "notifications/progress":
		x.notify(method, params)
	case "notifications/message":
		if b := logMessage(params, f.provider, x.level, f.s.opts.Redact); b != nil {
			x.notify(method, b)
		}
	}
}

// Request implements switchboard.Caller: a session-era client is asked on
// the response stream of its request; a stateless-era client gets
// input_required and answers by retrying.
func (f *flight) Request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	x, c := f.current()
	if missing, err := clientCan(x.caps, method, params); err != nil {
		if x.modern && missing != "" {
			// The stateless era fails the client's request itself.
			f.mu.Lock()
			f.missing = missingCapability(missing)
			abort := f.abort
			f.mu.Unlock()
			if abort != nil {
				abort()
			}
		}
		return nil, err
	}
	if c != nil {
		return c.ask(ctx, method, params)
	}
	if x.ss == nil {
		return nil, &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "switchboard cannot relay " + method + " to this client"}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(x.ctx, cancel)
	defer stop()
	return x.ss.request(ctx, x.out, method, params)
}

// clientCan refuses a request the client did not declare it can answer,
// naming the capability it lacks.
func clientCan(caps []byte, method string, params json.RawMessage) (missing string, err error) {
	var c struct {
		Sampling    json.RawMessage `json:"sampling"`
		Elicitation *struct {
			URL json.RawMessage `json:"url"`
		} `json:"elicitation"`
		Roots json.RawMessage `json:"roots"`
	}
	_ = json.Unmarshal(caps, &c)
	switch method {
	case "sampling/createMessage":
		if !jsonrpc.Has(c.Sampling) {
			missing = "sampling"
		}
	case "elicitation/create":
		var p struct {
			Mode string `json:"mode"`
		}
		_ = json.Unmarshal(params, &p)
		switch {
		case c.Elicitation == nil:
			missing = "elicitation"
		case p.Mode == "url" && !jsonrpc.Has(c.Elicitation.URL):
			missing = "elicitation.url"
		}
	case "roots/list":
		if !jsonrpc.Has(c.Roots) {
			missing = "roots"
		}
	default:
		return "", &switchboard.RPCError{Code: jsonrpc.CodeMethodNotFound, Message: "switchboard does not relay " + method + " to clients"}
	}
	if missing != "" {
		return missing, &switchboard.RPCError{Code: jsonrpc.CodeMethodNotFound, Message: "the client did not declare the " + missing + " capability"}
	}
	return "", nil
}

// missingCapability is why a stateless-era request failed: the child asked
// for something (sampling, say) the client did not declare it can do. The
// client gets MissingRequiredClientCapabilityError.
type missingCapability string

func (m missingCapability) Error() string {
	return "the request needs the client capability " + string(m) + ", which the client did not declare"
}

// data is the error's data: requiredCapabilities as a ClientCapabilities
// object.
func (m missingCapability) data() []byte {
	top, sub, nested := strings.Cut(string(m), ".")
	inner := `{}`
	if nested {
		inner = `{"` + sub + `":{}}`
	}
	return []byte(`{"requiredCapabilities":{"` + top + `":` + inner + `}}`)
}

// clientCanRelay reports whether the client declared any capability the
// gateway relays requests to.
func clientCanRelay(caps []byte) bool {
	var c map[string]json.RawMessage
	if json.Unmarshal(caps, &c) != nil {
		return false
	}
	return jsonrpc.Has(c["sampling"]) || jsonrpc.Has(c["elicitation"]) || jsonrpc.Has(c["roots"])
}

// logMessage returns the notifications/message params to send a client
// whose threshold is level, with the logger prefixed by provider and known
// secrets redacted, or nil when the client does not want it.
func logMessage(params json.RawMessage, provider string, level int32, redact func(string) string) []byte {
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return nil
	}
	var name, logger string
	_ = json.Unmarshal(p["level"], &name)
	l, ok := parseLevel(name)
	if !ok || l < level {
		return nil
	}
	_ = json.Unmarshal(p["logger"], &logger)
	if logger == "" {
		logger = provider
	} else {
		logger = provider + "/" + logger
	}
	p["logger"] = jsonrpc.AppendString(nil, logger)
	if d, ok := p["data"]; ok {
		p["data"] = json.RawMessage(redact(string(d)))
		if !json.Valid(p["data"]) {
			p["data"] = jsonrpc.AppendString(nil, redact(string(d)))
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil
	}
	return b
}
