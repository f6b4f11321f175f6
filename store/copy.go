// Package store holds what is common to the switchboard.Store
// implementations (store/bolt, store/postgres): copying one store into
// another, for `switchboard store migrate`, and the conformance suite
// (store/storetest).
package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/switchboard-mcp/switchboard"
)

// CopyOptions configures Copy.
type CopyOptions struct {
	// Buckets are the buckets to copy: every bucket the packages that own
	// the state declare (auth.StoreBuckets, vault.StoreBuckets).
	Buckets []string
	// Progress, if set, is told what the copy is doing, one line at a time.
	Progress func(line string)
}

// BucketLister is a Store that can name every bucket it holds (the bbolt
// file can; PostgreSQL is never a source).
type BucketLister interface {
	Buckets() ([]string, error)
}

// Copy copies every entry of opts.Buckets from src into dst, in one
// transaction of dst, then reads dst back and checks that each bucket holds
// exactly what src holds. It returns how many entries each bucket had.
//
// It writes nothing and returns an error when the copy could lose or merge
// state: an ECONFLICT error when dst already holds an entry in any of the
// buckets (a migration never merges two states), an EINVALID error when src
// can name its buckets (BucketLister) and holds entries in one not listed.
// Values are copied as they are: vault entries stay encrypted under the same
// master key, so dst's replicas need the key src was used with. The times
// entries were last written are not carried over (dst records the copy's).
func Copy(ctx context.Context, dst, src switchboard.Store, opts CopyOptions) (map[string]int, error) {
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if bl, ok := src.(BucketLister); ok {
		have, err := bl.Buckets()
		if err != nil {
			return nil, fmt.Errorf("copying the store: listing the source's buckets: %w", err)
		}
		var unknown []string
		for _, b := range have {
			if slices.Contains(opts.Buckets, b) {
				continue
			}
			if es, err := src.List(ctx, b, ""); err != nil {
				return nil, fmt.Errorf("copying the store: reading %s: %w", b, err)
			} else if len(es) > 0 {
				unknown = append(unknown, fmt.Sprintf("%s (%d entries)", b, len(es)))
			}
		}
		if len(unknown) > 0 {
			return nil, switchboard.Errorf(switchboard.EINVALID, "copying the store: the source holds buckets this version does not know, which a copy would lose: %s; nothing was copied (use the version that wrote them)", strings.Join(unknown, ", "))
		}
	}
	data := make(map[string][]switchboard.StoreEntry, len(opts.Buckets))
	counts := make(map[string]int, len(opts.Buckets))
	total := 0
	for _, b := range opts.Buckets {
		es, err := src.List(ctx, b, "")
		if err != nil {
			return nil, fmt.Errorf("copying the store: reading %s: %w", b, err)
		}
		data[b], counts[b] = es, len(es)
		total += len(es)
	}
	progress(fmt.Sprintf("read %d entries in %d buckets; writing them in one transaction", total, len(opts.Buckets)))
	err := dst.Update(ctx, func(tx switchboard.StoreTx) error {
		for _, b := range opts.Buckets {
			have, err := tx.List(b, "")
			if err != nil {
				return err
			}
			if len(have) > 0 {
				return switchboard.Errorf(switchboard.ECONFLICT, "the destination already holds %d entries in %s: migrate into an empty store (a new database, or one no replica has served yet)", len(have), b)
			}
			for _, e := range data[b] {
				if err := tx.Put(b, e.Key, e.Value); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copying the store: %w", err)
	}
	for _, b := range opts.Buckets {
		got, err := dst.List(ctx, b, "")
		if err != nil {
			return nil, fmt.Errorf("copying the store: reading back %s: %w", b, err)
		}
		want := data[b]
		if len(got) != len(want) {
			return nil, fmt.Errorf("copying the store: %s holds %d entries after the copy, want %d", b, len(got), len(want))
		}
		for i := range want {
			if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) {
				return nil, fmt.Errorf("copying the store: %s differs after the copy at %q", b, want[i].Key)
			}
		}
	}
	progress(fmt.Sprintf("read back and compared %d entries", total))
	return counts, nil
}
