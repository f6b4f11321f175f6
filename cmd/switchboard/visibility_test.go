package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

const visibilityConfig = `
listen: 127.0.0.1:0
data_dir: ./data
roles:
  dev: {providers: [gh, ops-gh]}
  alpha: {providers: [alpha-fs]}
providers:
  gh:
    command: BIN/echo
    scope: user
    connection: {secrets: [GITHUB_TOKEN], idle_timeout: 1h}
  ops-gh:
    command: BIN/echo
    scope: user
    internal_only: true
    connection: {secrets: [GITHUB_TOKEN]}
  alpha-fs:
    command: BIN/echo
`

// send does method path with hdr and an optional JSON body and returns the
// status and body.
func (g *gateway) send(t *testing.T, method, path string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, g.URL()+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestHiddenProvidersCannotBeConnected: a user whose roles do not grant a
// scope: user provider, or who asks for an internal_only one, gets exactly
// the answer of a provider that does not exist, from every connection and
// preference route; nothing is stored and nothing is started for them, even
// from a connection stored before they lost the role. The operator's admin
// ops refuse with the reason.
func TestHiddenProvidersCannotBeConnected(t *testing.T) {
	g := MustOpenGateway(t, visibilityConfig)
	g.waitReady(t)
	al := g.userKey(t, "al", "alpha")
	ann := g.userKey(t, "ann", "dev")
	secret := `{"secrets":{"GITHUB_TOKEN":"t-canary"}}`

	// The reference: a provider that does not exist.
	same := func(what string, code int, body, name string, wantCode int, wantBody, wantName string) {
		t.Helper()
		if code != wantCode || strings.ReplaceAll(body, name, "X") != strings.ReplaceAll(wantBody, wantName, "X") {
			t.Errorf("%s: %d %s; a nonexistent provider gets %d %s", what, code, body, wantCode, wantBody)
		}
		if strings.Contains(body, "/") || strings.Contains(body, ".yaml") {
			t.Errorf("%s: the answer names a path: %s", what, body)
		}
	}
	nCode, nBody := g.send(t, http.MethodPost, "/api/connections/nope", al, secret)
	if nCode != http.StatusNotFound || strings.Contains(nBody, g.ConfigPath) {
		t.Errorf("nonexistent provider: %d %s", nCode, nBody)
	}
	code, body := g.send(t, http.MethodPost, "/api/connections/gh", al, secret)
	same("connect without the role", code, body, "gh", nCode, nBody, "nope")
	code, body = g.send(t, http.MethodPost, "/api/connections/ops-gh", ann, secret)
	same("connect an internal_only provider", code, body, "ops-gh", nCode, nBody, "nope")
	code, body = g.send(t, http.MethodPost, "/api/connections/gh", al, `not json`)
	same("connect without the role, bad body", code, body, "gh", nCode, nBody, "nope")
	for _, c := range []struct{ user, provider string }{{"al", "gh"}, {"ann", "ops-gh"}} {
		if list, _ := g.vault.Connections(c.user); len(list) != 0 {
			t.Errorf("%s's refused connection to %s was stored: %v", c.user, c.provider, list)
		}
	}
	pCode, pBody := g.send(t, http.MethodPost, "/api/prefs/nope/hide", al, "")
	code, body = g.send(t, http.MethodPost, "/api/prefs/gh/hide", al, "")
	same("hide without the role", code, body, "gh", pCode, pBody, "nope")
	if h := g.id.prefs.Get("al").Hidden; len(h) != 0 {
		t.Errorf("al's refused preference was stored: %v", h)
	}

	// A user with the role connects; that is still allowed.
	if code, body := g.send(t, http.MethodPost, "/api/connections/gh", ann, secret); code != 200 {
		t.Fatalf("ann (dev) connecting gh: %d %s", code, body)
	}

	// al had connected and set a preference before losing the role (stored
	// directly): listing shows neither, and her sessions start nothing.
	if err := g.vault.SetConnection("al", "gh", map[string][]byte{"GITHUB_TOKEN": []byte("old")}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.id.prefs.SetHidden("al", "gh", true); err != nil {
		t.Fatal(err)
	}
	if _, body := g.send(t, http.MethodGet, "/api/connections", al, ""); strings.Contains(body, "gh") {
		t.Errorf("GET /api/connections lists a provider al cannot see: %s", body)
	}
	if _, body := g.send(t, http.MethodGet, "/api/prefs", al, ""); strings.Contains(body, "gh") {
		t.Errorf("GET /api/prefs lists a provider al cannot see: %s", body)
	}
	if names := strings.Join(toolNames(t, MustConnect(t, g.URL()+"/mcp", al)), ","); strings.Contains(names, "gh__") {
		t.Errorf("al sees %s", names)
	}
	// ann's list starts her instance; al's, made first, must not have.
	toolNames(t, MustConnect(t, g.URL()+"/mcp", ann))
	waitFor(t, 20*time.Second, func() bool { return g.sup.Has(switchboard.InstanceKey{Provider: "gh", User: "ann"}) }, "ann's gh instance")
	for _, st := range g.sup.Status() {
		if st.User == "al" {
			t.Errorf("a per-user instance was started for al, who cannot see it: %+v", st)
		}
	}

	// The operator is told why.
	ops := g.adminOps()
	op := func(name string, args any) error {
		raw, _ := json.Marshal(args)
		_, err := ops.Run(context.Background(), name, raw)
		return err
	}
	vals := map[string][]byte{"GITHUB_TOKEN": []byte("x")}
	g.userKey(t, "bo", "alpha")
	for _, tc := range []struct {
		name string
		op   string
		args any
		want []string
	}{
		{"connect without the role", "connect", connArgs{User: "bo", Provider: "gh", Values: vals}, []string{`"bo"`, "no role", "alpha"}},
		{"connect internal_only", "connect", connArgs{User: "ann", Provider: "ops-gh", Values: vals}, []string{"internal_only"}},
		{"connect a shared provider", "connect", connArgs{User: "ann", Provider: "alpha-fs", Values: vals}, []string{"shared"}},
		{"connect nothing", "connect", connArgs{User: "ann", Provider: "nope", Values: vals}, []string{`no provider "nope"`}},
		{"connect an unknown user", "connect", connArgs{User: "zed", Provider: "gh", Values: vals}, []string{`no local user "zed"`}},
		{"hide without the role", "prefs", prefArgs{User: "bo", Provider: "gh", Hide: true}, []string{"no role"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := op(tc.op, tc.args)
			if err == nil {
				t.Fatal("the op succeeded")
			}
			msg := switchboard.ErrorMessage(err)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, g.ConfigPath) {
				t.Errorf("error names the config path: %q", msg)
			}
		})
	}
	if list, _ := g.vault.Connections("bo"); len(list) != 0 {
		t.Errorf("the refused admin connect was stored: %v", list)
	}
	if err := op("connect", connArgs{User: "ann", Provider: "gh", Values: vals}); err != nil {
		t.Errorf("admin connect of ann (dev) to gh: %v", err)
	}
}
