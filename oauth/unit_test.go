package oauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/oauth"
)

// fakeAS is a scripted authorization server for the cases a real one will
// not produce on demand: a wrong issuer in the response, a token endpoint
// that fails for a while.
type fakeAS struct {
	*httptest.Server
	mu        sync.Mutex
	token     func(form url.Values) (int, any) // the token endpoint's answer
	exchanges atomic.Int64
	refreshes atomic.Int64
	registers atomic.Int64
	cimd      atomic.Bool
}

func newFakeAS(t *testing.T) *fakeAS {
	f := &fakeAS{}
	n := 0
	f.token = func(form url.Values) (int, any) {
		f.mu.Lock()
		n++
		i := n
		f.mu.Unlock()
		return 200, map[string]any{"access_token": "access-" + string(rune('a'+i)) + "-0123456789", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "refresh-" + string(rune('a'+i)) + "-0123456789"}
	}
	mux := http.NewServeMux()
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": f.URL, "authorization_endpoint": f.URL + "/auth", "token_endpoint": f.URL + "/token",
			"registration_endpoint": f.URL + "/reg", "code_challenge_methods_supported": []string{"S256"},
			"authorization_response_iss_parameter_supported": true,
			"client_id_metadata_document_supported":          f.cimd.Load(),
		})
	})
	mux.HandleFunc("POST /reg", func(w http.ResponseWriter, r *http.Request) {
		f.registers.Add(1)
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"client_id": "dyn-1", "client_secret": "dyn-secret-0123", "token_endpoint_auth_method": "client_secret_basic"})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if id, secret, ok := r.BasicAuth(); !ok || id != "dyn-1" || secret != "dyn-secret-0123" {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "authorization_code":
			f.exchanges.Add(1)
			if r.PostForm.Get("code_verifier") == "" {
				w.WriteHeader(http.StatusBadRequest)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
				return
			}
		case "refresh_token":
			f.refreshes.Add(1)
		}
		f.mu.Lock()
		tok := f.token
		f.mu.Unlock()
		st, body := tok(r.PostForm)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		_ = json.NewEncoder(w).Encode(body)
	})
	return f
}

func (f *fakeAS) setToken(fn func(form url.Values) (int, any)) {
	f.mu.Lock()
	f.token = fn
	f.mu.Unlock()
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func MustManager(t *testing.T, as *fakeAS, clk *clock) (*oauth.Manager, *oauth.MemoryStore, *eventLog) {
	t.Helper()
	store := &oauth.MemoryStore{}
	events := &eventLog{}
	m, err := oauth.New(zerolog.New(zerolog.NewTestWriter(t)), oauth.Options{
		Store: store, RedirectURL: "http://127.0.0.1:1/callback", Now: clk.Now, OnEvent: events.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetConfigs([]*oauth.Config{{Provider: "fx", Issuer: as.URL}}); err != nil {
		t.Fatal(err)
	}
	return m, store, events
}

// begin starts a flow and returns its query (as the callback would get
// it, code included) and binding.
func begin(t *testing.T, m *oauth.Manager, user string) (url.Values, string) {
	t.Helper()
	f, err := m.Begin(context.Background(), user, "fx")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(f.URL)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") != f.State {
		t.Fatalf("authorization URL lacks PKCE or state: %s", f.URL)
	}
	return url.Values{"state": {f.State}, "code": {"the-code"}}, f.Binding
}

func TestIssuerAndState(t *testing.T) {
	as := newFakeAS(t)
	clk := &clock{now: time.Now()}
	m, store, _ := MustManager(t, as, clk)
	ctx := context.Background()

	for _, tc := range []struct {
		name    string
		edit    func(q url.Values, binding *string)
		advance time.Duration
		code    string
	}{
		{"another issuer", func(q url.Values, _ *string) { q.Set("iss", "https://evil.example") }, 0, switchboard.EINVALID},
		{"no issuer though promised", func(q url.Values, _ *string) {}, 0, switchboard.EINVALID},
		{"another browser", func(q url.Values, b *string) { q.Set("iss", as.URL); *b = "other" }, 0, switchboard.EFORBIDDEN},
		{"expired flow", func(q url.Values, _ *string) { q.Set("iss", as.URL) }, time.Hour, switchboard.EINVALID},
		{"an error from the server is not acted on without the issuer", func(q url.Values, _ *string) {
			q.Del("code")
			q.Set("error", "access_denied")
		}, 0, switchboard.EINVALID},
		{"access denied", func(q url.Values, _ *string) {
			q.Del("code")
			q.Set("error", "access_denied")
			q.Set("iss", as.URL)
		}, 0, switchboard.EUNAUTHORIZED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, binding := begin(t, m, "alice")
			tc.edit(q, &binding)
			clk.add(tc.advance)
			_, _, err := m.Complete(ctx, q, binding)
			if got := switchboard.ErrorCode(err); got != tc.code {
				t.Fatalf("Complete: %v (code %s), want %s", err, got, tc.code)
			}
		})
	}
	if as.exchanges.Load() != 0 {
		t.Errorf("%d codes were exchanged on refused callbacks", as.exchanges.Load())
	}
	if _, err := store.Token(ctx, "alice", "fx"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Fatalf("a refused callback stored a token: %v", err)
	}
	q, binding := begin(t, m, "alice")
	q.Set("iss", as.URL)
	if user, provider, err := m.Complete(ctx, q, binding); err != nil || user != "alice" || provider != "fx" {
		t.Fatalf("Complete = %s %s %v", user, provider, err)
	}
	if _, _, err := m.Complete(ctx, q, binding); switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Fatalf("replay: %v", err)
	}
}

func TestRefreshFailures(t *testing.T) {
	as := newFakeAS(t)
	clk := &clock{now: time.Now()}
	m, store, events := MustManager(t, as, clk)
	ctx := context.Background()
	q, binding := begin(t, m, "alice")
	q.Set("iss", as.URL)
	if _, _, err := m.Complete(ctx, q, binding); err != nil {
		t.Fatal(err)
	}
	first, err := m.Token(ctx, "alice", "fx")
	if err != nil {
		t.Fatal(err)
	}

	// Near expiry the token is refreshed before it is handed out.
	clk.add(59 * time.Minute)
	second, err := m.Token(ctx, "alice", "fx")
	if err != nil || second == first || as.refreshes.Load() != 1 {
		t.Fatalf("near expiry: %v, refreshes %d, same %v", err, as.refreshes.Load(), second == first)
	}
	stored, _ := store.Token(ctx, "alice", "fx")
	if stored.RefreshToken.Reveal() == "" || !strings.HasPrefix(stored.RefreshToken.Reveal(), "refresh-c") {
		t.Errorf("the rotated refresh token was not kept: %q", stored.RefreshToken.Reveal())
	}

	// A passing failure (503) keeps the grant; while the token is still
	// valid it is handed out.
	as.setToken(func(url.Values) (int, any) { return 503, map[string]string{"error": "temporarily_unavailable"} })
	clk.add(59 * time.Minute)
	if got, err := m.Token(ctx, "alice", "fx"); err != nil || got != second {
		t.Fatalf("with the token endpoint down: %v (same token %v)", err, got == second)
	}
	// Past expiry, the same failure is EUNAVAILABLE, not expiry.
	clk.add(2 * time.Minute)
	if _, err := m.Token(ctx, "alice", "fx"); switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("expired token, endpoint down: %v", err)
	}
	if events.count(oauth.EventExpired, "alice") != 0 {
		t.Fatal("a passing failure expired the connection")
	}

	// The server refuses the refresh token: the connection expires, once.
	as.setToken(func(url.Values) (int, any) { return 400, map[string]string{"error": "invalid_grant"} })
	if _, err := m.Token(ctx, "alice", "fx"); switchboard.ErrorCode(err) != switchboard.EUNAUTHORIZED {
		t.Fatalf("refused refresh: %v", err)
	}
	st, _ := m.Status(ctx, "alice", "fx")
	if !st.Expired || !strings.Contains(st.Error, "invalid_grant") {
		t.Errorf("status = %+v", st)
	}
	if _, err := m.Token(ctx, "alice", "fx"); switchboard.ErrorCode(err) != switchboard.EUNAUTHORIZED {
		t.Fatalf("after expiry: %v", err)
	}
	if n := events.count(oauth.EventExpired, "alice"); n != 1 {
		t.Errorf("%d expired events, want 1", n)
	}
	stored, _ = store.Token(ctx, "alice", "fx")
	if stored.AccessToken != "" || stored.RefreshToken != "" {
		t.Error("an expired grant keeps its tokens")
	}
}

func TestRejected(t *testing.T) {
	as := newFakeAS(t)
	clk := &clock{now: time.Now()}
	m, _, events := MustManager(t, as, clk)
	ctx := context.Background()
	q, binding := begin(t, m, "alice")
	q.Set("iss", as.URL)
	if _, _, err := m.Complete(ctx, q, binding); err != nil {
		t.Fatal(err)
	}
	auth := m.Authorizer("alice", "fx")
	h1, _ := auth.Authorization(ctx)
	// A 401 for the current token refreshes it.
	if err := auth.Rejected(ctx, h1, `Bearer error="invalid_token"`); err != nil {
		t.Fatal(err)
	}
	h2, _ := auth.Authorization(ctx)
	if h2 == h1 || as.refreshes.Load() != 1 {
		t.Fatalf("not refreshed: refreshes %d", as.refreshes.Load())
	}
	// A 401 for a token already replaced: retry with the new one, no
	// second refresh.
	if err := auth.Rejected(ctx, h1, ""); err != nil || as.refreshes.Load() != 1 {
		t.Fatalf("stale rejection: %v, refreshes %d", err, as.refreshes.Load())
	}
	// More scope needed: the user has to come back.
	if err := auth.Rejected(ctx, h2, `Bearer error="insufficient_scope", scope="admin"`); switchboard.ErrorCode(err) != switchboard.EUNAUTHORIZED {
		t.Fatalf("insufficient scope: %v", err)
	}
	if events.count(oauth.EventExpired, "alice") != 0 {
		t.Error("insufficient scope expired the connection")
	}
}

// TestClientChoice: a pre-registered client first, then the gateway's
// client ID metadata document where the server supports it, then one
// dynamic registration, kept for the next flow.
func TestClientChoice(t *testing.T) {
	ctx := context.Background()
	newM := func(as *fakeAS, cfg oauth.Config) *oauth.Manager {
		m, err := oauth.New(zerolog.New(zerolog.NewTestWriter(t)), oauth.Options{
			Store: &oauth.MemoryStore{}, RedirectURL: "http://127.0.0.1:1/callback",
			ClientMetadataURL: "https://gw.example.com/oauth/client.json",
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Provider, cfg.Issuer = "fx", as.URL
		if err := m.SetConfigs([]*oauth.Config{&cfg}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	clientID := func(m *oauth.Manager) string {
		f, err := m.Begin(ctx, "alice", "fx")
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(f.URL)
		return u.Query().Get("client_id")
	}

	as := newFakeAS(t)
	as.cimd.Store(true)
	if got := clientID(newM(as, oauth.Config{ClientID: "pre-1"})); got != "pre-1" {
		t.Errorf("pre-registered: client_id %q", got)
	}
	m := newM(as, oauth.Config{})
	if got := clientID(m); got != "https://gw.example.com/oauth/client.json" {
		t.Errorf("metadata document: client_id %q", got)
	}
	var doc map[string]any
	if err := json.Unmarshal(m.ClientMetadata(), &doc); err != nil || doc["client_id"] != "https://gw.example.com/oauth/client.json" ||
		doc["token_endpoint_auth_method"] != "none" {
		t.Errorf("client metadata document = %v, %v", doc, err)
	}
	if as.registers.Load() != 0 {
		t.Error("registered although a client was at hand")
	}
	as.cimd.Store(false)
	m = newM(as, oauth.Config{})
	for range 2 {
		if got := clientID(m); got != "dyn-1" {
			t.Errorf("registration: client_id %q", got)
		}
	}
	if n := as.registers.Load(); n != 1 {
		t.Errorf("%d registrations, want 1 (kept for the second flow)", n)
	}
}

// TestRefreshRefusedAfterAnotherRefresh: a refusal of a refresh token that
// was already replaced in the store (another replica refreshed first) does
// not expire the connection.
func TestRefreshRefusedAfterAnotherRefresh(t *testing.T) {
	as := newFakeAS(t)
	clk := &clock{now: time.Now()}
	m, store, events := MustManager(t, as, clk)
	ctx := context.Background()
	q, binding := begin(t, m, "alice")
	q.Set("iss", as.URL)
	if _, _, err := m.Complete(ctx, q, binding); err != nil {
		t.Fatal(err)
	}
	// Near expiry, this replica refreshes; meanwhile "another replica"
	// refreshed first: the store holds its new grant, and the authorization
	// server refuses the spent refresh token.
	clk.add(59 * time.Minute)
	other, _ := store.Token(ctx, "alice", "fx")
	other.AccessToken, other.RefreshToken = "access-other-0123456789", "refresh-other-0123456789"
	other.Obtained, other.Expiry = clk.Now(), clk.Now().Add(time.Hour)
	as.setToken(func(url.Values) (int, any) {
		if err := store.SaveToken(ctx, "alice", "fx", other); err != nil {
			t.Error(err)
		}
		return 400, map[string]string{"error": "invalid_grant"}
	})
	got, err := m.Token(ctx, "alice", "fx")
	if err != nil || got != "access-other-0123456789" {
		t.Fatalf("Token = %q, %v; want the other replica's token", got.Reveal(), err)
	}
	if events.count(oauth.EventExpired, "alice") != 0 {
		t.Error("expired although another replica had refreshed")
	}
}
