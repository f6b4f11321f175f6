package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchboard-mcp/switchboard"
)

// KeySize is the length of a master key in bytes.
const KeySize = 32

// KeyFileName is the name of the generated key file in the data directory.
const KeyFileName = "vault.key"

// EnvKey is the environment variable that carries the master key, base64-encoded.
// The package never reads it; the caller passes its value in KeySource.EnvValue.
const EnvKey = "SWITCHBOARD_VAULT_KEY"

// Key is a vault master key. It prints, marshals and logs as "<secret>"; only
// Encode reveals it. Copies of a Key share its bytes, so Zero wipes them all.
// The zero Key is invalid.
type Key struct {
	b *[KeySize]byte
}

// GenerateKey returns a new random master key.
func GenerateKey() Key {
	k := Key{b: new([KeySize]byte)}
	_, _ = rand.Read(k.b[:]) // crypto/rand.Read never fails; it crashes the program instead
	return k
}

// NewKey returns a Key holding a copy of raw, which must be KeySize bytes.
func NewKey(raw []byte) (Key, error) {
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("%w: want %d bytes, got %d", ErrInvalidKey, KeySize, len(raw))
	}
	k := Key{b: new([KeySize]byte)}
	copy(k.b[:], raw)
	return k, nil
}

// ParseKey decodes a base64 master key (standard or URL alphabet, padded or not;
// surrounding whitespace is ignored). The error never contains the input.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Key{}, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return Key{}, fmt.Errorf("%w: not base64 (want the base64 encoding of %d random bytes)", ErrInvalidKey, KeySize)
	}
	defer clear(raw)
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("%w: want base64 of %d bytes, got %d bytes", ErrInvalidKey, KeySize, len(raw))
	}
	return NewKey(raw)
}

// Encode returns the key as standard base64 text, the form key files and
// SWITCHBOARD_VAULT_KEY hold. It reveals the key: call it only to store or show
// a key on the operator's explicit request.
func (k Key) Encode() string {
	if k.b == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(k.b[:])
}

// IsZero reports whether k holds no key (the zero Key, or one wiped by Zero).
func (k Key) IsZero() bool {
	if k.b == nil {
		return true
	}
	var zero [KeySize]byte
	return subtle.ConstantTimeCompare(k.b[:], zero[:]) == 1
}

// Equal reports whether k and o are the same key, in constant time.
func (k Key) Equal(o Key) bool {
	if k.b == nil || o.b == nil {
		return k.b == o.b
	}
	return subtle.ConstantTimeCompare(k.b[:], o.b[:]) == 1
}

// Zero wipes the key bytes in place, in this Key and every copy of it.
func (k Key) Zero() {
	if k.b != nil {
		clear(k.b[:])
	}
}

// bytes returns the key material; callers must not retain or modify it.
func (k Key) bytes() []byte { return k.b[:] }

// String returns "<secret>".
func (k Key) String() string { return switchboard.Redacted }

// GoString returns "<secret>".
func (k Key) GoString() string { return switchboard.Redacted }

// Format writes "<secret>" for every verb and flag.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(switchboard.Redacted)) }

// MarshalJSON returns "<secret>" as a JSON string.
func (k Key) MarshalJSON() ([]byte, error) { return []byte(`"` + switchboard.Redacted + `"`), nil }

// MarshalText returns "<secret>".
func (k Key) MarshalText() ([]byte, error) { return []byte(switchboard.Redacted), nil }

// MarshalYAML returns "<secret>".
func (k Key) MarshalYAML() (any, error) { return switchboard.Redacted, nil }

// LogValue returns "<secret>" for log/slog.
func (k Key) LogValue() slog.Value { return slog.StringValue(switchboard.Redacted) }

// KeyOrigin says where LoadKey found the master key.
type KeyOrigin string

// Key origins, in the order LoadKey tries them.
const (
	KeyFromEnv     KeyOrigin = "env"       // KeySource.EnvValue (SWITCHBOARD_VAULT_KEY)
	KeyFromFile    KeyOrigin = "key_file"  // KeySource.KeyFile (vault.key_file in gateway.yaml)
	KeyFromDataDir KeyOrigin = "data_dir"  // an existing <data_dir>/vault.key
	KeyGenerated   KeyOrigin = "generated" // a new <data_dir>/vault.key: log it loudly
)

// KeySource says where LoadKey may look for the master key.
type KeySource struct {
	// EnvValue is the value of SWITCHBOARD_VAULT_KEY, passed in by the caller.
	EnvValue string
	// KeyFile is an explicit key file (vault.key_file); if set it must exist.
	KeyFile string
	// DataDir holds vault.key, read if present and written if AllowGenerate.
	DataDir string
	// AllowGenerate lets LoadKey create <DataDir>/vault.key when no key is found.
	AllowGenerate bool
}

// LoadKey finds the master key: EnvValue, then KeyFile, then an existing
// <DataDir>/vault.key. If none is set and AllowGenerate is true it writes a new
// random key to <DataDir>/vault.key (mode 0600, base64 text) and reports
// KeyGenerated; otherwise it returns ErrNoKey. A key that is set but malformed is
// an error; LoadKey never falls through to the next source past it.
func LoadKey(src KeySource) (Key, KeyOrigin, error) {
	if src.EnvValue != "" {
		k, err := ParseKey(src.EnvValue)
		if err != nil {
			return Key{}, "", fmt.Errorf("reading vault key from %s: %w", EnvKey, err)
		}
		return k, KeyFromEnv, nil
	}
	if src.KeyFile != "" {
		k, err := ReadKeyFile(src.KeyFile)
		if err != nil {
			return Key{}, "", err
		}
		return k, KeyFromFile, nil
	}
	if src.DataDir == "" {
		return Key{}, "", ErrNoKey
	}
	path := filepath.Join(src.DataDir, KeyFileName)
	k, err := ReadKeyFile(path)
	if err == nil {
		return k, KeyFromDataDir, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Key{}, "", err
	}
	if !src.AllowGenerate {
		return Key{}, "", ErrNoKey
	}
	if err := os.MkdirAll(src.DataDir, 0o700); err != nil {
		return Key{}, "", fmt.Errorf("generating vault key: %w", err)
	}
	k = GenerateKey()
	if err := WriteKeyFile(path, k); err != nil {
		k.Zero()
		if errors.Is(err, fs.ErrExist) { // another process won the race; use its key
			k, err = ReadKeyFile(path)
			if err != nil {
				return Key{}, "", err
			}
			return k, KeyFromDataDir, nil
		}
		return Key{}, "", fmt.Errorf("generating vault key: %w", err)
	}
	return k, KeyGenerated, nil
}

// ReadKeyFile reads a base64 master key from path.
func ReadKeyFile(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("reading vault key file: %w", err)
	}
	defer clear(b)
	k, err := ParseKey(string(bytes.TrimSpace(b)))
	if err != nil {
		return Key{}, fmt.Errorf("reading vault key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k to a new file at path as base64 text with mode 0600, and
// fsyncs it and its directory. It fails with fs.ErrExist if path exists: a key
// file is never overwritten.
func WriteKeyFile(path string, k Key) error {
	if k.IsZero() {
		return fmt.Errorf("writing vault key file %s: %w: zero key", path, ErrInvalidKey)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing vault key file: %w", err)
	}
	text := []byte(k.Encode() + "\n")
	defer clear(text)
	_, err = f.Write(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("writing vault key file %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory so a file just created in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
