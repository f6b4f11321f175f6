package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// DefaultFileName is the file name of the embedded store (the vault's file)
// in the data directory.
const DefaultFileName = "switchboard.db"

// Sentinel errors. Test with errors.Is.
var (
	// ErrNotFound means the secret or connection does not exist; it comes wrapped in a switchboard.Error with code ENOTFOUND.
	ErrNotFound = errors.New("not in vault")
	// ErrCorrupt means a stored value failed its integrity check: corrupt, tampered with, moved, or under an unknown key id.
	ErrCorrupt = errors.New("integrity check failed (corrupt or tampered)")
	// ErrWrongKey means the master key does not match the vault's key-check value.
	ErrWrongKey = errors.New("vault key does not match this vault")
	// ErrInvalidKey means a master key has the wrong length or encoding.
	ErrInvalidKey = errors.New("invalid vault key")
	// ErrNoKey means LoadKey found no master key and may not generate one.
	ErrNoKey = errors.New("no vault key: set SWITCHBOARD_VAULT_KEY or vault.key_file in gateway.yaml, or run `switchboard vault init`")
	// ErrUninitialized means a read-only Open found no vault in the store.
	ErrUninitialized = errors.New("vault is not initialized (run `switchboard vault init`)")
	// ErrClosed means the Vault was used after Close.
	ErrClosed = errors.New("vault is closed")
)

// StoreBuckets are every store bucket the vault owns, for copying a store
// whole (`switchboard store migrate`).
func StoreBuckets() []string {
	return []string{bucketMeta, bucketKeys, bucketSecret, bucketConn, bucketInternal}
}

// SecretsTouched reports whether one of changes (another writer's, see
// switchboard.Store.Changes) may have changed a shared secret or the keyring
// (a rotation re-encrypts the secrets): the providers that use secrets need
// their environment resolved again.
func SecretsTouched(changes []switchboard.StoreChange) bool {
	return switchboard.ChangesTouch(changes, bucketSecret, bucketKeys, bucketMeta)
}

// Store buckets and keys. Everything the vault owns starts with "vault.".
const (
	bucketMeta   = "vault.meta"
	bucketKeys   = "vault.keys"
	bucketSecret = "vault.secret"
	bucketConn   = "vault.conn"

	metaFormat  = "format"
	metaCheck   = "check"
	metaNextKey = "next_key"
)

const storeFormat = "1"

// Options configures Open.
type Options struct {
	// ReadOnly opens the vault without writing to the store: it must exist
	// already, nothing is migrated, and writes fail.
	ReadOnly bool
	// CloseStore makes Close close the store too, for a vault that is the
	// store's only user (tools and tests).
	CloseStore bool
	// Redactor, if set, receives every decrypted value before it is returned.
	Redactor switchboard.Redactor
	// Logger receives lifecycle events (created, rotated, rekeyed). Never values.
	Logger zerolog.Logger
}

// Vault is an unlocked vault on a Store. Its methods are safe for concurrent use.
type Vault struct {
	st       switchboard.Store
	name     string // for messages: the store's path, or "vault"
	readOnly bool
	redactor switchboard.Redactor
	log      zerolog.Logger
	ownStore bool

	adminMu sync.Mutex // serializes Rotate and Rekey, whose commits change key state

	connMu    sync.Mutex                           // serializes reading the connections into connected
	connected atomic.Pointer[map[string]connState] // "user␟provider" → UpdatedAt and expiry of every connection; see Connected

	mu     sync.RWMutex
	closed bool
	kek    []byte            // key-encryption key derived from the master key
	keys   map[string][]byte // unwrapped data keys by id, as last read; ids are never reused
}

var _ switchboard.SecretStore = (*Vault)(nil)

// pather is implemented by a store that lives in one file.
type pather interface{ Path() string }

// Open unlocks the vault kept in st with key. A store without a vault gets a
// key-check value and a first data key "k1". On an existing vault a wrong key
// fails with ErrWrongKey before anything is written. The vault copies what it
// needs from key, so the caller may Zero key afterwards.
func Open(ctx context.Context, st switchboard.Store, key Key, opts Options) (*Vault, error) {
	name := "vault"
	if p, ok := st.(pather); ok {
		name = p.Path()
	}
	closeStore := func() {
		if opts.CloseStore {
			_ = st.Close()
		}
	}
	if key.IsZero() {
		closeStore()
		return nil, fmt.Errorf("opening vault %s: %w: no key", name, ErrInvalidKey)
	}
	kek, err := deriveKEK(key)
	if err != nil {
		closeStore()
		return nil, err
	}
	v := &Vault{
		st:       st,
		name:     name,
		readOnly: opts.ReadOnly,
		redactor: opts.Redactor,
		log:      opts.Logger.With().Str("vault", name).Logger(),
		ownStore: opts.CloseStore,
		kek:      kek,
		keys:     make(map[string][]byte),
	}
	fail := func(err error) (*Vault, error) {
		v.wipe()
		closeStore()
		return nil, err
	}
	created, err := v.unlock(ctx)
	if err != nil {
		return fail(err)
	}
	if !opts.ReadOnly {
		if _, err := v.migrateInternal(ctx); err != nil {
			return fail(fmt.Errorf("opening vault %s: %w", name, err))
		}
	}
	if _, _, err := v.reloadConnections(); err != nil {
		return fail(fmt.Errorf("opening vault %s: %w", name, err))
	}
	if created {
		v.log.Info().Str("key_id", "k1").Msg("vault created")
	}
	return v, nil
}

// unlock verifies the key check and loads the keyring, creating both in a new
// vault. It reports whether the vault was created.
func (v *Vault) unlock(ctx context.Context) (created bool, err error) {
	meta, err := v.st.List(ctx, bucketMeta, "")
	if err != nil {
		return false, fmt.Errorf("opening vault %s: %w", v.name, err)
	}
	if len(meta) > 0 {
		return false, v.verifyAndLoad(ctx, entriesMap(meta))
	}
	for _, b := range []string{bucketSecret, bucketConn, bucketKeys, bucketInternal} {
		if es, err := v.st.List(ctx, b, ""); err != nil || len(es) > 0 {
			if err != nil {
				return false, fmt.Errorf("opening vault %s: %w", v.name, err)
			}
			return false, fmt.Errorf("opening vault %s: metadata bucket is missing but entries exist: %w", v.name, ErrCorrupt)
		}
	}
	if v.readOnly {
		return false, fmt.Errorf("opening vault %s: %w", v.name, ErrUninitialized)
	}
	var existed bool
	var newKeys map[string][]byte
	err = v.st.Update(ctx, func(tx switchboard.StoreTx) error {
		existed, newKeys = false, nil
		meta, err := tx.List(bucketMeta, "")
		if err != nil {
			return err
		}
		if len(meta) > 0 { // another replica created it first
			existed = true
			return nil
		}
		id, dk, err := v.initialize(tx)
		newKeys = map[string][]byte{id: dk}
		return err
	})
	if err != nil {
		return false, err
	}
	if existed {
		meta, err := v.st.List(ctx, bucketMeta, "")
		if err != nil {
			return false, fmt.Errorf("opening vault %s: %w", v.name, err)
		}
		return false, v.verifyAndLoad(ctx, entriesMap(meta))
	}
	v.mu.Lock()
	maps.Copy(v.keys, newKeys)
	v.mu.Unlock()
	return true, nil
}

func entriesMap(es []switchboard.StoreEntry) map[string][]byte {
	m := make(map[string][]byte, len(es))
	for _, e := range es {
		m[e.Key] = e.Value
	}
	return m
}

// verifyAndLoad checks the master key against the key check and unwraps the keyring.
func (v *Vault) verifyAndLoad(ctx context.Context, meta map[string][]byte) error {
	if f := meta[metaFormat]; string(f) != storeFormat {
		return fmt.Errorf("opening vault %s: unsupported vault format %q", v.name, f)
	}
	pt, ok := unwrap(v.kek, meta[metaCheck], checkLabel)
	if !ok || subtle.ConstantTimeCompare(pt, []byte(checkValue)) != 1 {
		return fmt.Errorf("%w (%s)", ErrWrongKey, v.name)
	}
	if err := v.loadKeys(ctx); err != nil {
		return fmt.Errorf("opening vault %s: %w", v.name, err)
	}
	return nil
}

// loadKeys reads and unwraps the whole keyring, replacing the cached one.
func (v *Vault) loadKeys(ctx context.Context) error {
	es, err := v.st.List(ctx, bucketKeys, "")
	if err != nil {
		return err
	}
	loaded, err := v.unwrapKeyring(es)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		wipeAll(loaded)
		return ErrClosed
	}
	// The replaced keys are not wiped: a reader may be decrypting with one
	// (see Rotate).
	v.keys = loaded
	return nil
}

func (v *Vault) unwrapKeyring(es []switchboard.StoreEntry) (map[string][]byte, error) {
	if len(es) == 0 {
		return nil, fmt.Errorf("keyring is empty: %w", ErrCorrupt)
	}
	v.mu.RLock()
	kek := v.kek
	v.mu.RUnlock()
	loaded := make(map[string][]byte, len(es))
	for _, e := range es {
		dk, ok := unwrap(kek, e.Value, keyLabel(e.Key))
		if !ok || len(dk) != KeySize || keyNum(e.Key) == 0 {
			wipeAll(loaded)
			return nil, fmt.Errorf("data key %q: %w", e.Key, ErrCorrupt)
		}
		loaded[e.Key] = dk
	}
	return loaded, nil
}

func wipeAll(m map[string][]byte) {
	for id, dk := range m {
		clear(dk)
		delete(m, id)
	}
}

// initialize writes the metadata, key check and first data key of a new vault.
func (v *Vault) initialize(tx switchboard.StoreTx) (string, []byte, error) {
	check, err := wrap(v.kek, []byte(checkValue), checkLabel)
	if err != nil {
		return "", nil, fmt.Errorf("creating vault: %w", err)
	}
	if err := tx.Put(bucketMeta, metaFormat, []byte(storeFormat)); err != nil {
		return "", nil, fmt.Errorf("creating vault: %w", err)
	}
	if err := tx.Put(bucketMeta, metaCheck, check); err != nil {
		return "", nil, fmt.Errorf("creating vault: %w", err)
	}
	id, dk, err := v.addDataKey(tx)
	if err != nil {
		return "", nil, fmt.Errorf("creating vault: %w", err)
	}
	return id, dk, nil
}

// addDataKey generates the next data key and stores it wrapped. The caller
// adds it to the cache once tx commits.
func (v *Vault) addDataKey(tx switchboard.StoreTx) (string, []byte, error) {
	next := uint64(1)
	if b, err := tx.Get(bucketMeta, metaNextKey); err == nil && len(b) == 8 {
		next = binary.BigEndian.Uint64(b)
	}
	// Never reuse a number, even if next_key was lost: start above every id present.
	present, err := tx.List(bucketKeys, "")
	if err != nil {
		return "", nil, err
	}
	for _, e := range present {
		if n := keyNum(e.Key); n >= next {
			next = n + 1
		}
	}
	id := fmt.Sprintf("k%d", next)
	dk := make([]byte, KeySize)
	_, _ = rand.Read(dk)
	v.mu.RLock()
	wrapped, err := wrap(v.kek, dk, keyLabel(id))
	v.mu.RUnlock()
	if err != nil {
		return "", nil, err
	}
	if err := tx.Put(bucketKeys, id, wrapped); err != nil {
		return "", nil, err
	}
	if err := tx.Put(bucketMeta, metaNextKey, binary.BigEndian.AppendUint64(nil, next+1)); err != nil {
		return "", nil, err
	}
	return id, dk, nil
}

// primaryKey returns the newest data key in tx's keyring, to seal entry name.
func (v *Vault) primaryKey(tx switchboard.StoreTx, name entryName) (string, []byte, error) {
	ids, err := keyIDsTx(tx)
	if err != nil {
		return "", nil, err
	}
	var best string
	var bestN uint64
	for _, id := range ids {
		if n := keyNum(id); n > bestN {
			best, bestN = id, n
		}
	}
	if best == "" {
		return "", nil, fmt.Errorf("keyring is empty: %w", ErrCorrupt)
	}
	wrapped, err := tx.Get(bucketKeys, best)
	if err != nil {
		return "", nil, err
	}
	dk, err := v.unwrapKey(name, best, wrapped)
	return best, dk, err
}

// unwrapKey returns data key id given its wrapped form, from the cache when
// it holds it.
func (v *Vault) unwrapKey(name entryName, id string, wrapped []byte) ([]byte, error) {
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

// dataKey returns data key id for reading entry name outside a transaction:
// from the cached keyring, or, when the keyring changed since it was read
// (another replica rotated), from the store. An id absent from the keyring is
// ErrCorrupt for entry name.
func (v *Vault) dataKey(ctx context.Context, name entryName, id string) ([]byte, error) {
	v.mu.RLock()
	closed := v.closed
	dk, ok := v.keys[id]
	v.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if ok {
		return dk, nil
	}
	if !keyIDRe.MatchString(id) {
		return nil, fmt.Errorf("decrypting %s: unknown key id %q: %w", name, id, ErrCorrupt)
	}
	wrapped, err := v.st.Get(ctx, bucketKeys, id)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil, fmt.Errorf("decrypting %s: unknown key id %q: %w", name, id, ErrCorrupt)
	}
	if err != nil {
		return nil, v.storeErr(err)
	}
	return v.unwrapKey(name, id, wrapped)
}

// dataKeyTx is dataKey as tx sees the keyring.
func (v *Vault) dataKeyTx(tx switchboard.StoreTx, name entryName, id string) ([]byte, error) {
	wrapped, err := tx.Get(bucketKeys, id)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil, fmt.Errorf("decrypting %s: unknown key id %q: %w", name, id, ErrCorrupt)
	}
	if err != nil {
		return nil, err
	}
	return v.unwrapKey(name, id, wrapped)
}

// seal encrypts value for name under tx's primary data key.
func (v *Vault) seal(tx switchboard.StoreTx, name entryName, value []byte, at time.Time) ([]byte, error) {
	id, dk, err := v.primaryKey(tx, name)
	if err != nil {
		return nil, err
	}
	return sealEntry(name, id, dk, value, at)
}

// openRead decrypts stored, the value of bucket/key read outside a
// transaction, as entry name. A Rotate that commits between the read and the
// decryption re-encrypts the value and retires the key it was read under (in
// this process or another replica): when the value does not open, it is read
// again and, if it changed meanwhile, opened anew.
func (v *Vault) openRead(ctx context.Context, bucket, key string, name entryName, stored []byte) ([]byte, envelope, error) {
	for attempt := 0; ; attempt++ {
		pt, env, err := v.open(ctx, name, stored)
		if err == nil || !errors.Is(err, ErrCorrupt) || attempt == 2 {
			return pt, env, err
		}
		again, gerr := v.get(ctx, bucket, key)
		if gerr != nil || bytes.Equal(again, stored) {
			return pt, env, err
		}
		stored = again
	}
}

// open decrypts a stored value of entry name read outside a transaction;
// openRead retries it when a rotation overtook the read.
func (v *Vault) open(ctx context.Context, name entryName, stored []byte) ([]byte, envelope, error) {
	env, err := parseEnvelope(name, stored)
	if err != nil {
		return nil, envelope{}, err
	}
	dk, err := v.dataKey(ctx, name, env.keyID)
	if err != nil {
		return nil, envelope{}, err
	}
	pt, err := openEntry(name, env, dk)
	return pt, env, err
}

// openTx decrypts a stored value of entry name read in tx.
func (v *Vault) openTx(tx switchboard.StoreTx, name entryName, stored []byte) ([]byte, envelope, error) {
	env, err := parseEnvelope(name, stored)
	if err != nil {
		return nil, envelope{}, err
	}
	dk, err := v.dataKeyTx(tx, name, env.keyID)
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

// Close wipes the key material held in memory (and closes the store when
// Options.CloseStore was set). It is safe to call more than once.
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
	v.wipe()
	if v.ownStore {
		if err := v.st.Close(); err != nil {
			return fmt.Errorf("closing vault: %w", err)
		}
	}
	return nil
}

func (v *Vault) wipe() {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.kek)
	wipeAll(v.keys)
}

// usable fails with ErrClosed after Close.
func (v *Vault) usable() error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return ErrClosed
	}
	return nil
}

// get reads one stored value outside a transaction.
func (v *Vault) get(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := v.usable(); err != nil {
		return nil, err
	}
	b, err := v.st.Get(ctx, bucket, key)
	if err != nil {
		return nil, v.storeErr(err)
	}
	return b, nil
}

// list reads a bucket (or the keys under prefix) outside a transaction.
func (v *Vault) list(ctx context.Context, bucket, prefix string) ([]switchboard.StoreEntry, error) {
	if err := v.usable(); err != nil {
		return nil, err
	}
	es, err := v.st.List(ctx, bucket, prefix)
	if err != nil {
		return nil, v.storeErr(err)
	}
	return es, nil
}

// update runs fn in one store transaction. It fails with ErrClosed after
// Close, and with an error on a read-only vault.
func (v *Vault) update(ctx context.Context, fn func(tx switchboard.StoreTx) error) error {
	if err := v.usable(); err != nil {
		return err
	}
	if v.readOnly {
		return errors.New("the vault is open read-only")
	}
	return v.storeErr(v.st.Update(ctx, fn))
}

// storeErr reports a store that was closed under the vault as ErrClosed.
func (v *Vault) storeErr(err error) error {
	if err != nil && v.usable() != nil {
		return ErrClosed
	}
	return err
}

// KeyIDs returns the ids of the data keys in the keyring, oldest first; the last
// is the primary.
func (v *Vault) KeyIDs() ([]string, error) {
	es, err := v.list(context.Background(), bucketKeys, "")
	if err != nil {
		return nil, fmt.Errorf("listing vault keys: %w", err)
	}
	ids := make([]string, 0, len(es))
	for _, e := range es {
		ids = append(ids, e.Key)
	}
	sort.Slice(ids, func(i, j int) bool { return keyNum(ids[i]) < keyNum(ids[j]) })
	return ids, nil
}

// sealed is one sealed value in the store.
type sealed struct {
	name   entryName
	bucket string
	key    string
	value  []byte
}

// sealedEntries returns every sealed value, as read by list: internal keys,
// shared secrets, connection values by user and provider, then OAuth client
// registrations.
func sealedEntries(list func(bucket string) ([]switchboard.StoreEntry, error)) ([]sealed, error) {
	var out []sealed
	for _, b := range []string{bucketInternal, bucketSecret, bucketConn, bucketOAuth} {
		es, err := list(b)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			var name entryName
			switch b {
			case bucketInternal:
				name = internalEntry(e.Key)
			case bucketSecret:
				name = secretEntry(e.Key)
			case bucketOAuth:
				name = oauthClientEntry(e.Key)
			default:
				k, ok := parseConnKey(e.Key)
				if !ok || k.name == "" {
					continue // a connection record, not a value
				}
				name = connEntry(k.user, k.provider, k.name)
			}
			out = append(out, sealed{name: name, bucket: b, key: e.Key, value: e.Value})
		}
	}
	return out, nil
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
	var newKey []byte
	var retired []string
	err := v.update(context.Background(), func(tx switchboard.StoreTx) error {
		old, err := keyIDsTx(tx)
		if err != nil {
			return err
		}
		if newID, newKey, err = v.addDataKey(tx); err != nil {
			return err
		}
		all, err := sealedEntries(func(b string) ([]switchboard.StoreEntry, error) { return tx.List(b, "") })
		if err != nil {
			return err
		}
		for _, r := range all {
			pt, env, err := v.openTx(tx, r.name, r.value)
			if err != nil {
				return err
			}
			r.value, err = sealEntry(r.name, newID, newKey, pt, env.updatedAt)
			clear(pt)
			if err != nil {
				return err
			}
			if err := tx.Put(r.bucket, r.key, r.value); err != nil {
				return err
			}
		}
		for _, id := range old {
			if err := tx.Delete(bucketKeys, id); err != nil {
				return err
			}
		}
		count, retired = len(all), old
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rotating vault data key: %w", err)
	}
	// Retired keys leave the cache but are not wiped in place: a reader that
	// took one from the cache before the commit may still be decrypting with
	// it (zeroing it under that reader failed its read as corrupt). The
	// garbage collector reclaims them.
	v.mu.Lock()
	for _, id := range retired {
		delete(v.keys, id)
	}
	v.keys[newID] = newKey
	v.mu.Unlock()
	v.log.Info().Str("key_id", newID).Int("entries", count).Msg("vault data key rotated")
	return count, nil
}

func keyIDsTx(tx switchboard.StoreTx) ([]string, error) {
	es, err := tx.List(bucketKeys, "")
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("keyring is missing: %w", ErrCorrupt)
	}
	ids := make([]string, 0, len(es))
	for _, e := range es {
		ids = append(ids, e.Key)
	}
	return ids, nil
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
	err = v.update(context.Background(), func(tx switchboard.StoreTx) error {
		ids, err := keyIDsTx(tx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			dk, err := v.dataKeyTx(tx, entryName{"keyring", id}, id)
			if err != nil {
				return err
			}
			wrapped, err := wrap(newKEK, dk, keyLabel(id))
			if err != nil {
				return err
			}
			if err := tx.Put(bucketKeys, id, wrapped); err != nil {
				return err
			}
		}
		check, err := wrap(newKEK, []byte(checkValue), checkLabel)
		if err != nil {
			return err
		}
		return tx.Put(bucketMeta, metaCheck, check)
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

// Check decrypts every entry under the keyring present, discarding the
// values. It returns every problem found, joined, naming entries but never
// values. (The store's own structural check is the store's: see
// store/bolt's Check.)
func (v *Vault) Check() error {
	ctx := context.Background()
	var errs []error
	if err := v.loadKeys(ctx); err != nil {
		errs = append(errs, err)
	}
	all, err := sealedEntries(func(b string) ([]switchboard.StoreEntry, error) { return v.list(ctx, b, "") })
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range all {
		pt, _, err := v.open(ctx, r.name, r.value)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		clear(pt)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checking vault %s: %w", v.name, err)
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
