package vault_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/vault"
)

func TestOAuthConnection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), vault.DefaultFileName)
	key := vault.GenerateKey()
	v := MustOpenPath(t, path, key, vault.Options{})
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	grant := []byte(`{"access_token":"at-0123456789"}`)
	if err := v.SetOAuthConnection("alice", "linear", grant, vault.OAuthInfo{Scopes: []string{"read"}, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if !v.Connected("alice", "linear") {
		t.Fatal("not connected after SetOAuthConnection")
	}
	c, err := v.Connection("alice", "linear")
	if err != nil || c.Kind != vault.ConnOAuth || c.Scopes[0] != "read" || !c.ExpiresAt.Equal(exp) || c.Expired {
		t.Fatalf("Connection = %+v, %v", c, err)
	}
	got, err := v.UserSecret(ctx, "alice", "linear", vault.OAuthGrant)
	if err != nil || got.Reveal() != string(grant) {
		t.Fatalf("grant = %q, %v", got.Reveal(), err)
	}

	// Expired: kept, with the reason, and no longer connected.
	if err := v.SetOAuthConnection("alice", "linear", []byte(`{}`), vault.OAuthInfo{Expired: true, Error: "invalid_grant"}); err != nil {
		t.Fatal(err)
	}
	if v.Connected("alice", "linear") {
		t.Error("an expired connection counts as connected")
	}
	if c, _ := v.Connection("alice", "linear"); !c.Expired || c.Error != "invalid_grant" {
		t.Errorf("expired record = %+v", c)
	}

	// Client registrations: sealed, rotated and checked with the rest.
	if _, err := v.OAuthClient(ctx, "https://as.example", "https://gw/cb"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Fatalf("missing client: %v", err)
	}
	if err := v.SetOAuthClient("https://as.example", "https://gw/cb", []byte(`{"client_id":"c1"}`)); err != nil {
		t.Fatal(err)
	}
	if n, err := v.Rotate(); err != nil || n < 2 {
		t.Fatalf("Rotate = %d, %v; want the grant and the client re-encrypted", n, err)
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
	cl, err := v.OAuthClient(ctx, "https://as.example", "https://gw/cb")
	if err != nil || string(cl) != `{"client_id":"c1"}` {
		t.Fatalf("client = %s, %v", cl, err)
	}
	if _, err := v.OAuthClient(ctx, "https://as.example", "https://other/cb"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("a registration for another redirect URL: %v", err)
	}
}
