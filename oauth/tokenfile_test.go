package oauth_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/oauth"
)

func TestWriteTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	for _, tok := range []string{"first-token-value", "second"} {
		if err := oauth.WriteTokenFile(path, switchboard.Secret(tok)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != tok {
			t.Fatalf("file = %q, %v; want %q", b, err, tok)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	if err := oauth.WriteTokenFile(filepath.Join(dir, "missing", "token"), "t"); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
