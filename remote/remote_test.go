package remote

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/switchboard-mcp/switchboard"
)

// eraServers serves the fixture in each era the gateway must speak, with
// mcp-go as the oracle: its streamable HTTP server in the stateless era
// (2026-07-28), the same server pinned to the session era, and its legacy
// HTTP+SSE server.
func eraServers(t *testing.T) []struct {
	name string
	url  string
	era  era
} {
	t.Helper()
	modern := MustServe(t, server.NewStreamableHTTPServer(newFixtureServer()))
	session := MustServe(t, server.NewStreamableHTTPServer(newFixtureServer(),
		server.WithStateful(true), server.WithStreamableHTTPProtocolVersions("2025-11-25", "2025-06-18")))
	sse := server.NewSSEServer(newFixtureServer())
	legacy := MustServe(t, sse)
	return []struct {
		name string
		url  string
		era  era
	}{
		{"stateless", modern.URL + "/mcp", eraStateless},
		{"session", session.URL + "/mcp", eraSession},
		{"legacy-sse", legacy.URL + "/sse", eraLegacy},
	}
}

func TestEras(t *testing.T) {
	for _, tc := range eraServers(t) {
		t.Run(tc.name, func(t *testing.T) {
			var cats catalogs
			m := MustManager(t, Options{OnCatalog: cats.on})
			key := switchboard.InstanceKey{Provider: "fx"}
			up := MustStart(t, m, Spec{Key: key, URL: tc.url})
			if got := up.(*limited).cl.era; got != tc.era {
				t.Fatalf("era = %v, want %v", got, tc.era)
			}
			cat := cats.get(key)
			names := toolNames(cat)
			for _, want := range []string{"echo", "progress", "ask", "slow", "log", "query"} {
				if !slices.Contains(names, want) {
					t.Errorf("catalog lacks tool %q: %v", want, names)
				}
			}
			if tc.era == eraStateless && slices.Contains(names, "badheader") {
				t.Errorf("a tool with an invalid x-mcp-header was offered: %v", names)
			}
			if len(cat.Prompts) != 1 || len(cat.Resources) != 1 {
				t.Errorf("prompts %d, resources %d; want 1 and 1", len(cat.Prompts), len(cat.Resources))
			}

			t.Run("echo", func(t *testing.T) {
				got, err := callTool(t, up, nil, nil, "echo", `{"text":"hi"}`)
				if err != nil || got != "echo: hi" {
					t.Fatalf("echo = %q, %v", got, err)
				}
			})
			t.Run("progress reaches the caller with its own token", func(t *testing.T) {
				c := &testCaller{key: "s1"}
				if _, err := callTool(t, up, c, json.RawMessage(`"client-tok"`), "progress", `{}`); err != nil {
					t.Fatal(err)
				}
				notes, _ := c.snapshot()
				if len(notes) != 2 {
					t.Fatalf("notes = %v, want two progress notifications", notes)
				}
				for _, n := range notes {
					if !strings.HasPrefix(n, "notifications/progress ") || !strings.Contains(n, `"progressToken":"client-tok"`) {
						t.Errorf("note %q lacks the client's token", n)
					}
				}
			})
			t.Run("elicitation goes to the caller", func(t *testing.T) {
				if tc.era == eraLegacy {
					t.Skip("mcp-go's HTTP+SSE server cannot send requests; TestLegacyServerRequests covers the legacy path")
				}
				c := &testCaller{key: "s1", answer: func(method string, params json.RawMessage) (json.RawMessage, error) {
					return json.RawMessage(`{"action":"accept","content":{"name":"ada"}}`), nil
				}}
				got, err := callTool(t, up, c, nil, "ask", `{}`)
				if err != nil {
					t.Fatal(err)
				}
				if got != `accept {"name":"ada"}` {
					t.Errorf("ask = %q", got)
				}
				_, reqs := c.snapshot()
				if len(reqs) != 1 || !strings.HasPrefix(reqs[0], "elicitation/create ") || !strings.Contains(reqs[0], "who are you?") {
					t.Errorf("requests = %v", reqs)
				}
			})
			t.Run("log message reaches the caller", func(t *testing.T) {
				c := &testCaller{key: "s1"}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if tc.era != eraStateless {
					if _, err := up.Call(ctx, &switchboard.Request{Method: "logging/setLevel", Params: json.RawMessage(`{"level":"debug"}`)}); err != nil {
						t.Fatal(err)
					}
				}
				_, err := up.Call(ctx, &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"log","arguments":{}}`), Caller: c, LogLevel: "debug"})
				if err != nil {
					t.Fatal(err)
				}
				eventually(t, 5*time.Second, "the log message", func() bool {
					notes, _ := c.snapshot()
					return len(notes) == 1 && strings.HasPrefix(notes[0], "notifications/message ") && strings.Contains(notes[0], "careful")
				})
			})
			t.Run("x-mcp-header", func(t *testing.T) {
				got, err := callTool(t, up, nil, nil, "query", `{"sql":"select 1","region":"eu-west 1"}`)
				if err != nil || got != "ran in eu-west 1" {
					t.Fatalf("query = %q, %v", got, err)
				}
			})
			t.Run("prompt and resource", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				res, err := up.Call(ctx, &switchboard.Request{Method: "prompts/get", Params: json.RawMessage(`{"name":"greet"}`)})
				if err != nil || !strings.Contains(string(res), `"hi"`) {
					t.Fatalf("prompts/get = %s, %v", res, err)
				}
				res, err = up.Call(ctx, &switchboard.Request{Method: "resources/read", Params: json.RawMessage(`{"uri":"fixture://readme"}`)})
				if err != nil || !strings.Contains(string(res), "read me") {
					t.Fatalf("resources/read = %s, %v", res, err)
				}
			})
			t.Run("unknown tool is the server's error", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				res, err := up.Call(ctx, &switchboard.Request{Method: "nope/nope"})
				var rpcErr *switchboard.RPCError
				if !errors.As(err, &rpcErr) || rpcErr.Code != -32601 {
					t.Fatalf("nope/nope = %s, %v; want a -32601 RPCError", res, err)
				}
			})
		})
	}
}

// TestListChanged: a tool added at the server reaches the catalog.
func TestListChanged(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []server.StreamableHTTPOption
	}{
		{"stateless", nil},
		{"session", []server.StreamableHTTPOption{server.WithStateful(true), server.WithStreamableHTTPProtocolVersions("2025-11-25")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixtureServer()
			srv := MustServe(t, server.NewStreamableHTTPServer(fx, tc.opts...))
			var cats catalogs
			m := MustManager(t, Options{OnCatalog: cats.on})
			key := switchboard.InstanceKey{Provider: "fx"}
			MustStart(t, m, Spec{Key: key, URL: srv.URL + "/mcp"})
			// The background stream may take a moment to open.
			deadline := time.Now().Add(15 * time.Second)
			for i := 0; ; i++ {
				name := "added" + string(rune('a'+i%26))
				fx.AddTool(mcp.NewTool(name), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return mcp.NewToolResultText("new"), nil
				})
				ok := false
				for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
					if slices.Contains(toolNames(cats.get(key)), name) {
						ok = true
						break
					}
				}
				if ok {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the added tool never reached the catalog: %v", toolNames(cats.get(key)))
				}
			}
		})
	}
}

// TestSessionGoneReinitializes: a server that forgets its sessions (a
// restart) answers 404, and the next call makes a new session and succeeds.
func TestSessionGoneReinitializes(t *testing.T) {
	newSrv := func() http.Handler {
		return server.NewStreamableHTTPServer(newFixtureServer(), server.WithStateful(true), server.WithStreamableHTTPProtocolVersions("2025-11-25"))
	}
	var h swapHandler
	h.set(newSrv())
	srv := MustServe(t, &h)
	m := MustManager(t, Options{})
	key := switchboard.InstanceKey{Provider: "fx"}
	up := MustStart(t, m, Spec{Key: key, URL: srv.URL + "/mcp"})
	before, _ := up.(*limited).cl.session()
	h.set(newSrv()) // the old sessions are gone
	got, err := callTool(t, up, nil, nil, "echo", `{"text":"again"}`)
	if err != nil || got != "echo: again" {
		t.Fatalf("echo after the restart = %q, %v", got, err)
	}
	after, _ := up.(*limited).cl.session()
	if after == before || after == "" {
		t.Errorf("session %q → %q: want a new one", before, after)
	}
}

// TestReconnect: a remote provider that goes away shows backoff, then
// failed, and comes back on its own when the server does.
func TestReconnect(t *testing.T) {
	addr := freePort(t)
	start := func() *http.Server {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		s := &http.Server{Handler: server.NewStreamableHTTPServer(newFixtureServer())}
		go func() { _ = s.Serve(ln) }()
		return s
	}
	hs := start()
	var events []string
	var evMu = make(chan struct{}, 1)
	evMu <- struct{}{}
	m := MustManager(t, Options{OnEvent: func(e Event) {
		<-evMu
		events = append(events, e.Kind)
		evMu <- struct{}{}
	}})
	key := switchboard.InstanceKey{Provider: "fx"}
	MustStart(t, m, Spec{Key: key, URL: "http://" + addr + "/mcp", HealthInterval: 100 * time.Millisecond, Backoff: fastBackoff})

	_ = hs.Close()
	eventually(t, 10*time.Second, "backoff", func() bool {
		return state(m, key) == switchboard.StateBackoff || state(m, key) == switchboard.StateFailed
	})
	eventually(t, 10*time.Second, "failed", func() bool { return state(m, key) == switchboard.StateFailed })
	if _, ok := m.Upstream(key); ok {
		t.Error("a failed instance still hands out an upstream")
	}
	hs = start()
	defer hs.Close()
	eventually(t, 10*time.Second, "running again", func() bool { return state(m, key) == switchboard.StateRunning })
	up, ok := m.Upstream(key)
	if !ok {
		t.Fatal("no upstream after coming back")
	}
	if got, err := callTool(t, up, nil, nil, "echo", `{"text":"back"}`); err != nil || got != "echo: back" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	<-evMu
	got := strings.Join(events, ",")
	evMu <- struct{}{}
	// The server's going is noticed either by a failed health check or by
	// its stream breaking first, whichever comes first.
	if !strings.Contains(got, EventUnhealthy+",") && !strings.Contains(got, EventDisconnect+",") {
		t.Errorf("events %s lack %s or %s", got, EventUnhealthy, EventDisconnect)
	}
	for _, want := range []string{EventRestart, EventFailed, EventReady} {
		if !strings.Contains(got, want) {
			t.Errorf("events %s lack %s", got, want)
		}
	}
}

// TestCallLimits: call timeouts, the concurrency limit and the queue.
func TestCallLimits(t *testing.T) {
	srv := MustServe(t, server.NewStreamableHTTPServer(newFixtureServer()))
	m := MustManager(t, Options{})
	key := switchboard.InstanceKey{Provider: "fx"}
	up := MustStart(t, m, Spec{Key: key, URL: srv.URL + "/mcp", Limits: Limits{CallTimeout: 300 * time.Millisecond, MaxConcurrent: 1, MaxQueue: -1, MaxConsecutiveTimeouts: -1}})

	_, err := callTool(t, up, nil, nil, "slow", `{"ms":5000}`)
	if switchboard.ErrorCode(err) != switchboard.ETIMEOUT {
		t.Fatalf("slow call: %v, want ETIMEOUT", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := callTool(t, up, nil, nil, "slow", `{"ms":250}`)
		done <- err
	}()
	eventually(t, 5*time.Second, "a call in flight", func() bool { return up.(*limited).gate.Active() == 1 })
	if _, err := callTool(t, up, nil, nil, "echo", `{"text":"x"}`); switchboard.ErrorCode(err) != switchboard.EOVERLOADED {
		t.Errorf("second call: %v, want EOVERLOADED", err)
	}
	if err := <-done; err != nil {
		t.Errorf("first call: %v", err)
	}
}

// TestTimeoutsReconnect: calls that time out in a row drop the connection
// and a new one is made.
func TestTimeoutsReconnect(t *testing.T) {
	srv := MustServe(t, server.NewStreamableHTTPServer(newFixtureServer()))
	m := MustManager(t, Options{})
	key := switchboard.InstanceKey{Provider: "fx"}
	up := MustStart(t, m, Spec{Key: key, URL: srv.URL + "/mcp", Limits: Limits{CallTimeout: 100 * time.Millisecond, MaxConsecutiveTimeouts: 2}, Backoff: fastBackoff})
	for range 2 {
		if _, err := callTool(t, up, nil, nil, "slow", `{"ms":2000}`); switchboard.ErrorCode(err) != switchboard.ETIMEOUT {
			t.Fatalf("slow: %v", err)
		}
	}
	eventually(t, 5*time.Second, "a reconnect", func() bool {
		for _, st := range m.Status() {
			if st.Restarts > 0 && st.State == switchboard.StateRunning {
				return true
			}
		}
		return false
	})
}

// fakeAuth is an Authorizer that hands out "Bearer tok-N" and moves to the
// next N when told its token was rejected.
type fakeAuth struct {
	n        atomic.Int64
	rejected atomic.Int64
	expired  atomic.Bool
}

func (a *fakeAuth) Authorization(ctx context.Context) (string, error) {
	if a.expired.Load() {
		return "", switchboard.Errorf(switchboard.EUNAUTHORIZED, "connection expired")
	}
	return "Bearer tok-" + string(rune('0'+a.n.Load())), nil
}

func (a *fakeAuth) Rejected(ctx context.Context, sent, challenge string) error {
	a.rejected.Add(1)
	if !strings.Contains(challenge, "resource_metadata=") {
		return switchboard.Errorf(switchboard.EUNAUTHORIZED, "no challenge")
	}
	a.n.Add(1)
	return nil
}

// bearer wraps h: only "Bearer <want()>" passes; others get 401 with a
// challenge.
func bearer(h http.Handler, want func() string, seen *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+want() {
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="http://`+r.Host+`/.well-known/oauth-protected-resource/mcp"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TestAuthorizer: the Authorizer's header goes on every request; a 401 is
// handed to it and the request retried with the fresh token; a connection
// whose credentials expired does not come up.
func TestAuthorizer(t *testing.T) {
	var valid atomic.Value
	valid.Store("tok-0")
	var seen atomic.Int64
	srv := MustServe(t, bearer(server.NewStreamableHTTPServer(newFixtureServer()), func() string { return valid.Load().(string) }, &seen))
	auth := &fakeAuth{}
	m := MustManager(t, Options{})
	key := switchboard.InstanceKey{Provider: "fx", User: "alice"}
	up := MustStart(t, m, Spec{Key: key, URL: srv.URL + "/mcp", Auth: auth, Backoff: fastBackoff})
	if got, err := callTool(t, up, nil, nil, "echo", `{"text":"a"}`); err != nil || got != "echo: a" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	valid.Store("tok-1") // the server now wants the next token
	if got, err := callTool(t, up, nil, nil, "echo", `{"text":"b"}`); err != nil || got != "echo: b" {
		t.Fatalf("echo after rotation = %q, %v", got, err)
	}
	if auth.rejected.Load() == 0 {
		t.Error("the Authorizer was never told of the 401")
	}

	auth.expired.Store(true)
	_, err := callTool(t, up, nil, nil, "echo", `{"text":"c"}`)
	if switchboard.ErrorCode(err) != switchboard.EUNAUTHORIZED {
		t.Fatalf("call with expired credentials: %v, want EUNAUTHORIZED", err)
	}
	key2 := switchboard.InstanceKey{Provider: "fx", User: "bob"}
	if err := m.Start(Spec{Key: key2, URL: srv.URL + "/mcp", Auth: auth, Backoff: fastBackoff}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "failed", func() bool { return state(m, key2) == switchboard.StateFailed })
	for _, st := range m.Status() {
		if strings.Contains(st.LastError, "tok-") {
			t.Errorf("status shows a token: %q", st.LastError)
		}
	}
}

// TestCancel: a call whose caller gives up is cancelled at the server too:
// by closing its response stream (2026-07-28), or by
// notifications/cancelled (the session era).
func TestCancel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []server.StreamableHTTPOption
		legacy bool
	}{
		{"stateless", nil, false},
		{"session", []server.StreamableHTTPOption{server.WithStateful(true), server.WithStreamableHTTPProtocolVersions("2025-11-25")}, false},
		{"legacy-sse", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixtureServer()
			var started, cancelled atomic.Int64
			fx.AddTool(mcp.NewTool("wait"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				started.Add(1)
				select {
				case <-ctx.Done():
					cancelled.Add(1)
					return nil, ctx.Err()
				case <-time.After(30 * time.Second):
					return mcp.NewToolResultText("waited"), nil
				}
			})
			url := ""
			if tc.legacy {
				url = MustServe(t, server.NewSSEServer(fx)).URL + "/sse"
			} else {
				url = MustServe(t, server.NewStreamableHTTPServer(fx, tc.opts...)).URL + "/mcp"
			}
			m := MustManager(t, Options{})
			up := MustStart(t, m, Spec{Key: switchboard.InstanceKey{Provider: "fx"}, URL: url})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := up.Call(ctx, &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"wait","arguments":{}}`)})
				done <- err
			}()
			eventually(t, 5*time.Second, "the call to start", func() bool { return started.Load() == 1 })
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled call: %v", err)
			}
			eventually(t, 5*time.Second, "the server to see the cancellation", func() bool { return cancelled.Load() == 1 })
		})
	}
}

// TestReap: a user's instance no call reached for the idle time is
// stopped; one in use, and the shared one, are not.
func TestReap(t *testing.T) {
	srv := MustServe(t, server.NewStreamableHTTPServer(newFixtureServer()))
	m := MustManager(t, Options{})
	shared := switchboard.InstanceKey{Provider: "fx"}
	alice := switchboard.InstanceKey{Provider: "fx", User: "alice"}
	bob := switchboard.InstanceKey{Provider: "fx", User: "bob"}
	for _, k := range []switchboard.InstanceKey{shared, alice, bob} {
		MustStart(t, m, Spec{Key: k, URL: srv.URL + "/mcp"})
	}
	time.Sleep(300 * time.Millisecond)
	up, _ := m.Upstream(bob)
	if _, err := callTool(t, up, nil, nil, "echo", `{"text":"x"}`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n := m.Reap(ctx, "fx", 200*time.Millisecond); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	if m.Has(alice) || !m.Has(bob) || !m.Has(shared) {
		t.Errorf("after reaping: alice %v, bob %v, shared %v; want false, true, true", m.Has(alice), m.Has(bob), m.Has(shared))
	}
}
