// Package bolt implements switchboard.Store over one bbolt file: the embedded
// default, for a gateway that runs as one replica.
//
// Each Store bucket is a top-level bbolt bucket of plain keys and values, so
// the bytes a package stores are the bytes in the file. When each value was
// last written is kept beside it, in the bucket "store.updated". Open locks the
// file (one process may open it read-write) and checks it before bbolt maps it,
// so that a damaged file is one clear error (ErrDamaged), never a crash; it
// then migrates files written before the Store existed (see Open).
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/switchboard-mcp/switchboard"
)

// FileName is the store's file name in the data directory.
const FileName = "switchboard.db"

// DefaultLockTimeout is how long Open waits for another process's file lock.
const DefaultLockTimeout = 500 * time.Millisecond

// Sentinel errors. Test with errors.Is.
var (
	// ErrLocked means another process holds the file open read-write.
	ErrLocked = errors.New("vault is locked by another process (is switchboard serve running?)")
	// ErrClosed means the Store was used after Close.
	ErrClosed = errors.New("store is closed")
	// ErrReadOnly means a write was attempted on a store opened read-only.
	ErrReadOnly = errors.New("store is open read-only")
)

// updatedBucket keeps, for every key of every bucket, when it was last put:
// "<bucket>\x1f<key>" → unix nanoseconds, big-endian.
var updatedBucket = []byte("store.updated")

// Options configures Open.
type Options struct {
	// LockTimeout bounds the wait for another process's lock on the file;
	// zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// ReadOnly opens the file with a shared lock; Update fails. The file must exist.
	ReadOnly bool
}

// Store is an open bbolt file. Its methods are safe for concurrent use.
type Store struct {
	db       *bolt.DB
	path     string
	readOnly bool

	lmu    sync.Mutex
	leases map[string]lease // by name
}

// lease is one taken lease: by whom, until when (by the monotonic clock).
type lease struct {
	holder  string
	expires time.Time
}

var _ switchboard.Store = (*Store)(nil)

// Open opens or creates the store at path (mode 0600). Another process holding
// the file fails with ErrLocked after opts.LockTimeout; a file that is not a
// whole database fails with ErrDamaged. A file written before the Store
// interface existed kept some records in nested buckets; Open flattens them
// into their top-level bucket, joining the bucket path and key with
// switchboard.StoreKeySep, in one transaction, so that every existing user,
// key, secret and connection reads as before.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("opening vault %s: %w", path, err)
		}
	}
	// Lock and check the file before bbolt maps it: a truncated or corrupt
	// file must be one clear error, never a SIGBUS.
	f, err := openFile(path, opts.ReadOnly, timeout)
	if err != nil {
		return nil, err
	}
	var db *bolt.DB
	err = guard(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: opts.ReadOnly,
			OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil }})
		return err
	})
	if err != nil {
		_ = f.Close() // bbolt closed it already unless it panicked
		var de *DamagedError
		switch {
		case errors.As(err, &de):
			return nil, err
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("opening vault %s: %w", path, ErrLocked)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return nil, damaged(path, "%v", err)
		}
		return nil, fmt.Errorf("opening vault %s: %w", path, err)
	}
	if err := consistencyCheck(db, path); err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Store{db: db, path: path, readOnly: opts.ReadOnly}
	if !opts.ReadOnly {
		if err := tightenMode(path); err != nil {
			_ = db.Close()
			return nil, err
		}
		if err := s.flatten(); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("opening vault %s: migrating nested buckets: %w", path, err)
		}
	}
	return s, nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Buckets returns the name of every bucket the file holds, sorted (not the
// store's own record of when entries were written). A copy of the store
// (store.Copy) uses it to refuse to leave a bucket behind.
func (s *Store) Buckets() ([]string, error) {
	var out []string
	err := s.view(func(t *tx) error {
		return t.btx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if !bytes.Equal(name, updatedBucket) {
				out = append(out, string(name))
			}
			return nil
		})
	})
	return out, err
}

// ReadOnly reports whether the store was opened read-only.
func (s *Store) ReadOnly() bool { return s.readOnly }

// Get implements switchboard.Store.
func (s *Store) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.view(func(t *tx) error {
		var err error
		out, err = t.Get(bucket, key)
		return err
	})
	return out, err
}

// List implements switchboard.Store.
func (s *Store) List(ctx context.Context, bucket, prefix string) ([]switchboard.StoreEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []switchboard.StoreEntry
	err := s.view(func(t *tx) error {
		var err error
		out, err = t.List(bucket, prefix)
		return err
	})
	return out, err
}

// Update implements switchboard.Store: fn runs once, in one bbolt write
// transaction (bbolt has one writer at a time, so there are no conflicts).
func (s *Store) Update(ctx context.Context, fn func(switchboard.StoreTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return fmt.Errorf("updating %s: %w", s.path, ErrReadOnly)
	}
	err := s.db.Update(func(btx *bolt.Tx) error { return fn(&tx{btx: btx, now: time.Now()}) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Changes implements switchboard.Store: one process owns the file, so no
// other writer can change it.
func (s *Store) Changes() <-chan switchboard.StoreChange { return nil }

// TryLease implements switchboard.Leases. One process owns the file, so the
// leases live in this Store value's memory, not in the file: they lapse with
// the process, as a lease of a replica that is gone lapses with its ttl.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if name == "" || holder == "" || ttl <= 0 {
		return false, switchboard.Errorf(switchboard.EINVALID, "taking a lease: name, holder and a positive ttl are required")
	}
	now := time.Now()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if l, ok := s.leases[name]; ok && l.holder != holder && now.Before(l.expires) {
		return false, nil
	}
	if s.leases == nil {
		s.leases = map[string]lease{}
	}
	for n, l := range s.leases { // keep the map as small as the live leases
		if !now.Before(l.expires) {
			delete(s.leases, n)
		}
	}
	s.leases[name] = lease{holder: holder, expires: now.Add(ttl)}
	return true, nil
}

// ReleaseLease implements switchboard.Leases.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if l, ok := s.leases[name]; ok && l.holder == holder {
		delete(s.leases, name)
	}
	return nil
}

// Close closes the file, waiting for open transactions. It is safe to call
// more than once.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", s.path, err)
	}
	return nil
}

// Check runs bbolt's consistency check over the whole file (free pages, every
// page reachable or free, key order) and returns every problem, joined. It
// runs in a write transaction that it rolls back, because the check is not
// safe in a read transaction while writers commit; so it blocks writers while
// it runs.
func (s *Store) Check() error {
	var errs []error
	check := func(btx *bolt.Tx) error {
		for err := range btx.Check() {
			errs = append(errs, fmt.Errorf("bbolt: %w", err))
		}
		return errRollback
	}
	var err error
	if s.readOnly { // no writer can exist under our shared lock
		err = s.db.View(check)
	} else {
		err = s.db.Update(check)
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil && !errors.Is(err, errRollback) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checking %s: %w", s.path, err)
	}
	return nil
}

// errRollback makes a transaction roll back without reporting an error.
var errRollback = errors.New("rollback")

// view runs fn in a read transaction.
func (s *Store) view(fn func(t *tx) error) error {
	err := s.db.View(func(btx *bolt.Tx) error { return fn(&tx{btx: btx}) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// tx is one transaction; values it returns are copies, valid after it ends.
type tx struct {
	btx *bolt.Tx
	now time.Time
}

func (t *tx) Get(bucket, key string) ([]byte, error) {
	b := t.btx.Bucket([]byte(bucket))
	var v []byte
	if b != nil {
		v = b.Get([]byte(key))
	}
	if v == nil {
		return nil, notFound(bucket, key)
	}
	return bytes.Clone(v), nil
}

func (t *tx) List(bucket, prefix string) ([]switchboard.StoreEntry, error) {
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil, nil
	}
	upd := t.btx.Bucket(updatedBucket)
	var out []switchboard.StoreEntry
	c := b.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if v == nil {
			continue // a nested bucket Open could not flatten (read-only): not a value
		}
		e := switchboard.StoreEntry{Key: string(k), Value: bytes.Clone(v)}
		if upd != nil {
			e.Updated = decodeTime(upd.Get(updatedKey(bucket, e.Key)))
		}
		out = append(out, e)
	}
	return out, nil
}

func (t *tx) Put(bucket, key string, value []byte) error {
	if key == "" {
		return switchboard.Errorf(switchboard.EINVALID, "storing in %s: empty key", bucket)
	}
	b, err := t.btx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("storing in %s: %w", bucket, err)
	}
	if value == nil {
		value = []byte{}
	}
	if err := b.Put([]byte(key), value); err != nil {
		return fmt.Errorf("storing %s in %s: %w", key, bucket, err)
	}
	upd, err := t.btx.CreateBucketIfNotExists(updatedBucket)
	if err != nil {
		return fmt.Errorf("storing in %s: %w", bucket, err)
	}
	return upd.Put(updatedKey(bucket, key), binary.BigEndian.AppendUint64(nil, uint64(t.now.UnixNano())))
}

func (t *tx) Delete(bucket, key string) error {
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("deleting %s from %s: %w", key, bucket, err)
	}
	if upd := t.btx.Bucket(updatedBucket); upd != nil {
		return upd.Delete(updatedKey(bucket, key))
	}
	return nil
}

func (t *tx) DeletePrefix(bucket, prefix string) error {
	b := t.btx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	var keys [][]byte
	c := b.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if v != nil {
			keys = append(keys, bytes.Clone(k))
		}
	}
	for _, k := range keys {
		if err := t.Delete(bucket, string(k)); err != nil {
			return err
		}
	}
	return nil
}

func updatedKey(bucket, key string) []byte {
	return []byte(bucket + switchboard.StoreKeySep + key)
}

func decodeTime(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
}

func notFound(bucket, key string) error {
	return switchboard.Errorf(switchboard.ENOTFOUND, "%s %q not found", bucket, clip(key))
}

// flatten moves the keys of every nested bucket into its top-level bucket
// under "<nested bucket>\x1f…\x1f<key>", and drops the nested buckets, in one
// transaction. A file without nested buckets is not written to.
func (s *Store) flatten() error {
	nested := false
	_ = s.db.View(func(btx *bolt.Tx) error {
		return btx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if b.Stats().BucketN > 1 {
				nested = true
			}
			return nil
		})
	})
	if !nested {
		return nil
	}
	return s.db.Update(func(btx *bolt.Tx) error {
		return btx.ForEach(func(name []byte, top *bolt.Bucket) error {
			type kv struct{ k, v []byte }
			var moved []kv
			var subs [][]byte
			var walk func(b *bolt.Bucket, path string) error
			walk = func(b *bolt.Bucket, path string) error {
				return b.ForEach(func(k, v []byte) error {
					key := path + string(k)
					if v != nil {
						moved = append(moved, kv{[]byte(key), bytes.Clone(v)})
						return nil
					}
					return walk(b.Bucket(k), key+switchboard.StoreKeySep)
				})
			}
			err := top.ForEachBucket(func(k []byte) error {
				subs = append(subs, bytes.Clone(k))
				return walk(top.Bucket(k), string(k)+switchboard.StoreKeySep)
			})
			if err != nil {
				return err
			}
			for _, k := range subs {
				if err := top.DeleteBucket(k); err != nil {
					return err
				}
			}
			for _, e := range moved {
				if err := top.Put(e.k, e.v); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// tightenMode makes the file owner-only if it is not already.
func tightenMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("opening vault: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("opening vault: %w", err)
		}
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	s = strings.ReplaceAll(s, switchboard.StoreKeySep, "/")
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
