package vault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// bucketInternal holds the gateway's own keys (the service-token signing key,
// the audit digest key): NAME → sealed raw key bytes, under the entry name
// "internal/NAME". Only InternalKey reads or writes it; Get, Set, Delete and
// List never see it.
const bucketInternal = "vault.internal"

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
	ctx := context.Background()
	if err := checkName(name); err != nil {
		return nil, err
	}
	ename := internalEntry(name)
	key, found, err := v.readInternal(ctx, name)
	if err == nil && !found && v.readOnly {
		err = notFound(fmt.Sprintf("internal key %q", name))
	}
	if err != nil || found {
		if err != nil {
			return nil, fmt.Errorf("getting %s: %w", ename, err)
		}
		return key, nil
	}
	err = v.update(ctx, func(tx switchboard.StoreTx) error {
		found = false
		if stored, err := tx.Get(bucketInternal, name); err == nil {
			var ok bool
			if key, ok, err = v.internalValue(name, stored, func(s []byte) ([]byte, envelope, error) { return v.openTx(tx, ename, s) }); err != nil || ok {
				found = ok
				return err // another caller stored it first
			}
		} else if switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
			return err
		}
		key = make([]byte, InternalKeySize)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		sealed, err := v.seal(tx, ename, key, time.Now())
		if err != nil {
			return err
		}
		return tx.Put(bucketInternal, name, sealed)
	})
	if err != nil {
		return nil, fmt.Errorf("storing %s: %w", ename, err)
	}
	if !found {
		v.log.Info().Str("entry", ename.String()).Msg("vault internal key generated")
	}
	return key, nil
}

// readInternal returns the internal key name as the store holds it. A stored
// value of the wrong size reports found=false (after logging), so the caller
// replaces it. In a read-only vault that was never migrated it also looks for
// the key where older versions kept it: base64 text among the shared secrets.
func (v *Vault) readInternal(ctx context.Context, name string) ([]byte, bool, error) {
	ename := internalEntry(name)
	stored, err := v.get(ctx, bucketInternal, name)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		if !v.readOnly {
			return nil, false, nil
		}
		legacy, err := v.get(ctx, bucketSecret, name)
		if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		pt, _, err := v.openRead(ctx, bucketSecret, name, secretEntry(name), legacy)
		if err != nil {
			return nil, false, err
		}
		key, ok := legacyKey(pt)
		clear(pt)
		return key, ok, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v.internalValue(name, stored, func(s []byte) ([]byte, envelope, error) { return v.openRead(ctx, bucketInternal, name, ename, s) })
}

// internalValue decrypts a stored internal key with open; a key of the wrong
// size reports found=false.
func (v *Vault) internalValue(name string, stored []byte, open func([]byte) ([]byte, envelope, error)) ([]byte, bool, error) {
	key, _, err := open(stored)
	if err != nil {
		return nil, false, err
	}
	if len(key) != InternalKeySize {
		clear(key)
		v.log.Warn().Str("entry", internalEntry(name).String()).Msg("vault internal key has the wrong size; replacing it with a new key")
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
func (v *Vault) migrateInternal(ctx context.Context) ([]string, error) {
	es, err := v.list(ctx, bucketSecret, "")
	if err != nil {
		return nil, err
	}
	var moved []string
	for _, e := range es {
		if switchboard.ReservedSecretName(e.Key) {
			moved = append(moved, e.Key)
		}
	}
	if len(moved) == 0 {
		return nil, nil
	}
	err = v.update(ctx, func(tx switchboard.StoreTx) error {
		for _, name := range moved {
			stored, err := tx.Get(bucketSecret, name)
			if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
				continue
			}
			if err != nil {
				return err
			}
			_, err = tx.Get(bucketInternal, name)
			switch {
			case switchboard.ErrorCode(err) == switchboard.ENOTFOUND:
				pt, env, err := v.openTx(tx, secretEntry(name), stored)
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
				if err := tx.Put(bucketInternal, name, sealed); err != nil {
					return err
				}
			case err != nil:
				return err
			default:
				v.log.Warn().Str("entry", secretEntry(name).String()).
					Msg("vault secret with a reserved name duplicates an internal key; the internal key is kept")
			}
			if err := tx.Delete(bucketSecret, name); err != nil {
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
	return v.update(context.Background(), func(tx switchboard.StoreTx) error {
		return tx.Delete(bucketInternal, name)
	})
}
