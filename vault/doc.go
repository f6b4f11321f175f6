// Package vault stores secrets encrypted at rest in a switchboard.Store.
//
// # Keys
//
// A 32-byte master key (from SWITCHBOARD_VAULT_KEY, a key file, or a generated
// <data_dir>/vault.key; see LoadKey) never encrypts a secret directly. Through
// HKDF-SHA256 it gives a key-encryption key that wraps a keyring of random data
// keys with ids "k1", "k2", … and seals a key-check value. The wrapped keyring and
// the key check live in the same store as the secrets; the master key never
// does. A wrong master key fails at Open, before anything is read or written,
// with ErrWrongKey.
//
// # Entries
//
// Every value is sealed with AES-256-GCM under the primary (newest) data key, with
// a fresh random 96-bit nonce per write. The stored form is
//
//	version(1) | len(key id)(1) | key id | updated-at unix nanos (8) | nonce (12) | ciphertext | tag (16)
//
// and the associated data binds that whole header plus the entry's full name
// ("secret/NAME", "conn/<user>/<provider>/NAME" or "internal/NAME", each part
// length-prefixed), so a ciphertext copied to another entry, or a header edited
// in place, fails to decrypt with ErrCorrupt. Errors name the entry, never the value.
//
// # Layout
//
// The vault owns the store buckets whose names start with "vault."; other
// packages keep their own buckets in the same store. A store only ever sees
// ciphertext and names:
//
//	vault.meta      format, key check, next data key number
//	vault.keys      key id → data key wrapped under the master key
//	vault.secret    NAME → sealed value (shared secrets; no name starts with SWITCHBOARD_)
//	vault.internal  NAME → sealed raw key (the gateway's own keys; see InternalKey)
//	vault.conn      user␟provider␟record → JSON Connection;
//	                user␟provider␟values␟NAME → sealed value (␟ is switchboard.StoreKeySep)
//
// # Rotation
//
// Rotate adds a data key and re-encrypts every entry under it in one store
// transaction, then retires the old data keys: after it returns, or after the
// process dies at any point, every entry decrypts with exactly the keyring
// present. Rekey re-wraps the keyring under a new master key and replaces the
// key check, also in one transaction. Reads use the keyring cached at Open and
// after each rotation, and read it again when a value names a key id it does
// not hold (another replica rotated).
//
// # Files and durability
//
// The embedded store (store/bolt) checks its file before mapping it (a damaged
// file is one sentence, never a crash), takes a short file lock (a second
// opener fails fast), and fsyncs every transaction. The tests SIGKILL a writing
// child process at random points and check the file.
package vault
