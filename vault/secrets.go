package vault

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// nameRe is the rule for secret names: an environment variable name of at most
// 128 characters.
var nameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// ValidName reports whether name can name a secret: ^[A-Za-z_][A-Za-z0-9_]{0,127}$.
func ValidName(name string) bool { return nameRe.MatchString(name) }

// Entry describes a stored secret. It never holds the value.
type Entry struct {
	Name      string    `json:"name"`
	UpdatedAt time.Time `json:"updated_at"`
	KeyID     string    `json:"key_id"`
}

func checkName(name string) error {
	if !ValidName(name) {
		return switchboard.Errorf(switchboard.EINVALID, "invalid secret name %q: want letters, digits and _, not starting with a digit, at most 128", clip(name))
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func notFound(what string) error {
	return &switchboard.Error{Code: switchboard.ENOTFOUND, Message: what + " not found", Err: ErrNotFound}
}

// Set stores value as the shared secret name, replacing any previous value. A
// reserved name (see switchboard.ReservedSecretName) is refused with ErrReserved.
func (v *Vault) Set(name string, value []byte) error {
	if err := checkSecretName(name); err != nil {
		return err
	}
	return v.set(name, value)
}

// set stores a shared secret without checking its name.
func (v *Vault) set(name string, value []byte) error {
	ename := secretEntry(name)
	if err := validValue(ename, value); err != nil {
		return err
	}
	err := v.update(context.Background(), func(tx switchboard.StoreTx) error {
		sealed, err := v.seal(tx, ename, value, time.Now())
		if err != nil {
			return err
		}
		return tx.Put(bucketSecret, name, sealed)
	})
	if err != nil {
		return fmt.Errorf("setting secret %s: %w", name, err)
	}
	return nil
}

// Get returns the shared secret name, decrypted. A missing secret is ErrNotFound
// (code ENOTFOUND); a value that fails its integrity check is ErrCorrupt; a
// reserved name is ErrReserved (code EINVALID), so no ${secret:} reference can
// reach the gateway's internal keys.
func (v *Vault) Get(name string) (switchboard.Secret, error) {
	return v.secret(context.Background(), name)
}

func (v *Vault) secret(ctx context.Context, name string) (switchboard.Secret, error) {
	if err := checkSecretName(name); err != nil {
		return "", err
	}
	ename := secretEntry(name)
	stored, err := v.get(ctx, bucketSecret, name)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		err = notFound(fmt.Sprintf("secret %q", name))
	}
	if err != nil {
		return "", fmt.Errorf("getting secret %s: %w", name, err)
	}
	pt, _, err := v.openRead(ctx, bucketSecret, name, ename, stored)
	if err != nil {
		return "", fmt.Errorf("getting secret %s: %w", name, err)
	}
	return v.reveal(pt), nil
}

// Delete removes the shared secret name; a missing secret is ErrNotFound and a
// reserved name is ErrReserved.
func (v *Vault) Delete(name string) error {
	if err := checkSecretName(name); err != nil {
		return err
	}
	err := v.update(context.Background(), func(tx switchboard.StoreTx) error {
		if _, err := tx.Get(bucketSecret, name); err != nil {
			if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
				return notFound(fmt.Sprintf("secret %q", name))
			}
			return err
		}
		return tx.Delete(bucketSecret, name)
	})
	if err != nil {
		return fmt.Errorf("deleting secret %s: %w", name, err)
	}
	return nil
}

// List returns the shared secrets sorted by name, without their values. It
// reads only the authenticated header of each value; Get or Check verify it.
func (v *Vault) List() ([]Entry, error) {
	es, err := v.list(context.Background(), bucketSecret, "")
	if err != nil {
		return nil, fmt.Errorf("listing secrets: %w", err)
	}
	var out []Entry
	for _, e := range es {
		if switchboard.ReservedSecretName(e.Key) {
			continue // an unmigrated internal key in a read-only vault
		}
		env, err := parseEnvelope(secretEntry(e.Key), e.Value)
		if err != nil {
			return nil, fmt.Errorf("listing secrets: %w", err)
		}
		out = append(out, Entry{Name: e.Key, UpdatedAt: env.updatedAt, KeyID: env.keyID})
	}
	return out, nil
}

// Secret implements switchboard.SecretStore: it is Get, honouring ctx.
func (v *Vault) Secret(ctx context.Context, name string) (switchboard.Secret, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("getting secret %s: %w", name, err)
	}
	return v.secret(ctx, name)
}
