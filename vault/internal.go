package vault

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-mcp/switchboard"
)

// bucketInternal holds the gateway's own keys (the service-token signing key,
// the audit digest key): NAME → sealed raw key bytes, under the entry name
// "internal/NAME". Only InternalKey reads or writes it; Get, Set, Delete and
// List never see it.
var bucketInternal = []byte("vault.internal")

// InternalKeySize is the length of every key InternalKey generates.
const InternalKeySize = 32

// ErrReserved means a shared-secret name starts with
// switchboard.ReservedSecretPrefix, which belongs to the gateway's internal keys.
var ErrReserved = errors.New("reserved for the gateway's internal keys")

// internalEntry names one of the gateway's internal keys.
func internalEntry(name string) entryName { return entryName{"internal", name} }

// checkSecretName validates a shared-secret name and refuses reserved ones.
func checkSecretName(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if switchboard.ReservedSecretName(name) {
		return &switchboard.Error{Code: switchboard.EINVALID, Err: ErrReserved,
			Message: fmt.Sprintf("secret name %q is reserved: names starting with %s belong to the gateway's internal keys; choose another name", name, switchboard.ReservedSecretPrefix)}
	}
	return nil
}

// InternalKey returns the gateway's internal key name (InternalKeySize random
// bytes), generating and storing it on first use in one transaction. These
// keys live apart from the shared secrets: no `secret` command and no
// ${secret:} reference can read, replace or delete them. A stored value that is
// not a key of the right size (a vault from an older version in which someone
// ran `secret set` over it) cannot have keyed anything, so it is replaced by a
// new key, and the replacement is logged. A read-only vault cannot generate:
// a missing key there is ErrNotFound.
func (v *Vault) InternalKey(name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ename := internalEntry(name)
	var key []byte
	var found bool
	err := v.view(func(tx *bolt.Tx) error {
		var err error
		key, found, err = v.readInternal(tx, name)
		return err
	})
	if err == nil && !found && v.db.IsReadOnly() {
		err = notFound(fmt.Sprintf("internal key %q", name))
	}
	if err != nil || found {
		if err != nil {
			return nil, fmt.Errorf("getting %s: %w", ename, err)
		}
		return key, nil
	}
	err = v.update(func(tx *bolt.Tx) error {
		var err error
		if key, found, err = v.readInternal(tx, name); err != nil || found {
			return err // another caller stored it first
		}
		key = make([]byte, InternalKeySize)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		sealed, err := v.seal(tx, ename, key, time.Now())
		if err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketInternal) // absent in vaults made by older versions
		if err != nil {
			return err
		}
		return b.Put([]byte(name), sealed)
	})
	if err != nil {
		return nil, fmt.Errorf("storing %s: %w", ename, err)
	}
	if !found {
		v.log.Info().Str("entry", ename.String()).Msg("vault internal key generated")
	}
	return key, nil
}

// readInternal returns the internal key name as tx sees it. A stored value of
// the wrong size reports found=false (after logging), so the caller replaces it.
// In a read-only vault that was never migrated it also looks for the key where
// older versions kept it: base64 text in the shared-secret bucket.
func (v *Vault) readInternal(tx *bolt.Tx, name string) ([]byte, bool, error) {
	ename := internalEntry(name)
	var stored []byte
	if b := tx.Bucket(bucketInternal); b != nil {
		stored = b.Get([]byte(name))
	}
	if stored == nil {
		if !v.db.IsReadOnly() {
			return nil, false, nil
		}
		legacy := tx.Bucket(bucketSecret).Get([]byte(name))
		if legacy == nil {
			return nil, false, nil
		}
		pt, _, err := v.open(tx, secretEntry(name), legacy)
		if err != nil {
			return nil, false, err
		}
		key, ok := legacyKey(pt)
		clear(pt)
		return key, ok, nil
	}
	key, _, err := v.open(tx, ename, stored)
	if err != nil {
		return nil, false, err
	}
	if len(key) != InternalKeySize {
		clear(key)
		v.log.Warn().Str("entry", ename.String()).Msg("vault internal key has the wrong size; replacing it with a new key")
		return nil, false, nil
	}
	return key, true, nil
}

// legacyKey decodes an internal key as older versions stored it among the
// shared secrets: the base64 of InternalKeySize bytes.
func legacyKey(pt []byte) ([]byte, bool) {
	key, err := base64.StdEncoding.DecodeString(string(pt))
	if err != nil || len(key) != InternalKeySize {
		return nil, false
	}
	return key, true
}

// migrateInternal moves every shared secret with a reserved name (where older
// versions kept the gateway's internal keys, as base64 text) into the internal
// bucket, in one transaction, so keys made by an older version keep working:
// service tokens it issued still verify and its audit chain still checks. A
// value that is a base64 key is stored as the raw key; any other value moves
// verbatim (nothing can read it any more through `secret` or ${secret:}, and
// nothing is lost from the file). It returns the names it moved.
func (v *Vault) migrateInternal() ([]string, error) {
	var moved []string
	err := v.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSecret).ForEach(func(k, _ []byte) error {
			if switchboard.ReservedSecretName(string(k)) {
				moved = append(moved, string(k))
			}
			return nil
		})
	})
	if err != nil || len(moved) == 0 {
		return nil, err
	}
	err = v.update(func(tx *bolt.Tx) error {
		internal, err := tx.CreateBucketIfNotExists(bucketInternal)
		if err != nil {
			return err
		}
		secrets := tx.Bucket(bucketSecret)
		for _, name := range moved {
			stored := secrets.Get([]byte(name))
			if stored == nil {
				continue
			}
			if internal.Get([]byte(name)) == nil {
				pt, env, err := v.open(tx, secretEntry(name), stored)
				if err != nil {
					return err
				}
				value := pt
				if key, ok := legacyKey(pt); ok {
					value = key
				} else {
					v.log.Warn().Str("entry", secretEntry(name).String()).
						Msg("vault secret with a reserved name is not a gateway key; moved out of reach of secret and ${secret:}")
				}
				sealed, err := v.seal(tx, internalEntry(name), value, env.updatedAt)
				clear(pt)
				clear(value)
				if err != nil {
					return err
				}
				if err := internal.Put([]byte(name), sealed); err != nil {
					return err
				}
			} else {
				v.log.Warn().Str("entry", secretEntry(name).String()).
					Msg("vault secret with a reserved name duplicates an internal key; the internal key is kept")
			}
			if err := secrets.Delete([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("moving internal keys out of the shared secrets: %w", err)
	}
	v.log.Info().Strs("names", moved).Msg("vault internal keys moved out of the shared secrets")
	return moved, nil
}

// ForgetInternalKey deletes the gateway's internal key name, so that its next
// use generates a new one. Whatever the old key protected can no longer be
// proven with it: service tokens it signed stop verifying, and an audit log it
// keyed fails `audit verify`. For operators recovering from a leaked key, and
// for tests of exactly that. Forgetting a key that does not exist is not an
// error.
func (v *Vault) ForgetInternalKey(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return v.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInternal)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(name))
	})
}
