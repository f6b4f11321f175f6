package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/store/postgres/pgtest"
	"github.com/switchboard-mcp/switchboard/store/storetest"
)

// TestCopy copies one store into an empty one, checks it byte for byte, and
// refuses to copy into a store that already holds state.
func TestCopy(t *testing.T) {
	srv := pgtest.Shared(t)
	src, dst := MustOpen(t, srv.CreateDB(t)), MustOpen(t, srv.CreateDB(t))
	ctx := context.Background()
	err := src.Update(ctx, func(tx switchboard.StoreTx) error {
		for i := range 50 {
			if err := tx.Put("users", fmt.Sprintf("u%02d", i), []byte(strings.Repeat("x", i))); err != nil {
				return err
			}
			if err := tx.Put("vault", "s"+"\x1f"+fmt.Sprint(i), []byte{0, byte(i), 0xff}); err != nil {
				return err
			}
		}
		return tx.Put("other", "not-copied", []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	counts, err := store.Copy(ctx, dst, src, store.CopyOptions{Buckets: []string{"users", "vault", "empty"}, Progress: func(l string) { lines = append(lines, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if counts["users"] != 50 || counts["vault"] != 50 || counts["empty"] != 0 {
		t.Fatalf("counts %v", counts)
	}
	if want := []string{"read 100 entries in 3 buckets; writing them in one transaction", "read back and compared 100 entries"}; !slices.Equal(lines, want) {
		t.Errorf("progress %q, want %q", lines, want)
	}
	for _, b := range []string{"users", "vault"} {
		want, _ := src.List(ctx, b, "")
		got, _ := dst.List(ctx, b, "")
		for i := range want {
			if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) {
				t.Fatalf("%s entry %d differs", b, i)
			}
		}
	}
	if _, err := dst.Get(ctx, "other", "not-copied"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("a bucket not named was copied: %v", err)
	}
	// A second copy would merge two states: refused, nothing written.
	storetest.MustPut(t, src, "users", "late", []byte("1"))
	if _, err := store.Copy(ctx, dst, src, store.CopyOptions{Buckets: []string{"users"}}); switchboard.ErrorCode(err) != switchboard.ECONFLICT {
		t.Fatalf("copy into a non-empty store: %v, want ECONFLICT", err)
	}
	if _, err := dst.Get(ctx, "users", "late"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("the refused copy wrote: %v", err)
	}
}

// TestCopyFromBoltLeavesNothingBehind: the bbolt file names its buckets, so
// a copy that was not told to take one of them (a bucket this version does
// not know) is refused with nothing written; told to take all, it copies
// the file into PostgreSQL.
func TestCopyFromBoltLeavesNothingBehind(t *testing.T) {
	src, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	storetest.MustPut(t, src, "users", "ann", []byte("a"))
	storetest.MustPut(t, src, "mystery", "x", []byte("?"))
	storetest.MustPut(t, src, "emptied", "y", []byte("-"))
	if err := src.Update(context.Background(), func(tx switchboard.StoreTx) error { return tx.Delete("emptied", "y") }); err != nil {
		t.Fatal(err)
	}
	dst := MustOpen(t, pgtest.Shared(t).CreateDB(t))
	ctx := context.Background()
	_, err = store.Copy(ctx, dst, src, store.CopyOptions{Buckets: []string{"users"}})
	if switchboard.ErrorCode(err) != switchboard.EINVALID || !strings.Contains(err.Error(), "mystery (1 entries)") || strings.Contains(err.Error(), "emptied") {
		t.Fatalf("copy leaving a bucket behind: %v, want EINVALID naming mystery only", err)
	}
	if es, _ := dst.List(ctx, "users", ""); len(es) != 0 {
		t.Fatalf("the refused copy wrote %d users", len(es))
	}
	counts, err := store.Copy(ctx, dst, src, store.CopyOptions{Buckets: []string{"users", "mystery"}})
	if err != nil || counts["users"] != 1 || counts["mystery"] != 1 {
		t.Fatalf("copy of every bucket: %v, %v", counts, err)
	}
}
