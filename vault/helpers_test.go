package vault_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// MustOpen opens (creating) a vault in a fresh temp dir and closes it at cleanup.
func MustOpen(tb testing.TB) (*vault.Vault, string, vault.Key) {
	tb.Helper()
	key := vault.GenerateKey()
	path := filepath.Join(tb.TempDir(), vault.DefaultFileName)
	return MustOpenPath(tb, path, key, vault.Options{}), path, key
}

// MustOpenPath opens the vault at path with key and closes it at cleanup.
func MustOpenPath(tb testing.TB, path string, key vault.Key, opts vault.Options) *vault.Vault {
	tb.Helper()
	v, err := openVault(path, key, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = v.Close() })
	return v
}

// openVault opens the bbolt store at path (waiting up to lock for another
// process's lock; default bolt.DefaultLockTimeout) and the vault in it; the
// vault's Close closes the store.
func openVault(path string, key vault.Key, opts vault.Options, lock ...time.Duration) (*vault.Vault, error) {
	so := bolt.Options{ReadOnly: opts.ReadOnly}
	if len(lock) > 0 {
		so.LockTimeout = lock[0]
	}
	st, err := bolt.Open(path, so)
	if err != nil {
		return nil, err
	}
	opts.CloseStore = true
	return vault.Open(context.Background(), st, key, opts)
}

// storeKey is the flat key of a bucket path below the top-level bucket:
// parts joined with switchboard.StoreKeySep.
func storeKey(keyPath []string) string { return strings.Join(keyPath, switchboard.StoreKeySep) }

// canary returns a unique value that must never appear in output or the file.
func canary(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "CANARY_" + hex.EncodeToString(b)
}

// rawUpdate edits the closed vault file directly with bbolt.
func rawUpdate(tb testing.TB, path string, fn func(tx *bbolt.Tx) error) {
	tb.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: bolt.DefaultLockTimeout})
	if err != nil {
		tb.Fatalf("raw open: %v", err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		tb.Fatalf("raw update: %v", err)
	}
}

// rawGet returns a copy of the value at bucket, key parts… in the closed
// vault file.
func rawGet(tb testing.TB, path string, keyPath ...string) []byte {
	tb.Helper()
	var out []byte
	rawUpdate(tb, path, func(tx *bbolt.Tx) error {
		out = append([]byte(nil), tx.Bucket([]byte(keyPath[0])).Get([]byte(storeKey(keyPath[1:])))...)
		return nil
	})
	if out == nil {
		tb.Fatalf("raw get %v: absent", keyPath)
	}
	return out
}

// rawPut stores value at bucket, key parts… in the closed vault file.
func rawPut(tb testing.TB, path string, value []byte, keyPath ...string) {
	tb.Helper()
	rawUpdate(tb, path, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(keyPath[0]))
		if err != nil {
			return err
		}
		return b.Put([]byte(storeKey(keyPath[1:])), value)
	})
}

// fakeRedactor records every value registered with it.
type fakeRedactor struct {
	mu     sync.Mutex
	values map[string]bool
}

func (r *fakeRedactor) Add(v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = map[string]bool{}
	}
	r.values[v] = true
}

func (r *fakeRedactor) has(v string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.values[v]
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
