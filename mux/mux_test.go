package mux

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

const (
	echoTools  = `[{"name":"echo","description":"d","inputSchema":{"type":"object","$schema":"x","x-extra":1},"future":{"k":true}},{"name":"secret_tool","inputSchema":{"type":"object"}}]`
	notesTools = `[{"name":"write","inputSchema":{"type":"object"}},{"name":"read","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]`
)

func TestSessionLifecycle(t *testing.T) {
	g := newTestGateway(t, Options{})
	ann := g.client(t, "ann:*").open(`{}`)

	// Another principal presenting ann's session gets what an unknown
	// session gets.
	bob := g.client(t, "bob:*")
	bob.sid = ann.sid
	resp, msgs := bob.call("ping", "", "")
	if resp.StatusCode != http.StatusNotFound || msgs[0].Error == nil {
		t.Fatalf("bob on ann's session: %d %v", resp.StatusCode, msgs)
	}
	// No session header: refused; a request of ann's: answered.
	if resp, _ := g.client(t, "ann:*").call("ping", "", ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no session: %d", resp.StatusCode)
	}
	if _, msgs := ann.call("ping", "", ""); string(result(t, msgs)) != `{}` {
		t.Fatalf("ping: %s", result(t, msgs))
	}
	if n := g.s.SessionCount(); n != 1 {
		t.Fatalf("%d sessions", n)
	}
	// DELETE by ann ends it; the ID is then unknown.
	req, _ := http.NewRequest(http.MethodDelete, g.srv.URL+"/mcp", nil)
	req.Header.Set("X-Test-User", "ann:*")
	req.Header.Set("Mcp-Session-Id", ann.sid)
	dr, err := http.DefaultClient.Do(req)
	if err != nil || dr.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", dr, err)
	}
	if resp, _ := ann.call("ping", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after DELETE: %d", resp.StatusCode)
	}
	// GET without a session is the stateless era's 405.
	greq, _ := http.NewRequest(http.MethodGet, g.srv.URL+"/mcp", nil)
	greq.Header.Set("X-Test-User", "ann:*")
	gr, err := http.DefaultClient.Do(greq)
	if err != nil || gr.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET without session: %v %v", gr, err)
	}
}

func TestSessionsPerPrincipalCapped(t *testing.T) {
	g := newTestGateway(t, Options{MaxSessionsPerPrincipal: 2})
	g.client(t, "ann:*").open(`{}`)
	g.client(t, "ann:*").open(`{}`)
	c := g.client(t, "ann:*")
	resp, msgs := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || msgs[0].Error == nil {
		t.Fatalf("third session: %d %v", resp.StatusCode, msgs)
	}
	g.client(t, "bob:*").open(`{}`) // another principal is not affected
}

func TestIdleSessionsEnd(t *testing.T) {
	g := newTestGateway(t, Options{SessionIdleTTL: 200 * time.Millisecond})
	c := g.client(t, "ann:*").open(`{}`)
	waitFor(t, 5*time.Second, "the idle session to end", func() bool { return g.s.SessionCount() == 0 })
	if resp, _ := c.call("ping", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after idle: %d", resp.StatusCode)
	}
}

func TestListsAreFilteredAndPaginated(t *testing.T) {
	g := newTestGateway(t, Options{PageSize: 2})
	g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	g.provider("notes", notesTools, `[{"name":"daily","description":"p"}]`, `[{"uri":"note://a","name":"a"}]`, `[{"uriTemplate":"note://{id}","name":"t"}]`, `{"tools":{},"prompts":{},"resources":{}}`)

	ann := g.client(t, "ann:echo,notes").open(`{}`)
	var all []string
	cursor := ""
	for page := 0; ; page++ {
		params := `{}`
		if cursor != "" {
			params = fmt.Sprintf(`{"cursor":%q}`, cursor)
		}
		_, msgs := ann.call("tools/list", params, "")
		res := result(t, msgs)
		all = append(all, names(t, res, "tools", "name")...)
		var r struct {
			NextCursor string `json:"nextCursor"`
		}
		_ = json.Unmarshal(res, &r)
		if r.NextCursor == "" {
			break
		}
		cursor = r.NextCursor
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	// secret_tool is hidden by the filter; the rest in name order.
	if want := []string{"echo__echo", "notes__read", "notes__write"}; !slices.Equal(all, want) {
		t.Errorf("ann's tools %v, want %v", all, want)
	}
	if _, msgs := ann.call("tools/list", `{"cursor":"%%%"}`, ""); msgs[0].Error == nil || msgs[0].Error.Code != -32602 {
		t.Errorf("invalid cursor: %v", msgs)
	}
	// The child's bytes pass through with only the name replaced.
	_, msgs := ann.call("tools/list", "", "")
	if !strings.Contains(string(result(t, msgs)), `{"name":"echo__echo","description":"d","inputSchema":{"type":"object","$schema":"x","x-extra":1},"future":{"k":true}}`) {
		t.Errorf("echo's tool changed on the way: %s", result(t, msgs))
	}
	bob := g.client(t, "bob:echo").open(`{}`)
	_, msgs = bob.call("tools/list", "", "")
	if got := names(t, result(t, msgs), "tools", "name"); !slices.Equal(got, []string{"echo__echo"}) {
		t.Errorf("bob's tools %v", got)
	}
	for _, l := range []struct{ method, field, key string }{
		{"prompts/list", "prompts", "name"}, {"resources/list", "resources", "uri"}, {"resources/templates/list", "resourceTemplates", "uriTemplate"},
	} {
		_, msgs := bob.call(l.method, "", "")
		if got := names(t, result(t, msgs), l.field, l.key); len(got) != 0 {
			t.Errorf("bob's %s: %v", l.method, got)
		}
		_, msgs = ann.call(l.method, "", "")
		if got := names(t, result(t, msgs), l.field, l.key); len(got) != 1 {
			t.Errorf("ann's %s: %v", l.method, got)
		}
	}
}

func TestToolsCallOnePath(t *testing.T) {
	g := newTestGateway(t, Options{})
	up := g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	c := g.client(t, "ann:echo").open(`{}`)

	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		return json.RawMessage(`{"content":"not-an-array","extra":{"kept":[1,2]}}`), nil
	}
	// Arguments reach the child byte for byte, under its own tool name.
	args := `{"n":12345678901234567890,"s":"é\u00e9","z":[ 1 , 2 ]}`
	_, msgs := c.call("tools/call", `{"name":"echo__echo","arguments":`+args+`}`, "")
	if got := string(result(t, msgs)); got != `{"content":"not-an-array","extra":{"kept":[1,2]}}` {
		t.Errorf("result %s: want the child's bytes", got)
	}
	reqs := up.requests()
	if want := `{"name":"echo","arguments":` + args + `}`; string(reqs[len(reqs)-1].Params) != want {
		t.Errorf("child got %s, want %s", reqs[len(reqs)-1].Params, want)
	}
	// With a progress token: the same path (the token is handed over).
	_, msgs = c.call("tools/call", `{"name":"echo__echo","arguments":{}}`, `"progressToken":"p1"`)
	if got := string(result(t, msgs)); got != `{"content":"not-an-array","extra":{"kept":[1,2]}}` {
		t.Errorf("result with a progress token %s", got)
	}
	if reqs := up.requests(); string(reqs[len(reqs)-1].Progress) != `"p1"` {
		t.Errorf("progress token %s", reqs[len(reqs)-1].Progress)
	}
	// A child's JSON-RPC error is the client's; a dead child a tool error.
	up.call = func(context.Context, *switchboard.Request) (json.RawMessage, error) {
		return nil, &switchboard.RPCError{Code: -32001, Message: "child says no"}
	}
	if _, msgs := c.call("tools/call", `{"name":"echo__echo"}`, ""); msgs[0].Error == nil || msgs[0].Error.Code != -32001 || msgs[0].Error.Message != "child says no" {
		t.Errorf("child error: %+v", msgs[0])
	}
	up.call = func(context.Context, *switchboard.Request) (json.RawMessage, error) {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider connection lost")
	}
	_, msgs = c.call("tools/call", `{"name":"echo__echo"}`, "")
	if res := string(result(t, msgs)); !strings.Contains(res, `"isError":true`) || !strings.Contains(res, "echo: provider connection lost") {
		t.Errorf("dead child: %s", res)
	}
	// Hidden and absent tools: one answer.
	_, hidden := c.call("tools/call", `{"name":"echo__secret_tool"}`, "")
	_, absent := c.call("tools/call", `{"name":"echo__nope"}`, "")
	if hidden[0].Error == nil || absent[0].Error == nil || hidden[0].Error.Code != absent[0].Error.Code ||
		strings.Replace(hidden[0].Error.Message, "secret_tool", "X", 1) != strings.Replace(absent[0].Error.Message, "nope", "X", 1) {
		t.Errorf("hidden %+v, absent %+v", hidden[0].Error, absent[0].Error)
	}
	outcomes := map[string]int{}
	for _, ci := range g.obs.all() {
		outcomes[ci.Outcome]++
	}
	if outcomes["ok"] != 2 || outcomes["error"] != 1 || outcomes["unavailable"] != 1 || outcomes["denied"] != 2 {
		t.Errorf("audited outcomes %v", outcomes)
	}
}

func TestChildMessagesReachTheCaller(t *testing.T) {
	g := newTestGateway(t, Options{})
	up := g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	c := g.client(t, "ann:echo").open(`{"sampling":{}}`)
	if _, msgs := c.call("logging/setLevel", `{"level":"warning"}`, ""); string(result(t, msgs)) != `{}` {
		t.Fatal("setLevel")
	}
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		req.Caller.Notify("notifications/progress", json.RawMessage(`{"progressToken":"p9","progress":1}`))
		req.Caller.Notify("notifications/message", json.RawMessage(`{"level":"info","data":"too quiet"}`))
		req.Caller.Notify("notifications/message", json.RawMessage(`{"level":"error","logger":"db","data":"loud"}`))
		res, err := req.Caller.Request(ctx, "sampling/createMessage", json.RawMessage(`{"messages":[],"maxTokens":1}`))
		if err != nil {
			return nil, err
		}
		return json.RawMessage(`{"content":[{"type":"text","text":` + strconvQuote(string(res)) + `}]}`), nil
	}
	resp := c.send(c.request(7, "tools/call", `{"name":"echo__echo"}`, `"progressToken":"p9"`), nil)
	defer resp.Body.Close()
	ev := readEvents(t, resp)
	got := []msg{ev.next(t), ev.next(t), ev.next(t)}
	if got[0].Method != "notifications/progress" || !strings.Contains(string(got[0].Params), `"p9"`) {
		t.Errorf("progress: %+v", got[0])
	}
	if got[1].Method != "notifications/message" || string(got[1].Params) != `{"data":"loud","level":"error","logger":"echo/db"}` {
		t.Errorf("log: %s %s", got[1].Method, got[1].Params)
	}
	if got[2].Method != "sampling/createMessage" {
		t.Fatalf("request: %+v", got[2])
	}
	// The client answers on the same session.
	ar, _ := c.post(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"role":"assistant","content":{"type":"text","text":"sampled"}}}`, got[2].ID), nil)
	if ar.StatusCode != http.StatusAccepted {
		t.Fatalf("answer: %d", ar.StatusCode)
	}
	final := ev.next(t)
	if !strings.Contains(string(final.Result), "sampled") {
		t.Errorf("final %s", final.Result)
	}
}

// TestRequestNeedsTheCapability: a child's request for something the
// client did not declare fails at the child, and never reaches the client.
func TestRequestNeedsTheCapability(t *testing.T) {
	g := newTestGateway(t, Options{})
	up := g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	c := g.client(t, "ann:echo").open(`{}`)
	var childErr error
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		_, childErr = req.Caller.Request(ctx, "elicitation/create", json.RawMessage(`{"message":"?"}`))
		return json.RawMessage(`{"content":[]}`), nil
	}
	_, msgs := c.call("tools/call", `{"name":"echo__echo"}`, "")
	if len(msgs) != 1 || childErr == nil || !strings.Contains(childErr.Error(), "did not declare the elicitation capability") {
		t.Errorf("messages %v, child error %v", msgs, childErr)
	}
	// Stateless era: the request fails with MissingRequiredClientCapability.
	s := g.client(t, "ann:echo").stateless(`{}`)
	resp, msgs := s.call("tools/call", `{"name":"echo__echo"}`, "")
	if resp.StatusCode != http.StatusBadRequest || msgs[0].Error == nil || msgs[0].Error.Code != -32021 ||
		string(msgs[0].Error.Data) != `{"requiredCapabilities":{"elicitation":{}}}` {
		t.Errorf("stateless: %d %+v", resp.StatusCode, msgs[0].Error)
	}
}

func TestStatelessValidation(t *testing.T) {
	g := newTestGateway(t, Options{})
	g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	c := g.client(t, "ann:echo").stateless(`{}`)
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		code   int
	}{
		{"ok", c.request(1, "tools/list", "", ""), nil, 200, 0},
		{"unsupported version", strings.Replace(c.request(1, "tools/list", "", ""), "2026-07-28", "2099-01-01", 1), map[string]string{"MCP-Protocol-Version": "2099-01-01"}, 400, -32022},
		{"header and body differ", strings.Replace(c.request(1, "tools/list", "", ""), "2026-07-28", "2025-11-25", 1), nil, 400, -32020},
		{"no method header", c.request(1, "tools/list", "", ""), map[string]string{"Mcp-Method": ""}, 400, -32020},
		{"method header differs", c.request(1, "tools/list", "", ""), map[string]string{"Mcp-Method": "prompts/list"}, 400, -32020},
		{"no name header", c.request(1, "tools/call", `{"name":"echo__echo"}`, ""), map[string]string{"Mcp-Name": ""}, 400, -32020},
		{"name header base64", c.request(1, "tools/call", `{"name":"echo__echo"}`, ""), map[string]string{"Mcp-Name": "=?base64?ZWNob19fZWNobw==?="}, 200, 0},
		{"no capabilities", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, nil, 400, -32602},
		{"bad log level", c.request(1, "tools/list", "", `"io.modelcontextprotocol/logLevel":"loud"`), nil, 400, -32602},
		{"removed method", c.request(1, "logging/setLevel", `{"level":"info"}`, ""), nil, 404, -32601},
		{"unknown method", c.request(1, "x/y", "", ""), nil, 404, -32601},
		{"initialize", c.request(1, "initialize", "", ""), nil, 404, -32601},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, msgs := c.post(tt.body, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tt.status, msgs)
			}
			switch {
			case tt.code == 0 && msgs[0].Error != nil:
				t.Fatalf("error %+v", msgs[0].Error)
			case tt.code != 0 && (msgs[0].Error == nil || msgs[0].Error.Code != tt.code):
				t.Fatalf("got %+v, want code %d", msgs[0], tt.code)
			}
		})
	}
	// Results carry resultType and the caching hints.
	_, msgs := c.call("tools/list", "", "")
	var r struct {
		ResultType string `json:"resultType"`
		TTL        *int   `json:"ttlMs"`
		Scope      string `json:"cacheScope"`
	}
	_ = json.Unmarshal(result(t, msgs), &r)
	if r.ResultType != "complete" || r.TTL == nil || r.Scope != "private" {
		t.Errorf("list result %s", result(t, msgs))
	}
	_, msgs = c.call("server/discover", "", "")
	if !strings.Contains(string(result(t, msgs)), `"supportedVersions":["2026-07-28","2025-11-25"`) {
		t.Errorf("discover %s", result(t, msgs))
	}
}

// TestMultiRoundTrip: a child's elicitation during a stateless client's call
// becomes input_required; the retry with the input resumes the child's
// request; a forged, foreign, replayed or mismatched requestState is
// refused with one answer.
func TestMultiRoundTrip(t *testing.T) {
	g := newTestGateway(t, Options{})
	up := g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		a, err := req.Caller.Request(ctx, "elicitation/create", json.RawMessage(`{"mode":"form","message":"name?","requestedSchema":{"type":"object"}}`))
		if err != nil {
			return nil, err
		}
		b, err := req.Caller.Request(ctx, "elicitation/create", json.RawMessage(`{"mode":"form","message":"again?","requestedSchema":{"type":"object"}}`))
		if err != nil {
			return nil, err
		}
		return json.RawMessage(`{"content":[{"type":"text","text":` + strconvQuote(string(a)+string(b)) + `}]}`), nil
	}
	ann := g.client(t, "ann:echo").stateless(`{"elicitation":{}}`)
	ask := func(c *client, params string) (string, map[string]json.RawMessage, []msg) {
		t.Helper()
		_, msgs := c.call("tools/call", params, "")
		var r struct {
			ResultType    string                     `json:"resultType"`
			InputRequests map[string]json.RawMessage `json:"inputRequests"`
			RequestState  string                     `json:"requestState"`
		}
		if msgs[0].Error == nil {
			_ = json.Unmarshal(msgs[0].Result, &r)
		}
		return r.RequestState, r.InputRequests, msgs
	}
	state, reqs, _ := ask(ann, `{"name":"echo__echo"}`)
	if state == "" || len(reqs) != 1 || !strings.Contains(string(reqs["input-1"]), `"name?"`) {
		t.Fatalf("first round: state %q requests %v", state, reqs)
	}
	// Refused alike: another principal, a forged state, another tool.
	bob := g.client(t, "bob:echo").stateless(`{"elicitation":{}}`)
	_, _, bobMsgs := ask(bob, fmt.Sprintf(`{"name":"echo__echo","requestState":%q,"inputResponses":{"input-1":{"action":"accept"}}}`, state))
	_, _, forged := ask(ann, fmt.Sprintf(`{"name":"echo__echo","requestState":%q,"inputResponses":{}}`, state[:len(state)-2]+"AA"))
	for _, m := range [][]msg{bobMsgs, forged} {
		if m[0].Error == nil || m[0].Error.Code != -32602 || !strings.Contains(m[0].Error.Message, "invalid requestState") {
			t.Errorf("refusal %+v", m[0])
		}
	}
	if bobMsgs[0].Error.Message != forged[0].Error.Message {
		t.Errorf("refusals differ: %q / %q", bobMsgs[0].Error.Message, forged[0].Error.Message)
	}
	// The retry with a missing response is asked again; then it completes.
	state2, reqs2, _ := ask(ann, fmt.Sprintf(`{"name":"echo__echo","requestState":%q,"inputResponses":{"other":{"x":1}}}`, state))
	if state2 == "" || len(reqs2) != 1 || reqs2["input-1"] == nil {
		t.Fatalf("missing response: %v", reqs2)
	}
	state3, reqs3, _ := ask(ann, fmt.Sprintf(`{"name":"echo__echo","requestState":%q,"inputResponses":{"input-1":{"action":"accept","content":{"n":"ann"}}}}`, state2))
	if state3 == "" || !strings.Contains(string(reqs3["input-2"]), `"again?"`) {
		t.Fatalf("second round: %v", reqs3)
	}
	_, _, done := ask(ann, fmt.Sprintf(`{"name":"echo__echo","requestState":%q,"inputResponses":{"input-2":{"action":"decline"}}}`, state3))
	if res := string(result(t, done)); !strings.Contains(res, `\"ann\"`) || !strings.Contains(res, "decline") || !strings.Contains(res, `"resultType":"complete"`) {
		t.Errorf("final %s", res)
	}
	// Replaying a consumed state is refused.
	_, _, replay := ask(ann, fmt.Sprintf(`{"name":"echo__echo","requestState":%q,"inputResponses":{}}`, state3))
	if replay[0].Error == nil || replay[0].Error.Code != -32602 {
		t.Errorf("replay: %+v", replay[0])
	}
	if n := len(g.obs.all()); n != 1 {
		t.Errorf("%d audited calls, want the one call once", n)
	}
}

// TestContinuationExpires: a client that never retries leaves nothing
// behind: the child's request fails and the call is recorded.
func TestContinuationExpires(t *testing.T) {
	g := newTestGateway(t, Options{ContinuationTTL: 100 * time.Millisecond, SessionIdleTTL: 200 * time.Millisecond})
	up := g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	childErr := make(chan error, 1)
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		_, err := req.Caller.Request(ctx, "elicitation/create", json.RawMessage(`{"message":"?"}`))
		childErr <- err
		return nil, err
	}
	c := g.client(t, "ann:echo").stateless(`{"elicitation":{}}`)
	if _, msgs := c.call("tools/call", `{"name":"echo__echo"}`, ""); !strings.Contains(string(result(t, msgs)), "input_required") {
		t.Fatal(msgs)
	}
	select {
	case err := <-childErr:
		if err == nil {
			t.Fatal("the child's request succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the continuation did not expire")
	}
	waitFor(t, 5*time.Second, "the abandoned call's record", func() bool {
		calls := g.obs.all()
		return len(calls) == 1 && calls[0].Outcome == "timeout"
	})
}

func TestListenDeliversWhatThePrincipalSees(t *testing.T) {
	g := newTestGateway(t, Options{})
	g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	c := g.client(t, "ann:echo,late").stateless(`{}`)
	resp := c.send(c.request(1, "subscriptions/listen", `{"notifications":{"toolsListChanged":true,"promptsListChanged":true}}`, ""), nil)
	defer resp.Body.Close()
	ev := readEvents(t, resp)
	ack := ev.next(t)
	if ack.Method != "notifications/subscriptions/acknowledged" || !strings.Contains(string(ack.Params), `"io.modelcontextprotocol/subscriptionId":1`) {
		t.Fatalf("ack %s %s", ack.Method, ack.Params)
	}
	// A provider ann cannot see: nothing.
	g.provider("hidden", `[{"name":"x","inputSchema":{"type":"object"}}]`, "", "", "", `{"tools":{}}`)
	if m, none := ev.none(300 * time.Millisecond); !none {
		t.Fatalf("notified of an invisible change: %+v", m)
	}
	// One ann sees: one tools/list_changed, tagged.
	g.provider("late", `[{"name":"x","inputSchema":{"type":"object"}}]`, "", "", "", `{"tools":{}}`)
	m := ev.next(t)
	if m.Method != "notifications/tools/list_changed" || !strings.Contains(string(m.Params), `"io.modelcontextprotocol/subscriptionId":1`) {
		t.Fatalf("change %s %s", m.Method, m.Params)
	}
	if m, none := ev.none(200 * time.Millisecond); !none {
		t.Fatalf("a second notification: %+v", m)
	}
	// Shutdown ends the stream with the listen request's response.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = g.s.Shutdown(ctx) }()
	end := ev.next(t)
	if string(end.ID) != "1" || !strings.Contains(string(end.Result), `"resultType":"complete"`) {
		t.Fatalf("end %+v", end)
	}
}

func TestResourceSubscriptions(t *testing.T) {
	g := newTestGateway(t, Options{})
	up := g.provider("notes", "", "", `[{"uri":"note://a","name":"a"}]`, "", `{"resources":{"subscribe":true}}`)
	a := g.client(t, "ann:notes").open(`{}`)
	b := g.client(t, "bob:notes").open(`{}`)
	eve := g.client(t, "eve:other").open(`{}`)
	for _, c := range []*client{a, b, eve} {
		if _, msgs := c.call("resources/subscribe", `{"uri":"note://a"}`, ""); string(result(t, msgs)) != `{}` {
			t.Fatal(msgs)
		}
	}
	subscribes := func(method string) int {
		n := 0
		for _, r := range up.requests() {
			if r.Method == method {
				n++
			}
		}
		return n
	}
	waitFor(t, 5*time.Second, "one subscription at the provider", func() bool { return subscribes("resources/subscribe") == 1 })
	g.s.ProviderNotification(switchboard.InstanceKey{Provider: "notes"}, "notifications/resources/updated", json.RawMessage(`{"uri":"note://a"}`))
	// ann and bob get it (queued for their next response: no GET stream);
	// eve, who cannot see notes, does not.
	for _, c := range []*client{a, b} {
		_, msgs := c.call("ping", "", "")
		if len(msgs) != 2 || msgs[0].Method != "notifications/resources/updated" {
			t.Errorf("%s got %+v", c.user, msgs)
		}
	}
	if _, msgs := eve.call("ping", "", ""); len(msgs) != 1 {
		t.Errorf("eve got %+v", msgs)
	}
	a.call("resources/unsubscribe", `{"uri":"note://a"}`, "")
	time.Sleep(50 * time.Millisecond)
	if n := subscribes("resources/unsubscribe"); n != 0 {
		t.Errorf("unsubscribed at the provider while bob still wants it")
	}
	b.call("resources/unsubscribe", `{"uri":"note://a"}`, "")
	waitFor(t, 5*time.Second, "the provider unsubscription", func() bool { return subscribes("resources/unsubscribe") == 1 })
}

func TestGatewayNamesAreReserved(t *testing.T) {
	g := newTestGateway(t, Options{})
	g.s.SetExtras(Extras{
		Prompts:   []ExtraPrompt{{Provider: "notes", Name: "notes__skill", Description: "how", Text: "the skill"}},
		Resources: []ExtraResource{{Provider: "notes", URI: "skill://notes/SKILL.md", Name: "s", MIMEType: "text/markdown", Text: "the skill"}},
	})
	g.provider("notes", "", `[{"name":"skill","description":"mine"}]`, `[{"uri":"skill://notes/SKILL.md","name":"fake"},{"uri":"skill://echo/SKILL.md","name":"fake2"}]`, "", `{"prompts":{},"resources":{}}`)
	c := g.client(t, "ann:notes").open(`{}`)
	_, msgs := c.call("prompts/get", `{"name":"notes__skill"}`, "")
	if !strings.Contains(string(result(t, msgs)), "the skill") {
		t.Errorf("the gateway's prompt lost: %s", result(t, msgs))
	}
	_, msgs = c.call("prompts/list", "", "")
	got := names(t, result(t, msgs), "prompts", "name")
	if len(got) != 2 || got[0] != "notes__skill" || !strings.HasPrefix(got[1], "notes__skill_") {
		t.Errorf("prompts %v: want the gateway's and the provider's renamed", got)
	}
	_, msgs = c.call("resources/read", `{"uri":"skill://notes/SKILL.md"}`, "")
	if !strings.Contains(string(result(t, msgs)), "the skill") {
		t.Errorf("the gateway's resource lost: %s", result(t, msgs))
	}
	_, msgs = c.call("resources/list", "", "")
	uris := names(t, result(t, msgs), "resources", "uri")
	for _, u := range uris {
		if strings.HasPrefix(u, "skill://echo") {
			t.Errorf("a provider impersonates echo's skill: %v", uris)
		}
	}
	if probs := strings.Join(g.s.Problems(), "\n"); !strings.Contains(probs, `prompt "skill" exposed as`) || !strings.Contains(probs, "skill://echo/SKILL.md exposed as switchboard://notes/") {
		t.Errorf("problems:\n%s", probs)
	}
}

// TestHiddenResourceIsAbsent: reading a resource of a provider the caller
// cannot see answers exactly as reading one that does not exist.
func TestHiddenResourceIsAbsent(t *testing.T) {
	g := newTestGateway(t, Options{})
	g.provider("notes", "", "", `[{"uri":"note://a","name":"a"}]`, "", `{"resources":{}}`)
	c := g.client(t, "bob:other").open(`{}`)
	_, hidden := c.call("resources/read", `{"uri":"note://a"}`, "")
	_, absent := c.call("resources/read", `{"uri":"note://zz"}`, "")
	h, _ := json.Marshal(hidden[0].Error)
	a, _ := json.Marshal(absent[0].Error)
	if hidden[0].Error == nil || strings.Replace(string(h), "note://a", "U", 1) != strings.Replace(string(a), "note://zz", "U", 1) {
		t.Errorf("hidden %s, absent %s", h, a)
	}
}

func TestCompletionRoutesByRef(t *testing.T) {
	g := newTestGateway(t, Options{})
	up := g.provider("notes", "", `[{"name":"daily","arguments":[{"name":"day"}]}]`, "", `[{"uriTemplate":"note://{id}","name":"t"}]`, `{"prompts":{},"resources":{},"completions":{}}`)
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		return json.RawMessage(`{"completion":{"values":["x"]}}`), nil
	}
	c := g.client(t, "ann:notes").open(`{}`)
	_, msgs := c.call("completion/complete", `{"ref":{"type":"ref/prompt","name":"notes__daily"},"argument":{"name":"day","value":"m"}}`, "")
	if string(result(t, msgs)) != `{"completion":{"values":["x"]}}` {
		t.Errorf("prompt completion %s", result(t, msgs))
	}
	c.call("completion/complete", `{"ref":{"type":"ref/resource","uri":"note://{id}"},"argument":{"name":"id","value":"1"}}`, "")
	reqs := up.requests()
	if len(reqs) != 2 || string(reqs[0].Params) != `{"ref":{"type":"ref/prompt","name":"daily"},"argument":{"name":"day","value":"m"}}` ||
		string(reqs[1].Params) != `{"ref":{"type":"ref/resource","uri":"note://{id}"},"argument":{"name":"id","value":"1"}}` {
		for _, r := range reqs {
			t.Errorf("child got %s", r.Params)
		}
	}
	// Unknown and hidden refs: the same empty completion.
	bob := g.client(t, "bob:other").open(`{}`)
	_, hidden := bob.call("completion/complete", `{"ref":{"type":"ref/prompt","name":"notes__daily"},"argument":{"name":"day","value":"m"}}`, "")
	_, absent := bob.call("completion/complete", `{"ref":{"type":"ref/prompt","name":"nope"},"argument":{"name":"day","value":"m"}}`, "")
	if string(result(t, hidden)) != emptyCompletion || string(result(t, absent)) != emptyCompletion {
		t.Errorf("hidden %s, absent %s", result(t, hidden), result(t, absent))
	}
}

func TestCapabilitiesFollowVisibleProviders(t *testing.T) {
	g := newTestGateway(t, Options{})
	g.provider("echo", echoTools, "", "", "", `{"tools":{},"completions":{}}`)
	g.provider("notes", "", `[{"name":"p"}]`, "", "", `{"prompts":{}}`)
	init := func(user string) string {
		c := g.client(t, user)
		_, msgs := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
		return string(result(t, msgs))
	}
	if r := init("ann:echo"); !strings.Contains(r, `"completions":{}`) || strings.Contains(r, `"prompts"`) {
		t.Errorf("ann (echo): %s", r)
	}
	if r := init("bob:notes"); strings.Contains(r, `"completions"`) || !strings.Contains(r, `"prompts":{"listChanged":true}`) {
		t.Errorf("bob (notes): %s", r)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestShapeResult(t *testing.T) {
	gw := `{"io.modelcontextprotocol/serverInfo":` + string(serverInfo()) + `}`
	tests := []struct {
		name, in string
		modern   bool
		want     string
	}{
		{"session child, session client: untouched", `{"content":[],"x":1}`, false, `{"content":[],"x":1}`},
		{"session child, stateless client", `{"content":[]}`, true, `{"resultType":"complete","content":[]}`},
		{"stateless child, session client", `{"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"c"},"k":1},"content":[],"resultType":"complete","ttlMs":0,"cacheScope":"private"}`, false, `{"_meta":{"k":1},"content":[]}`},
		{"stateless child, session client, only serverInfo", `{"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"c"}},"resultType":"complete","content":[]}`, false, `{"content":[]}`},
		{"stateless child, stateless client", `{"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"c"},"k":1},"resultType":"complete","content":[]}`, true,
			`{"_meta":{"io.modelcontextprotocol/serverInfo":` + string(serverInfo()) + `,"k":1},"resultType":"complete","content":[]}`},
		{"stateless child without _meta, stateless client", `{"resultType":"complete","content":[]}`, true, `{"_meta":` + gw + `,"resultType":"complete","content":[]}`},
		{"resultType inside content only", `{"content":[{"type":"text","text":"resultType"}],"x":{"resultType":1}}`, false, `{"content":[{"type":"text","text":"resultType"}],"x":{"resultType":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(shapeResult([]byte(tt.in), tt.modern)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestProviderErrorsAreRedacted: a secret a provider puts in an error —
// its JSON-RPC error, a tool error result, a log message — reaches the
// client redacted.
func TestProviderErrorsAreRedacted(t *testing.T) {
	const secret = "ALPHA-SUPER-SECRET-7f3a9c"
	g := newTestGateway(t, Options{Redact: func(s string) string { return strings.ReplaceAll(s, secret, "<redacted>") }})
	up := g.provider("echo", echoTools, "", "", "", `{"tools":{}}`)
	c := g.client(t, "ann:echo").open(`{}`)
	c.call("logging/setLevel", `{"level":"debug"}`, "")
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		return nil, &switchboard.RPCError{Code: -32000, Message: "failed with token " + secret}
	}
	_, msgs := c.call("tools/call", `{"name":"echo__echo"}`, "")
	if msgs[0].Error == nil || msgs[0].Error.Message != "failed with token <redacted>" {
		t.Errorf("JSON-RPC error %+v", msgs[0].Error)
	}
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		req.Caller.Notify("notifications/message", json.RawMessage(`{"level":"error","data":"leaked `+secret+`"}`))
		return json.RawMessage(`{"content":[{"type":"text","text":"bad token ` + secret + `"}],"isError":true}`), nil
	}
	_, msgs = c.call("tools/call", `{"name":"echo__echo"}`, "")
	for _, m := range msgs {
		b, _ := json.Marshal(m)
		if strings.Contains(string(b), secret) {
			t.Errorf("the secret reached the client: %s", b)
		}
	}
	if len(msgs) != 2 || !strings.Contains(string(result(t, msgs)), "bad token <redacted>") {
		t.Errorf("messages %+v", msgs)
	}
}

// TestResourceSubscriptionsFollowAReplacement checks that a subscription
// held at a provider is renewed at its replacement, which a reload publishes
// over the running instance without the key ever going down, and is not
// repeated when the same instance only refreshes its catalog.
func TestResourceSubscriptionsFollowAReplacement(t *testing.T) {
	g := newTestGateway(t, Options{})
	res, caps := `[{"uri":"note://a","name":"a"}]`, `{"resources":{"subscribe":true}}`
	old := g.provider("notes", "", "", res, "", caps)
	a := g.client(t, "ann:notes").open(`{}`)
	if _, msgs := a.call("resources/subscribe", `{"uri":"note://a"}`, ""); string(result(t, msgs)) != `{}` {
		t.Fatal(msgs)
	}
	subscribes := func(up *fakeUp) int {
		n := 0
		for _, r := range up.requests() {
			if r.Method == "resources/subscribe" {
				n++
			}
		}
		return n
	}
	waitFor(t, 5*time.Second, "the subscription at the first process", func() bool { return subscribes(old) == 1 })

	// A catalog refresh of the same process: nothing to renew.
	cat := &switchboard.Catalog{Capabilities: json.RawMessage(caps), Resources: []json.RawMessage{json.RawMessage(`{"uri":"note://a","name":"a2"}`)}}
	g.s.UpdateCatalog(switchboard.InstanceKey{Provider: "notes"}, old, cat)
	// The replacement: a new upstream for the same key.
	repl := g.provider("notes", "", "", res, "", caps)
	waitFor(t, 5*time.Second, "the subscription renewed at the replacement", func() bool { return subscribes(repl) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := subscribes(old); n != 1 {
		t.Errorf("the first process got %d subscribes, want 1 (a catalog refresh is not a new process)", n)
	}
}
