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
// migrates it transparently: the user's key authenticates, the secret and the
// connection reach their providers, the preference holds, the revoked service
// token stays refused and the other one still verifies (so the signing key
// survived).
func TestDataFromBeforeTheStoreKeepsWorking(t *testing.T) {
	var fx storeFixture
	raw, err := os.ReadFile(filepath.Join("testdata", "store-v1", "fixture.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
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
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(storeFixtureConfig, "BIN", binDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &gateway{Main: NewMain(path), dir: dir, log: &syncBuffer{}}
	g.Stderr = g.log
	g.Getenv = func(name string) string {
		if name == vault.EnvKey {
			return fx.VaultKey
		}
		return ""
	}
	if err := g.Open(t.Context()); err != nil {
		t.Fatalf("Open on the old file: %v\n%s", err, g.log.String())
	}
	t.Cleanup(func() { _ = g.Close() })
	g.waitReady(t)

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
