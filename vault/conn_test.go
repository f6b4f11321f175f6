package vault_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard/vault"
)

func TestConnections(t *testing.T) {
	red := &fakeRedactor{}
	ctx := context.Background()
	v := MustOpenPath(t, filepath.Join(t.TempDir(), vault.DefaultFileName), vault.GenerateKey(), vault.Options{Redactor: red})

	if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte("alice-gh"), "ORG": []byte("acme")}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetConnection("bob", "gh", map[string][]byte{"TOKEN": []byte("bob-gh")}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetConnection("alice", "jira", map[string][]byte{"TOKEN": []byte("alice-jira")}); err != nil {
		t.Fatal(err)
	}
	if err := v.SetConnection("carol", "notes", nil); err != nil { // a connection with no secrets
		t.Fatal(err)
	}

	c, err := v.Connection("alice", "gh")
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "alice" || c.Provider != "gh" || c.Kind != vault.ConnStatic || strings.Join(c.Secrets, ",") != "ORG,TOKEN" || c.UpdatedAt.IsZero() {
		t.Fatalf("Connection = %+v", c)
	}
	for _, tt := range []struct{ user, provider, name, want string }{
		{"alice", "gh", "TOKEN", "alice-gh"},
		{"alice", "gh", "ORG", "acme"},
		{"bob", "gh", "TOKEN", "bob-gh"},
		{"alice", "jira", "TOKEN", "alice-jira"},
	} {
		got, err := v.UserSecret(ctx, tt.user, tt.provider, tt.name)
		if err != nil || got.Reveal() != tt.want {
			t.Fatalf("UserSecret(%s, %s, %s) = err %v", tt.user, tt.provider, tt.name, err)
		}
		if !red.has(tt.want) {
			t.Fatalf("UserSecret(%s, %s, %s): value not given to the redactor", tt.user, tt.provider, tt.name)
		}
	}
	if _, err := v.UserSecret(ctx, "bob", "gh", "ORG"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("bob's ORG: err = %v, want ErrNotFound", err)
	}

	all, err := v.Connections("")
	if err != nil {
		t.Fatal(err)
	}
	if got := connKeys(all); got != "alice/gh,alice/jira,bob/gh,carol/notes" {
		t.Fatalf("Connections(\"\") = %s", got)
	}
	mine, err := v.Connections("alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := connKeys(mine); got != "alice/gh,alice/jira" {
		t.Fatalf("Connections(alice) = %s", got)
	}
	if none, err := v.Connections("nobody"); err != nil || len(none) != 0 {
		t.Fatalf("Connections(nobody) = %v, %v", none, err)
	}

	// Replacing drops values that are no longer given.
	if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte("alice-gh-2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.UserSecret(ctx, "alice", "gh", "ORG"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("ORG after replace: err = %v, want ErrNotFound", err)
	}
	if got, _ := v.UserSecret(ctx, "alice", "gh", "TOKEN"); got.Reveal() != "alice-gh-2" {
		t.Fatal("TOKEN not replaced")
	}

	if err := v.DeleteConnection("alice", "gh"); err != nil {
		t.Fatal(err)
	}
	if err := v.DeleteConnection("alice", "jira"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.UserSecret(ctx, "alice", "gh", "TOKEN"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("after delete: err = %v", err)
	}
	if all, _ := v.Connections(""); connKeys(all) != "bob/gh,carol/notes" {
		t.Fatalf("after delete: %s", connKeys(all))
	}
	// Shared secrets and connections do not see each other.
	if err := v.Set("TOKEN", []byte("shared")); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.UserSecret(ctx, "bob", "gh", "TOKEN"); got.Reveal() != "bob-gh" {
		t.Fatal("shared secret shadowed a connection secret")
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
}

func connKeys(cs []vault.Connection) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.User+"/"+c.Provider)
	}
	return strings.Join(s, ",")
}

// TestConnectedIndex: Connected answers from memory what the store holds,
// after Set and Delete, across a reopen.
func TestConnectedIndex(t *testing.T) {
	v, path, key := MustOpen(t)
	if v.Connected("alice", "gh") {
		t.Fatal("connected before any connection")
	}
	if err := v.SetConnection("alice", "gh", map[string][]byte{"TOKEN": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if !v.Connected("alice", "gh") || v.Connected("alice", "jira") || v.Connected("bob", "gh") {
		t.Fatal("Connected wrong after SetConnection")
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v = MustOpenPath(t, path, key, vault.Options{})
	if !v.Connected("alice", "gh") {
		t.Fatal("the index is not loaded at Open")
	}
	if err := v.DeleteConnection("alice", "gh"); err != nil {
		t.Fatal(err)
	}
	if v.Connected("alice", "gh") {
		t.Fatal("Connected after DeleteConnection")
	}
}
