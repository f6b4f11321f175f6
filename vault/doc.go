// Package vault stores secrets encrypted at rest in a bbolt file.
//
// # Keys
//
// A 32-byte master key (from SWITCHBOARD_VAULT_KEY, a key file, or a generated
// <data_dir>/vault.key; see LoadKey) never encrypts a secret directly. Through
// HKDF-SHA256 it gives a key-encryption key that wraps a keyring of random data
// keys with ids "k1", "k2", … and seals a key-check value. The wrapped keyring and
// the key check live in the same bbolt file as the secrets; the master key never
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
// The vault owns the buckets whose names start with "vault."; other packages keep
// their own buckets in the same file through DB:
//
//	vault.meta      format, key check, next data key number
//	vault.keys      key id → data key wrapped under the master key
//	vault.secret    NAME → sealed value (shared secrets; no name starts with SWITCHBOARD_)
//	vault.internal  NAME → sealed raw key (the gateway's own keys; see InternalKey)
//	vault.conn      user / provider / {"record": JSON Connection, "values" / NAME → sealed value}
//
// # Rotation
//
// Rotate adds a data key and re-encrypts every entry under it in one bbolt
// transaction, then retires the old data keys: after it returns, or after the
// process dies at any point, every entry decrypts with exactly the keyring
// present. Rekey
// re-wraps the keyring under a new master key and replaces the key check, also in
// one transaction.
//
// # Damaged files
//
// Open locks the file and checks it before bbolt maps it (checkFile): the meta
// pages, that the file is as long as the high-water mark says, and that every
// reachable page lies inside it with sane bounds; then bbolt's consistency
// check runs. A file that fails is ErrDamaged, one sentence naming the file and
// the problem, never a SIGBUS from a page past the end of a truncated file.
//
// # Durability
//
// The file is opened with a short lock timeout (a second opener fails fast with
// ErrLocked) and never with NoSync: every acknowledged write has been fsynced.
// Every write runs in db.Update and every read in db.View (Check excepted: it
// runs bbolt's consistency check in a write transaction it rolls back). The
// tests SIGKILL a writing child process at random points and check the file;
// for power loss the vault relies on bbolt's fsync ordering.
package vault
