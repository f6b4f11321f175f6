package oauthtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/oauthtest"
	"github.com/switchboard-mcp/switchboard/internal/redact"
	"github.com/switchboard-mcp/switchboard/oauth"
	"github.com/switchboard-mcp/switchboard/remote"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRemoteWithOAuth wires the two packages as the gateway will: each
// user's remote instance of a protected MCP server authenticates with that
// user's OAuth connection. Calls go through across token refreshes; a
// revoked grant ends one user's instance and leaves the other's; no token
// reaches a log or the status.
func TestRemoteWithOAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{AccessTTL: 6 * time.Second})
	rs := oauthtest.StartRS(t, as, nil)
	logs := &lockedBuffer{}
	red := redact.New()
	// Raw, not through the redactor: no token may be written at all.
	logger := zerolog.New(logs).Level(zerolog.DebugLevel)

	// The gateway's connect and callback routes.
	store := &oauth.MemoryStore{}
	mux := http.NewServeMux()
	gw := httptest.NewServer(mux)
	defer gw.Close()
	m, err := oauth.New(logger, oauth.Options{Store: store, RedirectURL: gw.URL + "/callback", Redactor: red})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetConfigs([]*oauth.Config{{Provider: "prot", Resource: rs.URL}}); err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("GET /connect", func(w http.ResponseWriter, r *http.Request) {
		f, err := m.Begin(r.Context(), r.URL.Query().Get("user"), "prot")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "b", Value: f.Binding, Path: "/callback", HttpOnly: true})
		http.Redirect(w, r, f.URL, http.StatusFound)
	})
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie("b")
		if c == nil {
			http.Error(w, "no binding", http.StatusBadRequest)
			return
		}
		if _, _, err := m.Complete(r.Context(), r.URL.Query(), c.Value); err != nil {
			http.Error(w, switchboard.ErrorMessage(err), http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("connected"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	for _, u := range []string{"alice", "bob"} {
		resp, body := oauthtest.NewBrowser().Authorize(t, gw.URL+"/connect?user="+u, u, oauthtest.Accounts[u])
		if resp.StatusCode != 200 || body != "connected" {
			t.Fatalf("connecting %s: %d %s", u, resp.StatusCode, body)
		}
	}

	rm := remote.New(logger, remote.Options{})
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = rm.StopAll(sctx)
	}()
	keys := map[string]switchboard.InstanceKey{}
	for _, u := range []string{"alice", "bob"} {
		keys[u] = switchboard.InstanceKey{Provider: "prot", User: u}
		spec := remote.Spec{Key: keys[u], URL: rs.URL, Auth: m.Authorizer(u, "prot"), Roots: true,
			Backoff: remote.BackoffPolicy{Base: 100 * time.Millisecond, Max: 500 * time.Millisecond, MaxFailures: 2}}
		if err := rm.Start(spec); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := rm.WaitReady(wctx, keys[u])
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	whoami := func(u string) (string, error) {
		up, ok := rm.Upstream(keys[u])
		if !ok {
			return "", switchboard.Errorf(switchboard.EUNAVAILABLE, "%s's instance is not running", u)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		res, err := up.Call(cctx, &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"whoami","arguments":{}}`)})
		if err != nil {
			return "", err
		}
		var r struct {
			Content []struct{ Text string } `json:"content"`
		}
		_ = json.Unmarshal(res, &r)
		return r.Content[0].Text, nil
	}

	refusals := rs.Refusals()
	deadline := time.Now().Add(13 * time.Second)
	for time.Now().Before(deadline) {
		for _, u := range []string{"alice", "bob"} {
			if got, err := whoami(u); err != nil || got != "you are "+u {
				t.Fatalf("%s's whoami = %q, %v", u, got, err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n := rs.Refusals() - refusals; n != 0 {
		t.Errorf("%d requests were refused across refreshes", n)
	}
	if s := as.Stats(t); s.Refreshes < 4 {
		t.Errorf("refreshes = %d, want at least 2 per user", s.Refreshes)
	}

	as.Revoke(t, "alice")
	// Alice's next call is refused (her access token died with the grant),
	// the refresh fails, her connection expires; bob carries on.
	_, err = whoami("alice")
	if switchboard.ErrorCode(err) != switchboard.EUNAUTHORIZED && switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("alice after revocation: %v", err)
	}
	waitFor(t, 10*time.Second, "alice's connection to expire", func() bool {
		st, _ := m.Status(context.Background(), "alice", "prot")
		return st.Expired
	})
	waitFor(t, 10*time.Second, "alice's instance to fail", func() bool {
		for _, st := range rm.Status() {
			if st.User == "alice" && st.State == switchboard.StateFailed {
				return true
			}
		}
		return false
	})
	if got, err := whoami("bob"); err != nil || got != "you are bob" {
		t.Fatalf("bob after alice's revocation = %q, %v", got, err)
	}
	for _, u := range rs.Uses() {
		if u.Sub != "alice" && u.Sub != "bob" {
			t.Errorf("a request with a token of %q", u.Sub)
		}
	}

	// No token anywhere: the log (at debug), the status, the stored error.
	bobTok, _ := store.Token(context.Background(), "bob", "prot")
	status, _ := json.Marshal(rm.Status())
	out := logs.String() + string(status)
	for _, tok := range []string{bobTok.AccessToken.Reveal(), bobTok.RefreshToken.Reveal()} {
		if tok == "" || strings.Contains(out, tok) {
			t.Fatalf("a token is in the log or status (or bob has none: %v)", tok == "")
		}
	}
	if !strings.Contains(out, "alice") || !strings.Contains(out, "expired") {
		t.Errorf("the log does not say alice's connection expired")
	}
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
