package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store"
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
	counts, err := store.Copy(ctx, dst, src, []string{"users", "vault", "empty"})
	if err != nil {
		t.Fatal(err)
	}
	if counts["users"] != 50 || counts["vault"] != 50 || counts["empty"] != 0 {
		t.Fatalf("counts %v", counts)
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
	if _, err := store.Copy(ctx, dst, src, []string{"users"}); switchboard.ErrorCode(err) != switchboard.ECONFLICT {
		t.Fatalf("copy into a non-empty store: %v, want ECONFLICT", err)
	}
	if _, err := dst.Get(ctx, "users", "late"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("the refused copy wrote: %v", err)
	}
}
