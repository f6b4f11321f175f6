package deploy_test

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/internal/haproxytest"
)

const haproxyConfig = "../examples/haproxy/haproxy.cfg"

// replica stands in for a gateway: it answers with its name, and /readyz
// with 200 or 503.
type replica struct {
	name   string
	ready  atomic.Bool
	checks atomic.Int64
	srv    *http.Server
	ln     net.Listener
}

func startReplica(t *testing.T, name string) *replica {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, ln: ln}
	r.ready.Store(true)
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/readyz" {
			r.checks.Add(1)
			if !r.ready.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		_, _ = io.WriteString(w, name)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomB32(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b32.EncodeToString(b)[:n]
}

// apiKey has the gateway's layout: sb_ + 12-char id + _ + 52-char secret.
func apiKey(id string) string { return "sb_" + id + "_" + randomB32(52) }

// jwt is an unsigned-looking token with the given claims (the proxy decodes,
// never verifies).
func jwt(claims map[string]any) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString([]byte(randomB32(40)))
}

func route(t *testing.T, client *http.Client, url, token string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/mcp", strings.NewReader("{}"))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request through haproxy: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request through haproxy: %s %s", resp.Status, b)
	}
	return string(b)
}

// TestHAProxyRoutesByPrincipal runs the shipped haproxy.cfg in front of three
// stand-in replicas: each principal (API-key id, JWT sub) lands on one
// replica whatever else its credential holds; principals spread over all
// three; an unready replica's principals move and nobody else's do; a dead
// replica's principals are answered by another at once (retry on connection
// failure), before any health check notices.
func TestHAProxyRoutesByPrincipal(t *testing.T) {
	reps := []*replica{startReplica(t, "gw-1"), startReplica(t, "gw-2"), startReplica(t, "gw-3")}
	var servers []haproxytest.Server
	for _, r := range reps {
		servers = append(servers, haproxytest.Server{Name: r.name, Addr: r.ln.Addr().String()})
	}
	p := haproxytest.Start(t, haproxyConfig, servers)
	client := &http.Client{Timeout: 10 * time.Second}
	waitChecks := func(min int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for _, r := range reps {
			for r.checks.Load() < min {
				if time.Now().After(deadline) {
					t.Fatalf("%s got %d health checks in 20 s", r.name, r.checks.Load())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	waitChecks(2) // rise 2: every replica is up

	// API keys: the id decides, not the secret.
	const n = 60
	ids := make([]string, n)
	home := map[string]string{}
	perReplica := map[string]int{}
	for i := range ids {
		ids[i] = randomB32(12)
		home[ids[i]] = route(t, client, p.URL(), apiKey(ids[i]))
		perReplica[home[ids[i]]]++
		for range 3 {
			if got := route(t, client, p.URL(), apiKey(ids[i])); got != home[ids[i]] {
				t.Fatalf("key id %s went to %s, then (another secret) to %s", ids[i], home[ids[i]], got)
			}
		}
	}
	if len(perReplica) != 3 {
		t.Fatalf("%d principals all went to %v: no spreading", n, perReplica)
	}
	t.Logf("API-key principals per replica: %v", perReplica)

	// JWTs: the sub decides, not the rest of the token (a refreshed token).
	subHome := map[string]string{}
	for i := range 30 {
		sub := fmt.Sprintf("user-%d@example.com", i)
		first := route(t, client, p.URL(), jwt(map[string]any{"sub": sub, "iat": 1, "exp": 2}))
		again := route(t, client, p.URL(), jwt(map[string]any{"sub": sub, "iat": 1000, "exp": 5000, "email": sub}))
		if first != again {
			t.Fatalf("sub %s went to %s, then with a refreshed token to %s", sub, first, again)
		}
		subHome[sub] = first
	}

	// gw-2 turns unready: only its principals move.
	reps[1].ready.Store(false)
	before := reps[1].checks.Load()
	deadline := time.Now().Add(20 * time.Second)
	for reps[1].checks.Load() < before+3 { // fall 2, plus one
		if time.Now().After(deadline) {
			t.Fatal("no health checks of gw-2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	moved := 0
	for _, id := range ids {
		got := route(t, client, p.URL(), apiKey(id))
		switch {
		case home[id] == "gw-2" && got == "gw-2":
			t.Errorf("key %s still reaches unready gw-2", id)
		case home[id] == "gw-2":
			moved++
		case got != home[id]:
			t.Errorf("key %s of %s moved to %s when gw-2 went away: hashing is not consistent", id, home[id], got)
		}
	}
	t.Logf("%d principals of gw-2 moved; the others stayed", moved)
	reps[1].ready.Store(true)
	waitChecks(reps[1].checks.Load() + 3)
	for _, id := range ids {
		if got := route(t, client, p.URL(), apiKey(id)); got != home[id] {
			t.Errorf("after gw-2 came back, key %s reaches %s, want %s", id, got, home[id])
		}
	}

	// gw-3 dies (connections refused): its principals are answered by
	// another replica at once, before any health check marks it down.
	_ = reps[2].srv.Close()
	var wg sync.WaitGroup
	for _, id := range ids {
		if home[id] != "gw-3" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := route(t, client, p.URL(), apiKey(id)); got == "gw-3" {
				t.Errorf("key %s answered by dead gw-3", id)
			}
		}()
	}
	wg.Wait()
	for sub, h := range subHome {
		if got := route(t, client, p.URL(), jwt(map[string]any{"sub": sub})); h != "gw-3" && got != h {
			t.Errorf("sub %s of %s moved to %s when gw-3 died", sub, h, got)
		}
	}
}
