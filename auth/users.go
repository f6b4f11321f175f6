package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// Store buckets this package owns.
const (
	bucketUsers   = "users"
	bucketAPIKeys = "apikeys"
)

// StoreBuckets are every store bucket this package owns (users and API-key
// hashes, preferences, service-token records), for copying a store whole
// (`switchboard store migrate`).
func StoreBuckets() []string {
	return []string{bucketUsers, bucketAPIKeys, prefsBucket, bucketServiceTokens}
}

// API key layout: "sb_" + 12-char public id + "_" + 52-char secret, both in
// lowercase unpadded base32 (a-z, 2-7). The id is 60 random bits and is only a
// lookup handle; the secret carries 256 bits from crypto/rand.
const (
	keyScheme    = "sb_"
	keyIDLen     = 12
	keySecretLen = 52 // base32 of 32 bytes, unpadded
	keyLen       = len(keyScheme) + keyIDLen + 1 + keySecretLen
	// keyHashDomain separates API-key hashes from any other SHA-256 use.
	keyHashDomain = "switchboard api key v1\x00"
)

var (
	b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)
	roleRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}$`)

	// dummyHash is compared against when a key is malformed or its id unknown,
	// so that every presented key costs one hash and one constant-time compare.
	dummyHash = sha256.Sum256([]byte(keyHashDomain + "dummy"))
)

// User is a human caller of /mcp known to the gateway. It never holds key
// material: KeyPrefix is the public part of the user's API key ("sb_<id>"),
// safe to print so an operator can tell keys apart.
type User struct {
	Name         string    `json:"name"`
	Roles        []string  `json:"roles"`
	CreatedAt    time.Time `json:"created_at"`
	KeyPrefix    string    `json:"key_prefix"`
	KeyCreatedAt time.Time `json:"key_created_at"`
}

// userRecord is what the users bucket stores under the user's name.
type userRecord struct {
	Name         string    `json:"name"`
	Roles        []string  `json:"roles"`
	CreatedAt    time.Time `json:"created_at"`
	KeyID        string    `json:"key_id"`
	KeyHash      []byte    `json:"key_hash"` // SHA-256 of keyHashDomain + full key
	KeyCreatedAt time.Time `json:"key_created_at"`

	// principal is what the user's API key authenticates as, built when the
	// cache is loaded and shared, read-only, by the user's requests.
	principal *switchboard.Principal
}

func (r *userRecord) user() User {
	return User{
		Name:         r.Name,
		Roles:        slices.Clone(r.Roles),
		CreatedAt:    r.CreatedAt,
		KeyPrefix:    keyScheme + r.KeyID,
		KeyCreatedAt: r.KeyCreatedAt,
	}
}

// userSnapshot is the immutable in-memory copy of the users bucket that
// authentication reads; writes replace it wholesale.
type userSnapshot struct {
	byKeyID map[string]*userRecord
	byName  map[string]*userRecord
}

// Users is the store of users and their API-key hashes, kept in the buckets
// "users" and "apikeys" of a switchboard.Store. It caches every record in
// memory, so authenticating a key costs one SHA-256, one map lookup and one
// constant-time compare and never touches the store. The cache is refreshed
// after each write made through this Users; call Refresh with the changes
// another writer made (another replica: see switchboard.Store.Changes).
type Users struct {
	st    switchboard.Store
	now   func() time.Time
	mu    sync.Mutex // serializes writes and the cache refresh that follows them
	rmu   sync.Mutex // serializes reading the store into the cache
	cache atomic.Pointer[userSnapshot]
}

// UsersDiff is who Refresh found another writer changed.
type UsersDiff struct {
	// Removed are users that no longer exist.
	Removed []string
	// Changed are existing users whose record changed: a replaced API key
	// (the old one is refused now) or new roles.
	Changed []string
}

// NewUsers loads the users kept in st.
func NewUsers(st switchboard.Store) (*Users, error) {
	if st == nil {
		return nil, errors.New("opening users: nil store")
	}
	u := &Users{st: st, now: time.Now}
	if err := u.Reload(); err != nil {
		return nil, err
	}
	return u, nil
}

// Reload re-reads every user from the store into the in-memory cache.
func (u *Users) Reload() error {
	_, _, err := u.reload()
	return err
}

// Refresh re-reads the users when one of changes (another writer's, see
// switchboard.Store.Changes) may have touched them, and reports who was
// removed or changed, so that what they have open can end. Users the
// changes name are reported even when a reload that ran meanwhile (after a
// write through this Users) already read their new state; a change that
// names no user (a whole bucket, or anything) is found by comparing with the
// cache as it was.
func (u *Users) Refresh(changes []switchboard.StoreChange) (UsersDiff, error) {
	if !switchboard.ChangesTouch(changes, bucketUsers, bucketAPIKeys) {
		return UsersDiff{}, nil
	}
	old, cur, err := u.reload()
	if err != nil {
		return UsersDiff{}, err
	}
	named := map[string]bool{}
	compare := false
	for _, c := range changes {
		switch {
		case c.Bucket == "" || c.Key == "" && (c.Bucket == bucketUsers || c.Bucket == bucketAPIKeys):
			compare = true
		case c.Bucket == bucketUsers:
			named[c.Key] = true
		case c.Bucket == bucketAPIKeys:
			for _, snap := range []*userSnapshot{old, cur} {
				if r := snap.byKeyID[c.Key]; r != nil {
					named[r.Name] = true
				}
			}
		}
	}
	if compare {
		for name, was := range old.byName {
			if now, ok := cur.byName[name]; !ok || !sameUser(was, now) {
				named[name] = true
			}
		}
	}
	var d UsersDiff
	for name := range named {
		_, had := old.byName[name]
		switch _, has := cur.byName[name]; {
		case !has:
			d.Removed = append(d.Removed, name)
		case had:
			d.Changed = append(d.Changed, name)
		}
	}
	slices.Sort(d.Removed)
	slices.Sort(d.Changed)
	return d, nil
}

// sameUser reports whether two records of one user grant the same: the same
// key and roles.
func sameUser(a, b *userRecord) bool {
	return a.KeyID == b.KeyID && bytes.Equal(a.KeyHash, b.KeyHash) && slices.Equal(a.Roles, b.Roles)
}

// reload reads the store into the cache and returns the snapshot it
// replaced and the new one. Reads are serialized, so the cache always ends
// up holding the newest read: a reload that read before a write committed
// cannot store its snapshot after the write's own reload does.
func (u *Users) reload() (old, snap *userSnapshot, err error) {
	u.rmu.Lock()
	defer u.rmu.Unlock()
	snap = &userSnapshot{byKeyID: map[string]*userRecord{}, byName: map[string]*userRecord{}}
	es, err := u.st.List(context.Background(), bucketUsers, "")
	if err != nil {
		return nil, nil, fmt.Errorf("loading users: %w", err)
	}
	for _, e := range es {
		rec := new(userRecord)
		if err := json.Unmarshal(e.Value, rec); err != nil {
			return nil, nil, fmt.Errorf("loading users: decoding user %q: %w", e.Key, err)
		}
		rec.principal = switchboard.NewPrincipal(switchboard.PrincipalUser, rec.Name, slices.Clone(rec.Roles), MethodAPIKey, switchboard.EndpointPublic)
		snap.byName[rec.Name] = rec
		if rec.KeyID != "" {
			snap.byKeyID[rec.KeyID] = rec
		}
	}
	if old = u.cache.Swap(snap); old == nil {
		old = &userSnapshot{}
	}
	return old, snap, nil
}

// Add creates a user with the given roles and returns the user's new API key.
// The key is shown once: only its hash is stored.
func (u *Users) Add(name string, roles []string) (string, error) {
	if err := ValidateUserName(name); err != nil {
		return "", fmt.Errorf("adding user: %w", err)
	}
	roles, err := normalizeRoles(roles)
	if err != nil {
		return "", fmt.Errorf("adding user %q: %w", name, err)
	}
	key, id, hash, err := newAPIKey()
	if err != nil {
		return "", fmt.Errorf("adding user %q: %w", name, err)
	}
	now := u.now().UTC()
	rec := &userRecord{Name: name, Roles: roles, CreatedAt: now, KeyID: id, KeyHash: hash, KeyCreatedAt: now}
	err = u.write(func(tx switchboard.StoreTx) error {
		if _, err := tx.Get(bucketUsers, name); err == nil {
			return switchboard.Errorf(switchboard.ECONFLICT, "user %q already exists", name)
		} else if switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
			return err
		}
		return putUser(tx, rec, "")
	})
	if err != nil {
		return "", fmt.Errorf("adding user %q: %w", name, err)
	}
	return key, nil
}

// Remove deletes a user and its API key. The key stops working at once.
func (u *Users) Remove(name string) error {
	err := u.write(func(tx switchboard.StoreTx) error {
		rec, err := getUser(tx, name)
		if err != nil {
			return err
		}
		if rec.KeyID != "" {
			if err := tx.Delete(bucketAPIKeys, rec.KeyID); err != nil {
				return err
			}
		}
		return tx.Delete(bucketUsers, name)
	})
	if err != nil {
		return fmt.Errorf("removing user %q: %w", name, err)
	}
	return nil
}

// RotateKey replaces a user's API key and returns the new one. The old key
// stops working at once.
func (u *Users) RotateKey(name string) (string, error) {
	key, id, hash, err := newAPIKey()
	if err != nil {
		return "", fmt.Errorf("rotating key of %q: %w", name, err)
	}
	err = u.write(func(tx switchboard.StoreTx) error {
		rec, err := getUser(tx, name)
		if err != nil {
			return err
		}
		oldID := rec.KeyID
		rec.KeyID, rec.KeyHash, rec.KeyCreatedAt = id, hash, u.now().UTC()
		return putUser(tx, rec, oldID)
	})
	if err != nil {
		return "", fmt.Errorf("rotating key of %q: %w", name, err)
	}
	return key, nil
}

// SetRoles replaces a user's roles. It applies to the user's next request.
func (u *Users) SetRoles(name string, roles []string) error {
	roles, err := normalizeRoles(roles)
	if err != nil {
		return fmt.Errorf("setting roles of %q: %w", name, err)
	}
	err = u.write(func(tx switchboard.StoreTx) error {
		rec, err := getUser(tx, name)
		if err != nil {
			return err
		}
		rec.Roles = roles
		return putUser(tx, rec, rec.KeyID)
	})
	if err != nil {
		return fmt.Errorf("setting roles of %q: %w", name, err)
	}
	return nil
}

// Get returns one user, or an ENOTFOUND error.
func (u *Users) Get(name string) (User, error) {
	rec, ok := u.cache.Load().byName[name]
	if !ok {
		return User{}, switchboard.Errorf(switchboard.ENOTFOUND, "user %q not found", name)
	}
	return rec.user(), nil
}

// List returns every user, sorted by name.
func (u *Users) List() ([]User, error) {
	snap := u.cache.Load()
	out := make([]User, 0, len(snap.byName))
	for _, rec := range snap.byName {
		out = append(out, rec.user())
	}
	slices.SortFunc(out, func(a, b User) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// authenticate checks a presented API key. Every input, well-formed or not,
// known id or not, costs one SHA-256 and one constant-time compare.
func (u *Users) authenticate(key string) (*userRecord, bool) {
	sum := sha256.Sum256([]byte(keyHashDomain + key))
	want := dummyHash[:]
	var rec *userRecord
	if id, ok := parseAPIKey(key); ok {
		if r, found := u.cache.Load().byKeyID[id]; found && len(r.KeyHash) == sha256.Size {
			rec, want = r, r.KeyHash
		}
	}
	eq := subtle.ConstantTimeCompare(sum[:], want) == 1
	if rec == nil || !eq {
		return nil, false
	}
	return rec, true
}

// write runs fn in a store transaction, then refreshes the cache.
func (u *Users) write(fn func(tx switchboard.StoreTx) error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.st.Update(context.Background(), fn); err != nil {
		return err
	}
	return u.Reload()
}

func getUser(tx switchboard.StoreTx, name string) (*userRecord, error) {
	v, err := tx.Get(bucketUsers, name)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "user %q not found", name)
	}
	if err != nil {
		return nil, err
	}
	rec := new(userRecord)
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decoding user %q: %w", name, err)
	}
	return rec, nil
}

// putUser stores rec and its key index, dropping the index entry oldKeyID.
func putUser(tx switchboard.StoreTx, rec *userRecord, oldKeyID string) error {
	if oldKeyID != "" && oldKeyID != rec.KeyID {
		if err := tx.Delete(bucketAPIKeys, oldKeyID); err != nil {
			return err
		}
	}
	owner, err := tx.Get(bucketAPIKeys, rec.KeyID)
	switch {
	case err == nil && string(owner) != rec.Name:
		// 60 random bits make this practically impossible; refuse rather than overwrite.
		return switchboard.Errorf(switchboard.ECONFLICT, "api key id collision, try again")
	case err != nil && switchboard.ErrorCode(err) != switchboard.ENOTFOUND:
		return err
	}
	if err := tx.Put(bucketAPIKeys, rec.KeyID, []byte(rec.Name)); err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Put(bucketUsers, rec.Name, v)
}

// newAPIKey returns a fresh key, its public id and the hash to store.
func newAPIKey() (key, id string, hash []byte, err error) {
	var raw [8 + 32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", nil, fmt.Errorf("generating api key: %w", err)
	}
	id = b32.EncodeToString(raw[:8])[:keyIDLen]
	key = keyScheme + id + "_" + b32.EncodeToString(raw[8:])
	sum := sha256.Sum256([]byte(keyHashDomain + key))
	return key, id, sum[:], nil
}

// parseAPIKey returns the public id of a well-formed key.
func parseAPIKey(key string) (string, bool) {
	if len(key) != keyLen || key[:len(keyScheme)] != keyScheme || key[len(keyScheme)+keyIDLen] != '_' {
		return "", false
	}
	for i := len(keyScheme); i < len(key); i++ {
		if i == len(keyScheme)+keyIDLen {
			continue
		}
		if c := key[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", false
		}
	}
	return key[len(keyScheme) : len(keyScheme)+keyIDLen], true
}

// ValidateUserName reports whether name is a valid user name:
// ^[a-z0-9][a-z0-9._@-]{0,63}$.
func ValidateUserName(name string) error {
	if !nameRE.MatchString(name) {
		return switchboard.Errorf(switchboard.EINVALID,
			"invalid user name %q: want 1-64 of a-z 0-9 . _ @ -, starting with a letter or digit", name)
	}
	return nil
}

// normalizeRoles validates roles and returns them sorted and deduplicated.
func normalizeRoles(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if !roleRE.MatchString(r) {
			return nil, switchboard.Errorf(switchboard.EINVALID,
				"invalid role %q: want 1-64 of A-Z a-z 0-9 . _ : @ / -, starting with a letter or digit", r)
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
