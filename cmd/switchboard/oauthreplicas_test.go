package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/switchboard-mcp/switchboard/internal/oauthtest"
	"github.com/switchboard-mcp/switchboard/store/postgres/pgtest"
	"github.com/switchboard-mcp/switchboard/vault"
)

// TestOAuthAcrossReplicas: two replicas on one PostgreSQL store, one
// public address (auth.resource_url, served by r1). Ann connects through
// r1 and calls the remote provider through r2. When the authorization
// server revokes the grant and r1 finds out (ann's call there is refused
// and the refresh fails), r2 learns it from the store: the connection
// shows expired there, the tools go, and ann's remote instance on r2
// stops.
//
// Before that, the tokens live 6 seconds, and both replicas refresh ann's
// grant at the same computed instant, every 4 seconds: the authorization
// server rotates refresh tokens and revokes the whole grant when a spent one
// comes back. Over several refresh cycles, under the grant's lease in the
// store, exactly one replica refreshes each time: no refresh is refused,
// no call on either replica fails, and the connection stays good on both.
// (Without the lease, the two replicas spend one refresh token together:
// 4 runs of 4 saw a refused refresh at the first cycle.)
func TestOAuthAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and node")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{AccessTTL: 6 * time.Second})
	rs := oauthtest.StartRS(t, as, nil)
	dsn := pgtest.Shared(t).CreateDB(t)
	key := vault.GenerateKey().Encode()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cfg := `
listen: 127.0.0.1:LISTEN
data_dir: ./data
replica: REPLICA
store:
  postgres: {dsn_file: ./dsn, resync_interval: 500ms}
auth:
  resource_url: http://127.0.0.1:PORT/mcp
providers:
  prot:
    url: ` + rs.URL + `
    scope: user
    oauth: {}
`
	cfg = strings.ReplaceAll(cfg, "PORT", port)
	g1 := mustOpenReplicaConfig(t, strings.Replace(cfg, "LISTEN", port, 1), "r1", dsn, key)
	g2 := mustOpenReplicaConfig(t, strings.Replace(cfg, "LISTEN", "0", 1), "r2", dsn, key)
	ann := replicaOps{t, g1}.addUser("ann")
	waitFor(t, 5*time.Second, func() bool { code, _ := g2.get(t, "/api/connections", ann); return code == 200 }, "r2 to accept ann's key")

	g1.oauthConnect(t, ann, "prot", "alice")
	c2 := MustConnect(t, g2.URL()+"/mcp", ann)
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(strings.Join(toolNames(t, c2), ","), "prot__whoami") }, "ann's prot tools on r2")
	if got, err := oauthCall(c2, "prot__whoami"); err != nil || got != "you are alice" {
		t.Fatalf("ann's whoami on r2 = %q, %v", got, err)
	}
	c1 := MustConnect(t, g1.URL()+"/mcp", ann)
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(strings.Join(toolNames(t, c1), ","), "prot__whoami") }, "ann's prot tools on r1")
	if got, err := oauthCall(c1, "prot__whoami"); err != nil || got != "you are alice" {
		t.Fatalf("ann's whoami on r1 = %q, %v", got, err)
	}
	remoteUp := func(g *gateway) bool {
		for _, s := range g.rem.Status() {
			if s.Provider == "prot" && s.User == "ann" {
				return true
			}
		}
		return false
	}
	if !remoteUp(g2) {
		t.Fatal("ann's remote instance on r2 is not running")
	}

	const cycles = 5
	before := as.Stats(t)
	start := time.Now()
	deadline := start.Add(cycles*6*time.Second + 30*time.Second)
	calls := 0
	for st := before; st.Refreshes-before.Refreshes < cycles; st = as.Stats(t) {
		if st.RefreshFailures != before.RefreshFailures {
			t.Fatalf("after %d refreshes, %d refused: two replicas spent one refresh token", st.Refreshes-before.Refreshes, st.RefreshFailures-before.RefreshFailures)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d refreshes in %v; want %d", st.Refreshes-before.Refreshes, time.Since(start), cycles)
		}
		for i, c := range []*client.Client{c1, c2} {
			if got, err := oauthCall(c, "prot__whoami"); err != nil || got != "you are alice" {
				t.Fatalf("call %d (on r%d) after %d refreshes: whoami = %q, %v", calls, i+1, st.Refreshes-before.Refreshes, got, err)
			}
			calls++
		}
		time.Sleep(250 * time.Millisecond)
	}
	if st := as.Stats(t); st.RefreshFailures != before.RefreshFailures {
		t.Fatalf("%d refreshes refused", st.RefreshFailures-before.RefreshFailures)
	}
	for i, g := range []*gateway{g1, g2} {
		if _, body := g.get(t, "/api/connections", ann); strings.Contains(body, `"expired": true`) {
			t.Fatalf("ann's connection shows expired on r%d after the refreshes: %s", i+1, body)
		}
		if strings.Contains(g.log.String(), "oauth connection expired") {
			t.Fatalf("r%d expired ann's connection during the refreshes", i+1)
		}
	}
	t.Logf("%d refreshes (r1 made %d, r2 %d), %d calls on two replicas, none refused", as.Stats(t).Refreshes-before.Refreshes,
		strings.Count(g1.log.String(), "oauth token refreshed"), strings.Count(g2.log.String(), "oauth token refreshed"), calls)

	as.Revoke(t, "alice")
	if _, err := oauthCall(c1, "prot__whoami"); err == nil {
		t.Fatal("ann's call on r1 after the revocation succeeded")
	}
	waitFor(t, 10*time.Second, func() bool {
		_, body := g2.get(t, "/api/connections", ann)
		return strings.Contains(body, `"expired": true`)
	}, "ann's connection to show expired on r2")
	waitFor(t, 10*time.Second, func() bool { return !strings.Contains(strings.Join(toolNames(t, c2), ","), "prot__") }, "ann's prot tools to go on r2")
	waitFor(t, 10*time.Second, func() bool { return !remoteUp(g2) }, "ann's remote instance on r2 to stop")
}
