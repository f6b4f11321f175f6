package main

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

// vaultGateway writes cfg into a fresh dir, stores secrets in its vault under a
// fixed key, and returns a gateway (not opened) that reads that key from its
// environment, like production.
func vaultGateway(t *testing.T, cfg string, secrets map[string]string, env map[string]string) (*gateway, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg, "BIN", binDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	key := vault.GenerateKey()
	keyB64 := key.Encode()
	_ = os.MkdirAll(filepath.Join(dir, "data"), 0o700)
	st, err := bolt.Open(filepath.Join(dir, "data", bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(context.Background(), st, key, vault.Options{CloseStore: true})
	if err != nil {
		t.Fatal(err)
	}
	for k, val := range secrets {
		if err := v.Set(k, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	g := &gateway{Main: NewMain(path), dir: dir, log: &syncBuffer{}}
	g.Stderr = g.log
	g.Getenv = func(name string) string {
		if name == vault.EnvKey {
			return keyB64
		}
		return env[name]
	}
	return g, keyB64
}

func (g *gateway) mustOpen(t *testing.T) {
	t.Helper()
	if err := g.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v\n%s", err, g.log.String())
	}
	key, err := g.id.users.Add("t"+strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""), []string{"admin"})
	if err != nil {
		t.Fatal(err)
	}
	g.FirstAdminKey = key
}

const vaultConfig = `
listen: 127.0.0.1:0
data_dir: ./data
log: {level: trace}
providers:
  a:
    command: BIN/testprovider
    env:
      A_TOKEN: ${secret:A_TOKEN}
      FROM_ENV: ${env:GATEWAY_VISIBLE}
  b:
    command: BIN/testprovider
    env:
      B_TOKEN: ${secret:B_TOKEN}
  c:
    command: BIN/testprovider
    env:
      C_TOKEN: ${secret:NOT_SET}
`

func TestSecretsSurviveRestartAndStayIsolated(t *testing.T) {
	secrets := map[string]string{"A_TOKEN": "canary-a-5f1e9d", "B_TOKEN": "canary-b-83c2aa"}
	g, keyB64 := vaultGateway(t, vaultConfig, secrets, map[string]string{"GATEWAY_VISIBLE": "explicitly-passed", "GATEWAY_SECRET": "canary-gw-77aa01"})
	g.mustOpen(t)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	if got, _ := callText(t, c, "a__env", map[string]any{"name": "A_TOKEN"}); got != secrets["A_TOKEN"] {
		t.Errorf("a's A_TOKEN = %q", got)
	}
	envA, _ := callText(t, c, "a__env", nil)
	for _, leak := range []string{"canary-b-83c2aa", "canary-gw-77aa01", keyB64, "GATEWAY_SECRET", vault.EnvKey} {
		if strings.Contains(envA, leak) {
			t.Errorf("provider a's environment contains %q:\n%s", leak, envA)
		}
	}
	if !strings.Contains(envA, "FROM_ENV=explicitly-passed") || !strings.Contains(envA, "PATH=") {
		t.Errorf("provider a's environment lacks its declared or base variables:\n%s", envA)
	}
	for _, line := range strings.Split(envA, "\n") {
		name, _, _ := strings.Cut(line, "=")
		switch name {
		case "A_TOKEN", "FROM_ENV", "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "":
		default:
			t.Errorf("provider a has unexpected variable %s", name)
		}
	}
	// The provider whose secret is missing fails alone, with the reason.
	var cState switchboard.ProviderStatus
	for _, st := range g.health().Providers {
		if st.Provider == "c" {
			cState = st
		}
	}
	if cState.State != switchboard.StateFailed || cState.LastError != "missing secret NOT_SET" {
		t.Errorf("provider c = %+v, want failed: missing secret NOT_SET", cState)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	// Start again on the same data: the same value decrypts.
	g2 := &gateway{Main: NewMain(g.ConfigPath), dir: g.dir, log: &syncBuffer{}}
	g2.Stderr, g2.Getenv = g2.log, g.Getenv
	g2.mustOpen(t)
	defer g2.Close()
	g2.waitReady(t)
	c2 := MustConnect(t, g2.URL()+"/mcp", g2.admin())
	if got, _ := callText(t, c2, "b__env", map[string]any{"name": "B_TOKEN"}); got != secrets["B_TOKEN"] {
		t.Errorf("after restart b's B_TOKEN = %q", got)
	}

	// Setting a secret restarts only the providers that use it.
	pids := g2.pids(t)
	if _, err := g2.adminOps().Run(context.Background(), "secret.set", []byte(`{"name":"B_TOKEN","value":"`+base64.StdEncoding.EncodeToString([]byte("canary-b-rotated"))+`"}`)); err != nil {
		t.Fatal(err)
	}
	g2.waitReady(t)
	now := g2.pids(t)
	if now["a"] != pids["a"] || now["b"] == pids["b"] {
		t.Errorf("secret rotation restarted the wrong providers: %v → %v", pids, now)
	}
	if got, _ := callText(t, c2, "b__env", map[string]any{"name": "B_TOKEN"}); got != "canary-b-rotated" {
		t.Errorf("after rotation b's B_TOKEN = %q", got)
	}

	// Canaries appear in no log line, status page, health, metrics or audit
	// record, raw or base64, even at trace level.
	get := func(path string) string {
		_, body := g2.get(t, path, g2.admin())
		return body
	}
	g2.writeConfig(t, "providers: {broken\n") // a reload error, logged at error level
	g2.reload(t)
	audit1, _ := os.ReadFile(g.config().Audit.File)
	surfaces := map[string]string{
		"first log": g.log.String(), "second log": g2.log.String(),
		"/status": get("/status"), "/status json": get("/status?format=json"),
		"/healthz": get("/healthz"), "/metrics": get("/metrics"), "audit": string(audit1),
	}
	for _, canary := range []string{"canary-a-5f1e9d", "canary-b-83c2aa", "canary-b-rotated", "canary-gw-77aa01", keyB64} {
		forms := []string{canary, base64.StdEncoding.EncodeToString([]byte(canary))}
		for name, text := range surfaces {
			for _, f := range forms {
				if strings.Contains(text, f) {
					t.Errorf("%s contains a secret (%q)", name, f[:8])
				}
			}
		}
	}
}

func TestWrongVaultKeyStopsStartupWithOneSentence(t *testing.T) {
	g, _ := vaultGateway(t, vaultConfig, map[string]string{"A_TOKEN": "canary-wrong-key"}, nil)
	wrong := vault.GenerateKey().Encode()
	g.Getenv = func(name string) string {
		if name == vault.EnvKey {
			return wrong
		}
		return ""
	}
	start := time.Now()
	err := g.Open(context.Background())
	_ = g.Close()
	if err == nil {
		t.Fatal("Open with the wrong key succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing a wrong key took %v", d)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "vault key does not match this vault") || strings.Count(msg, ". ") > 0 || strings.Contains(msg, "\n") {
		t.Errorf("error = %q, want one plain sentence", msg)
	}
	if g.sup != nil || strings.Contains(g.log.String(), "provider spawned") {
		t.Error("a provider started despite the wrong key")
	}
	if strings.Contains(g.log.String(), "canary-wrong-key") || strings.Contains(msg, wrong) {
		t.Error("wrong-key path leaked a secret or the key")
	}
}
