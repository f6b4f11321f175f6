// Package store holds what is common to the switchboard.Store
// implementations (store/bolt, store/postgres): copying one store into
// another, for `switchboard store migrate`, and the conformance suite
// (store/storetest).
package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/switchboard-mcp/switchboard"
)

// Copy copies every entry of buckets from src into dst, in one transaction
// of dst, then reads dst back and checks that each bucket holds exactly what
// src holds. It refuses, with an ECONFLICT error and nothing written, when
// dst already holds an entry in any of the buckets: a migration never merges
// two states. It returns how many entries each bucket had. Values are copied
// as they are: vault entries stay encrypted under the same master key, so
// dst's replicas need the key src was used with. The times entries were last
// written are not carried over (dst records the copy's).
func Copy(ctx context.Context, dst, src switchboard.Store, buckets []string) (map[string]int, error) {
	data := make(map[string][]switchboard.StoreEntry, len(buckets))
	counts := make(map[string]int, len(buckets))
	for _, b := range buckets {
		es, err := src.List(ctx, b, "")
		if err != nil {
			return nil, fmt.Errorf("copying the store: reading %s: %w", b, err)
		}
		data[b], counts[b] = es, len(es)
	}
	err := dst.Update(ctx, func(tx switchboard.StoreTx) error {
		for _, b := range buckets {
			have, err := tx.List(b, "")
			if err != nil {
				return err
			}
			if len(have) > 0 {
				return switchboard.Errorf(switchboard.ECONFLICT, "the destination already holds %d entries in %s: migrate into an empty store", len(have), b)
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
	for _, b := range buckets {
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
	return counts, nil
}
