package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
)

// exchange is one client request being served, in either era.
type exchange struct {
	s      *Server
	ctx    context.Context
	ep     switchboard.Endpoint
	p      *switchboard.Principal
	m      *jsonrpc.Message
	ss     *session // the session-era session; nil in the stateless era
	modern bool
	caps   []byte // the client's capabilities, raw
	level  int32  // the least severe log level the client wants; levelNone
	out    *stream
	acc    *access
	r      *http.Request
}

func (s *Server) newExchange(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, acc *access) *exchange {
	return &exchange{s: s, ctx: ctx, ep: ep, p: principal(ctx), m: m, out: newStream(w, s.opts.Heartbeat), acc: acc, r: r, level: levelNone}
}

// key identifies the client for the supervisor's "one client in flight"
// rule: the session, or in the stateless era this request alone.
func (x *exchange) key() string {
	if x.ss != nil {
		return x.ss.id
	}
	return "req:" + switchboard.RequestIDFromContext(x.ctx) + ":" + string(x.m.ID)
}

// logLevel names the least severe log level the client wants, or "".
func (x *exchange) logLevel() string {
	if x.level < 0 || int(x.level) >= len(levelNames) {
		return ""
	}
	return levelNames[x.level]
}

// framePool recycles answer buffers; ones grown past maxPooledFrame are
// dropped.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledFrame = 4 << 20

// reply answers with result, a JSON object.
func (x *exchange) reply(result []byte) {
	bp := framePool.Get().(*[]byte)
	b := append((*bp)[:0], `{"jsonrpc":"2.0","id":`...)
	b = append(b, x.m.ID...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	b = append(b, "}\n"...)
	x.finish(http.StatusOK, b)
	if cap(b) <= maxPooledFrame {
		*bp = b
		framePool.Put(bp)
	}
}

// replyChild answers with a provider's result, shaped for the client's era
// (see shapeResult).
func (x *exchange) replyChild(result []byte) {
	x.reply(shapeResult(result, x.modern))
}

// hasResultType reports whether a result object has a top-level resultType.
func hasResultType(result []byte) bool {
	if !bytes.Contains(result, []byte(`"resultType"`)) {
		return false
	}
	_, ok := jsonrpc.Member(result, "resultType")
	return ok
}

// shapeResult makes a provider's result look as if the gateway were the
// only server: to a stateless-era client it carries resultType (a
// session-era child leaves it out) and the gateway's serverInfo in place of
// the child's; to a session-era client the stateless era's members that a
// modern child adds (resultType, ttlMs, cacheScope, serverInfo) are taken
// out. A session-era child's result to a session-era client — the common
// case — is passed through untouched.
func shapeResult(result []byte, modern bool) []byte {
	childModern := bytes.Contains(result, []byte(`"resultType"`)) && hasResultType(result)
	switch {
	case !modern && !childModern:
		return result
	case modern && !childModern:
		return jsonrpc.PrependMembers(make([]byte, 0, len(result)+32), result, []byte(`"resultType":"complete"`))
	}
	meta, hasMeta := jsonrpc.Member(result, "_meta")
	if hasMeta && bytes.Contains(meta, []byte(jsonrpc.MetaServerInfo)) && len(meta) > 0 && meta[0] == '{' {
		meta = jsonrpc.DeleteMembers(nil, meta, jsonrpc.MetaServerInfo)
	}
	if modern {
		// The gateway's own identity, whatever the child said.
		info := append([]byte(`"`+jsonrpc.MetaServerInfo+`":`), serverInfo()...)
		if !hasMeta || string(bytes.TrimSpace(meta)) == "{}" {
			meta = append(append([]byte{'{'}, info...), '}')
		} else {
			meta = jsonrpc.PrependMembers(nil, meta, info)
		}
		return jsonrpc.SetMember(nil, result, "_meta", meta)
	}
	out := jsonrpc.DeleteMembers(nil, result, "resultType", "ttlMs", "cacheScope", "_meta")
	if hasMeta && string(bytes.TrimSpace(meta)) != "{}" {
		out = jsonrpc.SetMember(nil, out, "_meta", meta)
	}
	return out
}

// fail answers with a JSON-RPC error (HTTP 200).
func (x *exchange) fail(code int, msg string, data []byte) {
	x.failStatus(http.StatusOK, code, msg, data)
}

func (x *exchange) failStatus(status, code int, msg string, data []byte) {
	x.finish(status, rpcError(x.m.ID, code, msg, data))
}

func (x *exchange) finish(status int, frame []byte) {
	x.out.finish(status, frame)
	x.acc.status = x.out.status
}

// notify sends a notification that belongs to this request, before its
// answer.
func (x *exchange) notify(method string, params []byte) {
	x.out.event(jsonrpc.AppendNotification(nil, method, params))
}

// method is one JSON-RPC method the front end serves, and the eras it
// belongs to.
type method struct {
	fn             func(*Server, *exchange)
	legacy, modern bool
}

// methods is the one handler per method, for both eras. initialize is
// handled before a session exists (see Server.initialize).
var methods map[string]method

func init() {
	methods = map[string]method{
		"ping":                     {fn: (*Server).ping, legacy: true},
		"server/discover":          {fn: (*Server).discover, modern: true},
		"tools/list":               {fn: listOf(kindTools), legacy: true, modern: true},
		"prompts/list":             {fn: listOf(kindPrompts), legacy: true, modern: true},
		"resources/list":           {fn: listOf(kindResources), legacy: true, modern: true},
		"resources/templates/list": {fn: listOf(kindTemplates), legacy: true, modern: true},
		"tools/call":               {fn: (*Server).toolsCall, legacy: true, modern: true},
		"prompts/get":              {fn: (*Server).promptsGet, legacy: true, modern: true},
		"resources/read":           {fn: (*Server).resourcesRead, legacy: true, modern: true},
		"completion/complete":      {fn: (*Server).complete, legacy: true, modern: true},
		"logging/setLevel":         {fn: (*Server).setLevel, legacy: true},
		"resources/subscribe":      {fn: (*Server).subscribe, legacy: true},
		"resources/unsubscribe":    {fn: (*Server).unsubscribe, legacy: true},
		"subscriptions/listen":     {fn: (*Server).listen, modern: true},
	}
}

// serve answers one request with its method's handler.
func (s *Server) serve(x *exchange) {
	h, ok := methods[x.m.Method]
	switch {
	case x.modern && (!ok || !h.modern):
		x.failStatus(http.StatusNotFound, jsonrpc.CodeMethodNotFound, "Method not found", nil)
		return
	case !x.modern && (!ok || !h.legacy):
		x.fail(jsonrpc.CodeMethodNotFound, "method not found: "+x.m.Method, nil)
		return
	}
	h.fn(s, x)
}

func (s *Server) ping(x *exchange) { x.reply([]byte(`{}`)) }

// initialize opens a session-era session.
func (s *Server) initialize(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, acc *access) {
	x := s.newExchange(ctx, ep, w, r, m, acc)
	if !m.IsRequest() {
		x.failStatus(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "initialize must be a request", nil)
		return
	}
	if r.Header.Get("Mcp-Session-Id") != "" {
		x.failStatus(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "initialize opens a session: send it without Mcp-Session-Id", nil)
		return
	}
	version := m.P.ProtocolVersion
	if !slices.Contains(SessionProtocolVersions, version) {
		version = SessionProtocolVersions[0]
	}
	v := s.view(ctx, x.p)
	ss, err := s.sessions.open(&session{version: version, client: clientName(m.P.ClientInfo), caps: jsonrpc.Clone(m.P.Capabilities), hashes: v.hash},
		x.p, ep, s.opts.MaxSessionsPerPrincipal)
	if err != nil {
		w.Header().Set("Retry-After", "60")
		x.failStatus(http.StatusTooManyRequests, jsonrpc.CodeInvalidRequest, err.Error(), nil)
		return
	}
	acc.session, acc.client = ss.id, ss.client
	res := make([]byte, 0, 512)
	res = append(res, `{"protocolVersion":`...)
	res = jsonrpc.AppendString(res, version)
	res = append(res, `,"capabilities":`...)
	res = s.appendCapabilities(res, v)
	res = append(res, `,"serverInfo":`...)
	res = append(res, serverInfo()...)
	if s.opts.Instructions != nil {
		res = append(res, `,"instructions":`...)
		res = jsonrpc.AppendString(res, s.opts.Instructions(ctx, v.providers))
	}
	res = append(res, '}')
	w.Header().Set("Mcp-Session-Id", ss.id)
	s.log.Debug().Str("session", shortID(ss.id)).Str("principal", ss.owner).Str("client", ss.client).Str("version", version).Msg("session opened")
	if so, ok := s.opts.Observer.(SessionObserver); ok {
		so.SessionOpened(ep)
	}
	x.reply(res)
}

// serverInfo is the gateway's Implementation object.
func serverInfo() []byte {
	b, _ := json.Marshal(map[string]string{"name": "switchboard", "version": switchboard.Version})
	return b
}

// appendCapabilities appends the capabilities the gateway announces to a
// caller who sees v: what its visible providers offer, plus the gateway's
// own (tools always, prompts and resources when a provider or a skill
// offers them, subscriptions and log levels, which the gateway handles).
func (s *Server) appendCapabilities(dst []byte, v *view) []byte {
	t := s.tbl.Load()
	var caps providerCaps
	for _, p := range v.providers {
		c := t.caps[p]
		caps.completions = caps.completions || c.completions
		caps.logging = caps.logging || c.logging
	}
	dst = append(dst, `{"tools":{"listChanged":true}`...)
	if len(v.lists[kindPrompts]) > 0 || hasAny(t, v.providers, kindPrompts) {
		dst = append(dst, `,"prompts":{"listChanged":true}`...)
	}
	if len(v.lists[kindResources])+len(v.lists[kindTemplates]) > 0 || hasAny(t, v.providers, kindResources) {
		dst = append(dst, `,"resources":{"subscribe":true,"listChanged":true}`...)
	}
	dst = append(dst, `,"logging":{}`...)
	if caps.completions {
		dst = append(dst, `,"completions":{}`...)
	}
	return append(dst, '}')
}

// hasAny reports whether one of providers declared a capability for list k
// (it may list nothing yet).
func hasAny(t *table, providers []string, k kind) bool {
	for _, p := range providers {
		for _, e := range t.sorted[k] {
			if e.provider == p {
				return true
			}
		}
	}
	return false
}

// discover answers server/discover: the versions, capabilities, identity and
// instructions, as the caller sees them.
func (s *Server) discover(x *exchange) {
	v := s.view(x.ctx, x.p)
	res := make([]byte, 0, 512)
	res = append(res, `{"resultType":"complete","supportedVersions":`...)
	vs, _ := json.Marshal(supportedVersions)
	res = append(res, vs...)
	res = append(res, `,"capabilities":`...)
	res = s.appendCapabilities(res, v)
	if s.opts.Instructions != nil {
		res = append(res, `,"instructions":`...)
		res = jsonrpc.AppendString(res, s.opts.Instructions(x.ctx, v.providers))
	}
	res = s.appendCacheHints(res, s.opts.ListTTL.Milliseconds())
	res = append(res, '}')
	x.reply(res)
}

// listOf serves one of the four lists: the caller's view, one page.
func listOf(k kind) func(*Server, *exchange) {
	return func(s *Server, x *exchange) {
		ctx, sp := x.ctx, trace.Span(nil)
		if s.tr != nil {
			ctx, sp = s.tr.Start(x.ctx, "merge "+x.m.Method, tracing.KeyMCPMethod.String(x.m.Method))
		}
		if s.opts.Instances != nil {
			s.opts.Instances.Ensure(ctx, x.p)
		}
		v := s.view(ctx, x.p)
		items, next, ok := s.page(v, k, x.m.P.Cursor, x.m.P.HasCursor)
		if sp != nil {
			sp.SetAttributes(tracing.KeyListItems.Int(len(items)), tracing.KeyListProviders.Int(len(v.providers)))
			outcome := "ok"
			if !ok {
				outcome = "invalid_cursor"
			}
			tracing.End(sp, outcome)
		}
		if !ok {
			x.fail(jsonrpc.CodeInvalidParams, "invalid cursor", nil)
			return
		}
		bp := framePool.Get().(*[]byte)
		b := append((*bp)[:0], `{"jsonrpc":"2.0","id":`...)
		if need := len(b) + len(x.m.ID) + sizeOf(items) + 256; cap(b) < need {
			b = append(make([]byte, 0, need), b...)
		}
		b = append(b, x.m.ID...)
		b = append(b, `,"result":`...)
		b = s.appendList(b, k, items, next, x.modern)
		b = append(b, "}\n"...)
		x.finish(http.StatusOK, b)
		if cap(b) <= maxPooledFrame {
			*bp = b
			framePool.Put(bp)
		}
	}
}

// emptyCompletion answers a completion the gateway cannot route: one for a
// prompt or template that does not exist, or that the caller cannot see,
// alike.
const emptyCompletion = `{"completion":{"values":[],"hasMore":false}}`

// complete routes completion/complete by its ref to the provider that owns
// the prompt or resource template, with the name or URI the provider knows.
func (s *Server) complete(x *exchange) {
	t := s.tbl.Load()
	ref := x.m.P.Ref
	var e *entry
	switch ref.Type {
	case "ref/prompt":
		e = t.byKey[kindPrompts][ref.Name]
	case "ref/resource":
		if e = t.byKey[kindTemplates][ref.URI]; e == nil {
			e = t.byKey[kindResources][ref.URI]
		}
	default:
		x.fail(jsonrpc.CodeInvalidParams, `ref.type must be "ref/prompt" or "ref/resource"`, nil)
		return
	}
	if e == nil || e.text != nil || !s.providerVisible(x.ctx, x.p, e.provider) || !t.caps[e.provider].completions {
		x.replyChild([]byte(emptyCompletion))
		return
	}
	refJSON := make([]byte, 0, 64)
	refJSON = append(refJSON, `{"type":`...)
	refJSON = jsonrpc.AppendString(refJSON, ref.Type)
	if ref.Type == "ref/prompt" {
		refJSON = append(refJSON, `,"name":`...)
	} else {
		refJSON = append(refJSON, `,"uri":`...)
	}
	refJSON = jsonrpc.AppendString(refJSON, e.original)
	refJSON = append(refJSON, '}')
	params := append([]byte(`{"ref":`), refJSON...)
	if len(x.m.P.Argument) > 0 {
		params = append(params, `,"argument":`...)
		params = append(params, x.m.P.Argument...)
	}
	if len(x.m.P.Context) > 0 {
		params = append(params, `,"context":`...)
		params = append(params, x.m.P.Context...)
	}
	params = append(params, '}')
	s.forwardPlain(x, e.provider, "completion/complete", "", params, false)
}

// Log levels of notifications/message, least severe first.
var levelNames = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// levelNone is a threshold above every level: nothing is delivered.
const levelNone int32 = 100

func parseLevel(s string) (int32, bool) {
	i := slices.Index(levelNames, s)
	return int32(i), i >= 0
}

// setLevel stores the session's log level: the provider log messages it is
// sent from now on are at or above it.
func (s *Server) setLevel(x *exchange) {
	l, ok := parseLevel(x.m.P.Level)
	if !ok {
		x.fail(jsonrpc.CodeInvalidParams, "invalid log level "+quote(x.m.P.Level)+": want one of "+joinQuoted(levelNames), nil)
		return
	}
	x.ss.logLevel.Store(l)
	x.reply([]byte(`{}`))
}

func joinQuoted(ss []string) string {
	b := make([]byte, 0, 96)
	for i, s := range ss {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, s)
	}
	return string(b)
}

// clientNotification handles a session-era client's notification.
func (s *Server) clientNotification(ss *session, m *jsonrpc.Message) {
	switch m.Method {
	case "notifications/cancelled":
		ss.cancel(bytes.TrimSpace(m.P.RequestID))
	case "notifications/roots/list_changed":
		s.rootsChanged(ss)
	}
}
