package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/store/postgres/pgtest"
	"github.com/switchboard-mcp/switchboard/vault"
)

// testdata/store-v1 holds a data file written by the version before the
// switchboard.Store interface (connections in nested bbolt buckets, auth
// writing its buckets through vault.DB()), made by mkfixture.go.txt: a shared
// secret, alice's connection to a scope: user provider, alice (admin) and her
// API key, a hidden provider in her preferences, and two service tokens, one
// revoked.
type storeFixture struct {
	VaultKey     string `json:"vault_key"`
	APIKey       string `json:"api_key"`
	GoodToken    string `json:"good_token"`
	RevokedToken string `json:"revoked_token"`
	Expires      string `json:"expires"`
}

const storeFixtureConfig = `
listen: 127.0.0.1:0
data_dir: ./data
services:
  ci: {allowed_provider_prefixes: [shared]}
providers:
  shared:
    command: BIN/testprovider
    env: {SHARED_TOKEN: "${secret:SHARED_TOKEN}"}
  per:
    command: BIN/testprovider
    scope: user
    connection: {secrets: [TOKEN]}
  hidden:
    command: BIN/testprovider
`

// TestDataFromBeforeTheStoreKeepsWorking: a gateway started on that file
// migrates it transparently (checkStoreFixture).
func TestDataFromBeforeTheStoreKeepsWorking(t *testing.T) {
	fx := readStoreFixture(t)
	dir := storeFixtureDir(t, "")
	checkStoreFixture(t, openFixtureGateway(t, dir, fx), fx)
}

// TestStoreMigrateToPostgreSQL: `store migrate` copies that same file, from
// before the Store existed, into PostgreSQL, and a gateway serving the
// database finds everything; a second migrate into the now used database is
// refused and writes nothing; without store.postgres it says what to set.
func TestStoreMigrateToPostgreSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	fx := readStoreFixture(t)
	dsn := pgtest.Shared(t).CreateDB(t)
	dir := storeFixtureDir(t, "replica: r1\nstore:\n  postgres: {dsn_file: ./dsn}\n")
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	t.Setenv(vault.EnvKey, fx.VaultKey)
	out, code := runCLI(t, "store", "migrate", "--config", cfg)
	if code != 0 {
		t.Fatalf("store migrate: exit %d\n%s", code, out)
	}
	for _, want := range []string{"copying " + filepath.Join(dir, "data", "switchboard.db") + " into PostgreSQL",
		"writing them in one transaction", "read back and compared", "migrated ", "users 1", "apikeys 1", "vault.conn "} {
		if !strings.Contains(out, want) {
			t.Errorf("store migrate output lacks %q:\n%s", want, out)
		}
	}
	out, code = runCLI(t, "store", "migrate", "--config", cfg)
	if code != 1 || !strings.Contains(out, "the destination already holds") || !strings.Contains(out, "migrate into an empty store") {
		t.Errorf("a second migrate: exit %d, want 1 and the destination is not empty\n%s", code, out)
	}
	plain := storeFixtureDir(t, "")
	out, code = runCLI(t, "store", "migrate", "--config", filepath.Join(plain, "gateway.yaml"))
	if code != 1 || !strings.Contains(out, "name the database under store.postgres") {
		t.Errorf("migrate without store.postgres: exit %d\n%s", code, out)
	}

	// The file is no longer used: move it away, so nothing can come from it.
	if err := os.Rename(filepath.Join(dir, "data", "switchboard.db"), filepath.Join(dir, "switchboard.db.migrated")); err != nil {
		t.Fatal(err)
	}
	checkStoreFixture(t, openFixtureGateway(t, dir, fx), fx)
}

func readStoreFixture(t *testing.T) storeFixture {
	t.Helper()
	var fx storeFixture
	raw, err := os.ReadFile(filepath.Join("testdata", "store-v1", "fixture.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	return fx
}

// storeFixtureDir makes a gateway dir with the fixture's data file and
// storeFixtureConfig plus extra.
func storeFixtureDir(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join("testdata", "store-v1", "switchboard.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "switchboard.db"), db, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(storeFixtureConfig, "BIN", binDir)+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openFixtureGateway(t *testing.T, dir string, fx storeFixture) *gateway {
	t.Helper()
	g := &gateway{Main: NewMain(filepath.Join(dir, "gateway.yaml")), dir: dir, log: &syncBuffer{}}
	g.Stderr = g.log
	g.Getenv = func(name string) string {
		if name == vault.EnvKey {
			return fx.VaultKey
		}
		return ""
	}
	if err := g.Open(t.Context()); err != nil {
		t.Fatalf("Open: %v\n%s", err, g.log.String())
	}
	t.Cleanup(func() { _ = g.Close() })
	g.waitReady(t)
	return g
}

// checkStoreFixture checks that g serves what the fixture holds: the user's
// key authenticates, the secret and the connection reach their providers,
// the preference holds, the revoked service token stays refused and the
// other one still verifies (so the signing key survived).
func checkStoreFixture(t *testing.T, g *gateway, fx storeFixture) {
	t.Helper()

	alice := map[string]string{"Authorization": "Bearer " + fx.APIKey}
	c := MustConnect(t, g.URL()+"/mcp", alice)
	waitFor(t, 15*time.Second, func() bool { return strings.Contains(strings.Join(toolNames(t, c), ","), "per__env") }, "alice's own instance of per")
	if got, _ := callText(t, c, "shared__env", map[string]any{"name": "SHARED_TOKEN"}); !strings.Contains(got, "shared-value") {
		t.Errorf("the old shared secret did not reach its provider: %q", got)
	}
	if got, _ := callText(t, c, "per__env", map[string]any{"name": "TOKEN"}); !strings.Contains(got, "alice-conn-value") {
		t.Errorf("alice's old connection did not reach her instance: %q", got)
	}
	if names := strings.Join(toolNames(t, c), ","); strings.Contains(names, "hidden__") {
		t.Errorf("alice hid provider hidden before the upgrade, yet sees %s", names)
	}
	status, body := g.get(t, "/api/prefs", alice)
	if status != http.StatusOK || !strings.Contains(body, `"hidden"`) {
		t.Errorf("GET /api/prefs = %d %s", status, body)
	}

	expires, err := time.Parse(time.RFC3339, fx.Expires)
	if err != nil {
		t.Fatal(err)
	}
	if time.Now().After(expires.Add(-time.Hour)) {
		t.Skipf("the fixture's service tokens expire at %s: regenerate testdata/store-v1 with mkfixture.go.txt", fx.Expires)
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"good", fx.GoodToken, http.StatusOK},
		{"revoked", fx.RevokedToken, http.StatusUnauthorized},
	} {
		resp := post(t, g.URL()+"/mcp/internal", "", map[string]string{"Authorization": "Bearer " + tc.token}, initialize)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s service token from the old file: %s, want %d", tc.name, resp.Status, tc.want)
		}
	}
}
