package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
)

// MustOpen opens the store at path and closes it at cleanup.
func MustOpen(tb testing.TB, path string, opts bolt.Options) *bolt.Store {
	tb.Helper()
	st, err := bolt.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

// MustOpenTemp opens a new store in a temp dir.
func MustOpenTemp(tb testing.TB) (*bolt.Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), bolt.FileName)
	return MustOpen(tb, path, bolt.Options{}), path
}

func mustPut(tb testing.TB, st switchboard.Store, bucket, key, value string) {
	tb.Helper()
	err := st.Update(context.Background(), func(tx switchboard.StoreTx) error {
		return tx.Put(bucket, key, []byte(value))
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func keys(es []switchboard.StoreEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key+"="+string(e.Value))
	}
	return out
}

func TestGetListDelete(t *testing.T) {
	ctx := context.Background()
	st, _ := MustOpenTemp(t)
	before := time.Now().Add(-time.Second)
	for _, k := range []string{"a\x1f1", "a\x1f2", "ab", "b"} {
		mustPut(t, st, "things", k, "v"+k)
	}
	if _, err := st.Get(ctx, "things", "zzz"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Fatalf("Get of a missing key: %v, want ENOTFOUND", err)
	}
	if _, err := st.Get(ctx, "nobucket", "a"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Fatalf("Get in a missing bucket: %v, want ENOTFOUND", err)
	}
	got, err := st.List(ctx, "things", "a\x1f")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a\x1f1=va\x1f1", "a\x1f2=va\x1f2"}; len(got) != 2 || keys(got)[0] != want[0] || keys(got)[1] != want[1] {
		t.Fatalf("List(a\\x1f) = %q, want %q", keys(got), want)
	}
	if got[0].Updated.Before(before) || got[0].Updated.After(time.Now().Add(time.Second)) {
		t.Errorf("Updated = %v, want about now", got[0].Updated)
	}
	all, _ := st.List(ctx, "things", "")
	if len(all) != 4 || all[3].Key != "b" {
		t.Fatalf("List all = %q", keys(all))
	}
	err = st.Update(ctx, func(tx switchboard.StoreTx) error {
		if err := tx.DeletePrefix("things", "a"); err != nil {
			return err
		}
		return tx.Delete("things", "missing") // no error
	})
	if err != nil {
		t.Fatal(err)
	}
	if all, _ := st.List(ctx, "things", ""); len(all) != 1 || all[0].Key != "b" {
		t.Fatalf("after DeletePrefix(a): %q", keys(all))
	}
}

// TestUpdateIsAllOrNothing: an error from fn discards every write it made.
func TestUpdateIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	st, _ := MustOpenTemp(t)
	mustPut(t, st, "b", "keep", "1")
	boom := errors.New("boom")
	err := st.Update(ctx, func(tx switchboard.StoreTx) error {
		if err := tx.Put("b", "new", []byte("x")); err != nil {
			return err
		}
		if err := tx.Delete("b", "keep"); err != nil {
			return err
		}
		if v, err := tx.Get("b", "new"); err != nil || string(v) != "x" {
			t.Errorf("a transaction reads its own write: %q, %v", v, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if v, err := st.Get(ctx, "b", "keep"); err != nil || string(v) != "1" {
		t.Fatalf("rolled-back delete: %q, %v", v, err)
	}
	if _, err := st.Get(ctx, "b", "new"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Fatalf("rolled-back put is visible: %v", err)
	}
}

func TestReadOnlyAndLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), bolt.FileName)
	if _, err := bolt.Open(path, bolt.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only Open of a missing file succeeded")
	}
	st := MustOpen(t, path, bolt.Options{})
	mustPut(t, st, "b", "k", "v")
	if _, err := bolt.Open(path, bolt.Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, bolt.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "b", "k"); !errors.Is(err, bolt.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	ro := MustOpen(t, path, bolt.Options{ReadOnly: true})
	if v, err := ro.Get(ctx, "b", "k"); err != nil || string(v) != "v" {
		t.Fatalf("read-only Get: %q, %v", v, err)
	}
	if err := ro.Update(ctx, func(tx switchboard.StoreTx) error { return tx.Put("b", "k", nil) }); !errors.Is(err, bolt.ErrReadOnly) {
		t.Fatalf("read-only Update: %v, want ErrReadOnly", err)
	}
	if ro.Changes() != nil {
		t.Error("Changes of an embedded file is not nil")
	}
}

// TestOpenFlattensNestedBuckets: a file written before the Store existed kept
// connections in nested buckets; Open moves them under composite keys and
// keeps every byte of every value.
func TestOpenFlattensNestedBuckets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), bolt.FileName)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		flat, _ := tx.CreateBucket([]byte("users"))
		_ = flat.Put([]byte("alice"), []byte(`{"name":"alice"}`))
		conn, _ := tx.CreateBucket([]byte("vault.conn"))
		ub, _ := conn.CreateBucket([]byte("alice"))
		pb, _ := ub.CreateBucket([]byte("gh"))
		_ = pb.Put([]byte("record"), []byte("REC"))
		vals, _ := pb.CreateBucket([]byte("values"))
		return vals.Put([]byte("TOKEN"), []byte{0, 1, 2, 255})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	st := MustOpen(t, path, bolt.Options{})
	got, err := st.List(ctx, "vault.conn", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alice\x1fgh\x1frecord=REC", "alice\x1fgh\x1fvalues\x1fTOKEN=\x00\x01\x02\xff"}
	if len(got) != 2 || keys(got)[0] != want[0] || keys(got)[1] != want[1] {
		t.Fatalf("flattened = %q, want %q", keys(got), want)
	}
	if v, err := st.Get(ctx, "users", "alice"); err != nil || string(v) != `{"name":"alice"}` {
		t.Fatalf("flat bucket: %q, %v", v, err)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}
