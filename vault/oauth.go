package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// OAuth connections and client registrations. The oauth package encodes
// what it keeps (a grant: tokens, expiry, the authorization server they
// came from; a client registration: its id and secret); the vault seals it
// like any other secret, under the user for a grant.

// OAuthGrant is the name of the one sealed value of an OAuth connection.
const OAuthGrant = "OAUTH_GRANT"

// bucketOAuth holds the gateway's client registrations at authorization
// servers, sealed, keyed by a hash of the server's issuer and the redirect
// URL.
const bucketOAuth = "vault.oauth"

// oauthClientEntry names a sealed client registration.
func oauthClientEntry(key string) entryName { return entryName{"oauth-client", key} }

func oauthClientKey(issuer, redirectURL string) string {
	sum := sha256.Sum256([]byte(issuer + "\n" + redirectURL))
	return hex.EncodeToString(sum[:16])
}

// OAuthInfo is what a connection record shows of an OAuth grant.
type OAuthInfo struct {
	Scopes    []string
	ExpiresAt time.Time
	Expired   bool
	Error     string
}

// SetOAuthConnection stores user's OAuth connection to provider: grant
// sealed as OAuthGrant, info in the record that GET /api/connections shows,
// replacing any previous connection in one transaction.
func (v *Vault) SetOAuthConnection(user, provider string, grant []byte, info OAuthInfo) error {
	if err := checkConn(user, provider); err != nil {
		return err
	}
	if err := validValue(connEntry(user, provider, OAuthGrant), grant); err != nil {
		return err
	}
	now := time.Now()
	rec, err := json.Marshal(Connection{
		User: user, Provider: provider, Kind: ConnOAuth, Secrets: []string{OAuthGrant}, UpdatedAt: now.UTC(),
		Scopes: slices.Clone(info.Scopes), ExpiresAt: info.ExpiresAt.UTC(), Expired: info.Expired, Error: info.Error,
	})
	if err != nil {
		return fmt.Errorf("setting connection %s: %w", connDisplay(user, provider), err)
	}
	err = v.update(context.Background(), func(tx switchboard.StoreTx) error {
		if err := tx.DeletePrefix(bucketConn, connPrefix(user, provider)); err != nil {
			return err
		}
		if err := tx.Put(bucketConn, connRecordKey(user, provider), rec); err != nil {
			return err
		}
		sealed, err := v.seal(tx, connEntry(user, provider, OAuthGrant), grant, now)
		if err != nil {
			return err
		}
		return tx.Put(bucketConn, connValueKey(user, provider, OAuthGrant), sealed)
	})
	if err != nil {
		return fmt.Errorf("setting connection %s: %w", connDisplay(user, provider), err)
	}
	_, _, err = v.reloadConnections()
	return err
}

// SetOAuthClient stores a client registration at the authorization server
// issuer for redirectURL, sealed.
func (v *Vault) SetOAuthClient(issuer, redirectURL string, client []byte) error {
	key := oauthClientKey(issuer, redirectURL)
	name := oauthClientEntry(key)
	if err := validValue(name, client); err != nil {
		return err
	}
	err := v.update(context.Background(), func(tx switchboard.StoreTx) error {
		sealed, err := v.seal(tx, name, client, time.Now())
		if err != nil {
			return err
		}
		return tx.Put(bucketOAuth, key, sealed)
	})
	if err != nil {
		return fmt.Errorf("setting the OAuth client for %s: %w", issuer, err)
	}
	return nil
}

// OAuthClient returns the client registration at issuer for redirectURL,
// or ErrNotFound.
func (v *Vault) OAuthClient(ctx context.Context, issuer, redirectURL string) ([]byte, error) {
	key := oauthClientKey(issuer, redirectURL)
	stored, err := v.get(ctx, bucketOAuth, key)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		err = notFound(fmt.Sprintf("OAuth client for %s", issuer))
	}
	if err != nil {
		return nil, fmt.Errorf("getting the OAuth client for %s: %w", issuer, err)
	}
	pt, _, err := v.openRead(ctx, bucketOAuth, key, oauthClientEntry(key), stored)
	if err != nil {
		return nil, fmt.Errorf("getting the OAuth client for %s: %w", issuer, err)
	}
	if v.redactor != nil {
		v.redactor.Add(string(pt))
	}
	return pt, nil
}
