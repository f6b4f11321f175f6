package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard"
)

const perUserConfig = `
listen: 127.0.0.1:0
data_dir: ./data
roles:
  dev: {providers: [gh, notes, alpha-fs]}
  alpha: {providers: [alpha-fs]}
  beta: {providers: [beta-fs]}
  ghost: {providers: [gh]}
providers:
  gh:
    command: BIN/echo
    scope: user
    connection: {secrets: [GITHUB_TOKEN], idle_timeout: 1h}
    env: {SHARED: everyone}
  notes:
    command: BIN/notes
    env: {NOTES_DIR: ./data/notes}
    read_only: true
    tools: {deny: [delete_note]}
  alpha-fs:
    command: BIN/echo
  beta-fs:
    command: BIN/echo
`

func (g *gateway) connect(t *testing.T, hdr map[string]string, provider, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.URL()+"/api/connections/"+provider, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPerUserProcessesHaveTheirOwnCredentials(t *testing.T) {
	g := MustOpenGateway(t, perUserConfig)
	g.waitReady(t)
	ann, bob, cat := g.userKey(t, "ann", "dev"), g.userKey(t, "bob", "dev"), g.userKey(t, "cat", "dev")
	for who, hdr := range map[string]map[string]string{"ann": ann, "bob": bob} {
		if code, body := g.connect(t, hdr, "gh", `{"secrets":{"GITHUB_TOKEN":"token-of-`+who+`-canary"}}`); code != 200 {
			t.Fatalf("%s connect: %d %s", who, code, body)
		}
	}
	if code, body := g.connect(t, cat, "gh", `{"secrets":{"WRONG":"x"}}`); code != 400 || !strings.Contains(body, "GITHUB_TOKEN") {
		t.Errorf("bad connect: %d %s", code, body)
	}
	ca := MustConnect(t, g.URL()+"/mcp", ann)
	cb := MustConnect(t, g.URL()+"/mcp", bob)
	cc := MustConnect(t, g.URL()+"/mcp", cat)
	waitFor(t, 15*time.Second, func() bool { return strings.Contains(strings.Join(toolNames(t, ca), ","), "gh__env") }, "ann's gh tools")
	if strings.Contains(strings.Join(toolNames(t, cc), ","), "gh__") {
		t.Error("cat, not connected, sees gh tools")
	}
	for who, c := range map[string]any{"ann": ca, "bob": cb} {
		cl := c.(interface {
			CallTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error)
		})
		req := mcp.CallToolRequest{}
		req.Params.Name = "gh__env"
		req.Params.Arguments = map[string]any{"name": "GITHUB_TOKEN"}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := cl.CallTool(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("%s gh__env: %v", who, err)
		}
		if got := res.Content[0].(mcp.TextContent).Text; got != "token-of-"+who+"-canary" {
			t.Errorf("%s's instance sees GITHUB_TOKEN=%q", who, got)
		}
	}
	if txt, _ := callText(t, ca, "gh__env", map[string]any{"name": "SHARED"}); txt != "everyone" {
		t.Errorf("shared env in a per-user instance = %q", txt)
	}
	pids := map[string]int{}
	for _, st := range g.sup.Status() {
		if st.Provider == "gh" {
			pids[st.User] = st.PID
		}
	}
	if pids["ann"] == 0 || pids["bob"] == 0 || pids["ann"] == pids["bob"] || len(pids) != 2 {
		t.Errorf("per-user gh instances = %v, want one each for ann and bob", pids)
	}
	// GET lists state, never values.
	_, body := g.get(t, "/api/connections", ann)
	if !strings.Contains(body, `"gh"`) || strings.Contains(body, "canary") || strings.Contains(body, "bob") {
		t.Errorf("GET /api/connections = %s", body)
	}
	// Disconnecting stops that user's process only.
	req, _ := http.NewRequest(http.MethodDelete, g.URL()+"/api/connections/gh", nil)
	req.Header.Set("Authorization", ann["Authorization"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, 10*time.Second, func() bool { return !g.sup.Has(switchboard.InstanceKey{Provider: "gh", User: "ann"}) }, "ann's instance to stop")
	if !g.sup.Has(switchboard.InstanceKey{Provider: "gh", User: "bob"}) {
		t.Error("bob's instance stopped too")
	}
	if strings.Contains(strings.Join(toolNames(t, ca), ","), "gh__") {
		t.Error("ann still sees gh after disconnecting")
	}
}

func TestHideShowNotifiesOnlyThatUser(t *testing.T) {
	g := MustOpenGateway(t, perUserConfig)
	g.waitReady(t)
	ann, bob := g.userKey(t, "ann", "dev"), g.userKey(t, "bob", "dev")
	var annN, bobN atomic.Int32
	ca := MustConnectListening(t, g.URL()+"/mcp", ann)
	cb := MustConnectListening(t, g.URL()+"/mcp", bob)
	ca.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/tools/list_changed" {
			annN.Add(1)
		}
	})
	cb.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/tools/list_changed" {
			bobN.Add(1)
		}
	})
	toolNames(t, ca)
	toolNames(t, cb)
	time.Sleep(300 * time.Millisecond)
	hide := func(verb string) {
		req, _ := http.NewRequest(http.MethodPost, g.URL()+"/api/prefs/notes/"+verb, nil)
		req.Header.Set("Authorization", ann["Authorization"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", verb, resp.StatusCode)
		}
	}
	hide("hide")
	waitFor(t, 5*time.Second, func() bool { return annN.Load() == 1 }, "ann's list_changed")
	if strings.Contains(strings.Join(toolNames(t, ca), ","), "notes__") {
		t.Error("ann still sees notes after hiding it")
	}
	if !strings.Contains(strings.Join(toolNames(t, cb), ","), "notes__") {
		t.Error("bob lost notes when ann hid it")
	}
	hide("show")
	waitFor(t, 5*time.Second, func() bool { return annN.Load() == 2 }, "ann's second list_changed")
	time.Sleep(300 * time.Millisecond)
	if n := bobN.Load(); n != 0 {
		t.Errorf("bob got %d list_changed for ann's preferences", n)
	}
}

func TestWritePolicyRolesAndFailClosed(t *testing.T) {
	g := MustOpenGateway(t, perUserConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.userKey(t, "dana", "dev"))
	names := strings.Join(toolNames(t, c), ",")
	for _, hidden := range []string{"notes__write_note", "notes__delete_note", "notes__append_note"} {
		if strings.Contains(names, hidden) {
			t.Errorf("read_only notes exposes %s", hidden)
		}
		if _, err := tryCall(c, hidden, map[string]any{"slug": "x", "title": "x", "body": "x"}); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("calling %s: %v, want not found", hidden, err)
		}
	}
	if !strings.Contains(names, "notes__read_note") {
		t.Errorf("read tools missing: %s", names)
	}
	alpha := prefixes(toolNames(t, MustConnect(t, g.URL()+"/mcp", g.userKey(t, "al", "alpha"))))
	if !alpha["alpha-fs"] || alpha["beta-fs"] || len(alpha) != 1 {
		t.Errorf("alpha user sees %v", alpha)
	}
	// A role that does not exist in the config grants nothing: fail closed.
	if n := toolNames(t, MustConnect(t, g.URL()+"/mcp", g.userKey(t, "odd", "admin"))); len(n) == 0 {
		t.Error("admin sees nothing")
	}
	key, err := g.id.users.Add("stale", []string{"removed-role"})
	if err != nil {
		t.Fatal(err)
	}
	if n := toolNames(t, MustConnect(t, g.URL()+"/mcp", map[string]string{"Authorization": "Bearer " + key})); len(n) != 0 {
		t.Errorf("a user whose role is not configured sees %v", n)
	}
	// switchboard tools --user explains what hides each provider.
	v, err := (&running{rel: g.rel, mux: g.mux, sup: g.sup, live: g.live}).tools(context.Background(), g.id, toolsArgs{User: "al"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if v.Hidden["beta-fs"] != "role" || v.Hidden["gh"] != "role" || !strings.Contains(string(b), "alpha-fs__echo") {
		t.Errorf("tools --user al = %s", b)
	}
}
