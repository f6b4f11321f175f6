package auth

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/store/bolt"

	"github.com/switchboard-mcp/switchboard"
)

var keyFormat = regexp.MustCompile(`^sb_[a-z2-7]{12}_[a-z2-7]{52}$`)

func TestUsersLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "switchboard.db")
	db, err := bolt.Open(path, bolt.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUsers(db)
	if err != nil {
		t.Fatal(err)
	}

	key, err := u.Add("alice@example.com", []string{"dev", "admin", "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if !keyFormat.MatchString(key) {
		t.Fatalf("key %q does not match %s", key, keyFormat)
	}
	got, err := u.Get("alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Roles, []string{"admin", "dev"}) || got.KeyPrefix != key[:15] || got.CreatedAt.IsZero() {
		t.Fatalf("user = %+v", got)
	}
	if _, err := u.Add("alice@example.com", nil); switchboard.ErrorCode(err) != switchboard.ECONFLICT {
		t.Fatalf("duplicate add: %v", err)
	}

	// Only the hash is stored: the key's secret part appears nowhere in the file.
	for _, e := range allEntries(t, db, bucketUsers, bucketAPIKeys) {
		if strings.Contains(string(e.Value), key[16:]) || strings.Contains(e.Key, key[16:]) {
			t.Errorf("entry %s holds the key secret", e.Key)
		}
	}
	if raw, err := os.ReadFile(path); err != nil || strings.Contains(string(raw), key[16:]) {
		t.Errorf("the file holds the key secret (read err %v)", err)
	}

	if _, ok := u.authenticate(key); !ok {
		t.Fatal("new key refused")
	}
	newKey, err := u.RotateKey("alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.authenticate(key); ok {
		t.Fatal("old key still accepted after rotation")
	}
	if rec, ok := u.authenticate(newKey); !ok || rec.Name != "alice@example.com" {
		t.Fatal("rotated key refused")
	}
	if err := u.SetRoles("alice@example.com", []string{"reader"}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := u.authenticate(newKey); !slices.Equal(rec.Roles, []string{"reader"}) {
		t.Fatalf("roles after SetRoles = %v", rec.Roles)
	}

	// Everything survives reopening the file.
	if _, err := u.Add("bob", nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = MustOpenStore(t, path)
	u, err = NewUsers(db)
	if err != nil {
		t.Fatal(err)
	}
	list, err := u.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "alice@example.com" || list[1].Name != "bob" {
		t.Fatalf("list = %+v", list)
	}
	if _, ok := u.authenticate(newKey); !ok {
		t.Fatal("key refused after reopen")
	}

	if err := u.Remove("alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.authenticate(newKey); ok {
		t.Fatal("removed user's key accepted")
	}
	if _, err := u.Get("alice@example.com"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Fatalf("get removed: %v", err)
	}
	for _, op := range []func() error{
		func() error { return u.Remove("nobody") },
		func() error { _, err := u.RotateKey("nobody"); return err },
		func() error { return u.SetRoles("nobody", nil) },
	} {
		if err := op(); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
			t.Fatalf("op on missing user: %v", err)
		}
	}
	// The key index holds only bob's key now.
	if n := len(allEntries(t, db, bucketAPIKeys)); n != 1 {
		t.Errorf("apikeys has %d entries, want 1", n)
	}
}

func TestUserNamesAndRoles(t *testing.T) {
	u := MustUsers(t)
	tests := []struct {
		name  string
		roles []string
		ok    bool
	}{
		{"alice", nil, true},
		{"a", nil, true},
		{"0day", nil, true},
		{"svc.ci-bot_1@corp", []string{"team:dev", "org/admin"}, true},
		{strings.Repeat("a", 64), nil, true},
		{strings.Repeat("a", 65), nil, false},
		{"", nil, false},
		{"Alice", nil, false},
		{".alice", nil, false},
		{"-alice", nil, false},
		{"al ice", nil, false},
		{"al/ice", nil, false},
		{"аlice", nil, false}, // Cyrillic а
		{"carol", []string{"bad role"}, false},
		{"dave", []string{""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := u.Add(tt.name, tt.roles)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%t", err, tt.ok)
			}
			if err != nil && switchboard.ErrorCode(err) != switchboard.EINVALID {
				t.Fatalf("code = %q", switchboard.ErrorCode(err))
			}
		})
	}
}

func TestUsersConcurrentWrites(t *testing.T) {
	u := MustUsers(t)
	var wg sync.WaitGroup
	keys := make([]string, 20)
	for i := range keys {
		wg.Go(func() {
			k, err := u.Add("user"+string(rune('a'+i)), []string{"dev"})
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i, k := range keys {
		if rec, ok := u.authenticate(k); !ok || rec.Name != "user"+string(rune('a'+i)) {
			t.Fatalf("key %d refused after concurrent adds", i)
		}
	}
}

func TestParseAPIKey(t *testing.T) {
	good := "sb_abcdefghijkl_" + strings.Repeat("a", 52)
	if id, ok := parseAPIKey(good); !ok || id != "abcdefghijkl" {
		t.Fatalf("parse good: %q %t", id, ok)
	}
	for _, bad := range []string{
		"", "sb_", good[:len(good)-1], good + "a",
		"sx_abcdefghijkl_" + strings.Repeat("a", 52),
		"sb_abcdefghijk1_" + strings.Repeat("a", 52), // '1' is not base32
		"sb_abcdefghijkl-" + strings.Repeat("a", 52),
		"sb_abcdefghijkl_" + strings.Repeat("A", 52),
		"sb_abcdefghijkl_" + strings.Repeat("a", 51) + "=",
	} {
		if _, ok := parseAPIKey(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

// TestAPIKeyPrincipalFollowsTheUser: the API-key path hands every request of
// a user the same read-only Principal, and a new one once the user changes.
func TestAPIKeyPrincipalFollowsTheUser(t *testing.T) {
	u := MustUsers(t)
	key, err := u.Add("alice", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := u.authenticate(key)
	b, _ := u.authenticate(key)
	if a == nil || a.principal != b.principal {
		t.Fatal("two requests of one user got different principals")
	}
	p := a.principal
	if p.String() != "user:alice" || !slices.Equal(p.Roles, []string{"dev"}) || p.Method != MethodAPIKey || p.Endpoint != switchboard.EndpointPublic {
		t.Fatalf("principal = %+v (%s)", *p, p)
	}
	if n := testing.AllocsPerRun(100, func() { _ = p.String() }); n != 0 {
		t.Errorf("String allocates %v times", n)
	}
	if err := u.SetRoles("alice", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	c, _ := u.authenticate(key)
	if c == nil || !slices.Equal(c.principal.Roles, []string{"admin"}) || !slices.Equal(p.Roles, []string{"dev"}) {
		t.Fatalf("after SetRoles: new roles %v, the old principal's %v", c.principal.Roles, p.Roles)
	}
}
