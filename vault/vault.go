package vault

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/switchboard-mcp/switchboard"
)

// DefaultFileName is the vault's file name in the data directory.
const DefaultFileName = "switchboard.db"

// DefaultLockTimeout is how long Open waits for another process's file lock.
const DefaultLockTimeout = 500 * time.Millisecond

// Sentinel errors. Test with errors.Is.
var (
	// ErrNotFound means the secret or connection does not exist; it comes wrapped in a switchboard.Error with code ENOTFOUND.
	ErrNotFound = errors.New("not in vault")
	// ErrCorrupt means a stored value failed its integrity check: corrupt, tampered with, moved, or under an unknown key id.
	ErrCorrupt = errors.New("integrity check failed (corrupt or tampered)")
	// ErrWrongKey means the master key does not match the vault's key-check value.
	ErrWrongKey = errors.New("vault key does not match this vault")
	// ErrLocked means another process holds the vault file open read-write.
	ErrLocked = errors.New("vault is locked by another process (is switchboard serve running?)")
	// ErrInvalidKey means a master key has the wrong length or encoding.
	ErrInvalidKey = errors.New("invalid vault key")
	// ErrNoKey means LoadKey found no master key and may not generate one.
	ErrNoKey = errors.New("no vault key: set SWITCHBOARD_VAULT_KEY or vault.key_file in gateway.yaml, or run `switchboard vault init`")
	// ErrUninitialized means a read-only Open found no vault in the file.
	ErrUninitialized = errors.New("vault is not initialized (run `switchboard vault init`)")
	// ErrClosed means the Vault was used after Close.
	ErrClosed = errors.New("vault is closed")
)

// Bucket and key names. Everything the vault owns starts with "vault.".
var (
	bucketMeta   = []byte("vault.meta")
	bucketKeys   = []byte("vault.keys")
	bucketSecret = []byte("vault.secret")
	bucketConn   = []byte("vault.conn")

	metaFormat  = []byte("format")
	metaCheck   = []byte("check")
	metaNextKey = []byte("next_key")
)

const storeFormat = "1"

// Options configures Open.
type Options struct {
	// LockTimeout bounds the wait for another process's lock on the file;
	// zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// ReadOnly opens the file with a shared lock; writes fail. The vault must exist.
	ReadOnly bool
	// Redactor, if set, receives every decrypted value before it is returned.
	Redactor switchboard.Redactor
	// Logger receives lifecycle events (created, rotated, rekeyed). Never values.
	Logger zerolog.Logger
}

// Vault is an open vault file. Its methods are safe for concurrent use.
type Vault struct {
	db       *bolt.DB
	path     string
	redactor switchboard.Redactor
	log      zerolog.Logger

	adminMu sync.Mutex // serializes Rotate and Rekey, whose commits change key state

	mu     sync.RWMutex
	closed bool
	kek    []byte            // key-encryption key derived from the master key
	keys   map[string][]byte // unwrapped data keys by id; ids are never reused
}

var _ switchboard.SecretStore = (*Vault)(nil)

// Open opens or creates the vault at path (mode 0600) and unlocks it with key.
// A new file gets a key-check value and a first data key "k1". On an existing
// vault a wrong key fails with ErrWrongKey before anything is written; another
// process holding the file fails with ErrLocked after opts.LockTimeout. The
// vault copies what it needs from key, so the caller may Zero key afterwards.
func Open(path string, key Key, opts Options) (*Vault, error) {
	if key.IsZero() {
		return nil, fmt.Errorf("opening vault %s: %w: no key", path, ErrInvalidKey)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("opening vault: %w", err)
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
	kek, err := deriveKEK(key)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	v := &Vault{
		db:       db,
		path:     path,
		redactor: opts.Redactor,
		log:      opts.Logger.With().Str("vault", path).Logger(),
		kek:      kek,
		keys:     make(map[string][]byte),
	}
	created, err := v.unlock(opts.ReadOnly)
	if err != nil {
		v.wipe()
		_ = db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		if err := tightenMode(path); err != nil {
			v.wipe()
			_ = db.Close()
			return nil, err
		}
		if _, err := v.migrateInternal(); err != nil {
			v.wipe()
			_ = db.Close()
			return nil, fmt.Errorf("opening vault %s: %w", path, err)
		}
	}
	if created {
		v.log.Info().Str("key_id", "k1").Msg("vault created")
	}
	return v, nil
}

// unlock verifies the key check and loads the keyring, creating both in a new
// vault. It reports whether the vault was created.
func (v *Vault) unlock(readOnly bool) (created bool, err error) {
	var exists bool
	err = v.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if tx.Bucket(bucketSecret) != nil || tx.Bucket(bucketConn) != nil || tx.Bucket(bucketKeys) != nil || tx.Bucket(bucketInternal) != nil {
				return fmt.Errorf("opening vault %s: metadata bucket is missing but entries exist: %w", v.path, ErrCorrupt)
			}
			return nil
		}
		exists = true
		return v.verifyAndLoad(tx)
	})
	if err != nil || exists {
		return false, err
	}
	if readOnly {
		return false, fmt.Errorf("opening vault %s: %w", v.path, ErrUninitialized)
	}
	err = v.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil { // unreachable under the exclusive file lock
			return v.verifyAndLoad(tx)
		}
		return v.initialize(tx)
	})
	if err != nil {
		v.wipeKeys()
		return false, err
	}
	return true, nil
}

// verifyAndLoad checks the master key against the key check and unwraps the keyring.
func (v *Vault) verifyAndLoad(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if f := meta.Get(metaFormat); string(f) != storeFormat {
		return fmt.Errorf("opening vault %s: unsupported vault format %q", v.path, f)
	}
	pt, ok := unwrap(v.kek, meta.Get(metaCheck), checkLabel)
	if !ok || subtle.ConstantTimeCompare(pt, []byte(checkValue)) != 1 {
		return fmt.Errorf("%w (%s)", ErrWrongKey, v.path)
	}
	keys := tx.Bucket(bucketKeys)
	if keys == nil {
		return fmt.Errorf("opening vault %s: keyring is missing: %w", v.path, ErrCorrupt)
	}
	loaded := make(map[string][]byte)
	err := keys.ForEach(func(k, wrapped []byte) error {
		id := string(k)
		dk, ok := unwrap(v.kek, wrapped, keyLabel(id))
		if !ok || len(dk) != KeySize || keyNum(id) == 0 {
			return fmt.Errorf("opening vault %s: data key %q: %w", v.path, id, ErrCorrupt)
		}
		loaded[id] = dk
		return nil
	})
	if err == nil && len(loaded) == 0 {
		err = fmt.Errorf("opening vault %s: keyring is empty: %w", v.path, ErrCorrupt)
	}
	if err != nil {
		for _, dk := range loaded {
			clear(dk)
		}
		return err
	}
	v.mu.Lock()
	v.keys = loaded
	v.mu.Unlock()
	return nil
}

// initialize writes the metadata, key check and first data key of a new vault.
func (v *Vault) initialize(tx *bolt.Tx) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return fmt.Errorf("creating vault: %w", err)
	}
	for _, name := range [][]byte{bucketKeys, bucketSecret, bucketConn, bucketInternal} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating vault: %w", err)
		}
	}
	check, err := wrap(v.kek, []byte(checkValue), checkLabel)
	if err != nil {
		return fmt.Errorf("creating vault: %w", err)
	}
	if err := meta.Put(metaFormat, []byte(storeFormat)); err != nil {
		return fmt.Errorf("creating vault: %w", err)
	}
	if err := meta.Put(metaCheck, check); err != nil {
		return fmt.Errorf("creating vault: %w", err)
	}
	if _, _, err := v.addDataKey(tx); err != nil {
		return fmt.Errorf("creating vault: %w", err)
	}
	return nil
}

// addDataKey generates the next data key and stores it wrapped. The key joins
// the in-memory cache only if tx commits.
func (v *Vault) addDataKey(tx *bolt.Tx) (string, []byte, error) {
	meta := tx.Bucket(bucketMeta)
	next := uint64(1)
	if b := meta.Get(metaNextKey); len(b) == 8 {
		next = binary.BigEndian.Uint64(b)
	}
	// Never reuse a number, even if next_key was lost: start above every id present.
	_ = tx.Bucket(bucketKeys).ForEach(func(k, _ []byte) error {
		if n := keyNum(string(k)); n >= next {
			next = n + 1
		}
		return nil
	})
	id := fmt.Sprintf("k%d", next)
	dk := make([]byte, KeySize)
	_, _ = rand.Read(dk)
	v.mu.RLock()
	wrapped, err := wrap(v.kek, dk, keyLabel(id))
	v.mu.RUnlock()
	if err != nil {
		return "", nil, err
	}
	if err := tx.Bucket(bucketKeys).Put([]byte(id), wrapped); err != nil {
		return "", nil, err
	}
	if err := meta.Put(metaNextKey, binary.BigEndian.AppendUint64(nil, next+1)); err != nil {
		return "", nil, err
	}
	tx.OnCommit(func() {
		v.mu.Lock()
		v.keys[id] = dk
		v.mu.Unlock()
	})
	return id, dk, nil
}

// primaryKey returns the newest data key in tx's keyring, to seal entry name.
func (v *Vault) primaryKey(tx *bolt.Tx, name entryName) (string, []byte, error) {
	var best string
	var bestN uint64
	b := tx.Bucket(bucketKeys)
	if b == nil {
		return "", nil, fmt.Errorf("keyring is missing: %w", ErrCorrupt)
	}
	_ = b.ForEach(func(k, _ []byte) error {
		if n := keyNum(string(k)); n > bestN {
			best, bestN = string(k), n
		}
		return nil
	})
	if best == "" {
		return "", nil, fmt.Errorf("keyring is empty: %w", ErrCorrupt)
	}
	dk, err := v.dataKey(tx, name, best)
	return best, dk, err
}

// dataKey returns data key id as tx sees the keyring. An id absent from tx's
// keyring is ErrCorrupt for entry name, even if an older key is still cached.
func (v *Vault) dataKey(tx *bolt.Tx, name entryName, id string) ([]byte, error) {
	b := tx.Bucket(bucketKeys)
	var wrapped []byte
	if b != nil {
		wrapped = b.Get([]byte(id))
	}
	if wrapped == nil {
		return nil, fmt.Errorf("decrypting %s: unknown key id %q: %w", name, id, ErrCorrupt)
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return nil, ErrClosed
	}
	if dk, ok := v.keys[id]; ok {
		return dk, nil
	}
	dk, ok := unwrap(v.kek, wrapped, keyLabel(id))
	if !ok || len(dk) != KeySize {
		return nil, fmt.Errorf("decrypting %s: data key %q: %w", name, id, ErrCorrupt)
	}
	return dk, nil
}

// seal encrypts value for name under tx's primary data key.
func (v *Vault) seal(tx *bolt.Tx, name entryName, value []byte, at time.Time) ([]byte, error) {
	id, dk, err := v.primaryKey(tx, name)
	if err != nil {
		return nil, err
	}
	return sealEntry(name, id, dk, value, at)
}

// open decrypts a stored value of entry name.
func (v *Vault) open(tx *bolt.Tx, name entryName, stored []byte) ([]byte, envelope, error) {
	env, err := parseEnvelope(name, stored)
	if err != nil {
		return nil, envelope{}, err
	}
	dk, err := v.dataKey(tx, name, env.keyID)
	if err != nil {
		return nil, envelope{}, err
	}
	pt, err := openEntry(name, env, dk)
	return pt, env, err
}

// reveal hands a decrypted value to the redactor and returns it as a Secret.
func (v *Vault) reveal(pt []byte) switchboard.Secret {
	s := string(pt)
	clear(pt)
	if v.redactor != nil && s != "" {
		v.redactor.Add(s)
	}
	return switchboard.Secret(s)
}

// Path returns the vault file's path.
func (v *Vault) Path() string { return v.path }

// DB returns the underlying bbolt database, so other packages can keep their own
// buckets in the same file. They must not touch buckets named "vault.*".
func (v *Vault) DB() *bolt.DB { return v.db }

// Close closes the file and wipes the key material held in memory. It is safe
// to call more than once.
func (v *Vault) Close() error {
	v.adminMu.Lock()
	defer v.adminMu.Unlock()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()
	err := v.db.Close() // waits for open transactions
	v.wipe()
	if err != nil {
		return fmt.Errorf("closing vault: %w", err)
	}
	return nil
}

func (v *Vault) wipe() {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.kek)
	v.wipeKeysLocked()
}

func (v *Vault) wipeKeys() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.wipeKeysLocked()
}

func (v *Vault) wipeKeysLocked() {
	for id, dk := range v.keys {
		clear(dk)
		delete(v.keys, id)
	}
}

// view runs fn in a read transaction, failing with ErrClosed after Close.
func (v *Vault) view(fn func(tx *bolt.Tx) error) error {
	if err := v.db.View(fn); err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return ErrClosed
		}
		return err
	}
	return nil
}

// update runs fn in a write transaction, failing with ErrClosed after Close.
func (v *Vault) update(fn func(tx *bolt.Tx) error) error {
	if err := v.db.Update(fn); err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return ErrClosed
		}
		return err
	}
	return nil
}

// KeyIDs returns the ids of the data keys in the keyring, oldest first; the last
// is the primary.
func (v *Vault) KeyIDs() ([]string, error) {
	var ids []string
	err := v.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing vault keys: %w", err)
	}
	sort.Slice(ids, func(i, j int) bool { return keyNum(ids[i]) < keyNum(ids[j]) })
	return ids, nil
}

// sealedRef locates one sealed value in the file.
type sealedRef struct {
	name   entryName
	bucket *bolt.Bucket
	key    []byte
	value  []byte
}

// forEachSealed calls fn for every sealed value: internal keys, shared
// secrets, then connection values by user and provider. fn must not modify the
// buckets.
func forEachSealed(tx *bolt.Tx, fn func(r sealedRef) error) error {
	if b := tx.Bucket(bucketInternal); b != nil {
		err := b.ForEach(func(k, val []byte) error {
			if val == nil {
				return nil
			}
			return fn(sealedRef{name: internalEntry(string(k)), bucket: b, key: k, value: val})
		})
		if err != nil {
			return err
		}
	}
	if b := tx.Bucket(bucketSecret); b != nil {
		err := b.ForEach(func(k, val []byte) error {
			if val == nil {
				return nil
			}
			return fn(sealedRef{name: secretEntry(string(k)), bucket: b, key: k, value: val})
		})
		if err != nil {
			return err
		}
	}
	conns := tx.Bucket(bucketConn)
	if conns == nil {
		return nil
	}
	return conns.ForEachBucket(func(user []byte) error {
		ub := conns.Bucket(user)
		return ub.ForEachBucket(func(provider []byte) error {
			vals := ub.Bucket(provider).Bucket(connValues)
			if vals == nil {
				return nil
			}
			return vals.ForEach(func(k, val []byte) error {
				if val == nil {
					return nil
				}
				name := connEntry(string(user), string(provider), string(k))
				return fn(sealedRef{name: name, bucket: vals, key: k, value: val})
			})
		})
	})
}

// Rotate adds a new data key, re-encrypts every entry under it, and retires the
// old data keys, all in one transaction. It returns the number of entries
// re-encrypted. If any entry fails to decrypt, nothing changes and the error
// names the entry.
func (v *Vault) Rotate() (int, error) {
	v.adminMu.Lock()
	defer v.adminMu.Unlock()
	var count int
	var newID string
	err := v.update(func(tx *bolt.Tx) error {
		old, err := keyIDsTx(tx)
		if err != nil {
			return err
		}
		var dk []byte
		if newID, dk, err = v.addDataKey(tx); err != nil {
			return err
		}
		var refs []sealedRef
		err = forEachSealed(tx, func(r sealedRef) error {
			pt, env, err := v.open(tx, r.name, r.value)
			if err != nil {
				return err
			}
			r.value, err = sealEntry(r.name, newID, dk, pt, env.updatedAt)
			clear(pt)
			if err != nil {
				return err
			}
			refs = append(refs, r)
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range refs {
			if err := r.bucket.Put(r.key, r.value); err != nil {
				return err
			}
		}
		keys := tx.Bucket(bucketKeys)
		for _, id := range old {
			if err := keys.Delete([]byte(id)); err != nil {
				return err
			}
		}
		count = len(refs)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rotating vault data key: %w", err)
	}
	v.log.Info().Str("key_id", newID).Int("entries", count).Msg("vault data key rotated")
	return count, nil
}

func keyIDsTx(tx *bolt.Tx) ([]string, error) {
	b := tx.Bucket(bucketKeys)
	if b == nil {
		return nil, fmt.Errorf("keyring is missing: %w", ErrCorrupt)
	}
	var ids []string
	err := b.ForEach(func(k, _ []byte) error {
		ids = append(ids, string(k))
		return nil
	})
	return ids, err
}

// Rekey re-wraps every data key under newKey and replaces the key check, in one
// transaction. Afterwards only newKey opens the vault; the entries themselves
// are not re-encrypted. The vault copies what it needs from newKey.
func (v *Vault) Rekey(newKey Key) error {
	if newKey.IsZero() {
		return fmt.Errorf("rekeying vault: %w: no key", ErrInvalidKey)
	}
	newKEK, err := deriveKEK(newKey)
	if err != nil {
		return fmt.Errorf("rekeying vault: %w", err)
	}
	v.adminMu.Lock()
	defer v.adminMu.Unlock()
	err = v.update(func(tx *bolt.Tx) error {
		ids, err := keyIDsTx(tx)
		if err != nil {
			return err
		}
		keys := tx.Bucket(bucketKeys)
		for _, id := range ids {
			dk, err := v.dataKey(tx, entryName{"keyring", id}, id)
			if err != nil {
				return err
			}
			wrapped, err := wrap(newKEK, dk, keyLabel(id))
			if err != nil {
				return err
			}
			if err := keys.Put([]byte(id), wrapped); err != nil {
				return err
			}
		}
		check, err := wrap(newKEK, []byte(checkValue), checkLabel)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaCheck, check)
	})
	if err != nil {
		clear(newKEK)
		return fmt.Errorf("rekeying vault: %w", err)
	}
	v.mu.Lock()
	clear(v.kek)
	v.kek = newKEK
	v.mu.Unlock()
	v.log.Info().Msg("vault rekeyed")
	return nil
}

// Check runs bbolt's consistency check on the file and then decrypts every entry
// under the keyring present, discarding the values. It returns every problem
// found, joined, naming entries but never values. It runs in a write
// transaction that it rolls back (bbolt's check is not safe in a read
// transaction while writers commit), so it blocks writers while it runs.
func (v *Vault) Check() error {
	var errs []error
	check := func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, fmt.Errorf("bbolt: %w", err))
		}
		if len(errs) == 0 { // walk the entries only if the tree itself is sound
			_ = forEachSealed(tx, func(r sealedRef) error {
				pt, _, err := v.open(tx, r.name, r.value)
				if err != nil {
					errs = append(errs, err)
					return nil
				}
				clear(pt)
				return nil
			})
		}
		return errRollback
	}
	var err error
	if v.db.IsReadOnly() { // no writer can exist under our shared lock
		err = v.view(check)
	} else {
		err = v.update(check)
	}
	if err != nil && !errors.Is(err, errRollback) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checking vault %s: %w", v.path, err)
	}
	return nil
}

// errRollback makes a transaction roll back without reporting an error.
var errRollback = errors.New("rollback")

// tightenMode makes the vault file owner-only if it is not already.
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

// validValue bounds a secret's size.
func validValue(name fmt.Stringer, value []byte) error {
	if len(value) > MaxValueSize {
		return switchboard.Errorf(switchboard.EINVALID, "secret %s is %d bytes; the limit is %d", name, len(value), MaxValueSize)
	}
	return nil
}

// MaxValueSize is the largest secret value the vault accepts.
const MaxValueSize = 64 << 10
