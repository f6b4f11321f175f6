package main

import (
	"net/http"
	"strings"
	"testing"
)

// initializeStatus sends an initialize with hdr to /mcp/internal and returns the status.
func initializeStatus(tb testing.TB, g *gateway, hdr map[string]string) int {
	tb.Helper()
	resp := post(tb, g.URL()+"/mcp/internal", "", hdr, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	resp.Body.Close()
	return resp.StatusCode
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// TestRevokeOneServiceTokenOnlineAndOffline drives the real binary: tokens
// issued with `service token`, one revoked with `service revoke` (by token
// online, by id offline). The revoked token gets 401 on its next request,
// including on a session it opened before; the other token of the same
// service keeps working; revocations survive a restart; `service list` shows
// them.
func TestRevokeOneServiceTokenOnlineAndOffline(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	cfg := g.ConfigPath
	issue := func() string {
		t.Helper()
		out, stderr, code := runBin(t, cfg, "", "", "service", "token", "cron", "--ttl", "2h")
		if code != 0 {
			t.Fatalf("service token: exit %d: %s", code, stderr)
		}
		return strings.TrimSpace(out)
	}
	tok1, tok2 := issue(), issue()
	for i, tok := range []string{tok1, tok2} {
		if st := initializeStatus(t, g, bearer(tok)); st != http.StatusOK {
			t.Fatalf("token %d before revoking: %d", i+1, st)
		}
	}
	c1 := MustConnect(t, g.URL()+"/mcp/internal", bearer(tok1))
	if len(toolNames(t, c1)) == 0 {
		t.Fatal("cron sees no tools")
	}

	// Online, by the token itself: effective on the very next request.
	out, stderr, code := runBin(t, cfg, "", "", "service", "revoke", tok1)
	if code != 0 || !strings.Contains(out, "revoked service token ") || !strings.Contains(out, " of cron ") {
		t.Fatalf("service revoke: exit %d\n%s%s", code, out, stderr)
	}
	if st := initializeStatus(t, g, bearer(tok1)); st != http.StatusUnauthorized {
		t.Errorf("revoked token, new session: %d, want 401", st)
	}
	if _, err := tryCall(c1, "fs__echo", map[string]any{"text": "x"}); err == nil || !strings.Contains(err.Error(), "authorization required") {
		t.Errorf("revoked token, its open session: err = %v, want a 401 (mcp-go: authorization required)", err)
	}
	if st := initializeStatus(t, g, bearer(tok2)); st != http.StatusOK {
		t.Errorf("the other token of the same service: %d, want 200", st)
	}

	list := func(when string) string {
		t.Helper()
		out, stderr, code := runBin(t, cfg, "", "", "service", "list")
		if code != 0 {
			t.Fatalf("%s: service list: exit %d: %s", when, code, stderr)
		}
		return out
	}
	jti1 := tokenID(t, list("online"), "revoked")
	if got := tokenID(t, list("online"), "active"); got == "" || got == jti1 {
		t.Fatalf("service list does not show the other token as active")
	}
	jti2 := tokenID(t, list("online"), "active")

	// Offline, by id: written to the file, in force at the next start.
	_ = c1.Close()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = runBin(t, cfg, "", "", "service", "revoke", jti2)
	if code != 0 || !strings.Contains(out, jti2) {
		t.Fatalf("offline service revoke: exit %d\n%s%s", code, out, stderr)
	}
	tok3 := issue()
	g2 := &gateway{Main: NewMain(cfg), dir: g.dir, log: &syncBuffer{}}
	g2.Stderr, g2.DevKey, g2.Getenv = g2.log, true, g.Getenv
	g2.mustOpen(t)
	defer g2.Close()
	g2.waitReady(t)
	for name, tc := range map[string]struct {
		tok  string
		want int
	}{"revoked online": {tok1, 401}, "revoked offline": {tok2, 401}, "issued offline": {tok3, 200}} {
		if st := initializeStatus(t, g2, bearer(tc.tok)); st != tc.want {
			t.Errorf("after restart, token %s: %d, want %d", name, st, tc.want)
		}
	}
	if out := list("after restart"); strings.Count(out, "revoked ") != 2 || strings.Count(out, "active") != 1 {
		t.Errorf("service list after restart:\n%s", out)
	}

	// Something that is neither a token nor an id is refused plainly.
	_, stderr, code = runBin(t, cfg, "", "", "service", "revoke", "not-a-token")
	if code != 1 || !strings.Contains(stderr, `"not-a-token" is neither a service token nor a token id`) {
		t.Errorf("revoke garbage: exit %d: %s", code, stderr)
	}
}

// tokenID returns the id on the first line of a `service list` output whose
// state starts with state.
func tokenID(tb testing.TB, out, state string) string {
	tb.Helper()
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 7 && f[6] == state {
			return f[0]
		}
	}
	tb.Fatalf("no %s token in:\n%s", state, out)
	return ""
}
