package oauth

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchboard-mcp/switchboard"
)

// WriteTokenFile writes tok to path for a provider process that reads its
// token from a file (token_file): the whole value, no newline, mode 0600,
// replaced atomically (a temporary file in the same directory renamed over
// it), so a reader never sees half a token. The directory must exist and be
// the instance's own.
func WriteTokenFile(path string, tok switchboard.Secret) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return fmt.Errorf("writing the token file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("writing the token file: %w", err)
	}
	if _, err := f.WriteString(tok.Reveal()); err != nil {
		f.Close()
		return fmt.Errorf("writing the token file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing the token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the token file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the token file: %w", err)
	}
	return nil
}
