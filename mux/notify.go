package mux

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// Notifications that are not about one request: list changes, resource
// updates, and log messages a child sends when no single client's call is in
// flight. Session-era clients get them on their GET stream (or in their next
// response); stateless-era clients on their subscriptions/listen streams.
// Every one is filtered like a list: a principal hears only of what it can
// see.

// listChanged are the notifications for changes to each list; a change to
// the templates is a change to the resources.
var listChanged = [numKinds]string{
	"notifications/tools/list_changed",
	"notifications/prompts/list_changed",
	"notifications/resources/list_changed",
	"notifications/resources/list_changed",
}

// scheduleNotify coalesces bursts of changes into one pass after NotifyDelay.
func (s *Server) scheduleNotify() {
	if !s.pending.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(s.opts.NotifyDelay, func() {
		s.pending.Store(false)
		s.notifyChanged()
	})
}

// notifyChanged sends list_changed to exactly the sessions and listeners
// whose view of a list changed, once per list.
func (s *Server) notifyChanged() {
	ctx := context.Background()
	views := map[string]*view{}
	viewOf := func(p *switchboard.Principal) *view {
		k := viewKey(p)
		v := views[k]
		if v == nil {
			v = s.view(ctx, p)
			views[k] = v
		}
		return v
	}
	for _, ss := range s.sessions.all() {
		v := viewOf(ss.principal())
		ss.mu.Lock()
		old := ss.hashes
		ss.hashes = v.hash
		ss.mu.Unlock()
		sent := map[string]bool{}
		for k := range numKinds {
			if old[k] != v.hash[k] && !sent[listChanged[k]] {
				sent[listChanged[k]] = true
				ss.deliver(jsonrpc.AppendNotification(nil, listChanged[k], nil))
			}
		}
	}
	for _, l := range s.listens.all() {
		v := viewOf(l.p)
		l.mu.Lock()
		old := l.hashes
		l.hashes = v.hash
		l.mu.Unlock()
		sent := map[string]bool{}
		for k := range numKinds {
			if old[k] != v.hash[k] && l.wants(kind(k)) && !sent[listChanged[k]] {
				sent[listChanged[k]] = true
				l.send(listChanged[k], nil)
			}
		}
	}
}

// ProviderNotification takes a notification of a provider instance that no
// call in flight took (see supervisor.Options.OnNotification).
func (s *Server) ProviderNotification(key switchboard.InstanceKey, method string, params json.RawMessage) {
	switch method {
	case "notifications/resources/updated":
		var p struct {
			URI string `json:"uri"`
		}
		if json.Unmarshal(params, &p) != nil || p.URI == "" {
			return
		}
		s.subs.updated(s, key, p.URI, params)
	case "notifications/message":
		s.broadcastLog(key, params)
	}
}

// broadcastLog sends a child's log message that cannot be tied to one
// client to the sessions that see its provider and asked for its level.
func (s *Server) broadcastLog(key switchboard.InstanceKey, params json.RawMessage) {
	ctx := context.Background()
	for _, ss := range s.sessions.all() {
		p := ss.principal()
		if key.User != "" && (p.Kind != switchboard.PrincipalUser || p.ID != key.User) {
			continue
		}
		if !s.providerVisible(ctx, p, key.Provider) {
			continue
		}
		if b := logMessage(params, key.Provider, ss.logLevel.Load(), s.opts.Redact); b != nil {
			ss.deliver(jsonrpc.AppendNotification(nil, "notifications/message", b))
		}
	}
}

// rootsChanged tells the children of ss's user that asked for roots (the
// user's own instances; shared children are never told of a client's roots)
// that the roots changed.
func (s *Server) rootsChanged(ss *session) {
	p := ss.principal()
	if p.Kind != switchboard.PrincipalUser {
		return
	}
	s.mu.Lock()
	var ups []switchboard.Upstream
	for k, up := range s.ups {
		if k.User == p.ID {
			ups = append(ups, up)
		}
	}
	s.mu.Unlock()
	for _, up := range ups {
		if n, ok := up.(notifier); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.Notify(ctx, "notifications/roots/list_changed", nil)
			cancel()
		}
	}
}

// notifier is an upstream that can send the child a notification.
type notifier interface {
	Notify(ctx context.Context, method string, params any) error
}

// subscriber is a session or a listen stream subscribed to a resource.
type subscriber struct {
	id      string
	p       *switchboard.Principal
	deliver func(method string, params json.RawMessage)
}

// subKey is one resource of one provider instance that some client
// subscribed to.
type subKey struct {
	inst switchboard.InstanceKey
	uri  string // the provider's own URI
}

// subscriptions tracks resource subscriptions: which clients want updates
// for which exposed URI, and which of them the gateway subscribed to at the
// provider (once per instance and URI, however many clients want it).
type subscriptions struct {
	mu    sync.Mutex
	byURI map[string]map[string]subscriber // exposed URI → subscriber id → subscriber
	held  map[subKey]map[string]bool       // provider subscriptions → subscriber ids
	of    map[string]map[string]subKey     // subscriber id → exposed URI → the provider subscription it holds
}

func newSubscriptions() *subscriptions {
	return &subscriptions{byURI: map[string]map[string]subscriber{}, held: map[subKey]map[string]bool{}, of: map[string]map[string]subKey{}}
}

// add subscribes sub to the exposed uri. If the caller can see the provider
// that serves it, and the provider supports subscriptions, the gateway
// subscribes at the provider too (once per instance and URI). A URI nobody
// serves, or that the caller cannot see, is recorded all the same, so the
// answer does not tell the two apart.
func (sb *subscriptions) add(s *Server, ctx context.Context, uri string, sub subscriber) {
	sb.mu.Lock()
	if sb.byURI[uri] == nil {
		sb.byURI[uri] = map[string]subscriber{}
	}
	sb.byURI[uri][sub.id] = sub
	sb.mu.Unlock()
	e := s.tbl.Load().resource(uri)
	if e == nil || e.text != nil || !s.providerVisible(ctx, sub.p, e.provider) || !s.tbl.Load().caps[e.provider].subscribe {
		return
	}
	original := uri
	if e.kind == kindResources {
		original = e.original
	}
	inst := switchboard.InstanceKey{Provider: e.provider}
	if s.opts.Instances != nil && s.opts.Instances.UserScoped(e.provider) {
		if sub.p.Kind != switchboard.PrincipalUser {
			return
		}
		inst.User = sub.p.ID
	}
	k := subKey{inst: inst, uri: original}
	sb.mu.Lock()
	first := len(sb.held[k]) == 0
	if sb.held[k] == nil {
		sb.held[k] = map[string]bool{}
	}
	sb.held[k][sub.id] = true
	if sb.of[sub.id] == nil {
		sb.of[sub.id] = map[string]subKey{}
	}
	sb.of[sub.id][uri] = k
	sb.mu.Unlock()
	if first {
		go s.upstreamSubscription(sub.p, k, "resources/subscribe")
	}
}

// drop unsubscribes subscriber id from uri, and the gateway at the provider
// when nobody else wants it.
func (sb *subscriptions) drop(s *Server, uri, id string) {
	sb.mu.Lock()
	if m := sb.byURI[uri]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(sb.byURI, uri)
		}
	}
	k, ok := sb.of[id][uri]
	delete(sb.of[id], uri)
	if len(sb.of[id]) == 0 {
		delete(sb.of, id)
	}
	last := false
	if ok {
		delete(sb.held[k], id)
		if len(sb.held[k]) == 0 {
			delete(sb.held, k)
			last = true
		}
	}
	sb.mu.Unlock()
	if last {
		go s.upstreamSubscription(nil, k, "resources/unsubscribe")
	}
}

// upstreamSubscription subscribes or unsubscribes the gateway at a provider.
func (s *Server) upstreamSubscription(p *switchboard.Principal, k subKey, method string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var up switchboard.Upstream
	if p != nil {
		var err error
		if up, err = s.upstream(ctx, k.inst.Provider, p); err != nil {
			return
		}
	} else {
		s.mu.Lock()
		up = s.ups[k.inst]
		s.mu.Unlock()
		if up == nil {
			return
		}
	}
	params := append(append([]byte(`{"uri":`), jsonrpc.AppendString(nil, k.uri)...), '}')
	if _, err := up.Call(ctx, &switchboard.Request{Method: method, Params: params}); err != nil {
		s.log.Debug().Str("provider", k.inst.String()).Str("method", method).Str("error", s.opts.Redact(err.Error())).Msg("provider subscription failed")
	}
}

// resubscribe renews, at a new process of inst, the subscriptions the
// gateway held at its predecessor.
func (sb *subscriptions) resubscribe(s *Server, inst switchboard.InstanceKey, up switchboard.Upstream) {
	sb.mu.Lock()
	var uris []string
	for k, ids := range sb.held {
		if k.inst == inst && len(ids) > 0 {
			uris = append(uris, k.uri)
		}
	}
	sb.mu.Unlock()
	for _, uri := range uris {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			params := append(append([]byte(`{"uri":`), jsonrpc.AppendString(nil, uri)...), '}')
			_, _ = up.Call(ctx, &switchboard.Request{Method: "resources/subscribe", Params: params})
		}()
	}
}

// updated delivers a provider's notifications/resources/updated to the
// clients subscribed to that resource who can still see it, under the URI
// they know it by.
func (sb *subscriptions) updated(s *Server, inst switchboard.InstanceKey, original string, params json.RawMessage) {
	exposed := original
	t := s.tbl.Load()
	for _, e := range t.sorted[kindResources] {
		if e.provider == inst.Provider && e.original == original {
			exposed = e.key
			break
		}
	}
	if exposed != original {
		params = jsonrpc.SetMember(nil, params, "uri", jsonrpc.AppendString(nil, exposed))
	}
	sb.mu.Lock()
	var subs []subscriber
	for _, sub := range sb.byURI[exposed] {
		subs = append(subs, sub)
	}
	sb.mu.Unlock()
	ctx := context.Background()
	for _, sub := range subs {
		if inst.User != "" && (sub.p.Kind != switchboard.PrincipalUser || sub.p.ID != inst.User) {
			continue
		}
		if !s.providerVisible(ctx, sub.p, inst.Provider) {
			continue
		}
		sub.deliver("notifications/resources/updated", params)
	}
}

// subscribe serves resources/subscribe (session era).
func (s *Server) subscribe(x *exchange) {
	uri := x.m.P.URI
	if uri == "" {
		x.fail(jsonrpc.CodeInvalidParams, "resources/subscribe needs params.uri", nil)
		return
	}
	ss := x.ss
	ss.mu.Lock()
	if ss.subs == nil {
		ss.subs = map[string]bool{}
	}
	already := ss.subs[uri]
	ss.subs[uri] = true
	ss.mu.Unlock()
	if !already {
		s.subs.add(s, x.ctx, uri, subscriber{id: ss.id, p: x.p, deliver: func(method string, params json.RawMessage) {
			ss.deliver(jsonrpc.AppendNotification(nil, method, params))
		}})
	}
	x.reply([]byte(`{}`))
}

// unsubscribe serves resources/unsubscribe (session era).
func (s *Server) unsubscribe(x *exchange) {
	uri := x.m.P.URI
	if uri == "" {
		x.fail(jsonrpc.CodeInvalidParams, "resources/unsubscribe needs params.uri", nil)
		return
	}
	ss := x.ss
	ss.mu.Lock()
	had := ss.subs[uri]
	delete(ss.subs, uri)
	ss.mu.Unlock()
	if had {
		s.subs.drop(s, uri, ss.id)
	}
	x.reply([]byte(`{}`))
}

// listener is one subscriptions/listen stream (stateless era).
type listener struct {
	id     []byte // the listen request's id: the subscription's id
	sid    string // a unique key for the subscriptions table
	p      *switchboard.Principal
	owner  string
	st     *stream
	filter listenFilter
	ended  chan struct{} // closed to end the stream gracefully

	mu     sync.Mutex
	hashes [numKinds]uint64
}

// listenFilter is what a listener asked for, and what the gateway honors:
// all of it.
type listenFilter struct {
	ToolsListChanged      bool     `json:"toolsListChanged,omitempty"`
	PromptsListChanged    bool     `json:"promptsListChanged,omitempty"`
	ResourcesListChanged  bool     `json:"resourcesListChanged,omitempty"`
	ResourceSubscriptions []string `json:"resourceSubscriptions,omitempty"`
}

func (l *listener) wants(k kind) bool {
	switch k {
	case kindTools:
		return l.filter.ToolsListChanged
	case kindPrompts:
		return l.filter.PromptsListChanged
	default:
		return l.filter.ResourcesListChanged
	}
}

// send delivers a notification on the stream, tagged with the subscription.
func (l *listener) send(method string, params json.RawMessage) {
	meta := append(append([]byte(`{"`+jsonrpc.MetaSubscriptionID+`":`), l.id...), '}')
	var b []byte
	if len(params) == 0 {
		b = append(append([]byte(`{"_meta":`), meta...), '}')
	} else {
		b = jsonrpc.SetMember(nil, params, "_meta", meta)
	}
	l.st.event(jsonrpc.AppendNotification(nil, method, b))
}

// listenTable is every open listen stream.
type listenTable struct {
	mu      sync.Mutex
	m       map[*listener]bool
	byOwner map[string]int
	n       int
}

func newListenTable() *listenTable {
	return &listenTable{m: map[*listener]bool{}, byOwner: map[string]int{}}
}

func (lt *listenTable) all() []*listener {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	out := make([]*listener, 0, len(lt.m))
	for l := range lt.m {
		out = append(out, l)
	}
	return out
}

// closeAll ends every listen stream gracefully (shutdown).
func (lt *listenTable) closeAll() {
	for _, l := range lt.all() {
		l.end()
	}
}

func (l *listener) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.ended:
	default:
		close(l.ended)
	}
}

// CloseListens gracefully ends the subscriptions/listen streams of the
// principal with this "kind:id" (for example when the user is removed or
// their key is revoked), so that the client re-authenticates.
func (s *Server) CloseListens(principal string) {
	for _, l := range s.listens.all() {
		if l.p.String() == principal {
			l.end()
		}
	}
}

// listen serves subscriptions/listen: a long-lived SSE stream of the change
// notifications the client opted in to, filtered like its lists.
func (s *Server) listen(x *exchange) {
	var f listenFilter
	if n := x.m.P.Notifications; len(n) > 0 && json.Unmarshal(n, &f) != nil {
		x.fail(jsonrpc.CodeInvalidParams, "params.notifications must be a notification filter object", nil)
		return
	}
	lt := s.listens
	owner := continuationOwner(x.p, x.ep)
	hashes := s.view(x.ctx, x.p).hash
	lt.mu.Lock()
	if lt.byOwner[owner] >= s.opts.MaxListensPerPrincipal {
		lt.mu.Unlock()
		x.failStatus(http.StatusTooManyRequests, jsonrpc.CodeInvalidRequest, "too many open subscriptions/listen streams: close one first", nil)
		return
	}
	lt.n++
	l := &listener{id: jsonrpc.Clone(x.m.ID), sid: "listen-" + strconv.Itoa(lt.n), p: x.p, owner: owner, st: x.out, filter: f, ended: make(chan struct{}), hashes: hashes}
	lt.m[l] = true
	lt.byOwner[owner]++
	lt.mu.Unlock()
	for _, uri := range f.ResourceSubscriptions {
		s.subs.add(s, x.ctx, uri, subscriber{id: l.sid, p: x.p, deliver: l.send})
	}
	ack, _ := json.Marshal(map[string]any{"notifications": f})
	x.out.open()
	l.send("notifications/subscriptions/acknowledged", ack)
	graceful := false
	select {
	case <-x.ctx.Done():
	case <-l.ended:
		graceful = true
	case <-s.closing:
		graceful = true
	}
	lt.mu.Lock()
	delete(lt.m, l)
	if lt.byOwner[owner]--; lt.byOwner[owner] <= 0 {
		delete(lt.byOwner, owner)
	}
	lt.mu.Unlock()
	for _, uri := range f.ResourceSubscriptions {
		s.subs.drop(s, uri, l.sid)
	}
	if graceful {
		res := append([]byte(`{"resultType":"complete","_meta":{"`+jsonrpc.MetaSubscriptionID+`":`), l.id...)
		x.reply(append(res, "}}"...))
		return
	}
	x.finish(http499, nil)
}
