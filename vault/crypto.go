package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	formatVersion = 1  // first byte of every sealed value
	nonceSize     = 12 // AES-GCM standard nonce
	tagSize       = 16 // AES-GCM tag
	maxKeyIDLen   = 32

	kekInfo    = "switchboard vault v1 key-encryption key"
	aadDomain  = "switchboard/vault/v1\x00"
	checkValue = "switchboard vault key check v1"
)

var keyIDRe = regexp.MustCompile(`^k[1-9][0-9]{0,18}$`)

// deriveKEK derives the key-encryption key from the master key.
func deriveKEK(master Key) ([]byte, error) {
	kek, err := hkdf.Key(sha256.New, master.bytes(), nil, kekInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("deriving key-encryption key: %w", err)
	}
	return kek, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// entryName is the full name of a sealed value, bound into its associated data.
type entryName []string

// secretEntry names a shared secret.
func secretEntry(name string) entryName { return entryName{"secret", name} }

// connEntry names one secret value of a user's connection.
func connEntry(user, provider, name string) entryName {
	return entryName{"conn", user, provider, name}
}

// String returns the display form, e.g. "secret/GITHUB_TOKEN".
func (n entryName) String() string { return strings.Join(n, "/") }

// appendAAD appends an unambiguous encoding of n: each part length-prefixed.
func (n entryName) appendAAD(b []byte) []byte {
	for _, p := range n {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// envelope is the parsed stored form of a sealed value.
type envelope struct {
	keyID     string
	updatedAt time.Time
	header    []byte // version … updated-at: authenticated, not encrypted
	body      []byte // nonce | ciphertext | tag
}

// sealEntry encrypts plaintext for entry name under data key (id, key).
func sealEntry(name entryName, id string, key, plaintext []byte, updatedAt time.Time) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 2+len(id)+8+nonceSize+len(plaintext)+tagSize)
	out = append(out, formatVersion, byte(len(id)))
	out = append(out, id...)
	out = binary.BigEndian.AppendUint64(out, uint64(updatedAt.UnixNano()))
	headerLen := len(out)
	out = out[:headerLen+nonceSize]
	nonce := out[headerLen:]
	_, _ = rand.Read(nonce)
	aad := name.appendAAD(append([]byte(aadDomain), out[:headerLen]...))
	return aead.Seal(out, nonce, plaintext, aad), nil
}

// parseEnvelope splits a stored value; any malformation is ErrCorrupt.
func parseEnvelope(name entryName, v []byte) (envelope, error) {
	bad := func(what string) (envelope, error) {
		return envelope{}, fmt.Errorf("decrypting %s: %s: %w", name, what, ErrCorrupt)
	}
	if len(v) < 2 {
		return bad("truncated")
	}
	if v[0] != formatVersion {
		return bad("unknown format version " + strconv.Itoa(int(v[0])))
	}
	n := int(v[1])
	if n == 0 || n > maxKeyIDLen || len(v) < 2+n+8+nonceSize+tagSize {
		return bad("truncated")
	}
	id := string(v[2 : 2+n])
	if !keyIDRe.MatchString(id) {
		return bad("malformed key id")
	}
	nanos := binary.BigEndian.Uint64(v[2+n : 2+n+8])
	return envelope{
		keyID:     id,
		updatedAt: time.Unix(0, int64(nanos)).UTC(),
		header:    v[:2+n+8],
		body:      v[2+n+8:],
	}, nil
}

// openEntry decrypts env with its data key; a failed check is ErrCorrupt.
func openEntry(name entryName, env envelope, key []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("decrypting %s: %w", name, err)
	}
	aad := name.appendAAD(append([]byte(aadDomain), env.header...))
	pt, err := aead.Open(nil, env.body[:nonceSize], env.body[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("decrypting %s: %w", name, ErrCorrupt)
	}
	return pt, nil
}

// wrap seals a small value (a data key or the key check) under the KEK with a
// purpose label as associated data: nonce | ciphertext | tag.
func wrap(kek, plaintext []byte, label string) ([]byte, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	_, _ = rand.Read(out)
	return aead.Seal(out, out, plaintext, []byte(aadDomain+label)), nil
}

// unwrap opens a value sealed by wrap; it returns false if the KEK or label is
// wrong or the value was altered.
func unwrap(kek, sealed []byte, label string) ([]byte, bool) {
	aead, err := newGCM(kek)
	if err != nil || len(sealed) < nonceSize+tagSize {
		return nil, false
	}
	pt, err := aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], []byte(aadDomain+label))
	return pt, err == nil
}

func keyLabel(id string) string { return "keyring/" + id }

const checkLabel = "check"

// keyNum returns the number of a key id ("k12" → 12), or 0 if malformed.
func keyNum(id string) uint64 {
	if !keyIDRe.MatchString(id) {
		return 0
	}
	n, err := strconv.ParseUint(id[1:], 10, 64)
	if err != nil {
		return 0
	}
	return n
}
