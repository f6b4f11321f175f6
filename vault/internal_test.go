package vault_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

const signingName = "SWITCHBOARD_SERVICE_SIGNING_KEY"

// TestInternalKeysAreOutOfReachOfSecrets: the gateway's keys live apart from
// the shared secrets, and reserved names are refused by every shared-secret
// operation, in any letter case.
func TestInternalKeysAreOutOfReachOfSecrets(t *testing.T) {
	v, path, key := MustOpen(t)
	k1, err := v.InternalKey(signingName)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != vault.InternalKeySize {
		t.Fatalf("key is %d bytes", len(k1))
	}
	if again, err := v.InternalKey(signingName); err != nil || !bytes.Equal(again, k1) {
		t.Fatalf("second InternalKey = %x, %v; want the same key", again, err)
	}
	if err := v.Set("GITHUB_TOKEN", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{signingName, "SWITCHBOARD_AUDIT_DIGEST_KEY", "switchboard_service_signing_key", "Switchboard_X"} {
		for op, call := range map[string]func() error{
			"set":    func() error { return v.Set(name, []byte("attacker")) },
			"get":    func() error { _, err := v.Get(name); return err },
			"delete": func() error { return v.Delete(name) },
		} {
			err := call()
			if !errors.Is(err, vault.ErrReserved) || switchboard.ErrorCode(err) != switchboard.EINVALID {
				t.Errorf("%s %s: err = %v, want ErrReserved with code EINVALID", op, name, err)
			}
			if msg := switchboard.ErrorMessage(err); !strings.Contains(msg, "is reserved: names starting with SWITCHBOARD_ belong to the gateway's internal keys") {
				t.Errorf("%s %s: message %q is not the reserved-name sentence", op, name, msg)
			}
		}
	}
	list, err := v.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "GITHUB_TOKEN" {
		t.Errorf("List = %+v, want only GITHUB_TOKEN", list)
	}
	// Rotation re-encrypts the internal keys too, and they survive a reopen.
	if n, err := v.Rotate(); err != nil || n != 2 {
		t.Fatalf("Rotate = %d, %v; want 2 entries", n, err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v2 := MustOpenPath(t, path, key, vault.Options{})
	if got, err := v2.InternalKey(signingName); err != nil || !bytes.Equal(got, k1) {
		t.Fatalf("after rotate and reopen InternalKey = %x, %v; want the original key", got, err)
	}
	if err := v2.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyInternalKeysMigrateOnOpen: a vault written by an older version
// kept the internal keys as base64 shared secrets. Opening it moves them into
// the internal bucket with the same key bytes (so service tokens and audit
// chains made with them stay valid), replaces a value that was never a key,
// and takes every reserved name out of the shared secrets without losing it.
func TestLegacyInternalKeysMigrateOnOpen(t *testing.T) {
	v, path, key := MustOpen(t)
	signing := make([]byte, vault.InternalKeySize)
	_, _ = rand.Read(signing)
	legacy := map[string]string{
		signingName:                    base64.StdEncoding.EncodeToString(signing),
		"SWITCHBOARD_AUDIT_DIGEST_KEY": "overwritten by secret set", // the `illegal base64 data` vault
		"SWITCHBOARD_SOMETHING_ELSE":   "a user value under a now-reserved name",
	}
	for name, val := range legacy {
		if err := v.SetLegacy(name, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Set("KEEP", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	// A read-only open cannot migrate, but still finds the legacy key.
	ro := MustOpenPath(t, path, key, vault.Options{ReadOnly: true})
	if got, err := ro.InternalKey(signingName); err != nil || !bytes.Equal(got, signing) {
		t.Fatalf("read-only InternalKey = %x, %v; want the legacy key", got, err)
	}
	if list, _ := ro.List(); len(list) != 1 || list[0].Name != "KEEP" {
		t.Errorf("read-only List = %+v, want only KEEP", list)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}

	v2 := MustOpenPath(t, path, key, vault.Options{})
	if got, err := v2.InternalKey(signingName); err != nil || !bytes.Equal(got, signing) {
		t.Fatalf("migrated InternalKey = %x, %v; want the legacy key", got, err)
	}
	audit, err := v2.InternalKey("SWITCHBOARD_AUDIT_DIGEST_KEY")
	if err != nil || len(audit) != vault.InternalKeySize {
		t.Fatalf("a legacy value that is not a key must be replaced by a new key: %x, %v", audit, err)
	}
	if got, err := v2.Get("KEEP"); err != nil || got.Reveal() != "kept" {
		t.Fatalf("Get(KEEP) = %v", err)
	}
	if list, _ := v2.List(); len(list) != 1 || list[0].Name != "KEEP" {
		t.Errorf("List = %+v, want only KEEP", list)
	}
	if err := v2.Check(); err != nil {
		t.Fatal(err)
	}
	if err := v2.Close(); err != nil {
		t.Fatal(err)
	}
	var secretNames, internalNames []string
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: bolt.DefaultLockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		_ = tx.Bucket([]byte("vault.secret")).ForEach(func(k, _ []byte) error {
			secretNames = append(secretNames, string(k))
			return nil
		})
		return tx.Bucket([]byte("vault.internal")).ForEach(func(k, _ []byte) error {
			internalNames = append(internalNames, string(k))
			return nil
		})
	})
	if strings.Join(secretNames, ",") != "KEEP" {
		t.Errorf("shared secrets after migration = %v", secretNames)
	}
	if strings.Join(internalNames, ",") != "SWITCHBOARD_AUDIT_DIGEST_KEY,SWITCHBOARD_SERVICE_SIGNING_KEY,SWITCHBOARD_SOMETHING_ELSE" {
		t.Errorf("internal keys after migration = %v (nothing may be lost)", internalNames)
	}
}

func TestForgetInternalKey(t *testing.T) {
	v, _, _ := MustOpen(t)
	k1, err := v.InternalKey("SWITCHBOARD_AUDIT_DIGEST_KEY")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.ForgetInternalKey("SWITCHBOARD_AUDIT_DIGEST_KEY"); err != nil {
		t.Fatal(err)
	}
	if err := v.ForgetInternalKey("SWITCHBOARD_NEVER_MADE"); err != nil {
		t.Errorf("forgetting a key that does not exist: %v", err)
	}
	k2, err := v.InternalKey("SWITCHBOARD_AUDIT_DIGEST_KEY")
	if err != nil {
		t.Fatal(err)
	}
	if string(k1) == string(k2) {
		t.Error("the forgotten key came back")
	}
}
