package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/oauthtest"
	"github.com/switchboard-mcp/switchboard/oauth"
	"github.com/switchboard-mcp/switchboard/vault"
)

// apiPost POSTs to the user API with hdr and returns the status and body.
func (g *gateway) apiPost(t *testing.T, hdr map[string]string, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.URL()+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// oauthConnect runs the whole flow for a gateway user: the link from the
// API, then a browser that signs in at the authorization server as account
// and approves.
func (g *gateway) oauthConnect(t *testing.T, hdr map[string]string, provider, account string) {
	t.Helper()
	code, body := g.apiPost(t, hdr, "/api/connections/"+provider+"/oauth")
	var link struct {
		URL string `json:"url"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &link) != nil || !strings.Contains(link.URL, "/connect/"+provider+"?t=") {
		t.Fatalf("connect link: %d %s", code, body)
	}
	resp, page := oauthtest.NewBrowser().Authorize(t, link.URL, account, oauthtest.Accounts[account])
	if resp.StatusCode != 200 || !strings.Contains(page, "is connected to "+provider) {
		t.Fatalf("connecting %s as %s: %d %s", provider, account, resp.StatusCode, page)
	}
}

// grantTokens returns the token values of user's OAuth connection, read
// from the vault, for the leak checks.
func (g *gateway) grantTokens(t *testing.T, user, provider string) []string {
	t.Helper()
	sec, err := g.vault.UserSecret(context.Background(), user, provider, vault.OAuthGrant)
	if err != nil {
		return nil
	}
	tok, err := oauth.DecodeToken([]byte(sec.Reveal()))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range []string{tok.AccessToken.Reveal(), tok.RefreshToken.Reveal()} {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func oauthCall(c interface {
	CallTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error)
}, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: name}})
	if err != nil {
		return "", err
	}
	if res.IsError || len(res.Content) == 0 {
		b, _ := json.Marshal(res)
		return "", &switchboard.Error{Code: switchboard.EUNAVAILABLE, Message: string(b)}
	}
	return res.Content[0].(mcp.TextContent).Text, nil
}

// TestOAuthRemoteProvider is the whole story through the gateway: a
// protected remote MCP server whose tokens come from a real authorization
// server. Two users connect through the real redirect flow (link from the
// API, a browser signing in and approving); each calls the remote tool and
// is who they signed in as; tokens are refreshed before they expire without
// a failed call; when the authorization server revokes one user's grant,
// that user's connection shows expired, their tools disappear with one
// list_changed, and the other user notices nothing. No token appears in the
// log (at trace level), the audit log, /status, any API answer, or an error
// a client was given.
func TestOAuthRemoteProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an authorization server (node)")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{AccessTTL: 8 * time.Second})
	rs := oauthtest.StartRS(t, as, nil)
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
log: {level: trace}
roles:
  dev: {providers: [prot]}
providers:
  prot:
    url: `+rs.URL+`
    scope: user
    oauth: {}
`)
	g.waitReady(t)
	ann, bob := g.userKey(t, "ann", "dev"), g.userKey(t, "bob", "dev")
	ca := MustConnectListening(t, g.URL()+"/mcp", ann)
	cb := MustConnectListening(t, g.URL()+"/mcp", bob)
	var annN, bobN atomic.Int32
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
	if names := strings.Join(toolNames(t, ca), ","); strings.Contains(names, "prot__") {
		t.Fatalf("ann sees prot before connecting: %s", names)
	}
	var errs []string // every error a client saw, for the leak check
	if _, err := oauthCall(ca, "prot__whoami"); err == nil {
		t.Fatal("ann called prot before connecting")
	} else {
		errs = append(errs, err.Error())
	}
	// Secrets are not how this provider connects.
	if code, body := g.connect(t, ann, "prot", `{"secrets":{"X":"y"}}`); code != 400 || !strings.Contains(body, "OAuth") {
		t.Errorf("connecting with secrets: %d %s", code, body)
	}

	g.oauthConnect(t, ann, "prot", "alice")
	g.oauthConnect(t, bob, "prot", "bob")
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(strings.Join(toolNames(t, ca), ","), "prot__whoami") }, "ann's prot tools")
	if got, err := oauthCall(ca, "prot__whoami"); err != nil || got != "you are alice" {
		t.Fatalf("ann's whoami = %q, %v", got, err)
	}
	if got, err := oauthCall(cb, "prot__whoami"); err != nil || got != "you are bob" {
		t.Fatalf("bob's whoami = %q, %v", got, err)
	}

	// Across two token lifetimes: refreshed ahead of expiry, never refused.
	var seen []string
	refusals := rs.Refusals()
	for end := time.Now().Add(18 * time.Second); time.Now().Before(end); time.Sleep(400 * time.Millisecond) {
		for c, want := range map[interface {
			CallTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error)
		}]string{ca: "you are alice", cb: "you are bob"} {
			if got, err := oauthCall(c, "prot__whoami"); err != nil || got != want {
				t.Fatalf("whoami during refreshes = %q, %v; want %q", got, err, want)
			}
		}
		seen = append(seen, g.grantTokens(t, "ann", "prot")...)
		seen = append(seen, g.grantTokens(t, "bob", "prot")...)
	}
	if n := rs.Refusals() - refusals; n != 0 {
		t.Errorf("%d requests were refused across refreshes", n)
	}
	if s := as.Stats(t); s.Refreshes < 4 {
		t.Errorf("refreshes = %d, want at least two per user", s.Refreshes)
	}
	for _, u := range rs.Uses() {
		if u.Sub != "alice" && u.Sub != "bob" {
			t.Errorf("a request with a token of %q", u.Sub)
		}
	}

	// The authorization server revokes alice's grant.
	annBefore, bobBefore := annN.Load(), bobN.Load()
	as.Revoke(t, "alice")
	// Ann's access token died with the grant: her next call is refused,
	// the refresh fails, and she is told so.
	if _, err := oauthCall(ca, "prot__whoami"); err == nil {
		t.Error("ann's call after the revocation succeeded")
	} else {
		errs = append(errs, err.Error())
	}
	waitFor(t, 30*time.Second, func() bool {
		_, body := g.get(t, "/api/connections", ann)
		return strings.Contains(body, `"expired": true`)
	}, "ann's connection to show expired")
	waitFor(t, 10*time.Second, func() bool { return !strings.Contains(strings.Join(toolNames(t, ca), ","), "prot__") }, "ann's prot tools to go")
	waitFor(t, 10*time.Second, func() bool { return annN.Load() > annBefore }, "ann's list_changed")
	time.Sleep(time.Second)
	if n := annN.Load() - annBefore; n != 1 {
		t.Errorf("ann got %d list_changed for the expiry, want 1", n)
	}
	if _, err := oauthCall(ca, "prot__whoami"); err == nil {
		t.Error("ann still calls prot after expiry")
	} else {
		errs = append(errs, err.Error())
	}
	if got, err := oauthCall(cb, "prot__whoami"); err != nil || got != "you are bob" {
		t.Fatalf("bob after ann's expiry = %q, %v", got, err)
	}
	if n := bobN.Load() - bobBefore; n != 0 {
		t.Errorf("bob got %d list_changed for ann's expiry", n)
	}
	_, bobConns := g.get(t, "/api/connections", bob)
	if strings.Contains(bobConns, `"expired": true`) || !strings.Contains(bobConns, `"kind": "oauth"`) {
		t.Errorf("bob's connections: %s", bobConns)
	}

	// Ann connects again: back.
	g.oauthConnect(t, ann, "prot", "alice")
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(strings.Join(toolNames(t, ca), ","), "prot__whoami") }, "ann's prot tools again")
	if got, err := oauthCall(ca, "prot__whoami"); err != nil || got != "you are alice" {
		t.Fatalf("ann's whoami after reconnecting = %q, %v", got, err)
	}
	seen = append(seen, g.grantTokens(t, "ann", "prot")...)

	// No token anywhere.
	_, status := g.get(t, "/status?format=json", g.admin())
	_, annConns := g.get(t, "/api/connections", ann)
	auditLog, err := os.ReadFile(g.config().Audit.File)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 3 {
		t.Fatalf("collected %d client errors, want 3", len(errs))
	}
	places := map[string]string{"the log": g.log.String(), "/status": status, "GET /api/connections": annConns + bobConns,
		"the audit log": string(auditLog), "an error a client saw": strings.Join(errs, "\n")}
	if len(seen) < 4 {
		t.Fatalf("only %d token values seen", len(seen))
	}
	for _, tok := range seen {
		for where, text := range places {
			if strings.Contains(text, tok) {
				t.Errorf("a token value is in %s", where)
			}
		}
	}
	for _, want := range []string{`"action":"connect"`, `"action":"expired"`} {
		if !strings.Contains(string(auditLog), want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
}

// TestOAuthConnectLinks: a link works once, for its provider, within its
// time; the callback refuses another browser; a user who cannot see a
// provider gets no link for it.
func TestOAuthConnectLinks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an authorization server (node)")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{})
	rs := oauthtest.StartRS(t, as, nil)
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
roles:
  dev: {providers: [prot]}
providers:
  prot:
    url: `+rs.URL+`
    scope: user
    oauth: {}
`)
	g.waitReady(t)
	ann := g.userKey(t, "ann", "dev")
	eve := g.userKey(t, "eve")
	if code, _ := g.apiPost(t, eve, "/api/connections/prot/oauth"); code != 404 {
		t.Errorf("a user without the role got a link: %d", code)
	}
	_, body := func() (int, string) { return g.apiPost(t, ann, "/api/connections/prot/oauth") }()
	var link struct{ URL string }
	_ = json.Unmarshal([]byte(body), &link)

	// Another browser takes the link to the authorization server, but the
	// callback lands in a browser that did not start it.
	b := oauthtest.NewBrowser()
	b.Client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.Contains(req.URL.Path, "/oauth/callback") {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, _ := b.Authorize(t, link.URL, "alice", "alice-pw")
	cb := resp.Header.Get("Location")
	if !strings.Contains(cb, "/oauth/callback?") {
		t.Fatalf("no redirect to the callback: %d %q", resp.StatusCode, cb)
	}
	other := oauthtest.NewBrowser()
	r2, err := other.Client.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 400 {
		t.Errorf("callback in another browser: %d", r2.StatusCode)
	}
	if g.vault.Connected("ann", "prot") {
		t.Error("the refused callback connected ann")
	}
	// The link was used up.
	r3, err := oauthtest.NewBrowser().Client.Get(link.URL)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.StatusCode != 404 {
		t.Errorf("a used link: %d, want 404", r3.StatusCode)
	}
	// The status page lists the provider with a connect link and command.
	_, status := g.get(t, "/status?format=json", g.admin())
	if !strings.Contains(status, `"link": "/status/connect/prot"`) || !strings.Contains(status, "switchboard connect prot --user USER --oauth") {
		t.Errorf("status lacks the oauth connect entry: %s", status)
	}
	// The HTML page links it, and the link connects the admin who follows
	// it (no role lists prot for them); it is for admins only.
	if _, html := g.get(t, "/status", g.admin()); !strings.Contains(html, `<a href="/status/connect/prot">connect</a>`) {
		t.Errorf("the status page does not link the connect flow")
	}
	if code, _ := g.get(t, "/status/connect/prot", ann); code != http.StatusForbidden && code != http.StatusUnauthorized && code != http.StatusNotFound {
		t.Errorf("a non-admin followed the status page's connect link: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, g.URL()+"/status/connect/prot", nil)
	req.Header.Set("Authorization", g.admin()["Authorization"])
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r4, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r4.Body.Close()
	loc := r4.Header.Get("Location")
	if r4.StatusCode != http.StatusFound || !strings.Contains(loc, "/connect/prot?t=") {
		t.Fatalf("the status page's connect link: %d %q", r4.StatusCode, loc)
	}
	resp, page := oauthtest.NewBrowser().Authorize(t, loc, "bob", "bob-pw")
	if resp.StatusCode != 200 || !strings.Contains(page, "admin is connected to prot") {
		t.Fatalf("the admin's flow ended with %d %s", resp.StatusCode, page)
	}
	if !g.vault.Connected("admin", "prot") {
		t.Error("the admin is not connected after the flow")
	}
}

// TestRemoteProviderComesBack: a shared remote provider whose server goes
// away shows backoff, then failed, and comes back on its own when the
// server does; its tools go and come back.
func TestRemoteProviderComesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the reconnect backoff")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var mu sync.Mutex
	serve := func(ln net.Listener) *http.Server {
		s := &http.Server{Handler: server.NewStreamableHTTPServer(oauthtest.NewMCPServer())}
		go func() { _ = s.Serve(ln) }()
		return s
	}
	hs := serve(ln)
	defer func() { mu.Lock(); _ = hs.Close(); mu.Unlock() }()
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
default_role: dev
roles:
  dev: {providers: [far]}
providers:
  far:
    url: http://`+addr+`/mcp
`)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.userKey(t, "ann", "dev"))
	if got, isErr := callText(t, c, "far__echo", map[string]any{"text": "hi"}); isErr || got != "hi" {
		t.Fatalf("far__echo = %q (error %v)", got, isErr)
	}
	state := func() switchboard.ProviderState {
		for _, p := range g.health().Providers {
			if p.Provider == "far" {
				return p.State
			}
		}
		return ""
	}
	if state() != switchboard.StateRunning {
		t.Fatalf("far is %s", state())
	}
	mu.Lock()
	_ = hs.Close()
	mu.Unlock()
	waitFor(t, 20*time.Second, func() bool { return state() == switchboard.StateBackoff }, "backoff")
	waitFor(t, 30*time.Second, func() bool { return state() == switchboard.StateFailed }, "failed")
	if strings.Contains(strings.Join(toolNames(t, c), ","), "far__") {
		t.Error("a failed remote provider's tools are still listed")
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	hs = serve(ln2)
	mu.Unlock()
	waitFor(t, 45*time.Second, func() bool { return state() == switchboard.StateRunning }, "running again")
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(strings.Join(toolNames(t, c), ","), "far__echo") }, "far's tools again")
	if got, isErr := callText(t, c, "far__echo", map[string]any{"text": "back"}); isErr || got != "back" {
		t.Fatalf("far__echo after the server came back = %q (error %v)", got, isErr)
	}
	_, status := g.get(t, "/status?format=json", g.admin())
	if !strings.Contains(status, `"provider": "far"`) {
		t.Errorf("status lacks far: %s", status)
	}
}

// TestOAuthTokenToChild: a command provider's child gets its user's token
// in its environment (replaced by a new process when the token is
// refreshed, the old one finishing its calls, none failing) or in a token
// file the gateway rewrites on refresh (no restart).
func TestOAuthTokenToChild(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an authorization server (node)")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{AccessTTL: 6 * time.Second})
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
roles:
  dev: {providers: [envtok, filetok]}
providers:
  envtok:
    command: BIN/echo
    scope: user
    oauth: {issuer: `+as.Issuer+`, scopes: [openid], token_env: SERVICE_TOKEN}
  filetok:
    command: BIN/echo
    scope: user
    oauth: {issuer: `+as.Issuer+`, scopes: [openid], token_file: SERVICE_TOKEN_FILE}
`)
	g.waitReady(t)
	ann := g.userKey(t, "ann", "dev")
	g.oauthConnect(t, ann, "envtok", "alice")
	g.oauthConnect(t, ann, "filetok", "alice")
	c := MustConnect(t, g.URL()+"/mcp", ann)
	waitFor(t, 20*time.Second, func() bool {
		names := strings.Join(toolNames(t, c), ",")
		return strings.Contains(names, "envtok__env") && strings.Contains(names, "filetok__env")
	}, "ann's instances")
	env := func(provider, name string) string {
		got, isErr := callText(t, c, provider+"__env", map[string]any{"name": name})
		if isErr {
			t.Fatalf("%s__env %s: %s", provider, name, got)
		}
		return got
	}
	pid := func(provider string) int {
		for _, p := range g.health().Providers {
			if p.Provider == provider && p.User == "ann" {
				return p.PID
			}
		}
		return 0
	}
	access := func(provider string) string { return g.grantTokens(t, "ann", provider)[0] }

	first := env("envtok", "SERVICE_TOKEN")
	if first != access("envtok") {
		t.Fatal("the child's SERVICE_TOKEN is not the connection's access token")
	}
	path := env("filetok", "SERVICE_TOKEN_FILE")
	readFile := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if readFile() != access("filetok") {
		t.Fatal("the token file does not hold the connection's access token")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode: %v, %v", fi.Mode(), err)
	}
	envPID, filePID := pid("envtok"), pid("filetok")
	fileTok := readFile()

	// A long call to the env child is in flight when its token is
	// refreshed (a third of the 6s lifetime before expiry), and short calls
	// keep coming: the old process finishes the long one, and none fails.
	long := make(chan string, 1)
	go func() {
		res, err := tryCallTimeout(c, "envtok__sleep", map[string]any{"ms": 12000, "steps": 1}, 40*time.Second)
		switch {
		case err != nil:
			long <- "error: " + err.Error()
		case res.IsError:
			long <- fmt.Sprintf("tool error: %+v", res.Content)
		default:
			long <- "ok"
		}
	}()
	var renewedDuringLong bool
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		got, isErr := callText(t, c, "envtok__echo", map[string]any{"text": "still here"})
		if isErr || got != "still here" {
			t.Fatalf("a call to the env child while its token was renewed: %q (error %v)", got, isErr)
		}
		if p := pid("envtok"); p != envPID && p != 0 {
			select {
			case r := <-long:
				long <- r
			default:
				renewedDuringLong = true
			}
			break
		}
	}
	select {
	case r := <-long:
		if r != "ok" {
			t.Errorf("the call in flight across the renewal: %s", r)
		}
	case <-time.After(30 * time.Second):
		t.Error("the call in flight across the renewal never answered")
	}
	if !renewedDuringLong {
		t.Log("the renewal did not happen during the long call (a slow machine); its draining was not exercised")
	}

	// After a refresh: the env child was restarted with the new token; the
	// file child still runs and its file holds the new token.
	waitFor(t, 20*time.Second, func() bool { return access("envtok") != first && access("filetok") != fileTok }, "both tokens to be refreshed")
	waitFor(t, 20*time.Second, func() bool { return env("envtok", "SERVICE_TOKEN") == access("envtok") }, "the env child to restart with the new token")
	if p := pid("envtok"); p == envPID || p == 0 {
		t.Errorf("envtok pid %d → %d: want a new process", envPID, p)
	}
	waitFor(t, 10*time.Second, func() bool { return readFile() == access("filetok") }, "the token file to be rewritten")
	if p := pid("filetok"); p != filePID {
		t.Errorf("filetok pid %d → %d: want the same process", filePID, p)
	}
}

// tryCallTimeout is tryCall with a deadline of d.
func tryCallTimeout(c *client.Client, name string, args map[string]any, d time.Duration) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return c.CallTool(ctx, req)
}
