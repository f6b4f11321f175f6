package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard/vault"
)

// runBin runs the real switchboard binary with -c config, the vault key in its
// environment and stdin, and returns its stdout, stderr and exit code.
func runBin(tb testing.TB, config, keyB64, stdin string, args ...string) (string, string, int) {
	tb.Helper()
	cmd := exec.Command(filepath.Join(binDir, "switchboard"), append([]string{"-c", config}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), vault.EnvKey + "=" + keyB64}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("running switchboard %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

const internalKeysConfig = `
listen: 127.0.0.1:0
data_dir: ./data
providers:
  a:
    command: BIN/testprovider
    env:
      A_TOKEN: ${secret:A_TOKEN}
services:
  cron: {allowed_provider_prefixes: [a]}
`

// TestInternalKeysOutOfReachOfSecretCommands drives the real binary offline
// and online: the gateway's own keys are not listed, cannot be set, removed or
// referenced, and service tokens keep working across restarts.
func TestInternalKeysOutOfReachOfSecretCommands(t *testing.T) {
	g, keyB64 := vaultGateway(t, internalKeysConfig, map[string]string{"A_TOKEN": "canary-a-41c0"}, nil)
	cfg := g.ConfigPath
	refused := func(when string, args ...string) {
		t.Helper()
		_, stderr, code := runBin(t, cfg, keyB64, "attacker-value\n", args...)
		want := `secret name "SWITCHBOARD_SERVICE_SIGNING_KEY" is reserved: names starting with SWITCHBOARD_ belong to the gateway's internal keys; choose another name`
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%s: switchboard %v = exit %d, stderr %q; want exit 1 and %q", when, args, code, stderr, want)
		}
	}
	listed := func(when string) string {
		t.Helper()
		out, stderr, code := runBin(t, cfg, keyB64, "", "secret", "list")
		if code != 0 {
			t.Fatalf("%s: secret list: exit %d: %s", when, code, stderr)
		}
		if strings.Contains(strings.ToUpper(out), "SWITCHBOARD_") || !strings.Contains(out, "A_TOKEN") {
			t.Errorf("%s: secret list shows internal keys or lacks A_TOKEN:\n%s", when, out)
		}
		return out
	}

	// Offline: the CLI opens the vault itself.
	refused("offline", "secret", "set", "SWITCHBOARD_SERVICE_SIGNING_KEY")
	refused("offline", "secret", "rm", "SWITCHBOARD_SERVICE_SIGNING_KEY")
	listed("offline")

	// Online: the same commands go through the running gateway's admin socket.
	g.mustOpen(t)
	g.waitReady(t)
	tok := g.serviceToken(t, "cron")
	refused("online", "secret", "set", "SWITCHBOARD_SERVICE_SIGNING_KEY")
	refused("online", "secret", "rm", "SWITCHBOARD_SERVICE_SIGNING_KEY")
	listed("online")
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	// The next start works (the old code failed with `illegal base64 data`), and
	// the token issued before still authenticates.
	g2 := &gateway{Main: NewMain(cfg), dir: g.dir, log: &syncBuffer{}}
	g2.Stderr, g2.Getenv = g2.log, g.Getenv
	g2.mustOpen(t)
	defer g2.Close()
	g2.waitReady(t)
	resp := post(t, g2.URL()+"/mcp/internal", "", tok, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("service token issued before the restart: status %d, want 200", resp.StatusCode)
	}

	// A provider cannot reference an internal key: validate names file and line.
	bad := strings.Replace(internalKeysConfig, "${secret:A_TOKEN}", "${secret:SWITCHBOARD_SERVICE_SIGNING_KEY}", 1)
	badPath := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(badPath, []byte(strings.ReplaceAll(bad, "BIN", binDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runBin(t, badPath, keyB64, "", "validate")
	want := badPath + `:8: provider "a": env A_TOKEN: secret name "SWITCHBOARD_SERVICE_SIGNING_KEY" is reserved`
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("validate = exit %d, %q; want exit 1 and %q", code, stderr, want)
	}
}
