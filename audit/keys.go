package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// Keys. Everything the log authenticates is keyed by the one audit key
// (Config.DigestKey, which the gateway keeps in its vault), through keys
// derived from it so that no output of one use is a key of another:
//
//   - Digest (arguments, session IDs) is HMAC-SHA256 under the audit key itself,
//     as it always was, so digests computed before the chain was keyed still
//     match.
//   - The chain key, the checkpoint key and the key id are HMAC-SHA256 of the
//     audit key under a fixed label used as the HMAC key (HKDF-Extract with the
//     label as salt). Digest computes HMAC under the audit key, never under a
//     label, so no value fed to Digest (a tool call's arguments, a session ID,
//     `switchboard audit digest`) can produce one of them.
//   - The pre-upgrade checkpoint key (checkpointKey) is only read, to check
//     checkpoints written before the chain was keyed.
const (
	chainLabel      = "switchboard audit chain v2"
	checkpointLabel = "switchboard audit checkpoint v2"
	keyIDLabel      = "switchboard audit key id"
)

// keys are the keys derived from one audit key.
type keys struct {
	chain []byte // HMAC key of every record's hash
	ck    []byte // HMAC key of the checkpoint
	ck1   []byte // HMAC key of a pre-upgrade checkpoint
	id    string // public name of the audit key, safe to log and store
}

func deriveKeys(key []byte) keys {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, []byte(label))
		m.Write(key)
		return m.Sum(nil)
	}
	return keys{
		chain: derive(chainLabel),
		ck:    derive(checkpointLabel),
		ck1:   checkpointKey(key),
		id:    hex.EncodeToString(derive(keyIDLabel)[:8]),
	}
}

// KeyID returns the public name of an audit key: 16 hex digits that tell
// whether two keys are the same without revealing either.
func KeyID(key []byte) string { return deriveKeys(key).id }

// lineMAC computes records' hashes: HMAC-SHA256 under the chain key, or, with a
// nil key, the unkeyed SHA-256 of logs written before the chain was keyed (only
// tests write those now). It is not safe for concurrent use.
type lineMAC struct {
	h   hash.Hash
	sum []byte
}

func newLineMAC(chainKey []byte) *lineMAC {
	if chainKey == nil {
		return &lineMAC{h: sha256.New(), sum: make([]byte, 0, sha256.Size)}
	}
	return &lineMAC{h: hmac.New(sha256.New, chainKey), sum: make([]byte, 0, sha256.Size)}
}

var closeBrace = []byte{'}'}

// of returns the hash of the hashed text of a line: text, then "}". The result
// is valid until the next call.
func (m *lineMAC) of(text []byte) []byte {
	m.h.Reset()
	m.h.Write(text)
	m.h.Write(closeBrace)
	m.sum = m.h.Sum(m.sum[:0])
	return m.sum
}

// Kinds of record, by what their hash is.
const (
	kindBad    = iota // neither: altered, or keyed under another key
	kindKeyed         // HMAC under the chain key
	kindLegacy        // unkeyed SHA-256, written before the chain was keyed
)

// classifier tells keyed records from pre-upgrade ones. With no chain key
// (verifying without the audit key) a record that is not a valid pre-upgrade
// record is reported as keyed: it cannot be checked.
type classifier struct {
	keyed  *lineMAC // nil without a key
	legacy *lineMAC
	hex    [64]byte
}

func newClassifier(k *keys) *classifier {
	c := &classifier{legacy: newLineMAC(nil)}
	if k != nil {
		c.keyed = newLineMAC(k.chain)
	}
	return c
}

// kind classifies a line (without its newline) by its trailing
// `,"hash":"<64 hex>"}` member; a line without one is kindBad.
func (c *classifier) kind(line []byte) int {
	n := len(line)
	if n < lineSuffix+1 || !bytes.HasPrefix(line[n-lineSuffix:], []byte(hashPrefix)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return kindBad
	}
	text, want := line[:len(line)-lineSuffix], line[len(line)-lineSuffix+len(hashPrefix):len(line)-2]
	if c.keyed != nil {
		hex.Encode(c.hex[:], c.keyed.of(text))
		if hmac.Equal(c.hex[:], want) {
			return kindKeyed
		}
	}
	hex.Encode(c.hex[:], c.legacy.of(text))
	if hmac.Equal(c.hex[:], want) {
		return kindLegacy
	}
	if c.keyed == nil {
		return kindKeyed
	}
	return kindBad
}
