package vault_test

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

// rotatingStore runs hook once, right after the first read of bucket/key has
// been taken from the store and before it reaches the vault.
type rotatingStore struct {
	switchboard.Store
	bucket, key string
	once        sync.Once
	hook        func()
}

func (s *rotatingStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	b, err := s.Store.Get(ctx, bucket, key)
	if bucket == s.bucket && key == s.key {
		s.once.Do(s.hook)
	}
	return b, err
}

// TestReadOvertakenByRotate: a rotation that commits between a read and its
// decryption re-encrypts the value and retires the key it was read under.
// The read must get the value, not "unknown key id … corrupt".
func TestReadOvertakenByRotate(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), vault.DefaultFileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := &rotatingStore{Store: st, bucket: "vault.secret", key: "A"}
	v, err := vault.Open(context.Background(), rs, vault.GenerateKey(), vault.Options{CloseStore: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.Set("A", []byte("v-A")); err != nil {
		t.Fatal(err)
	}
	rotated := false
	rs.hook = func() {
		if _, err := v.Rotate(); err != nil {
			t.Error(err)
		}
		rotated = true
	}
	got, err := v.Get("A")
	if err != nil {
		t.Fatalf("Get after a rotation overtook the read: %v", err)
	}
	if !rotated || got.Reveal() != "v-A" {
		t.Fatalf("rotated %v, got %q", rotated, got.Reveal())
	}
}

// TestRotateLeavesTakenKeysIntact: a reader that took a data key from the
// cache may still be decrypting with it when a rotation retires it; the
// rotation must not zero it under the reader.
func TestRotateLeavesTakenKeysIntact(t *testing.T) {
	v, _, _ := MustOpen(t)
	if err := v.Set("A", []byte("v-A")); err != nil {
		t.Fatal(err)
	}
	dk := v.CachedKey("k1")
	if dk == nil {
		t.Fatal("no cached key k1")
	}
	want := bytes.Clone(dk)
	if _, err := v.Rotate(); err != nil {
		t.Fatal(err)
	}
	if v.CachedKey("k1") != nil {
		t.Error("k1 still cached after the rotation")
	}
	if !bytes.Equal(dk, want) {
		t.Fatal("the rotation wiped a data key a reader held")
	}
}
