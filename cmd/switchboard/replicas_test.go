package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/store/postgres/pgtest"
	"github.com/switchboard-mcp/switchboard/vault"
)

const replicaConfig = `
listen: 127.0.0.1:0
data_dir: ./data
replica: REPLICA
store:
  postgres: {dsn_file: ./dsn, resync_interval: 500ms}
providers:
  a:
    command: BIN/testprovider
    env: {TOKEN: "${secret:TOKEN}"}
  p:
    command: BIN/testprovider
    scope: user
    connection: {secrets: [TOKEN], idle_timeout: 1h}
`

// mustOpenReplica serves replicaConfig as replica name on the database dsn,
// with the vault key keyB64 (every replica has the same).
func mustOpenReplica(t *testing.T, name, dsn, keyB64 string) *gateway {
	t.Helper()
	return mustOpenReplicaConfig(t, replicaConfig, name, dsn, keyB64)
}

// mustOpenReplicaConfig serves cfg (BIN and REPLICA replaced; a "dsn" file
// beside it holds dsn) as replica name with the vault key keyB64.
func mustOpenReplicaConfig(t *testing.T, cfg, name, dsn, keyB64 string) *gateway {
	t.Helper()
	dir := t.TempDir()
	cfg = strings.NewReplacer("BIN", binDir, "REPLICA", name).Replace(cfg)
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gateway{Main: NewMain(filepath.Join(dir, "gateway.yaml")), dir: dir, log: &syncBuffer{}}
	g.Stderr = g.log
	g.Getenv = func(k string) string {
		if k == vault.EnvKey {
			return keyB64
		}
		return ""
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatalf("Open %s: %v\n%s", name, err, g.log.String())
	}
	t.Cleanup(func() {
		_ = g.Close()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, g.log.String())
		}
	})
	return g
}

// TestReplicasShareThePostgreSQLStore: two gateways on one database. A
// secret set through one starts, then replaces, the provider that uses it on
// both; a user added through one authenticates on the other.
func TestReplicasShareThePostgreSQLStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	dsn := pgtest.Shared(t).CreateDB(t)
	key := vault.GenerateKey().Encode()
	g1 := mustOpenReplica(t, "r1", dsn, key)
	g2 := mustOpenReplica(t, "r2", dsn, key)
	ctx := context.Background()
	op := func(name string, args any) json.RawMessage {
		t.Helper()
		raw, _ := json.Marshal(args)
		res, err := g1.adminOps().Run(ctx, name, raw)
		if err != nil {
			t.Fatalf("%s on r1: %v", name, err)
		}
		out, _ := json.Marshal(res)
		return out
	}
	var kr keyResult
	if err := json.Unmarshal(op("user.add", userArgs{Name: "ann", Roles: []string{"admin"}}), &kr); err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{"Authorization": "Bearer " + kr.Key}
	waitFor(t, 5*time.Second, func() bool {
		code, _ := g2.get(t, "/status?format=json", ann)
		return code == http.StatusOK
	}, "r2 to accept the key r1 issued")

	setSecret := func(v string) {
		op("secret.set", map[string]string{"name": "TOKEN", "value": base64.StdEncoding.EncodeToString([]byte(v))})
	}
	tokenOn := func(g *gateway) string {
		c := MustConnect(t, g.URL()+"/mcp", ann)
		defer c.Close()
		txt, _ := callText(t, c, "a__env", map[string]any{"name": "TOKEN"})
		return txt
	}
	setSecret("first-value")
	for _, g := range []*gateway{g1, g2} {
		waitFor(t, 20*time.Second, func() bool { return g.pids(t)["a"] != 0 }, "a to start once its secret exists")
		if got := tokenOn(g); got != "first-value" {
			t.Fatalf("a's TOKEN = %q", got)
		}
	}
	before := g2.pids(t)["a"]
	setSecret("second-value")
	waitFor(t, 20*time.Second, func() bool { p := g2.pids(t)["a"]; return p != 0 && p != before }, "r2 to replace a with the new secret")
	if got := tokenOn(g2); got != "second-value" {
		t.Errorf("a's TOKEN on r2 after the change on r1 = %q", got)
	}
}

// replicaOps runs admin operations on one replica, as the CLI does through
// its admin socket.
type replicaOps struct {
	t *testing.T
	g *gateway
}

func (o replicaOps) run(name string, args any) json.RawMessage {
	o.t.Helper()
	raw, _ := json.Marshal(args)
	res, err := o.g.adminOps().Run(context.Background(), name, raw)
	if err != nil {
		o.t.Fatalf("%s: %v", name, err)
	}
	out, _ := json.Marshal(res)
	return out
}

func (o replicaOps) addUser(name string) map[string]string {
	o.t.Helper()
	var kr keyResult
	if err := json.Unmarshal(o.run("user.add", userArgs{Name: name, Roles: []string{"admin"}}), &kr); err != nil {
		o.t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + kr.Key}
}

// userPID is the pid of user's running instance of provider on g, or 0.
func (g *gateway) userPID(provider, user string) int {
	for _, s := range g.sup.Status() {
		if s.Provider == provider && s.User == user && s.State == switchboard.StateRunning {
			return s.PID
		}
	}
	return 0
}

// listenStream opens a subscriptions/listen stream (2026-07-28 era) of hdr
// on g and returns a channel closed when the gateway ends it.
func listenStream(t *testing.T, g *gateway, hdr map[string]string) <-chan struct{} {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, _ := http.NewRequest(http.MethodPost, g.URL()+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "subscriptions/listen")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("subscriptions/listen: %s: %s", resp.Status, b)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	return ended
}

// TestReplicasApplyEachOthersChanges: what one replica changes reaches what
// another runs, as its own change would. A connection replaced through r1
// restarts that user's instance on r2 with the new value, and only theirs;
// a connection removed through r1 stops it on r2; a key rotated through r1
// ends the user's listen streams on r2 (and the old key is refused there);
// a user removed through r1 has their instances on r2 stopped.
func TestReplicasApplyEachOthersChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	dsn := pgtest.Shared(t).CreateDB(t)
	key := vault.GenerateKey().Encode()
	g1 := mustOpenReplica(t, "r1", dsn, key)
	g2 := mustOpenReplica(t, "r2", dsn, key)
	r1 := replicaOps{t, g1}
	ann, bob := r1.addUser("ann"), r1.addUser("bob")
	connect := func(user, value string) {
		t.Helper()
		r1.run("connect", connArgs{User: user, Provider: "p", Values: map[string][]byte{"TOKEN": []byte(value)}})
	}
	connect("ann", "ann-1")
	connect("bob", "bob-1")
	waitFor(t, 5*time.Second, func() bool {
		c1, _ := g2.get(t, "/api/connections", ann)
		c2, _ := g2.get(t, "/api/connections", bob)
		return c1 == http.StatusOK && c2 == http.StatusOK
	}, "r2 to accept the keys r1 issued")
	tokenOn := func(g *gateway, hdr map[string]string) string {
		t.Helper()
		c := MustConnect(t, g.URL()+"/mcp", hdr)
		defer c.Close()
		var txt string
		waitFor(t, 10*time.Second, func() bool {
			toolNames(t, c) // a list starts the user's own instances
			res, err := tryCall(c, "p__env", map[string]any{"name": "TOKEN"})
			if err != nil || res.IsError {
				return false
			}
			for _, ct := range res.Content {
				if tc, ok := ct.(mcp.TextContent); ok {
					txt += tc.Text
				}
			}
			return true
		}, "the user's own instance of p")
		return txt
	}
	if got := tokenOn(g2, ann); got != "ann-1" {
		t.Fatalf("ann's TOKEN on r2 = %q", got)
	}
	if got := tokenOn(g2, bob); got != "bob-1" {
		t.Fatalf("bob's TOKEN on r2 = %q", got)
	}
	annPID, bobPID := g2.userPID("p", "ann"), g2.userPID("p", "bob")

	connect("ann", "ann-2")
	waitFor(t, 5*time.Second, func() bool { return g2.userPID("p", "ann") != annPID }, "r2 to stop ann's instance after r1 replaced her connection")
	if got := tokenOn(g2, ann); got != "ann-2" {
		t.Errorf("ann's TOKEN on r2 after r1 replaced her connection = %q", got)
	}
	if g2.userPID("p", "bob") != bobPID {
		t.Errorf("bob's instance on r2 was restarted by a change to ann's connection")
	}

	r1.run("disconnect", connArgs{User: "bob", Provider: "p"})
	waitFor(t, 5*time.Second, func() bool { return g2.userPID("p", "bob") == 0 }, "r2 to stop bob's instance after r1 removed his connection")

	ended := listenStream(t, g2, ann)
	r1.run("user.rotate", userArgs{Name: "ann"})
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("ann's listen stream on r2 still open 5 s after r1 rotated her key")
	}
	if code, _ := g2.get(t, "/api/connections", ann); code != http.StatusUnauthorized {
		t.Errorf("ann's old key on r2 after r1 rotated it: %d, want 401", code)
	}

	if g2.userPID("p", "ann") == 0 {
		t.Fatal("ann's instance on r2 is not running")
	}
	r1.run("user.rm", userArgs{Name: "ann"})
	waitFor(t, 5*time.Second, func() bool { return g2.userPID("p", "ann") == 0 }, "r2 to stop the instances of ann, removed on r1")
}

// TestAuditVerifyDirOfReplicas: each replica writes its own chain, every
// record naming the replica; `audit verify DIR` (through one replica's admin
// socket, with the shared audit key) checks a folder of both, one line per
// chain, and fails, naming the chain, when one record is altered.
func TestAuditVerifyDirOfReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	dsn := pgtest.Shared(t).CreateDB(t)
	key := vault.GenerateKey().Encode()
	g1 := mustOpenReplica(t, "r1", dsn, key)
	g2 := mustOpenReplica(t, "r2", dsn, key)
	r1 := replicaOps{t, g1}
	r1.run("secret.set", map[string]string{"name": "TOKEN", "value": base64.StdEncoding.EncodeToString([]byte("v"))})
	ann := r1.addUser("ann")
	dir := t.TempDir()
	for _, g := range []*gateway{g1, g2} {
		waitFor(t, 20*time.Second, func() bool { return g.pids(t)["a"] != 0 }, "a to start")
		waitFor(t, 5*time.Second, func() bool { code, _ := g.get(t, "/api/connections", ann); return code == http.StatusOK }, "ann's key")
		c := MustConnect(t, g.URL()+"/mcp", ann)
		callText(t, c, "a__env", map[string]any{"name": "TOKEN"})
		c.Close()
		file := g.config().Audit.File
		g.waitRecords(t, "the call's record", func(rs []audit.Record) bool {
			return slices.ContainsFunc(rs, func(r audit.Record) bool { return r.Type == audit.TypeToolCall })
		})
		for _, rec := range g.records(t) {
			if rec.Replica != g.config().Replica {
				t.Fatalf("%s: a record names replica %q: %+v", file, rec.Replica, rec)
			}
		}
		for _, f := range []string{file, file + ".head"} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, code := runCLI(t, "audit", "verify", dir, "--config", g1.ConfigPath)
	if code != 0 || !strings.Contains(out, "audit-r1.log (replica r1): ok: ") || !strings.Contains(out, "audit-r2.log (replica r2): ok: ") {
		t.Fatalf("audit verify DIR: exit %d, want 0 and one ok line per replica\n%s", code, out)
	}

	f := filepath.Join(dir, "audit-r2.log")
	b, _ := os.ReadFile(f)
	altered := strings.Replace(string(b), `"outcome":"ok"`, `"outcome":"error"`, 1)
	if altered == string(b) {
		t.Fatalf("no ok outcome in %s", b)
	}
	if err := os.WriteFile(f, []byte(altered), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = runCLI(t, "audit", "verify", dir, "--config", g1.ConfigPath)
	if code != 1 || !strings.Contains(out, "audit-r2.log (replica r2): BROKEN") || !strings.Contains(out, "audit-r1.log (replica r1): ok: ") {
		t.Errorf("audit verify DIR with r2's log altered: exit %d, want 1 naming r2\n%s", code, out)
	}
	if out, code := runCLI(t, "audit", "verify", f, "--config", g1.ConfigPath); code != 1 || !strings.Contains(out, "is not a folder") {
		t.Errorf("audit verify FILE: exit %d\n%s", code, out)
	}
}
