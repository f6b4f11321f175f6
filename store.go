package switchboard

import (
	"context"
	"strings"
	"time"
)

// Store holds the gateway's durable state: users and API-key hashes, vault
// entries (encrypted by the vault before they get here), per-user
// connections and preferences, service-token records. Values are opaque
// bytes grouped in named buckets; the package that owns each kind of record
// (auth, vault) encodes it. A Store never sees a plaintext secret.
//
// Two implementations: an embedded bbolt file, for one replica, and
// PostgreSQL, shared by several replicas. Every package reaches the state
// through this interface, never through a database handle.
type Store interface {
	// Get returns the value of key in bucket, or an ENOTFOUND error.
	Get(ctx context.Context, bucket, key string) ([]byte, error)
	// List returns the entries of bucket whose keys start with prefix, in
	// key order.
	List(ctx context.Context, bucket, prefix string) ([]StoreEntry, error)
	// Update runs fn in one transaction: all of its writes happen, or none
	// (fn's error, or a failure to commit, is returned). fn may run more
	// than once when a concurrent writer conflicts; it must not have other
	// effects.
	Update(ctx context.Context, fn func(tx StoreTx) error) error
	// Changes delivers what other writers — other replicas sharing the
	// store — changed, so that caches can be refreshed; the store's own
	// writes through this value are not delivered. An implementation that
	// cannot miss a change (one process on an embedded file) returns nil.
	// A StoreChange with an empty Bucket means "anything may have changed":
	// reload everything.
	Changes() <-chan StoreChange
	Leases
	// Close releases the store.
	Close() error
}

// Leases are named, expiring claims that replicas sharing a store use to let
// one of them at a time do something (refresh one OAuth grant). A lease is
// not a lock that survives its holder: it lapses after its ttl, measured by
// the store's own clock (PostgreSQL's now()), never by a replica's.
type Leases interface {
	// TryLease takes the lease name for holder until ttl from now, and
	// reports whether it did: it does when nobody holds it, when its
	// previous holder's ttl ran out, or when holder already holds it (then
	// the ttl starts again). It reports false, and changes nothing, while
	// another holder's lease runs.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives up holder's lease name. A lease that holder does
	// not hold (never taken, lapsed, or taken over by another) is left
	// alone, without error.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// StoreTx is one Store transaction.
type StoreTx interface {
	Get(bucket, key string) ([]byte, error)
	List(bucket, prefix string) ([]StoreEntry, error)
	Put(bucket, key string, value []byte) error
	Delete(bucket, key string) error
	// DeletePrefix deletes every key of bucket that starts with prefix.
	DeletePrefix(bucket, prefix string) error
}

// StoreEntry is one key and value.
type StoreEntry struct {
	Key     string
	Value   []byte
	Updated time.Time
}

// StoreChange names a bucket and key another writer changed ("" Key: any
// key of the bucket; "" Bucket: anything).
type StoreChange struct {
	Bucket, Key string
	// Prefix says Key is a prefix: every key of Bucket that starts with it
	// may have changed (a DeletePrefix).
	Prefix bool
}

// Covers reports whether c may have changed key of bucket.
func (c StoreChange) Covers(bucket, key string) bool {
	switch {
	case c.Bucket == "":
		return true
	case c.Bucket != bucket:
		return false
	case c.Prefix:
		return strings.HasPrefix(key, c.Key)
	}
	return c.Key == "" || c.Key == key
}

// ChangesTouch reports whether any of changes may have changed an entry of
// one of buckets: it names that bucket, or it is the broad change ("" Bucket).
func ChangesTouch(changes []StoreChange, buckets ...string) bool {
	for _, c := range changes {
		if c.Bucket == "" {
			return true
		}
		for _, b := range buckets {
			if c.Bucket == b {
				return true
			}
		}
	}
	return false
}

// StoreKeySep joins the parts of a composite key ("user\x1fprovider"): the
// ASCII unit separator, which no user name, provider prefix or secret name
// contains. Records that older files kept in nested buckets are found under
// their bucket path joined with it.
const StoreKeySep = "\x1f"
