package mux

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// nopUpstream stands in for a running provider instance.
type nopUpstream struct{}

func (nopUpstream) Call(context.Context, string, any) (json.RawMessage, error) {
	return json.RawMessage(`{"content":[]}`), nil
}

func (nopUpstream) ProgressToken(func(json.RawMessage)) (string, func()) { return "", func() {} }

// listServer is a mux with its two endpoints, driven in-process.
type listServer struct {
	s *Server
	h map[switchboard.Endpoint]http.Handler
}

// newListServer returns a mux filtered by f. list_changed never fires during
// a test (NotifyDelay is an hour): a queued notification would turn mcp-go's
// next answer into an SSE stream and the comparisons are about the list.
func newListServer(tb testing.TB, f Filter) *listServer {
	tb.Helper()
	s := New(Options{Logger: zerolog.Nop(), Filter: f, NotifyDelay: time.Hour})
	ls := &listServer{s: s, h: map[switchboard.Endpoint]http.Handler{}}
	for _, ep := range []switchboard.Endpoint{switchboard.EndpointPublic, switchboard.EndpointInternal} {
		ls.h[ep] = s.Handler(ep)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return ls
}

// request builds a POST as the edge would pass it on: authenticated as p.
func request(p *switchboard.Principal, sid, body string) *http.Request {
	ep := switchboard.EndpointPublic
	if p != nil {
		ep = p.Endpoint
	}
	r := httptest.NewRequest(http.MethodPost, "http://switchboard"+string(ep), strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		r.Header.Set(server.HeaderKeySessionID, sid)
		r.Header.Set(mcp.HeaderProtocolVersion, SessionProtocolVersions[1])
	}
	return r.WithContext(switchboard.NewContextWithPrincipal(r.Context(), p))
}

// post sends body through the gateway's edge (and so the fast paths).
func (ls *listServer) post(p *switchboard.Principal, sid, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	ls.h[p.Endpoint].ServeHTTP(w, request(p, sid, body))
	return w
}

// postMCPGo sends body straight to mcp-go's transport, past the edge.
func (ls *listServer) postMCPGo(p *switchboard.Principal, sid, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	ls.s.http[p.Endpoint].ServeHTTP(w, request(p, sid, body))
	return w
}

// open initializes a session as p and returns its ID.
func (ls *listServer) open(tb testing.TB, p *switchboard.Principal) string {
	tb.Helper()
	w := ls.post(p, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sid := w.Header().Get(server.HeaderKeySessionID)
	if w.Code != http.StatusOK || sid == "" {
		tb.Fatalf("initialize as %s: %d %s", p, w.Code, w.Body)
	}
	if w := ls.post(p, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); w.Code != http.StatusAccepted {
		tb.Fatalf("initialized as %s: %d %s", p, w.Code, w.Body)
	}
	return sid
}

// manyToolsCatalog is n tools shaped like the bench's manytools provider:
// tool_00 … with even ones annotated read-only.
func manyToolsCatalog(n int) *switchboard.Catalog {
	cat := &switchboard.Catalog{}
	width := len(fmt.Sprint(n - 1))
	for i := range n {
		tool := mcp.NewTool(fmt.Sprintf("tool_%0*d", width, i),
			mcp.WithDescription(fmt.Sprintf("Benchmark tool number %d: returns `text` verbatim as one text content block.", i)),
			mcp.WithString("text", mcp.Required(), mcp.Description("Text to return.")),
			mcp.WithReadOnlyHintAnnotation(i%2 == 0),
		)
		b, err := json.Marshal(tool)
		if err != nil {
			panic(err)
		}
		cat.Tools = append(cat.Tools, b)
	}
	return cat
}

// benchPolicy mirrors sbbench's filtered tools/list case: providers mt00 … of
// tools tools each, ten roles granting overlapping provider sets, odd roles
// narrowed by tool globs, the last fifth of providers read-only with one
// write pattern allowed.
func benchPolicy(providers int) *Policy {
	pol := &Policy{Providers: map[string]ProviderPolicy{}, Roles: map[string]RolePolicy{}}
	name := func(j int) string { return fmt.Sprintf("mt%02d", j) }
	for j := range providers {
		pp := ProviderPolicy{}
		if j >= providers*4/5 {
			pp.ReadOnly, pp.Allow = true, []string{"tool_*1"}
		}
		pol.Providers[name(j)] = pp
	}
	for i := range 10 {
		var ps []string
		seen := map[string]bool{}
		add := func(j int) {
			if n := name(j % providers); !seen[n] {
				seen[n] = true
				ps = append(ps, n)
			}
		}
		for j := i; j < providers; j += 10 {
			add(j)
		}
		for k := range 5 {
			add(i*7 + k)
		}
		rp := RolePolicy{Providers: ps}
		if i%2 == 1 {
			rp.Tools = []string{"*__tool_0*", "*__tool_1[05]"}
		}
		pol.Roles[fmt.Sprintf("r%d", i)] = rp
	}
	return pol
}

func user(id string, roles ...string) *switchboard.Principal {
	return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: id, Roles: roles, Method: "api_key", Endpoint: switchboard.EndpointPublic}
}

// --- policy and catalogs with every visibility rule in play ---

// mutableUsers is a mutable UserState.
type mutableUsers struct {
	mu        sync.Mutex
	connected map[string]bool // "user/provider"
	hidden    map[string]bool
}

func (u *mutableUsers) Connected(user, provider string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.connected[user+"/"+provider]
}

func (u *mutableUsers) Hidden(user, provider string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hidden[user+"/"+provider]
}

func (u *mutableUsers) set(m map[string]bool, key string, v bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	m[key] = v
}

// countingInstances counts Warm calls.
type countingInstances struct{ warm atomic.Int64 }

func (c *countingInstances) Upstream(context.Context, switchboard.InstanceKey) (switchboard.Upstream, error) {
	return nopUpstream{}, nil
}
func (c *countingInstances) UserScoped(string) bool                       { return false }
func (c *countingInstances) Warm(context.Context, *switchboard.Principal) { c.warm.Add(1) }

func mixedPolicy(users UserState) *Policy {
	return &Policy{
		Providers: map[string]ProviderPolicy{
			"alpha": {},
			"beta":  {ReadOnly: true, Allow: []string{"write_ok"}},
			"gamma": {Deny: []string{"danger*"}},
			"delta": {UserScoped: true},
			"eps":   {Public: true},
			"intl":  {InternalOnly: true},
		},
		Roles: map[string]RolePolicy{
			"dev":    {Providers: []string{"alpha", "beta", "delta"}},
			"ops":    {Providers: []string{"*"}, Tools: []string{"gamma__*", "alpha__read_?", "beta__list"}},
			"viewer": {Providers: []string{"beta"}},
			"narrow": {Providers: []string{"alpha", "gamma"}, Tools: []string{"alpha__write", "*__safe_[0-9]"}},
		},
		DefaultRole: "viewer",
		Services:    map[string][]string{"bot": {"alpha", "intl"}, "gammabot": {"gamma"}},
		Users:       users,
	}
}

// mixedCatalogs are tools whose JSON exercises the encoder: HTML characters,
// U+2028, renamed tools, output schemas, annotations, _meta.
func mixedCatalogs() map[string]*switchboard.Catalog {
	tool := func(name, extra string) json.RawMessage {
		return json.RawMessage(`{"name":"` + name + `","description":"<b>` + name + `</b> & \u2028 more","inputSchema":{"type":"object","properties":{"q":{"type":"string","description":"a<b"}}}` + extra + `}`)
	}
	ro := `,"annotations":{"readOnlyHint":true,"title":"RO"}`
	return map[string]*switchboard.Catalog{
		"alpha": {Tools: []json.RawMessage{tool("read_a", ro), tool("read_b", ""), tool("write", ""), tool("read.file", ro), tool("safe_1", `,"outputSchema":{"type":"object"},"_meta":{"k":"v"}`)}},
		"beta":  {Tools: []json.RawMessage{tool("list", ro), tool("get", ro), tool("write_ok", ""), tool("write_no", ""), tool("safe_2", ro)}},
		"gamma": {Tools: []json.RawMessage{tool("safe_3", ""), tool("danger_zone", ""), tool("dangerous", ro), tool("other", `,"title":"Other"`)}},
		"delta": {Tools: []json.RawMessage{tool("mine", ""), tool("safe_4", "")}},
		"eps":   {Tools: []json.RawMessage{tool("hello", ro)}},
		"intl":  {Tools: []json.RawMessage{tool("secret", "")}},
	}
}

func mixedServer(t *testing.T) (*listServer, *mutableUsers, *countingInstances) {
	t.Helper()
	users := &mutableUsers{
		connected: map[string]bool{"carol/delta": true, "dave/delta": true},
		hidden:    map[string]bool{"dave/alpha": true, "erin/eps": true},
	}
	ls := newListServer(t, mixedPolicy(users))
	inst := &countingInstances{}
	ls.s.opts.Instances = inst
	for prov, cat := range mixedCatalogs() {
		ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: prov}, nopUpstream{}, cat)
	}
	return ls, users, inst
}

func mixedPrincipals() []*switchboard.Principal {
	svc := func(id string, ep switchboard.Endpoint) *switchboard.Principal {
		return &switchboard.Principal{Kind: switchboard.PrincipalService, ID: id, Method: "service_token", Endpoint: ep}
	}
	internalUser := user("ivan", "dev")
	internalUser.Endpoint = switchboard.EndpointInternal
	return []*switchboard.Principal{
		user("alice", "dev"), user("bob", "ops"), user("carol", "dev"), user("dave", "dev", "ops"),
		user("erin"), user("frank", "narrow"), user("grace", "narrow", "viewer"), user("heidi", RoleAdmin),
		user("judy", "nosuchrole"), user("carol2", "ops", "dev"),
		svc("bot", switchboard.EndpointInternal), svc("gammabot", switchboard.EndpointInternal),
		svc("bot", switchboard.EndpointPublic), svc("stranger", switchboard.EndpointInternal),
		internalUser,
	}
}

// listNames decodes the tool names of a tools/list answer.
func listNames(t *testing.T, body []byte) []string {
	t.Helper()
	var msg struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	names := []string{}
	for _, tool := range msg.Result.Tools {
		names = append(names, tool.Name)
	}
	return names
}

// checkList lists tools as p on the fast path and straight through mcp-go,
// and requires byte-identical answers naming exactly what the filter, asked
// afresh about every tool, lets p see.
func checkList(t *testing.T, ls *listServer, p *switchboard.Principal, sid, body string) []string {
	t.Helper()
	before := ls.s.views.fastLists.Load()
	fast := ls.post(p, sid, body)
	if ls.s.views.fastLists.Load() != before+1 {
		t.Fatalf("%s: %s did not take the fast path", p, body)
	}
	slow := ls.postMCPGo(p, sid, body)
	if fast.Code != http.StatusOK || slow.Code != http.StatusOK {
		t.Fatalf("%s: status fast %d, mcp-go %d: %s", p, fast.Code, slow.Code, slow.Body)
	}
	if a, b := fast.Header().Get("Content-Type"), slow.Header().Get("Content-Type"); a != b {
		t.Fatalf("%s: Content-Type fast %q, mcp-go %q", p, a, b)
	}
	if !slices.Equal(fast.Body.Bytes(), slow.Body.Bytes()) {
		t.Fatalf("%s: answers differ\nfast:   %s\nmcp-go: %s", p, fast.Body, slow.Body)
	}
	names := listNames(t, fast.Body.Bytes())
	want := ls.s.VisibleTools(context.Background(), p)
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(names, want) {
		t.Fatalf("%s sees %v, the filter allows %v", p, names, want)
	}
	return names
}

func TestFastListMatchesMCPGo(t *testing.T) {
	ls, _, inst := mixedServer(t)
	seen := map[string]bool{}
	for _, p := range mixedPrincipals() {
		sid := ls.open(t, p)
		for _, body := range []string{
			`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
			`{"jsonrpc":"2.0","id":"a<&>\u2028b","method":"tools/list","params":{}}`,
			`{"method":"tools/list","params":null,"id":1.0,"jsonrpc":"2.0"}`,
			`{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/list"}`,
			`{"jsonrpc":"2.0","id":-2.5e3,"method":"tools/list", "params": { } }`,
		} {
			names := checkList(t, ls, p, sid, body)
			seen[strings.Join(names, ",")] = true
		}
	}
	if len(seen) < 8 {
		t.Errorf("only %d distinct views among the principals; the policy should tell them apart", len(seen))
	}
	if inst.warm.Load() == 0 {
		t.Error("the fast path did not warm the caller's instances")
	}
	// Every tool JSON the fast path sends is what mcp-go sends for admin.
	admin := user("root", RoleAdmin)
	if names := checkList(t, ls, admin, ls.open(t, admin), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); len(names) != 12 {
		t.Errorf("admin sees %d tools: %v", len(names), names)
	}
}

func TestFastListWarms(t *testing.T) {
	ls, _, inst := mixedServer(t)
	p := user("alice", "dev")
	sid := ls.open(t, p)
	n := inst.warm.Load()
	checkList(t, ls, p, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	// Once on the fast path, once on mcp-go's (its BeforeListTools hook).
	if got := inst.warm.Load() - n; got != 2 {
		t.Errorf("Warm ran %d times for two lists", got)
	}
}

// TestFastListDeclines sends lists the fast path must leave to mcp-go and
// requires mcp-go's own answer.
func TestFastListDeclines(t *testing.T) {
	ls, _, _ := mixedServer(t)
	alice, mallory := user("alice", "dev"), user("mallory", "dev")
	sid := ls.open(t, alice)
	closed := ls.open(t, alice)
	del := httptest.NewRequest(http.MethodDelete, "http://switchboard/mcp", nil)
	del.Header.Set(server.HeaderKeySessionID, closed)
	del.Header.Set(mcp.HeaderProtocolVersion, SessionProtocolVersions[1])
	del = del.WithContext(switchboard.NewContextWithPrincipal(del.Context(), alice))
	dw := httptest.NewRecorder()
	ls.h[alice.Endpoint].ServeHTTP(dw, del)
	if dw.Code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", dw.Code, dw.Body)
	}

	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	tests := []struct {
		name   string
		p      *switchboard.Principal
		sid    string
		body   string
		header map[string]string
		status int
	}{
		{"hijacked session", mallory, sid, list, nil, http.StatusNotFound},
		{"terminated session", alice, closed, list, nil, http.StatusNotFound},
		{"unknown session", alice, "sb-nope", list, nil, http.StatusNotFound},
		{"cursor", alice, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"bm9wZQ=="}}`, nil, http.StatusOK},
		{"bad cursor", alice, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"!"}}`, nil, http.StatusOK},
		{"meta", alice, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":3}}}`, nil, http.StatusOK},
		{"params not an object", alice, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[]}`, nil, http.StatusOK},
		{"null id", alice, sid, `{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, nil, http.StatusAccepted},
		{"object id", alice, sid, `{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}`, nil, 0},
		{"old jsonrpc", alice, sid, `{"jsonrpc":"1.0","id":1,"method":"tools/list"}`, nil, http.StatusOK},
		{"bad protocol version", alice, sid, list, map[string]string{mcp.HeaderProtocolVersion: "1999-01-01"}, http.StatusBadRequest},
		{"text content type", alice, sid, list, map[string]string{"Content-Type": "text/plain"}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send := func(h http.Handler) *httptest.ResponseRecorder {
				r := request(tt.p, tt.sid, tt.body)
				for k, v := range tt.header {
					r.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			before := ls.s.views.fastLists.Load()
			edge := send(ls.h[tt.p.Endpoint])
			if ls.s.views.fastLists.Load() != before {
				t.Fatal("the fast path answered")
			}
			direct := send(ls.s.http[tt.p.Endpoint])
			if tt.status != 0 && edge.Code != tt.status {
				t.Errorf("status %d, want %d: %s", edge.Code, tt.status, edge.Body)
			}
			if edge.Code != direct.Code || edge.Body.String() != direct.Body.String() {
				t.Errorf("edge answered %d %s, mcp-go %d %s", edge.Code, edge.Body, direct.Code, direct.Body)
			}
		})
	}
}

// TestFastListFollowsChanges lists after every kind of change; a stale
// cached view fails the comparison with the filter's fresh answer.
func TestFastListFollowsChanges(t *testing.T) {
	ls, users, _ := mixedServer(t)
	carol, dave := user("carol", "dev"), user("dave", "dev", "ops")
	sc, sd := ls.open(t, carol), ls.open(t, dave)
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	step := func(what string, change func(), p *switchboard.Principal, sid string, wantChange bool) {
		t.Helper()
		old := checkList(t, ls, p, sid, list)
		change()
		now := checkList(t, ls, p, sid, list)
		if changed := !slices.Equal(old, now); changed != wantChange {
			t.Fatalf("%s: view of %s changed = %v (%v → %v)", what, p, changed, old, now)
		}
	}
	step("SetFilter", func() {
		pol := mixedPolicy(users)
		pol.Roles["dev"] = RolePolicy{Providers: []string{"alpha"}, Tools: []string{"alpha__read_*"}}
		ls.s.SetFilter(pol)
	}, carol, sc, true)
	step("disconnect + PolicyChanged", func() {
		ls.s.SetFilter(mixedPolicy(users))
		checkList(t, ls, carol, sc, list)
		users.set(users.connected, "carol/delta", false)
		ls.s.PolicyChanged()
	}, carol, sc, true)
	step("show a hidden provider + PolicyChanged", func() {
		users.set(users.hidden, "dave/alpha", false)
		ls.s.PolicyChanged()
	}, dave, sd, true)
	step("new catalog", func() {
		cat := mixedCatalogs()["alpha"]
		cat = &switchboard.Catalog{Tools: append(slices.Clone(cat.Tools[1:]), json.RawMessage(`{"name":"read_z","inputSchema":{"type":"object"}}`))}
		ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: "alpha"}, nopUpstream{}, cat)
	}, dave, sd, true)
	step("changed tool definition", func() {
		cat := mixedCatalogs()["gamma"]
		cat.Tools[0] = json.RawMessage(`{"name":"safe_3","description":"now different","inputSchema":{"type":"object"}}`)
		ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: "gamma"}, nopUpstream{}, cat)
	}, dave, sd, false) // same names; checkList compares the bytes with mcp-go's
	if !strings.Contains(ls.post(dave, sd, list).Body.String(), "now different") {
		t.Fatal("the changed tool definition is not listed")
	}
	step("instance down", func() {
		ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: "beta"}, nil, nil)
	}, dave, sd, true)
	step("provider removed", func() { ls.s.RemoveProvider("gamma") }, dave, sd, true)
	step("unrelated user's state", func() {
		users.set(users.hidden, "zed/alpha", true)
		ls.s.PolicyChanged()
	}, dave, sd, false)
}

// TestFastListConcurrent lists as many principals while the filter, the
// per-user state and the catalogs change underneath (run with -race). Once
// the changes stop, every view must be current.
func TestFastListConcurrent(t *testing.T) {
	ls, users, _ := mixedServer(t)
	ps := mixedPrincipals()
	sids := make([]string, len(ps))
	for i, p := range ps {
		sids[i] = ls.open(t, p)
	}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := i % len(ps)
				w := ls.post(ps[k], sids[k], list)
				if w.Code != http.StatusOK || !json.Valid(w.Body.Bytes()) {
					t.Errorf("%s: %d %s", ps[k], w.Code, w.Body)
					return
				}
			}
		}()
	}
	cats := mixedCatalogs()
	for i := range 60 {
		switch i % 4 {
		case 0:
			pol := mixedPolicy(users)
			if i%8 == 0 {
				pol.DefaultRole = "dev"
			}
			ls.s.SetFilter(pol)
		case 1:
			users.set(users.hidden, "carol/beta", i%8 == 1)
			ls.s.PolicyChanged()
		case 2:
			cat := cats["beta"]
			if i%8 == 2 {
				cat = &switchboard.Catalog{Tools: cat.Tools[:2]}
			}
			ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: "beta"}, nopUpstream{}, cat)
		case 3:
			ls.s.RemoveProvider("eps")
			ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: "eps"}, nopUpstream{}, cats["eps"])
		}
	}
	close(stop)
	wg.Wait()
	for i, p := range ps {
		checkList(t, ls, p, sids[i], list)
	}
}

func TestViewCache(t *testing.T) {
	ls, _, _ := mixedServer(t)
	ctx := context.Background()
	for i := range maxViews + 10 {
		ls.s.visibleTools(ctx, user(fmt.Sprintf("u%d", i), "dev"))
	}
	ls.s.views.mu.RLock()
	n := len(ls.s.views.views)
	ls.s.views.mu.RUnlock()
	if n > maxViews || n == 0 {
		t.Errorf("%d cached views, bound %d", n, maxViews)
	}
	p := user("alice", "dev")
	if a, b := ls.s.visibleTools(ctx, p), ls.s.visibleTools(ctx, p); a != b {
		t.Error("an unchanged view was recomputed")
	}
	ls.s.PolicyChanged()
	ls.s.visibleTools(ctx, p)
	ls.s.views.mu.RLock()
	n = len(ls.s.views.views)
	ls.s.views.mu.RUnlock()
	if n != 1 {
		t.Errorf("%d views kept after a change, want only the new one", n)
	}

	// Principals that differ in any field a filter may read have distinct keys.
	base := func() *switchboard.Principal { return user("a", "b") }
	variants := []*switchboard.Principal{nil, base(), user("a"), user("a", "b", "c"), user("a", "c", "b"), user("a\x00b"), user("a1:b")}
	for _, f := range []func(*switchboard.Principal){
		func(p *switchboard.Principal) { p.Kind = switchboard.PrincipalService },
		func(p *switchboard.Principal) { p.Endpoint = switchboard.EndpointInternal },
		func(p *switchboard.Principal) { p.Method = "jwt" },
		func(p *switchboard.Principal) { p.ID = "A" },
	} {
		p := base()
		f(p)
		variants = append(variants, p)
	}
	keys := map[string]int{}
	for i, p := range variants {
		k := viewKey(p)
		if j, dup := keys[k]; dup {
			t.Errorf("principals %d and %d share the view key %q", j, i, k)
		}
		keys[k] = i
	}
}

// TestRebuildReusesTools checks that a catalog change re-decodes only the
// tools that changed, and that problems are still reported every time.
func TestRebuildReusesTools(t *testing.T) {
	cats := func(alpha ...json.RawMessage) []provCatalog {
		return []provCatalog{
			{Provider: "alpha", Cat: &switchboard.Catalog{Tools: alpha}},
			{Provider: "beta", Cat: &switchboard.Catalog{Tools: []json.RawMessage{raw(`{"name":"x"}`), raw(`{"name":"read.file"}`), raw(`nope`)}}},
		}
	}
	t1 := buildTable(cats(raw(`{"name":"a"}`), raw(`{"name":"b"}`)))
	t2 := rebuildTable(t1, cats(raw(`{"name":"a"}`), raw(`{"name":"b","description":"new"}`)))
	if t2.tools["beta__x"] != t1.tools["beta__x"] || t2.tools["alpha__a"] != t1.tools["alpha__a"] {
		t.Error("unchanged tools were decoded again")
	}
	if t2.tools["alpha__b"] == t1.tools["alpha__b"] || t2.tools["alpha__b"].Tool.Description != "new" {
		t.Error("a changed tool kept its old entry")
	}
	if !slices.Equal(t1.problems, t2.problems) || len(t2.problems) != 2 {
		t.Errorf("problems %v, then %v", t1.problems, t2.problems)
	}
	var names []string
	for _, e := range t2.sorted {
		names = append(names, e.Exposed)
		if b, _ := json.Marshal(e.Tool); !slices.Equal(b, e.JSON) {
			t.Errorf("%s: stored JSON %s, encodes as %s", e.Exposed, e.JSON, b)
		}
	}
	if !slices.IsSorted(names) || len(names) != len(t2.tools) {
		t.Errorf("sorted = %v", names)
	}
	// A collision is still resolved in provider order when entries are reused.
	t3 := rebuildTable(t2, []provCatalog{
		{Provider: "beta", Cat: &switchboard.Catalog{Tools: []json.RawMessage{raw(`{"name":"x"}`)}}},
		{Provider: "beta__x", Cat: nil},
	})
	if t3.tools["beta__x"] != t2.tools["beta__x"] {
		t.Error("reused entry lost")
	}
}

// BenchmarkFilteredToolsList is tools/list through the edge with 50
// providers × 20 tools and 100 users over 10 roles, round-robin, one session
// per user: the bench suite's filtered-list case without the network. The
// admin case lists every tool (920 of 1,000).
func BenchmarkFilteredToolsList(b *testing.B) {
	const providers, tools = 50, 20
	ls := newListServer(b, benchPolicy(providers))
	for j := range providers {
		ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: fmt.Sprintf("mt%02d", j)}, nopUpstream{}, manyToolsCatalog(tools))
	}
	var users []*switchboard.Principal
	for i := range 100 {
		users = append(users, user(fmt.Sprintf("u%03d", i), fmt.Sprintf("r%d", i%10)))
	}
	const plain, meta = `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{}}}`
	b.Run("users", func(b *testing.B) { benchLists(b, ls, users, plain) })
	b.Run("admin", func(b *testing.B) { benchLists(b, ls, []*switchboard.Principal{user("root", RoleAdmin)}, plain) })
	// _meta sends the list through mcp-go, which still uses the cached views.
	b.Run("users-mcpgo", func(b *testing.B) { benchLists(b, ls, users, meta) })
}

// benchLists lists tools as each principal in turn, one session each.
func benchLists(b *testing.B, ls *listServer, ps []*switchboard.Principal, body string) {
	sids := make([]string, len(ps))
	for i, p := range ps {
		sids[i] = ls.open(b, p)
	}
	w := &countingWriter{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := i % len(ps)
		i++
		w.n, w.header = 0, http.Header{}
		ls.h[ps[k].Endpoint].ServeHTTP(w, request(ps[k], sids[k], body))
		if w.n < 1000 {
			b.Fatalf("short answer: %d bytes", w.n)
		}
	}
}

// countingWriter is a response writer that only counts.
type countingWriter struct {
	header http.Header
	n      int
}

func (w *countingWriter) Header() http.Header { return w.header }
func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *countingWriter) WriteHeader(int) {}
func (w *countingWriter) Flush()          {}

// BenchmarkBuildTable is the cost of one catalog change with 1,000 tools,
// including the tools' list encodings.
func BenchmarkBuildTable(b *testing.B) {
	var cats []provCatalog
	for j := range 50 {
		cats = append(cats, provCatalog{Provider: fmt.Sprintf("mt%02d", j), Cat: manyToolsCatalog(20)})
	}
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buildTable(cats)
		}
	})
	// One provider's catalog changed: the other 980 tools are reused.
	b.Run("one-changed", func(b *testing.B) {
		prev := buildTable(cats)
		next := slices.Clone(cats)
		next[7] = provCatalog{Provider: next[7].Provider, Cat: manyToolsCatalog(19)}
		b.ReportAllocs()
		for b.Loop() {
			rebuildTable(prev, next)
		}
	})
}

func TestFilterVisible(t *testing.T) {
	e := func(name string) *toolEntry { return &toolEntry{Exposed: name} }
	v := &toolView{tools: []*toolEntry{e("a"), e("c"), e("d")}}
	var tools []mcp.Tool
	for _, n := range []string{"a", "b", "c", "x", "d", "a"} { // out of order at the end
		tools = append(tools, mcp.Tool{Name: n})
	}
	var got []string
	for _, tool := range filterVisible(tools, v) {
		got = append(got, tool.Name)
	}
	if want := []string{"a", "c", "d", "a"}; !slices.Equal(got, want) {
		t.Errorf("filterVisible = %v, want %v", got, want)
	}
}

// TestFastPathsLeaveQueuedNotifications checks that a session without a GET
// stream still gets list_changed: mcp-go delivers a queued notification inside
// the next response it writes, so while one waits the fast paths step aside.
func TestFastPathsLeaveQueuedNotifications(t *testing.T) {
	users := &mutableUsers{connected: map[string]bool{"carol/delta": true}, hidden: map[string]bool{}}
	ls := newListServer(t, mixedPolicy(users))
	ls.s.opts.NotifyDelay = time.Millisecond // before anything schedules a notification
	for prov, cat := range mixedCatalogs() {
		ls.s.UpdateCatalog(switchboard.InstanceKey{Provider: prov}, nopUpstream{}, cat)
	}
	carol := user("carol", "dev")
	sid := ls.open(t, carol)
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	if w := ls.post(carol, sid, list); w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("first list: Content-Type %q, want the fast path's application/json", w.Header().Get("Content-Type"))
	}

	users.set(users.connected, "carol/delta", false) // carol's view loses delta
	ls.s.PolicyChanged()
	deadline := time.Now().Add(10 * time.Second)
	for len(ls.s.sessions.get(sid).notify) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no list_changed was queued for carol's session")
		}
		time.Sleep(5 * time.Millisecond)
	}

	w := ls.post(carol, sid, list)
	if body := w.Body.String(); !strings.Contains(body, "notifications/tools/list_changed") || !strings.Contains(body, `"tools":`) {
		t.Fatalf("list after the change: want list_changed and the list in one answer, got %s %q", w.Header().Get("Content-Type"), body)
	}
	if strings.Contains(w.Body.String(), "delta__") {
		t.Fatal("the list after the change still shows delta")
	}
}
