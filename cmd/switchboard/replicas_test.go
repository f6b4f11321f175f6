package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
`

// mustOpenReplica serves replicaConfig as replica name on the database dsn,
// with the vault key keyB64 (every replica has the same).
func mustOpenReplica(t *testing.T, name, dsn, keyB64 string) *gateway {
	t.Helper()
	dir := t.TempDir()
	cfg := strings.NewReplacer("BIN", binDir, "REPLICA", name).Replace(replicaConfig)
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
