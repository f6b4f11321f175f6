package oauth_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/oauthtest"
	"github.com/switchboard-mcp/switchboard/internal/redact"
	"github.com/switchboard-mcp/switchboard/oauth"
)

// gateway stands in for the gateway's two routes: /connect (a signed-in
// user starts a flow; the browser binding goes into a cookie) and
// /callback (the authorization server sends the browser back).
type gateway struct {
	m      *oauth.Manager
	srv    *httptest.Server
	store  *oauth.MemoryStore
	logs   *syncBuffer
	events *eventLog
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type eventLog struct {
	mu sync.Mutex
	ev []oauth.Event
}

func (l *eventLog) add(e oauth.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, e)
}

func (l *eventLog) count(kind, user string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Kind == kind && e.User == user {
			n++
		}
	}
	return n
}

const bindingCookie = "sb_oauth_binding"

// MustGateway starts the connect and callback routes over a Manager whose
// provider "fx" has the OAuth connection cfg (Provider is set here).
func MustGateway(tb testing.TB, cfg oauth.Config) *gateway {
	tb.Helper()
	g := &gateway{store: &oauth.MemoryStore{}, logs: &syncBuffer{}, events: &eventLog{}}
	mux := http.NewServeMux()
	g.srv = httptest.NewServer(mux)
	tb.Cleanup(g.srv.Close)
	logger := zerolog.New(g.logs).Level(zerolog.DebugLevel)
	m, err := oauth.New(logger, oauth.Options{
		Store:       g.store,
		RedirectURL: g.srv.URL + "/callback",
		Redactor:    redact.New(),
		OnEvent:     g.events.add,
	})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Provider = "fx"
	if err := m.SetConfigs([]*oauth.Config{&cfg}); err != nil {
		tb.Fatal(err)
	}
	g.m = m
	mux.HandleFunc("GET /connect", func(w http.ResponseWriter, r *http.Request) {
		f, err := m.Begin(r.Context(), r.URL.Query().Get("user"), "fx")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: f.Binding, Path: "/callback", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, f.URL, http.StatusFound)
	})
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie(bindingCookie)
		binding := ""
		if c != nil {
			binding = c.Value
		}
		user, provider, err := m.Complete(r.Context(), r.URL.Query(), binding)
		if err != nil {
			http.Error(w, "not connected: "+switchboard.ErrorMessage(err), http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("connected " + user + " to " + provider))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return g
}

// connect runs the whole redirect flow for user, as the user's browser.
func (g *gateway) connect(tb testing.TB, user string) {
	tb.Helper()
	resp, body := oauthtest.NewBrowser().Authorize(tb, g.srv.URL+"/connect?user="+user, user, oauthtest.Accounts[user])
	if resp.StatusCode != http.StatusOK || body != "connected "+user+" to fx" {
		tb.Fatalf("connecting %s: HTTP %d %s", user, resp.StatusCode, body)
	}
}

// whoami calls the protected server's whoami tool with user's token, as a
// remote provider's request would carry it.
func whoami(tb testing.TB, g *gateway, rs *oauthtest.RS, user string) (string, error) {
	tb.Helper()
	auth := g.m.Authorizer(user, "fx")
	c, err := client.NewStreamableHttpClient(rs.URL, transport.WithHTTPHeaderFunc(func(ctx context.Context) map[string]string {
		h, err := auth.Authorization(ctx)
		if err != nil {
			return nil
		}
		return map[string]string{"Authorization": h}
	}))
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return "", err
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		return "", err
	}
	res, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "whoami"}})
	if err != nil {
		return "", err
	}
	return res.Content[0].(mcp.TextContent).Text, nil
}

// tokensOf returns the token values stored for user.
func tokensOf(tb testing.TB, g *gateway, user string) []string {
	tb.Helper()
	t, err := g.store.Token(context.Background(), user, "fx")
	if err != nil {
		return nil
	}
	return []string{t.AccessToken.Reveal(), t.RefreshToken.Reveal()}
}

// TestRealFlow connects two users to a protected MCP server through the
// real redirect flow at a real authorization server (discovery from the
// MCP server's resource metadata, dynamic registration, PKCE, resource
// indicator, issuer check), uses the tokens, refreshes them before they
// expire without a refused request, and expires one user's connection when
// the authorization server revokes its grant, leaving the other's alone.
func TestRealFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{AccessTTL: 6 * time.Second})
	rs := oauthtest.StartRS(t, as, nil)
	g := MustGateway(t, oauth.Config{Resource: rs.URL})

	g.connect(t, "alice")
	g.connect(t, "bob")
	if got, err := whoami(t, g, rs, "alice"); err != nil || got != "you are alice" {
		t.Fatalf("alice's whoami = %q, %v", got, err)
	}
	if got, err := whoami(t, g, rs, "bob"); err != nil || got != "you are bob" {
		t.Fatalf("bob's whoami = %q, %v", got, err)
	}
	st, err := g.m.Status(context.Background(), "alice", "fx")
	if err != nil || !st.Connected || st.Issuer != as.Issuer {
		t.Fatalf("status = %+v, %v", st, err)
	}
	first := tokensOf(t, g, "alice")
	var seen []string
	seen = append(seen, first...)

	// Keep calling across two access-token lifetimes: Run refreshes ahead
	// of expiry, and no request is ever refused.
	refusals := rs.Refusals()
	deadline := time.Now().Add(14 * time.Second)
	for time.Now().Before(deadline) {
		if got, err := whoami(t, g, rs, "alice"); err != nil || got != "you are alice" {
			t.Fatalf("alice's whoami during refreshes = %q, %v", got, err)
		}
		seen = append(seen, tokensOf(t, g, "alice")...)
		time.Sleep(500 * time.Millisecond)
	}
	if n := rs.Refusals() - refusals; n != 0 {
		t.Errorf("%d requests were refused while tokens were refreshed", n)
	}
	if s := as.Stats(t); s.Refreshes < 2 {
		t.Errorf("the authorization server saw %d refreshes, want at least 2", s.Refreshes)
	}
	if got := tokensOf(t, g, "alice"); got[0] == first[0] || got[1] == first[1] {
		t.Error("the access or refresh token did not change (rotation)")
	}
	if g.events.count(oauth.EventRefreshed, "alice") < 2 {
		t.Errorf("refreshed events for alice: %d", g.events.count(oauth.EventRefreshed, "alice"))
	}

	// Each user's requests carried only tokens issued to that user.
	for _, u := range rs.Uses() {
		if u.Sub != "alice" && u.Sub != "bob" {
			t.Errorf("a request came with a token of %q", u.Sub)
		}
	}

	// The authorization server revokes alice's grant: her next refresh is
	// refused, the connection expires, bob's goes on.
	as.Revoke(t, "alice")
	waitFor(t, 15*time.Second, "alice's connection to expire", func() bool { return g.events.count(oauth.EventExpired, "alice") == 1 })
	st, _ = g.m.Status(context.Background(), "alice", "fx")
	if !st.Expired || st.Connected || st.Error == "" {
		t.Errorf("alice's status after revocation = %+v", st)
	}
	if _, err := g.m.Token(context.Background(), "alice", "fx"); switchboard.ErrorCode(err) != switchboard.EUNAUTHORIZED {
		t.Errorf("alice's token after expiry: %v, want EUNAUTHORIZED", err)
	}
	if got, err := whoami(t, g, rs, "bob"); err != nil || got != "you are bob" {
		t.Fatalf("bob's whoami after alice's expiry = %q, %v", got, err)
	}
	if g.events.count(oauth.EventExpired, "bob") != 0 {
		t.Error("bob's connection expired too")
	}

	// No token value ever reached the log, at debug level.
	logs := g.logs.String()
	for _, tok := range append(seen, tokensOf(t, g, "bob")...) {
		if tok != "" && strings.Contains(logs, tok) {
			t.Fatalf("a token is in the log")
		}
	}
	if !strings.Contains(logs, "oauth token refreshed") || !strings.Contains(logs, "oauth connection expired") {
		t.Errorf("the log lacks the refresh and expiry lines:\n%s", logs)
	}
}

// TestCallbackChecks: a callback with another browser's binding, a replayed
// state, or an unknown state is refused, and nothing is stored.
func TestCallbackChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{})
	rs := oauthtest.StartRS(t, as, nil)
	g := MustGateway(t, oauth.Config{Resource: rs.URL})

	// Mallory starts a flow for herself and lures alice's browser to the
	// callback: alice's browser has no binding cookie for it.
	mallory := oauthtest.NewBrowser()
	mallory.Client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), g.srv.URL+"/callback") {
			return http.ErrUseLastResponse // stop before the callback
		}
		return nil
	}
	resp, _ := mallory.Authorize(t, g.srv.URL+"/connect?user=bob", "bob", "bob-pw")
	cb := resp.Header.Get("Location")
	if !strings.HasPrefix(cb, g.srv.URL+"/callback?") {
		t.Fatalf("expected a redirect to the callback, got HTTP %d %q", resp.StatusCode, cb)
	}
	alice := oauthtest.NewBrowser()
	r2, err := alice.Client.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusBadRequest {
		t.Errorf("callback in another browser: HTTP %d, want 400", r2.StatusCode)
	}
	// The state was used up: even the right browser cannot complete it now.
	if _, _, err := g.m.Complete(context.Background(), mustQuery(t, cb), "whatever"); switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Errorf("replayed state: %v, want EINVALID", err)
	}
	if _, err := g.store.Token(context.Background(), "bob", "fx"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("a refused callback stored a token: %v", err)
	}
}

func mustQuery(tb testing.TB, u string) map[string][]string {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return req.URL.Query()
}

func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
