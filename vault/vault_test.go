package vault_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	bbolt "go.etcd.io/bbolt"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

func TestRoundTrip(t *testing.T) {
	red := &fakeRedactor{}
	key := vault.GenerateKey()
	path := filepath.Join(t.TempDir(), vault.DefaultFileName)
	v := MustOpenPath(t, path, key, vault.Options{Redactor: red, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	key.Zero() // the vault keeps its own copy

	values := map[string][]byte{
		"GITHUB_TOKEN": []byte("ghp_" + strings.Repeat("x", 36)),
		"EMPTY":        {},
		"BINARY":       {0, 1, 2, 0xff, '\n'},
		"_LONG":        bytes.Repeat([]byte("a"), vault.MaxValueSize),
	}
	for name, val := range values {
		if err := v.Set(name, val); err != nil {
			t.Fatalf("Set %s: %v", name, err)
		}
	}
	for name, val := range values {
		got, err := v.Get(name)
		if err != nil {
			t.Fatalf("Get %s: %v", name, err)
		}
		if got.Reveal() != string(val) {
			t.Fatalf("Get %s: wrong value", name)
		}
		if len(val) > 0 && !red.has(string(val)) {
			t.Fatalf("Get %s: value not given to the redactor", name)
		}
	}
	got, err := v.Secret(context.Background(), "GITHUB_TOKEN")
	if err != nil || got.Reveal() != string(values["GITHUB_TOKEN"]) {
		t.Fatalf("Secret: %v", err)
	}

	// Overwrite replaces.
	if err := v.Set("GITHUB_TOKEN", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.Get("GITHUB_TOKEN"); got.Reveal() != "new" {
		t.Fatal("overwrite did not replace the value")
	}

	list, err := v.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range list {
		names = append(names, e.Name)
		if e.KeyID != "k1" || time.Since(e.UpdatedAt) > time.Minute || e.UpdatedAt.After(time.Now()) {
			t.Fatalf("entry %+v: want key k1 and a recent UpdatedAt", e)
		}
	}
	if strings.Join(names, ",") != "BINARY,EMPTY,GITHUB_TOKEN,_LONG" {
		t.Fatalf("List names = %v", names)
	}

	if err := v.Delete("EMPTY"); err != nil {
		t.Fatal(err)
	}
	// Survives a reopen.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := v.Get("GITHUB_TOKEN"); !errors.Is(err, vault.ErrClosed) {
		t.Fatalf("Get after Close: err = %v, want ErrClosed", err)
	}
}

func TestReopen(t *testing.T) {
	v, path, key := MustOpen(t)
	if err := v.Set("A", []byte("alpha")); err != nil {
		t.Fatal(err)
	}
	if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte("a-token")}); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v2 := MustOpenPath(t, path, key, vault.Options{})
	if got, err := v2.Get("A"); err != nil || got.Reveal() != "alpha" {
		t.Fatalf("Get after reopen: %v", err)
	}
	if got, err := v2.UserSecret(context.Background(), "alice", "gh", "TOKEN"); err != nil || got.Reveal() != "a-token" {
		t.Fatalf("UserSecret after reopen: %v", err)
	}
	if ids, _ := v2.KeyIDs(); strings.Join(ids, ",") != "k1" {
		t.Fatalf("KeyIDs = %v, want [k1]", ids)
	}
	if err := v2.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	v, _, _ := MustOpen(t)
	ctx := context.Background()
	tests := []struct {
		name string
		err  func() error
		is   error
		code string
	}{
		{"get missing", func() error { _, err := v.Get("NOPE"); return err }, vault.ErrNotFound, switchboard.ENOTFOUND},
		{"secret missing", func() error { _, err := v.Secret(ctx, "NOPE"); return err }, vault.ErrNotFound, switchboard.ENOTFOUND},
		{"delete missing", func() error { return v.Delete("NOPE") }, vault.ErrNotFound, switchboard.ENOTFOUND},
		{"user secret no conn", func() error { _, err := v.UserSecret(ctx, "bob", "gh", "TOKEN"); return err }, vault.ErrNotFound, switchboard.ENOTFOUND},
		{"connection missing", func() error { _, err := v.Connection("bob", "gh"); return err }, vault.ErrNotFound, switchboard.ENOTFOUND},
		{"delete conn missing", func() error { return v.DeleteConnection("bob", "gh") }, vault.ErrNotFound, switchboard.ENOTFOUND},
		{"bad name digit", func() error { return v.Set("1ABC", nil) }, nil, switchboard.EINVALID},
		{"bad name dash", func() error { return v.Set("A-B", nil) }, nil, switchboard.EINVALID},
		{"bad name empty", func() error { _, err := v.Get(""); return err }, nil, switchboard.EINVALID},
		{"bad name long", func() error { return v.Set(strings.Repeat("A", 129), nil) }, nil, switchboard.EINVALID},
		{"too big", func() error { return v.Set("BIG", make([]byte, vault.MaxValueSize+1)) }, nil, switchboard.EINVALID},
		{"bad provider", func() error { return v.SetConnection("alice", "Bad_Prefix", nil) }, nil, switchboard.EINVALID},
		{"bad user", func() error { return v.SetConnection("", "gh", nil) }, nil, switchboard.EINVALID},
		{"bad user control", func() error { return v.SetConnection("a\nb", "gh", nil) }, nil, switchboard.EINVALID},
		{"bad conn secret name", func() error { return v.SetConnection("alice", "gh", map[string][]byte{"a b": nil}) }, nil, switchboard.EINVALID},
		{"canceled", func() error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			_, err := v.Secret(c, "X")
			return err
		}, context.Canceled, switchboard.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.is)
			}
			if got := switchboard.ErrorCode(err); got != tt.code {
				t.Fatalf("ErrorCode(%v) = %q, want %q", err, got, tt.code)
			}
		})
	}
	if got := switchboard.ErrorMessage(func() error { _, err := v.Get("NOPE"); return err }()); got != `secret "NOPE" not found` {
		t.Fatalf("ErrorMessage = %q", got)
	}
}

// TestConfidentiality: no form of a stored plaintext appears in the file, and the
// same plaintext sealed twice gives different ciphertexts.
func TestConfidentiality(t *testing.T) {
	v, path, key := MustOpen(t)
	c := canary(t)
	if err := v.Set("CANARY", []byte(c)); err != nil {
		t.Fatal(err)
	}
	if err := v.Set("CANARY2", []byte(c)); err != nil {
		t.Fatal(err)
	}
	if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte(c)}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(); err != nil { // old pages with the previous ciphertexts stay in the file too
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	file := readFile(t, path)
	raw, _ := base64.StdEncoding.DecodeString(key.Encode())
	for what, needle := range map[string]string{
		"raw":       c,
		"base64":    base64.StdEncoding.EncodeToString([]byte(c)),
		"base64url": base64.RawURLEncoding.EncodeToString([]byte(c)),
		"hex":       hex.EncodeToString([]byte(c)),
		"HEX":       strings.ToUpper(hex.EncodeToString([]byte(c))),
		"key raw":   string(raw),
		"key b64":   key.Encode(),
		"key hex":   hex.EncodeToString(raw),
	} {
		if bytes.Contains(file, []byte(needle)) {
			t.Errorf("file contains the %s form of a secret", what)
		}
	}
	a, b := rawGet(t, path, "vault.secret", "CANARY"), rawGet(t, path, "vault.secret", "CANARY2")
	if bytes.Equal(a[len(a)-len(c)-16:], b[len(b)-len(c)-16:]) {
		t.Fatal("same plaintext gave the same ciphertext")
	}
}

func TestNonceUnique(t *testing.T) {
	v, _, _ := MustOpen(t)
	seen := map[string]bool{}
	for range 50 {
		if err := v.Set("SAME", []byte("same value")); err != nil {
			t.Fatal(err)
		}
		stored, err := v.Store().Get(context.Background(), "vault.secret", "SAME")
		if err != nil {
			t.Fatal(err)
		}
		nonce := string(stored[12:24]) // version, id len, "k1", 8-byte time
		ct := string(stored[24:])
		if seen[nonce] || seen[ct] {
			t.Fatal("nonce or ciphertext repeated")
		}
		seen[nonce], seen[ct] = true, true
	}
}

func TestFileMode(t *testing.T) {
	v, path, key := MustOpen(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	MustOpenPath(t, path, key, vault.Options{})
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after reopen = %v, want tightened to 0600", fi.Mode().Perm())
	}
}

// TestWrongKey: a wrong key fails fast, with one plain sentence, and leaves the
// file byte-for-byte unchanged.
func TestWrongKey(t *testing.T) {
	v, path, key := MustOpen(t)
	if err := v.Set("A", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, path)
	start := time.Now()
	_, err := openVault(path, vault.GenerateKey(), vault.Options{})
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("wrong key took %v, want well under 2s", elapsed)
	}
	if !errors.Is(err, vault.ErrWrongKey) {
		t.Fatalf("err = %v, want ErrWrongKey", err)
	}
	if want := "vault key does not match this vault (" + path + ")"; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	if !bytes.Equal(before, readFile(t, path)) {
		t.Fatal("a failed Open changed the file")
	}
	// Read-only too.
	if _, err := openVault(path, vault.GenerateKey(), vault.Options{ReadOnly: true}); !errors.Is(err, vault.ErrWrongKey) {
		t.Fatalf("read-only: err = %v, want ErrWrongKey", err)
	}
	// The right key still works.
	MustOpenPath(t, path, key, vault.Options{})
}

// TestLocked: a second opener fails within the lock timeout and the first is unaffected.
func TestLocked(t *testing.T) {
	v, path, key := MustOpen(t)
	if err := v.Set("A", []byte("a")); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		start := time.Now()
		v2, err := openVault(path, key, vault.Options{ReadOnly: ro})
		elapsed := time.Since(start)
		if err == nil {
			_ = v2.Close()
			t.Fatalf("read-only=%v: second Open succeeded", ro)
		}
		if !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), "vault is locked by another process (is switchboard serve running?)") {
			t.Fatalf("read-only=%v: err = %v, want ErrLocked", ro, err)
		}
		if elapsed > 3*time.Second { // default timeout 500ms; generous for a loaded box
			t.Fatalf("read-only=%v: second Open took %v", ro, elapsed)
		}
	}
	if got, err := v.Get("A"); err != nil || got.Reveal() != "a" {
		t.Fatalf("first vault affected: %v", err)
	}
	if err := v.Set("B", []byte("b")); err != nil {
		t.Fatalf("first vault affected: %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	key := vault.GenerateKey()
	path := filepath.Join(dir, vault.DefaultFileName)
	if _, err := openVault(path, key, vault.Options{ReadOnly: true}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: err = %v", err)
	}
	// A file with other packages' buckets but no vault yet.
	rawUpdate(t, path, func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err })
	if _, err := openVault(path, key, vault.Options{ReadOnly: true}); !errors.Is(err, vault.ErrUninitialized) {
		t.Fatalf("read-only open of an uninitialized file: err = %v", err)
	}
	v := MustOpenPath(t, path, key, vault.Options{})
	if err := v.Set("A", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	r1 := MustOpenPath(t, path, key, vault.Options{ReadOnly: true})
	r2 := MustOpenPath(t, path, key, vault.Options{ReadOnly: true}) // shared lock
	for _, r := range []*vault.Vault{r1, r2} {
		if got, err := r.Get("A"); err != nil || got.Reveal() != "a" {
			t.Fatalf("read-only Get: %v", err)
		}
		if err := r.Set("B", nil); err == nil {
			t.Fatal("read-only Set succeeded")
		}
	}
}

func TestRotate(t *testing.T) {
	v, path, key := MustOpen(t)
	ctx := context.Background()
	if err := v.Set("OLD", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte("alice-token"), "ORG": []byte("acme")}); err != nil {
		t.Fatal(err)
	}
	before, _ := v.List()
	n, err := v.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("Rotate re-encrypted %d entries, want 3", n)
	}
	if ids, _ := v.KeyIDs(); strings.Join(ids, ",") != "k2" {
		t.Fatalf("KeyIDs after rotate = %v, want [k2] (old key retired)", ids)
	}
	after, _ := v.List()
	if after[0].KeyID != "k2" || !after[0].UpdatedAt.Equal(before[0].UpdatedAt) {
		t.Fatalf("after rotate: %+v (before %+v); want k2 and UpdatedAt kept", after[0], before[0])
	}
	if err := v.Set("NEW", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := v.Set("NEWER", []byte("newer")); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	v2 := MustOpenPath(t, path, key, vault.Options{})
	for name, want := range map[string]string{"OLD": "old", "NEW": "new", "NEWER": "newer"} {
		if got, err := v2.Get(name); err != nil || got.Reveal() != want {
			t.Fatalf("Get %s after rotations and reopen: %v", name, err)
		}
	}
	if got, err := v2.UserSecret(ctx, "alice", "gh", "TOKEN"); err != nil || got.Reveal() != "alice-token" {
		t.Fatalf("UserSecret: %v", err)
	}
	list, _ := v2.List()
	for _, e := range list {
		if e.KeyID != "k3" {
			t.Fatalf("%s has key %s, want k3", e.Name, e.KeyID)
		}
	}
	if ids, _ := v2.KeyIDs(); strings.Join(ids, ",") != "k3" {
		t.Fatalf("KeyIDs = %v, want [k3]", ids)
	}
	if err := v2.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestRotateAbortsOnCorruptEntry: one bad entry makes Rotate change nothing.
func TestRotateAbortsOnCorruptEntry(t *testing.T) {
	v, path, key := MustOpen(t)
	if err := v.Set("GOOD", []byte("good")); err != nil {
		t.Fatal(err)
	}
	if err := v.Set("BAD", []byte("bad")); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	bad := rawGet(t, path, "vault.secret", "BAD")
	bad[len(bad)-1] ^= 1
	rawPut(t, path, bad, "vault.secret", "BAD")

	v = MustOpenPath(t, path, key, vault.Options{})
	_, err := v.Rotate()
	if !errors.Is(err, vault.ErrCorrupt) || !strings.Contains(err.Error(), "secret/BAD") {
		t.Fatalf("Rotate err = %v, want ErrCorrupt naming secret/BAD", err)
	}
	if ids, _ := v.KeyIDs(); strings.Join(ids, ",") != "k1" {
		t.Fatalf("KeyIDs after failed rotate = %v, want [k1]", ids)
	}
	if got, err := v.Get("GOOD"); err != nil || got.Reveal() != "good" {
		t.Fatalf("GOOD after failed rotate: %v", err)
	}
	// The next successful rotation must not reuse a key id from the rolled-back one.
	if err := v.Delete("BAD"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestRekey(t *testing.T) {
	v, path, oldKey := MustOpen(t)
	if err := v.Set("A", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(backup, readFile(t, path), 0o600); err != nil {
		t.Fatal(err)
	}
	v = MustOpenPath(t, path, oldKey, vault.Options{})
	newKey := vault.GenerateKey()
	if err := v.Rekey(newKey); err != nil {
		t.Fatal(err)
	}
	// Still usable in this process, for reads, writes and rotation.
	if err := v.Set("B", []byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := openVault(path, oldKey, vault.Options{}); !errors.Is(err, vault.ErrWrongKey) {
		t.Fatalf("old key after rekey: err = %v, want ErrWrongKey", err)
	}
	v = MustOpenPath(t, path, newKey, vault.Options{})
	for name, want := range map[string]string{"A": "a", "B": "b"} {
		if got, err := v.Get(name); err != nil || got.Reveal() != want {
			t.Fatalf("Get %s with new key: %v", name, err)
		}
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
	// A backup taken before the rekey opens with the key of its time, not the new one.
	if _, err := openVault(backup, newKey, vault.Options{}); !errors.Is(err, vault.ErrWrongKey) {
		t.Fatalf("backup with new key: err = %v, want ErrWrongKey", err)
	}
	b := MustOpenPath(t, backup, oldKey, vault.Options{ReadOnly: true})
	if got, err := b.Get("A"); err != nil || got.Reveal() != "a" {
		t.Fatalf("backup Get: %v", err)
	}
	if _, err := b.Get("B"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("backup has B: %v", err)
	}
	if err := v.Rekey(vault.Key{}); !errors.Is(err, vault.ErrInvalidKey) {
		t.Fatalf("Rekey(zero) err = %v", err)
	}
}

// TestConcurrentRotateRekey reads and writes while rotations and rekeys commit:
// no reader or writer may ever see a key it cannot use.
func TestConcurrentRotateRekey(t *testing.T) {
	v, path, _ := MustOpen(t)
	ctx := context.Background()
	for _, n := range []string{"A", "B", "C"} {
		if err := v.Set(n, []byte("v-"+n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte("t")}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errc := make(chan error, 16)
	var ops atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch (w + i) % 3 {
				case 0:
					var got switchboard.Secret
					if got, err = v.Get("A"); err == nil && got.Reveal() != "v-A" {
						err = errors.New("wrong value for A")
					}
				case 1:
					_, err = v.UserSecret(ctx, "alice", "gh", "TOKEN")
				case 2:
					err = v.Set("W", []byte("w"))
				}
				if err != nil {
					errc <- err
					return
				}
				ops.Add(1)
			}
		}()
	}
	var key vault.Key
	for i := range 40 {
		// Let the workers get some operations in between admin commits.
		for start := ops.Load(); ops.Load() < start+5; {
			runtime.Gosched()
			if len(errc) > 0 {
				break
			}
		}
		if i%2 == 0 {
			if _, err := v.Rotate(); err != nil {
				t.Error(err)
			}
		} else {
			key = vault.GenerateKey()
			if err := v.Rekey(key); err != nil {
				t.Error(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v = MustOpenPath(t, path, key, vault.Options{})
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestSharedFile: other packages keep their own buckets in the vault's file.
func TestSharedFile(t *testing.T) {
	v, path, key := MustOpen(t)
	if err := v.Store().Update(context.Background(), func(tx switchboard.StoreTx) error {
		return tx.Put("users", "alice", []byte("{}"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v = MustOpenPath(t, path, key, vault.Options{})
	if _, err := v.Store().Get(context.Background(), "users", "alice"); err != nil {
		t.Fatalf("users bucket lost: %v", err)
	}
}
