package vault_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard/vault"
)

// Offsets in a stored value sealed under "k1": version(1) | id len(1) | "k1" |
// updated-at(8) | nonce(12) | ciphertext | tag(16).
const (
	offVersion = 0
	offKeyID   = 2
	offTime    = 4
	offNonce   = 12
	offCipher  = 24
)

// TestTamper flips one bit in each part of a stored value, or truncates it: the
// read fails with ErrCorrupt naming the entry, never showing the value, and
// other entries still read.
func TestTamper(t *testing.T) {
	c := canary(t)
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
	}{
		{"nonce bit", func(b []byte) []byte { b[offNonce+3] ^= 0x10; return b }},
		{"ciphertext bit", func(b []byte) []byte { b[offCipher+5] ^= 0x01; return b }},
		{"tag bit", func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
		{"truncated tag", func(b []byte) []byte { return b[:len(b)-1] }},
		{"truncated to header", func(b []byte) []byte { return b[:offNonce+4] }},
		{"truncated to one byte", func(b []byte) []byte { return b[:1] }},
		{"empty", func(b []byte) []byte { return b[:0] }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
		{"updated-at bit", func(b []byte) []byte { b[offTime+7] ^= 1; return b }},
		{"version", func(b []byte) []byte { b[offVersion] = 2; return b }},
		{"unknown key id", func(b []byte) []byte { b[offKeyID+1] = '9'; return b }},
		{"malformed key id", func(b []byte) []byte { b[offKeyID] = 'x'; return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, path, key := MustOpen(t)
			if err := v.Set("VICTIM", []byte(c)); err != nil {
				t.Fatal(err)
			}
			if err := v.Set("BYSTANDER", []byte("fine")); err != nil {
				t.Fatal(err)
			}
			if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte(c)}); err != nil {
				t.Fatal(err)
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			rawPut(t, path, tt.mutate(rawGet(t, path, "vault.secret", "VICTIM")), "vault.secret", "VICTIM")
			rawPut(t, path, tt.mutate(rawGet(t, path, "vault.conn", "alice", "gh", "values", "TOKEN")), "vault.conn", "alice", "gh", "values", "TOKEN")

			v = MustOpenPath(t, path, key, vault.Options{})
			_, err := v.Get("VICTIM")
			assertCorrupt(t, err, "secret/VICTIM", c)
			_, err = v.UserSecret(context.Background(), "alice", "gh", "TOKEN")
			assertCorrupt(t, err, "conn/alice/gh/TOKEN", c)
			if got, err := v.Get("BYSTANDER"); err != nil || got.Reveal() != "fine" {
				t.Fatalf("other entry: %v", err)
			}
			err = v.Check()
			assertCorrupt(t, err, "secret/VICTIM", c)
			assertCorrupt(t, err, "conn/alice/gh/TOKEN", c)
		})
	}
}

func assertCorrupt(t *testing.T, err error, entry, value string) {
	t.Helper()
	if !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), entry) {
		t.Fatalf("err = %v, want it to name %s", err, entry)
	}
	if strings.Contains(err.Error(), value) {
		t.Fatalf("error shows the value: %v", err)
	}
}

// TestMove copies a valid ciphertext into another entry's slot: it must not
// decrypt there, because the entry's full name is bound as associated data.
func TestMove(t *testing.T) {
	c := canary(t)
	type slot struct {
		path  []string // bucket path … key in the file
		entry string
		read  func(v *vault.Vault) error
	}
	ctx := context.Background()
	secret := func(name string) slot {
		return slot{[]string{"vault.secret", name}, "secret/" + name, func(v *vault.Vault) error { _, err := v.Get(name); return err }}
	}
	conn := func(user, provider, name string) slot {
		return slot{
			[]string{"vault.conn", user, provider, "values", name},
			"conn/" + user + "/" + provider + "/" + name,
			func(v *vault.Vault) error { _, err := v.UserSecret(ctx, user, provider, name); return err },
		}
	}
	tests := []struct {
		name     string
		from, to slot
	}{
		{"secret to secret", secret("API_KEY"), secret("OTHER_KEY")},
		{"user A conn to user B conn", conn("alice", "gh", "TOKEN"), conn("bob", "gh", "TOKEN")},
		{"conn to other provider", conn("alice", "gh", "TOKEN"), conn("alice", "jira", "TOKEN")},
		{"conn to other name", conn("alice", "gh", "TOKEN"), conn("alice", "gh", "ORG")},
		{"conn to shared secret", conn("alice", "gh", "TOKEN"), secret("TOKEN")},
		{"shared secret to conn", secret("TOKEN"), conn("bob", "gh", "TOKEN")},
		// Parts are length-prefixed: user "ab" + provider "c" is not "a" + "bc".
		{"ambiguous split", conn("ab", "c", "TOKEN"), conn("a", "bc", "TOKEN")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, path, key := MustOpen(t)
			for _, name := range []string{"API_KEY", "OTHER_KEY", "TOKEN"} {
				if err := v.Set(name, []byte(c)); err != nil {
					t.Fatal(err)
				}
			}
			for _, uc := range [][2]string{{"alice", "gh"}, {"bob", "gh"}, {"alice", "jira"}, {"ab", "c"}, {"a", "bc"}} {
				if err := v.SetConnection(uc[0], uc[1], map[string][]byte{"TOKEN": []byte(c), "ORG": []byte(c)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			rawPut(t, path, rawGet(t, path, tt.from.path...), tt.to.path...)
			v = MustOpenPath(t, path, key, vault.Options{})
			assertCorrupt(t, tt.to.read(v), tt.to.entry, c)
			if err := tt.from.read(v); err != nil {
				t.Fatalf("source entry: %v", err)
			}
		})
	}
}

// TestKeyringTamper: a damaged wrapped data key or key check is caught at Open.
func TestKeyringTamper(t *testing.T) {
	tests := []struct {
		name    string
		path    []string
		wantErr error
	}{
		{"wrapped data key", []string{"vault.keys", "k1"}, vault.ErrCorrupt},
		{"key check", []string{"vault.meta", "check"}, vault.ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, path, key := MustOpen(t)
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			b := rawGet(t, path, tt.path...)
			b[len(b)-2] ^= 4
			rawPut(t, path, b, tt.path...)
			if _, err := openVault(path, key, vault.Options{}); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
