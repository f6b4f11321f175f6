package e2e

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// modernVersion is the protocol revision the v2 client is pinned to.
const modernVersion = "2026-07-28"

// modernConfig serves server-everything to role dev and asker to admins only.
const modernConfig = `
roles:
  dev: {providers: [everything]}
providers:
  everything:
    command: $NPM/mcp-server-everything
  asker:
    command: $BIN/asker
`

// cacheHints are the caching fields of a 2026-07-28 cacheable result.
type cacheHints struct {
	ResultType string `json:"resultType"`
	TTLMs      *int64 `json:"ttlMs"`
	CacheScope string `json:"cacheScope"`
}

// checkHints fails unless a result filtered per principal carries valid
// caching hints with the private scope.
func checkHints(t *testing.T, what string, raw json.RawMessage) {
	t.Helper()
	var r struct {
		Result cacheHints `json:"result"`
	}
	decode(t, raw, &r)
	if r.Result.ResultType != "complete" || r.Result.TTLMs == nil || *r.Result.TTLMs < 0 || r.Result.CacheScope != "private" {
		t.Errorf("%s result hints = %+v (ttlMs %v), want resultType complete, ttlMs >= 0 and cacheScope private (the answer depends on the principal)", what, r.Result, r.Result.TTLMs)
	}
}

// TestModernClient drives the gateway with the TypeScript SDK's v2 client
// (@modelcontextprotocol/client) pinned to 2026-07-28, as alice (role dev:
// server-everything only) and bob (admin: everything and asker).
func TestModernClient(t *testing.T) {
	needNPM(t)
	t.Parallel()
	g := startGateway(t, modernConfig)
	g.waitRunning("everything", "asker")
	alice := []string{"SB_USER=alice", "SB_KEY_ALICE=" + g.addUserRole("alice", "dev")}
	bob := []string{"SB_USER=bob", "SB_KEY_BOB=" + g.addUserRole("bob", "admin")}
	modernSubtests(t, g, alice, bob)
}

// modernSubtests are TestModernClient's subtests against g, with the
// environment of alice (role dev) and bob (admin).
func modernSubtests(t *testing.T, g *gateway, alice, bob []string) {
	run := func(t *testing.T, scenario string, v any, env ...string) {
		t.Helper()
		decode(t, script(t, g, "v2.mjs", scenario, env...), v)
	}

	t.Run("discover", func(t *testing.T) {
		var o struct {
			Era      string `json:"era"`
			Version  string `json:"version"`
			Discover attemptObs[struct {
				SupportedVersions []string                   `json:"supportedVersions"`
				Capabilities      map[string]json.RawMessage `json:"capabilities"`
			}] `json:"discover"`
			Raw json.RawMessage `json:"raw"`
		}
		run(t, "discover", &o, alice...)
		if o.Era != "modern" || o.Version != modernVersion {
			t.Errorf("negotiated %s %s, want modern %s", o.Era, o.Version, modernVersion)
		}
		d := o.Discover.ok(t, "server/discover")
		if !slices.Contains(d.SupportedVersions, modernVersion) || !slices.Contains(d.SupportedVersions, protocolVersion) {
			t.Errorf("supportedVersions = %q, want both %s and %s", d.SupportedVersions, modernVersion, protocolVersion)
		}
		for _, c := range []string{"tools", "prompts", "resources"} {
			if d.Capabilities[c] == nil {
				t.Errorf("discover capabilities lack %s: %v", c, d.Capabilities)
			}
		}
		var raw struct {
			Result struct {
				Meta map[string]struct {
					Name string `json:"name"`
				} `json:"_meta"`
			} `json:"result"`
		}
		decode(t, o.Raw, &raw)
		if raw.Result.Meta["io.modelcontextprotocol/serverInfo"].Name != "switchboard" {
			t.Errorf("discover _meta serverInfo = %+v, want name switchboard", raw.Result.Meta)
		}
	})

	t.Run("lists", func(t *testing.T) {
		type lists struct {
			Tools     []string        `json:"tools"`
			Prompts   []string        `json:"prompts"`
			Resources []string        `json:"resources"`
			Raw       json.RawMessage `json:"raw"`
		}
		var a, b lists
		run(t, "lists", &a, alice...)
		run(t, "lists", &b, bob...)
		if !slices.Contains(a.Tools, "everything__echo") || !slices.Contains(b.Tools, "everything__echo") {
			t.Errorf("everything__echo missing: alice %q, bob %q", a.Tools, b.Tools)
		}
		for _, n := range a.Tools {
			if strings.HasPrefix(n, "asker__") {
				t.Errorf("alice (role dev) sees %s", n)
			}
		}
		if !slices.Contains(b.Tools, "asker__audio") {
			t.Errorf("bob (admin) does not see asker__audio: %q", b.Tools)
		}
		if !slices.Contains(a.Prompts, "everything__args-prompt") || !slices.Contains(a.Resources, "demo://resource/static/document/architecture.md") {
			t.Errorf("alice's prompts %q / resources %q lack server-everything's", a.Prompts, a.Resources)
		}
		checkHints(t, "tools/list", a.Raw)
	})

	t.Run("call", func(t *testing.T) {
		var c callObs
		run(t, "call", &c, alice...)
		if got := c.ok(t, "everything__echo").text(); got != "Echo: modern hello" {
			t.Errorf("everything__echo = %q", got)
		}
	})

	t.Run("prompt", func(t *testing.T) {
		var o attemptObs[struct {
			Messages []struct {
				Content content `json:"content"`
			} `json:"messages"`
		}]
		run(t, "prompt", &o, alice...)
		p := o.ok(t, "prompts/get everything__args-prompt")
		if len(p.Messages) != 1 || p.Messages[0].Content.Text != "What's weather in Porto?" {
			t.Errorf("prompts/get everything__args-prompt = %+v", p.Messages)
		}
	})

	t.Run("resource", func(t *testing.T) {
		var o struct {
			attemptObs[struct {
				Contents []resourceContents `json:"contents"`
			}]
			Raw json.RawMessage `json:"raw"`
		}
		run(t, "resource", &o, alice...)
		r := o.ok(t, "resources/read")
		if len(r.Contents) != 1 || r.Contents[0].URI != "demo://resource/dynamic/text/5" || !strings.HasPrefix(r.Contents[0].Text, "Resource 5: This is a plaintext resource") {
			t.Errorf("resources/read = %+v", r.Contents)
		}
		checkHints(t, "resources/read", o.Raw)
	})

	// server-everything (a session-era child) sends elicitation/create in
	// the middle of the call; the modern client sees an input_required
	// result, answers it through its handler, retries, and gets the result.
	t.Run("elicitation", func(t *testing.T) {
		var o struct {
			Received []struct {
				RequestedSchema struct {
					Properties map[string]json.RawMessage `json:"properties"`
				} `json:"requestedSchema"`
			} `json:"received"`
			Result *toolResult `json:"result"`
			Error  string      `json:"error"`
			Calls  []struct {
				InputResponses []string `json:"inputResponses"`
				RequestState   bool     `json:"requestState"`
			} `json:"calls"`
			Answers []struct {
				ResultType string `json:"resultType"`
			} `json:"answers"`
			ServerRequests []string `json:"serverRequests"`
		}
		run(t, "elicitation", &o, alice...)
		if len(o.Received) != 1 || o.Received[0].RequestedSchema.Properties["firstLine"] == nil {
			var fields [][]string
			for _, r := range o.Received {
				fields = append(fields, slices.Sorted(maps.Keys(r.RequestedSchema.Properties)))
			}
			t.Fatalf("the elicitation handler got forms with fields %q, want server-everything's form once (call error: %s)", fields, o.Error)
		}
		if o.Error != "" || o.Result == nil || !strings.Contains(o.Result.text(), "- Name: Modern Tester") {
			t.Errorf("result = %s %q, want the accepted name", o.Error, o.Result.text())
		}
		if len(o.Calls) != 2 || len(o.Calls[0].InputResponses) != 0 || len(o.Calls[1].InputResponses) != 1 {
			t.Errorf("tools/call rounds = %+v, want the call and one retry carrying the input", o.Calls)
		}
		if !slices.ContainsFunc(o.Answers, func(a struct {
			ResultType string `json:"resultType"`
		}) bool {
			return a.ResultType == "input_required"
		}) {
			t.Errorf("no input_required result among the answers %+v", o.Answers)
		}
		if len(o.ServerRequests) != 0 {
			t.Errorf("the gateway sent JSON-RPC requests %q to a 2026-07-28 client", o.ServerRequests)
		}
	})

	t.Run("auto", func(t *testing.T) {
		var o struct {
			Era     string      `json:"era"`
			Version string      `json:"version"`
			Sent    []string    `json:"sent"`
			Result  *toolResult `json:"result"`
			Error   string      `json:"error"`
		}
		run(t, "auto", &o, alice...)
		if o.Era != "modern" || o.Version != modernVersion || slices.Contains(o.Sent, "initialize") {
			t.Errorf("auto mode negotiated %s %s sending %q, want modern %s without initialize", o.Era, o.Version, o.Sent, modernVersion)
		}
		if o.Result.text() != "Echo: auto hello" {
			t.Errorf("call = %s %q", o.Error, o.Result.text())
		}
	})

	// The session era on the same URL, with the same client: passes today.
	t.Run("legacy", func(t *testing.T) {
		var o struct {
			Era     string      `json:"era"`
			Version string      `json:"version"`
			Result  *toolResult `json:"result"`
			Error   string      `json:"error"`
		}
		run(t, "legacyCall", &o, alice...)
		if o.Era != "legacy" || o.Version != protocolVersion || o.Error != "" || o.Result.text() != "Echo: legacy hello" {
			t.Errorf("legacy mode: %s %s, call %s %q", o.Era, o.Version, o.Error, o.Result.text())
		}
	})

	// A continuation is bound to the principal it was handed to: replayed
	// tampered, or by another user, it is refused; the genuine retry works.
	t.Run("continuation", func(t *testing.T) {
		type rpc = attemptObs[struct {
			ResultType string    `json:"resultType"`
			Content    []content `json:"content"`
			IsError    bool      `json:"isError"`
		}]
		var o struct {
			First     rpc      `json:"first"`
			Keys      []string `json:"keys"`
			HasState  bool     `json:"hasState"`
			Tampered  rpc      `json:"tampered"`
			OtherUser rpc      `json:"otherUser"`
			Genuine   rpc      `json:"genuine"`
		}
		run(t, "continuation", &o, append(alice, "SB_OTHER=bob", bob[1])...)
		if f := o.First.ok(t, "first call"); f.ResultType != "input_required" || len(o.Keys) == 0 || !o.HasState {
			t.Fatalf("first call = %+v, keys %q, requestState %v: want input_required with input requests and a requestState", f, o.Keys, o.HasState)
		}
		for what, r := range map[string]rpc{"a tampered requestState": o.Tampered, "another user's requestState": o.OtherUser} {
			if r.Error == "" {
				t.Errorf("the retry with %s was not refused with a JSON-RPC error: %+v", what, r.Value)
			}
		}
		gen := o.Genuine.ok(t, "genuine retry")
		if gen.IsError || !strings.Contains((&toolResult{Content: gen.Content}).text(), "- Name: Replayed") {
			t.Errorf("genuine retry = %+v, want the completed call", gen)
		}
	})
}

// reload writes config (after the gateway's base, expanded) to gateway.yaml
// and waits until the gateway reports one more "config reloaded".
func (g *gateway) reload(config string) {
	g.t.Helper()
	isReload := func(l logLine) bool { return l.msg() == "config reloaded" }
	before, lines := g.log.count(isReload), len(g.log.lines())
	tmp := g.cfg + ".tmp"
	if err := os.WriteFile(tmp, []byte(g.expand(config)), 0o600); err != nil {
		g.t.Fatal(err)
	}
	if err := os.Rename(tmp, g.cfg); err != nil {
		g.t.Fatal(err)
	}
	waitFor(g.t, 30*time.Second, "config reloaded", func() bool {
		for _, l := range g.log.lines()[lines:] {
			if strings.HasPrefix(l.msg(), "reload rejected") {
				g.t.Fatalf("reload rejected: %s", l.text)
			}
		}
		return g.log.count(isReload) > before
	})
}

// TestModernListen checks that subscriptions/listen delivers
// notifications/tools/list_changed when gateway.yaml adds a provider the
// listening principal may see, and nothing when it adds one it may not.
func TestModernListen(t *testing.T) {
	needNPM(t)
	t.Parallel()
	g := startGateway(t, modernConfig)
	g.waitRunning("everything", "asker")
	alice := []string{"SB_USER=alice", "SB_KEY_ALICE=" + g.addUserRole("alice", "dev")}
	s := startScript(t, g, "v2.mjs", "listen", alice...)
	var listening struct {
		Honored struct {
			ToolsListChanged bool `json:"toolsListChanged"`
		} `json:"honored"`
		Error string `json:"error"`
	}
	decode(t, s.next("listening", 60*time.Second), &listening)
	if !listening.Honored.ToolsListChanged {
		t.Fatalf("subscriptions/listen did not honor toolsListChanged: %+v", listening)
	}

	// A provider alice may not see: no notification.
	g.reload(`
roles:
  dev: {providers: [everything]}
  ops: {providers: [hidden]}
providers:
  everything:
    command: $NPM/mcp-server-everything
  asker:
    command: $BIN/asker
  hidden:
    command: $BIN/echo
`)
	g.waitRunning("hidden")
	s.send("mark visible-edit")
	s.next("marked", 10*time.Second)

	// A provider alice may see: a notification.
	g.reload(`
roles:
  dev: {providers: [everything, shown]}
  ops: {providers: [hidden]}
providers:
  everything:
    command: $NPM/mcp-server-everything
  asker:
    command: $BIN/asker
  hidden:
    command: $BIN/echo
  shown:
    command: $BIN/echo
`)
	g.waitRunning("shown")
	for {
		var e struct {
			Method string `json:"method"`
		}
		decode(t, s.next("event", 30*time.Second), &e)
		if e.Method == "notifications/tools/list_changed" {
			break
		}
	}
	var o struct {
		Events []struct {
			Mark         string `json:"mark"`
			Notification *struct {
				Method         string          `json:"method"`
				SubscriptionID json.RawMessage `json:"subscriptionId"`
			} `json:"notification"`
		} `json:"events"`
		Tools attemptObs[[]string] `json:"tools"`
	}
	decode(t, s.finish(), &o)
	if len(o.Events) == 0 || o.Events[0].Notification == nil || o.Events[0].Notification.Method != "notifications/subscriptions/acknowledged" {
		t.Errorf("the first message on the stream is not notifications/subscriptions/acknowledged: %+v", o.Events)
	}
	marked := false
	for _, e := range o.Events {
		if e.Mark == "visible-edit" {
			marked = true
			continue
		}
		n := e.Notification
		if n == nil {
			continue
		}
		if len(n.SubscriptionID) == 0 {
			t.Errorf("%s carries no io.modelcontextprotocol/subscriptionId", n.Method)
		}
		if n.Method == "notifications/tools/list_changed" && !marked {
			t.Error("notifications/tools/list_changed arrived after adding a provider alice may not see")
		}
	}
	tools := *o.Tools.ok(t, "tools/list after the change")
	if !slices.Contains(tools, "shown__echo") || slices.ContainsFunc(tools, func(n string) bool { return strings.HasPrefix(n, "hidden__") }) {
		t.Errorf("alice's tools after the change = %q, want shown__echo and no hidden__ tool", tools)
	}
}
