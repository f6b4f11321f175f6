package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const identityConfig = `
listen: 127.0.0.1:0
data_dir: ./data
auth:
  rate_limit: {rps: 5, burst: 20}
providers:
  fs:
    command: BIN/echo
  fsx:
    command: BIN/echo
  ops:
    command: BIN/echo
    internal_only: true
  notes:
    command: BIN/notes
    env: {NOTES_DIR: ./data/notes}
roles:
  reader: {providers: [notes]}
services:
  cron: {allowed_provider_prefixes: [fs, ops]}
  empty: {allowed_provider_prefixes: []}
`

func (g *gateway) userKey(t *testing.T, name string, roles ...string) map[string]string {
	t.Helper()
	key, err := g.id.users.Add(name, roles)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + key}
}

func (g *gateway) serviceToken(t *testing.T, name string) map[string]string {
	t.Helper()
	tok, _, err := g.id.tokens.Issue(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + tok}
}

func prefixes(names []string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		p, _, _ := strings.Cut(n, "__")
		out[p] = true
	}
	return out
}

func TestUnauthenticatedGets401WithoutToolNames(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	for _, ep := range []string{"/mcp", "/mcp/internal"} {
		for name, hdr := range map[string]map[string]string{
			"missing":     nil,
			"garbage":     {"Authorization": "Bearer not-a-token"},
			"bad key":     {"Authorization": "Bearer sb_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
			"basic":       {"Authorization": "Basic YWRtaW46YWRtaW4="},
			"bad jwt":     {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
			"expired-ish": {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"},
		} {
			resp := post(t, g.URL()+ep, "", hdr, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: status %d, want 401", ep, name, resp.StatusCode)
			}
			if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `Bearer resource_metadata="`) {
				t.Errorf("%s %s: WWW-Authenticate = %q", ep, name, resp.Header.Get("WWW-Authenticate"))
			}
			if strings.Contains(string(body), "__") || strings.Contains(string(body), "echo") {
				t.Errorf("%s %s: body leaks tool names: %s", ep, name, body)
			}
		}
	}
}

func TestEndpointsRefuseTheOtherCredential(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	svc := g.serviceToken(t, "cron")
	resp := post(t, g.URL()+"/mcp", "", svc, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("service token on /mcp: %d, want 401", resp.StatusCode)
	}
	resp = post(t, g.URL()+"/mcp/internal", "", g.admin(), `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("user key on /mcp/internal: %d, want 401", resp.StatusCode)
	}
}

func TestServiceAllowlistHoldsOnListAndCall(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp/internal", g.serviceToken(t, "cron"))
	got := prefixes(toolNames(t, c))
	if !got["fs"] || !got["ops"] || got["fsx"] || got["notes"] {
		t.Errorf("cron sees %v, want exactly fs and ops", got)
	}
	if _, err := tryCall(c, "fsx__echo", map[string]any{"text": "x"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("calling fsx__echo: err = %v, want not found", err)
	}
	if _, err := tryCall(c, "nope__echo", map[string]any{"text": "x"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("calling an absent tool: err = %v, want the same not found", err)
	}
	if txt, _ := callText(t, c, "fs__echo", map[string]any{"text": "ok"}); txt != "ok" {
		t.Errorf("fs__echo = %q", txt)
	}
	empty := MustConnect(t, g.URL()+"/mcp/internal", g.serviceToken(t, "empty"))
	if n := toolNames(t, empty); len(n) != 0 {
		t.Errorf("service with an empty allowlist sees %v", n)
	}
}

func TestInternalOnlyAndRoles(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	admin := prefixes(toolNames(t, MustConnect(t, g.URL()+"/mcp", g.admin())))
	if admin["ops"] || !admin["fs"] || !admin["notes"] {
		t.Errorf("admin on /mcp sees %v: want everything but the internal-only ops", admin)
	}
	reader := prefixes(toolNames(t, MustConnect(t, g.URL()+"/mcp", g.userKey(t, "rita", "reader"))))
	if len(reader) != 1 || !reader["notes"] {
		t.Errorf("reader sees %v, want only notes", reader)
	}
	nobody := toolNames(t, MustConnect(t, g.URL()+"/mcp", g.userKey(t, "nora")))
	if len(nobody) != 0 {
		t.Errorf("a user with no role sees %v, want nothing", nobody)
	}
}

func TestSessionHijackRefused(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	url := g.URL() + "/mcp"
	sidA := rawSession(t, url, g.admin())
	bob := g.userKey(t, "bob", "admin")
	resp := post(t, url, sidA, bob, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "__") {
		t.Errorf("bob with alice's session: %d %s, want 404 and no tools", resp.StatusCode, body)
	}
	resp = post(t, url, sidA, nil, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("alice's session with no token: %d, want 401", resp.StatusCode)
	}
	resp = post(t, url, sidA, g.admin(), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("alice's own session: %d, want 200", resp.StatusCode)
	}
}

func TestEdgeRefusesRebindingSmugglingBatchesAndHugeBodies(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	url := g.URL() + "/mcp"
	sid := rawSession(t, url, g.admin())
	cases := []struct {
		name   string
		hdr    map[string]string
		body   string
		status int
	}{
		{"evil host", map[string]string{"Host": "evil.example"}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, http.StatusForbidden},
		{"evil origin", map[string]string{"Origin": "https://evil.example"}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, http.StatusForbidden},
		{"case smuggling", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fs__echo","Name":"ops__echo","arguments":{"text":"x"}}}`, http.StatusBadRequest},
		{"batch", nil, `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fs__echo","arguments":{"text":"x"}}}]`, http.StatusBadRequest},
		{"malformed", nil, `{"jsonrpc":`, http.StatusBadRequest},
		{"huge", nil, `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 5<<20) + `"}}`, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": g.admin()["Authorization"]}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Session-Id", sid)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			if h, ok := hdr["Host"]; ok {
				req.Host = h
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

func TestRateLimitAnswers429(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	url := g.URL() + "/mcp"
	hdr := g.userKey(t, "burst", "admin")
	sid := rawSession(t, url, hdr)
	var limited *http.Response
	for i := 0; i < 60 && limited == nil; i++ {
		resp := post(t, url, sid, hdr, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
		}
	}
	if limited == nil {
		t.Fatal("60 requests at burst 20 were never limited")
	}
	if ra := limited.Header.Get("Retry-After"); ra == "" {
		t.Error("429 without Retry-After")
	}
	// Another principal is unaffected.
	resp := post(t, url, "", g.admin(), `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("other principal got %d", resp.StatusCode)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	resp, err := http.Get(g.URL() + "/.well-known/oauth-protected-resource")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"resource"`) {
		t.Errorf("metadata: %d %s", resp.StatusCode, body)
	}
}
