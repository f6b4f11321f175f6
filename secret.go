package switchboard

import (
	"context"
	"fmt"
	"strings"
)

// ReservedSecretPrefix starts the names the gateway keeps for its own keys
// (the service-token signing key, the audit digest key). No shared secret may
// have such a name, in any letter case: `secret set` and `secret rm` refuse
// it, and so do a ${secret:} reference in gateway.yaml and the vault's Get.
const ReservedSecretPrefix = "SWITCHBOARD_"

// ReservedSecretName reports whether name starts with ReservedSecretPrefix, in
// any letter case.
func ReservedSecretName(name string) bool {
	return len(name) >= len(ReservedSecretPrefix) && strings.EqualFold(name[:len(ReservedSecretPrefix)], ReservedSecretPrefix)
}

// Redacted is what a Secret prints as, everywhere.
const Redacted = "<secret>"

// Secret is a plaintext secret value. It prints, marshals and logs as "<secret>";
// only Reveal returns the value.
type Secret string

// Reveal returns the plaintext. Call it only where the value is handed to a child.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string                { return Redacted }
func (s Secret) GoString() string              { return Redacted }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(Redacted)) }
func (s Secret) MarshalJSON() ([]byte, error)  { return []byte(`"` + Redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(Redacted), nil }
func (s Secret) MarshalYAML() (any, error)     { return Redacted, nil }

// SecretStore resolves named secrets, decrypting them. Implementations register
// every returned value with the log redactor before returning it.
type SecretStore interface {
	// Secret returns the named shared secret, or an ENOTFOUND error.
	Secret(ctx context.Context, name string) (Secret, error)
	// UserSecret returns a user's connection secret for a provider, or ENOTFOUND.
	UserSecret(ctx context.Context, user, provider, name string) (Secret, error)
}

// Redactor scrubs registered secret values from log output.
type Redactor interface {
	// Add registers a value that must never be printed.
	Add(value string)
}
