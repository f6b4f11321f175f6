package mux

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// fakeUp is a provider instance in memory: call decides every answer.
type fakeUp struct {
	mu    sync.Mutex
	calls []*switchboard.Request
	call  func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error)
}

func (f *fakeUp) Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	call := f.call
	f.mu.Unlock()
	if call == nil {
		return json.RawMessage(`{"content":[]}`), nil
	}
	return call(ctx, req)
}

func (f *fakeUp) requests() []*switchboard.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*switchboard.Request(nil), f.calls...)
}

// fakeInstances serves the fake upstreams by provider.
type fakeInstances struct {
	mu      sync.Mutex
	ups     map[string]*fakeUp
	ensured []string
}

func (fi *fakeInstances) Upstream(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	if up := fi.ups[key.Provider]; up != nil {
		return up, nil
	}
	return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", key.Provider)
}

func (fi *fakeInstances) UserScoped(string) bool { return false }

func (fi *fakeInstances) Ensure(ctx context.Context, p *switchboard.Principal) {
	fi.mu.Lock()
	fi.ensured = append(fi.ensured, p.String())
	fi.mu.Unlock()
}

// allowFilter shows users the providers named in their roles ("*": all);
// services see everything.
type roleFilter struct{}

func (roleFilter) ProviderVisible(_ context.Context, p *switchboard.Principal, provider string) bool {
	if p == nil {
		return false
	}
	if p.Kind == switchboard.PrincipalService {
		return true
	}
	for _, r := range p.Roles {
		if r == "*" || r == provider {
			return true
		}
	}
	return false
}

func (roleFilter) ToolVisible(_ context.Context, p *switchboard.Principal, provider, tool, exposed string, readOnly bool) bool {
	return !strings.HasPrefix(tool, "secret_")
}

// recObserver records every call's end, unless discard is set (a
// benchmark's millions of calls would measure the growing slice).
type recObserver struct {
	mu      sync.Mutex
	calls   []CallInfo
	discard bool
}

func (o *recObserver) Admit(context.Context, *CallInfo) error { return nil }

func (o *recObserver) Done(_ context.Context, c *CallInfo) {
	o.mu.Lock()
	if !o.discard {
		o.calls = append(o.calls, *c)
	}
	o.mu.Unlock()
}

func (o *recObserver) all() []CallInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]CallInfo(nil), o.calls...)
}

// testGateway is a mux behind an edge that authenticates with the header
// X-Test-User: "name" or "name:role1,role2".
type testGateway struct {
	s    *Server
	srv  *httptest.Server
	inst *fakeInstances
	obs  *recObserver
}

func newTestGateway(tb testing.TB, opts Options) *testGateway {
	tb.Helper()
	g := &testGateway{inst: &fakeInstances{ups: map[string]*fakeUp{}}, obs: &recObserver{}}
	if opts.NotifyDelay == 0 {
		opts.NotifyDelay = 5 * time.Millisecond
	}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	if opts.Filter == nil {
		opts.Filter = roleFilter{}
	}
	opts.Instances = g.inst
	opts.Observer = g.obs
	g.s = New(opts)
	mux := http.NewServeMux()
	for _, ep := range []switchboard.Endpoint{switchboard.EndpointPublic, switchboard.EndpointInternal} {
		h := g.s.Handler(ep)
		mux.Handle(string(ep), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, roles, _ := strings.Cut(r.Header.Get("X-Test-User"), ":")
			p := &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: name, Endpoint: ep}
			if roles != "" {
				p.Roles = strings.Split(roles, ",")
			}
			if ep == switchboard.EndpointInternal {
				p.Kind = switchboard.PrincipalService
			}
			h.ServeHTTP(w, r.WithContext(switchboard.NewContextWithPrincipal(r.Context(), p)))
		}))
	}
	g.srv = httptest.NewServer(mux)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.s.Shutdown(ctx)
		g.srv.Close()
	})
	return g
}

// provider publishes a provider whose catalog is given as raw JSON arrays.
func (g *testGateway) provider(name string, tools, prompts, resources, templates string, caps string) *fakeUp {
	up := &fakeUp{}
	g.inst.mu.Lock()
	g.inst.ups[name] = up
	g.inst.mu.Unlock()
	cat := &switchboard.Catalog{Capabilities: json.RawMessage(caps)}
	split := func(arr string) []json.RawMessage {
		if arr == "" {
			return nil
		}
		var items []json.RawMessage
		if err := json.Unmarshal([]byte(arr), &items); err != nil {
			panic(err)
		}
		return items
	}
	cat.Tools, cat.Prompts, cat.Resources, cat.ResourceTemplates = split(tools), split(prompts), split(resources), split(templates)
	g.s.UpdateCatalog(switchboard.InstanceKey{Provider: name}, up, cat)
	return up
}

// client speaks to the test gateway as one user.
type client struct {
	tb      testing.TB
	g       *testGateway
	user    string
	ep      switchboard.Endpoint
	sid     string
	version string // "" for a session-era client
	caps    string
	nextID  int
}

func (g *testGateway) client(tb testing.TB, user string) *client {
	return &client{tb: tb, g: g, user: user, ep: switchboard.EndpointPublic, caps: `{}`}
}

// open initializes a session.
func (c *client) open(caps string) *client {
	c.tb.Helper()
	c.caps = caps
	resp, msgs := c.post(fmt.Sprintf(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":%s,"clientInfo":{"name":"t","version":"1"}}}`, caps), nil)
	c.sid = resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || c.sid == "" || len(msgs) != 1 {
		c.tb.Fatalf("initialize: %d %v", resp.StatusCode, msgs)
	}
	if resp, _ := c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); resp.StatusCode != http.StatusAccepted {
		c.tb.Fatalf("initialized: %d", resp.StatusCode)
	}
	return c
}

// stateless makes c a 2026-07-28 client with capabilities caps.
func (c *client) stateless(caps string) *client {
	c.version, c.caps = "2026-07-28", caps
	return c
}

// msg is one JSON-RPC message the gateway sent.
type msg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// post sends body and returns the response and the messages in it (one for
// JSON, all events for SSE).
func (c *client) post(body string, hdr map[string]string) (*http.Response, []msg) {
	c.tb.Helper()
	resp := c.send(body, hdr)
	defer resp.Body.Close()
	return resp, readMessages(c.tb, resp)
}

// send sends body and returns the open response.
func (c *client) send(body string, hdr map[string]string) *http.Response {
	c.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, c.g.srv.URL+string(c.ep), strings.NewReader(body))
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Test-User", c.user)
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	if c.version != "" {
		req.Header.Set("MCP-Protocol-Version", c.version)
		var m struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
				URI  string `json:"uri"`
			} `json:"params"`
		}
		_ = json.Unmarshal([]byte(body), &m)
		req.Header.Set("Mcp-Method", m.Method)
		if m.Method == "tools/call" || m.Method == "prompts/get" {
			req.Header.Set("Mcp-Name", m.Params.Name)
		}
		if m.Method == "resources/read" {
			req.Header.Set("Mcp-Name", m.Params.URI)
		}
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	return resp
}

// call sends a request with method and params (a JSON object, without
// _meta for a stateless client: meta is added) and returns its messages.
func (c *client) call(method, params string, meta string) (*http.Response, []msg) {
	c.tb.Helper()
	c.nextID++
	return c.post(c.request(c.nextID, method, params, meta), nil)
}

// request builds a request body.
func (c *client) request(id int, method, params, meta string) string {
	if params == "" {
		params = `{}`
	}
	if c.version != "" {
		m := fmt.Sprintf(`"io.modelcontextprotocol/protocolVersion":%q,"io.modelcontextprotocol/clientCapabilities":%s`, c.version, c.caps)
		if meta != "" {
			m += "," + meta
		}
		meta = m
	}
	if meta != "" {
		params = strings.TrimSuffix(strings.TrimSpace(params), "}")
		if strings.TrimSpace(params) != "{" {
			params += ","
		}
		params += `"_meta":{` + meta + `}}`
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
}

// result returns the last message's result, failing on an error.
func result(tb testing.TB, msgs []msg) json.RawMessage {
	tb.Helper()
	if len(msgs) == 0 {
		tb.Fatal("no answer")
	}
	last := msgs[len(msgs)-1]
	if last.Error != nil {
		tb.Fatalf("error %d %s", last.Error.Code, last.Error.Message)
	}
	return last.Result
}

func readMessages(tb testing.TB, resp *http.Response) []msg {
	tb.Helper()
	var out []msg
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m msg
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					tb.Fatalf("event %q: %v", data, err)
				}
				out = append(out, m)
			}
		}
		return out
	}
	b, _ := io.ReadAll(resp.Body)
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatalf("body %q: %v", b, err)
	}
	return append(out, m)
}

// events reads SSE messages from an open response, one at a time.
type events struct {
	sc *bufio.Scanner
	ch chan msg
}

func readEvents(tb testing.TB, resp *http.Response) *events {
	e := &events{sc: bufio.NewScanner(resp.Body), ch: make(chan msg, 64)}
	e.sc.Buffer(make([]byte, 1<<20), 16<<20)
	go func() {
		defer close(e.ch)
		for e.sc.Scan() {
			if data, ok := strings.CutPrefix(e.sc.Text(), "data: "); ok {
				var m msg
				if json.Unmarshal([]byte(data), &m) == nil {
					e.ch <- m
				}
			}
		}
	}()
	return e
}

func (e *events) next(tb testing.TB) msg {
	tb.Helper()
	select {
	case m, ok := <-e.ch:
		if !ok {
			tb.Fatal("stream ended")
		}
		return m
	case <-time.After(10 * time.Second):
		tb.Fatal("no event within 10s")
	}
	return msg{}
}

// none reports whether no event arrives within d.
func (e *events) none(d time.Duration) (msg, bool) {
	select {
	case m, ok := <-e.ch:
		if !ok {
			return msg{}, true
		}
		return m, false
	case <-time.After(d):
		return msg{}, true
	}
}

func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func names(tb testing.TB, res json.RawMessage, field, key string) []string {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(res, &m); err != nil {
		tb.Fatal(err)
	}
	var items []map[string]any
	if err := json.Unmarshal(m[field], &items); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, item := range items {
		out = append(out, fmt.Sprint(item[key]))
	}
	return out
}
