package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	sbbolt "github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

// damagedVaultConfig runs one provider whose first act is to create a marker
// file, so a test can tell whether any provider process was ever spawned.
const damagedVaultConfig = `
listen: 127.0.0.1:0
data_dir: ./data
providers:
  a:
    command: /bin/sh
    args: ["-c", "touch MARKER; exec BIN/testprovider"]
    env:
      A_TOKEN: ${secret:A_TOKEN}
`

// TestDamagedVaultFileStopsServeWithOneSentence runs the real binary on a real
// vault file damaged in each way a disk, a copy or an operator can damage it.
// `switchboard serve` (and an offline CLI command) must print the one
// documented sentence and exit 1 before any provider starts, instead of dying
// of SIGBUS with a goroutine dump (truncated), or silently starting over with
// an empty vault (zero length).
func TestDamagedVaultFileStopsServeWithOneSentence(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary once per damage")
	}
	marker := filepath.Join(t.TempDir(), "provider-spawned")
	cfg := strings.ReplaceAll(damagedVaultConfig, "MARKER", marker)
	g, keyB64 := vaultGateway(t, cfg, map[string]string{"A_TOKEN": "canary-a-0d3f"}, nil)
	// One real run, so the file holds what a gateway writes (users, internal keys).
	g.mustOpen(t)
	g.waitReady(t)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatalf("the provider did not run on the good vault: %v", err)
	}
	dbPath := filepath.Join(g.dir, "data", sbbolt.FileName)
	good, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	needs := boltSize(t, dbPath)
	ps := 4096
	garbage := make([]byte, len(good))
	_, _ = rand.Read(garbage)
	flip := func(offsets ...int) []byte {
		b := append([]byte(nil), good...)
		for _, o := range offsets {
			b[o] ^= 0xff
		}
		return b
	}
	tests := []struct {
		name   string
		file   []byte
		args   []string
		reason string
	}{
		{"truncated to 10000 bytes", good[:10000], []string{"serve"},
			fmt.Sprintf("truncated: 10000 bytes, the database needs %d", needs)},
		{"truncated, offline secret list", good[:10000], []string{"secret", "list"},
			fmt.Sprintf("truncated: 10000 bytes, the database needs %d", needs)},
		{"zero length", nil, []string{"serve"}, "the file is empty"},
		{"garbage", garbage, []string{"serve"}, fmt.Sprintf("not a vault: no database header in its %d bytes", len(good))},
		{"wrong magic", flip(16, ps+16), []string{"serve"}, fmt.Sprintf("not a vault: no database header in its %d bytes", len(good))},
		{"both meta pages torn", flip(16+48, ps+16+48), []string{"serve"}, "both database header pages are corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(dbPath, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(binDir, "switchboard"), append([]string{"-c", g.ConfigPath}, tt.args...)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), vault.EnvKey + "=" + keyB64}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("exit: %v, want exit status 1", err)
			}
			want := "switchboard: vault file " + dbPath + " is damaged (" + tt.reason + "): restore it from a backup (see docs/secrets.md, Backups)\n"
			if stderr.String() != want {
				t.Errorf("stderr:\n%s\nwant exactly:\n%s", clipOutput(stderr.String()), want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("a provider process was spawned")
				_ = os.Remove(marker)
			}
			if now, _ := os.ReadFile(dbPath); !bytes.Equal(now, tt.file) {
				t.Error("the damaged file was changed")
			}
		})
	}
}

// boltSize returns the size a bbolt file's current transaction needs: its
// high-water mark times its page size.
func boltSize(tb testing.TB, path string) int64 {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var n int64
	_ = db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// clipOutput keeps a goroutine dump readable in a failure message.
func clipOutput(s string) string {
	if len(s) > 1500 {
		return s[:1500] + "\n…"
	}
	return s
}
