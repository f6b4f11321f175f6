package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/switchboard-mcp/switchboard"
)

// ConnectionKind says how a user's connection to a provider was made.
type ConnectionKind string

// Connection kinds.
const (
	// ConnStatic: the user supplied the secret values (API keys, tokens) directly.
	ConnStatic ConnectionKind = "static"
	// ConnOAuth: made by the OAuth flow; the grant (tokens and where they
	// came from) is one sealed value, OAuthGrant (see oauth.go).
	ConnOAuth ConnectionKind = "oauth"
)

// Connection is one user's connection to a scope: user provider. It holds the
// names of its secrets, never their values; each value is sealed separately
// under the entry name "conn/<user>/<provider>/<NAME>".
type Connection struct {
	User      string         `json:"user"`
	Provider  string         `json:"provider"`
	Kind      ConnectionKind `json:"kind"`
	Secrets   []string       `json:"secrets"` // sorted
	UpdatedAt time.Time      `json:"updated_at"`

	// Reserved for ConnOAuth; zero for ConnStatic.

	// Account is the identity on the provider's side (e.g. a GitHub login).
	Account string `json:"account,omitempty"`
	// Scopes are the granted OAuth scopes.
	Scopes []string `json:"scopes,omitempty"`
	// ExpiresAt is when the access token expires; zero if it does not.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Expired: the grant can no longer be refreshed; the user must connect
	// again. An expired connection does not count as connected.
	Expired bool `json:"expired,omitempty"`
	// Error says why it expired.
	Error string `json:"error,omitempty"`
}

// A connection's keys in the vault.conn bucket, parts joined with
// switchboard.StoreKeySep (no user id, prefix or secret name contains it):
//
//	<user>␟<provider>␟record          JSON Connection
//	<user>␟<provider>␟values␟<NAME>   sealed value
const (
	connRecord = "record"
	connValues = "values"
)

const sep = switchboard.StoreKeySep

// connKey is one parsed key of the vault.conn bucket; name is "" for a record.
type connKey struct{ user, provider, name string }

func connPrefix(user, provider string) string { return user + sep + provider + sep }

func connRecordKey(user, provider string) string { return connPrefix(user, provider) + connRecord }

func connValueKey(user, provider, name string) string {
	return connPrefix(user, provider) + connValues + sep + name
}

// parseConnKey splits a vault.conn key; ok is false for a key of no known form.
func parseConnKey(k string) (connKey, bool) {
	parts := strings.Split(k, sep)
	switch {
	case len(parts) == 3 && parts[2] == connRecord:
		return connKey{user: parts[0], provider: parts[1]}, true
	case len(parts) == 4 && parts[2] == connValues && parts[3] != "":
		return connKey{user: parts[0], provider: parts[1], name: parts[3]}, true
	}
	return connKey{}, false
}

const maxUserLen = 256

// checkUser validates a user id.
func checkUser(user string) error {
	if user == "" || len(user) > maxUserLen || !utf8.ValidString(user) || strings.ContainsFunc(user, unicode.IsControl) {
		return switchboard.Errorf(switchboard.EINVALID, "invalid user %q: want 1 to %d printable characters", clip(user), maxUserLen)
	}
	return nil
}

// checkConn validates a user id and a provider name.
func checkConn(user, provider string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	if !switchboard.ValidPrefix(provider) {
		return switchboard.Errorf(switchboard.EINVALID, "invalid provider %q: not a provider prefix", clip(provider))
	}
	return nil
}

func connDisplay(user, provider string) string { return "conn/" + user + "/" + provider }

// SetConnection stores user's static connection to provider with the given
// secret values, replacing any previous connection (and all its values) in one
// transaction.
func (v *Vault) SetConnection(user, provider string, values map[string][]byte) error {
	if err := checkConn(user, provider); err != nil {
		return err
	}
	names := make([]string, 0, len(values))
	for name, val := range values {
		if err := checkName(name); err != nil {
			return err
		}
		if err := validValue(connEntry(user, provider, name), val); err != nil {
			return err
		}
		names = append(names, name)
	}
	sort.Strings(names)
	now := time.Now()
	rec, err := json.Marshal(Connection{User: user, Provider: provider, Kind: ConnStatic, Secrets: names, UpdatedAt: now.UTC()})
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
		for _, name := range names {
			sealed, err := v.seal(tx, connEntry(user, provider, name), values[name], now)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketConn, connValueKey(user, provider, name), sealed); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setting connection %s: %w", connDisplay(user, provider), err)
	}
	_, _, err = v.reloadConnections()
	return err
}

// DeleteConnection removes user's connection to provider and all its values; a
// missing connection is ErrNotFound.
func (v *Vault) DeleteConnection(user, provider string) error {
	if err := checkConn(user, provider); err != nil {
		return err
	}
	err := v.update(context.Background(), func(tx switchboard.StoreTx) error {
		if _, err := tx.Get(bucketConn, connRecordKey(user, provider)); err != nil {
			if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
				return notFound(fmt.Sprintf("connection %q", connDisplay(user, provider)))
			}
			return err
		}
		return tx.DeletePrefix(bucketConn, connPrefix(user, provider))
	})
	if err != nil {
		return fmt.Errorf("deleting connection %s: %w", connDisplay(user, provider), err)
	}
	_, _, err = v.reloadConnections()
	return err
}

// readConn decodes a connection record.
func readConn(b []byte, user, provider string) (Connection, error) {
	var c Connection
	if err := json.Unmarshal(b, &c); err != nil {
		return Connection{}, fmt.Errorf("reading connection %s: %w", connDisplay(user, provider), ErrCorrupt)
	}
	c.User, c.Provider = user, provider // the key is authoritative
	return c, nil
}

// Connection returns user's connection to provider, without secret values; a
// missing connection is ErrNotFound.
func (v *Vault) Connection(user, provider string) (*Connection, error) {
	if err := checkConn(user, provider); err != nil {
		return nil, err
	}
	b, err := v.get(context.Background(), bucketConn, connRecordKey(user, provider))
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		err = notFound(fmt.Sprintf("connection %q", connDisplay(user, provider)))
	}
	if err != nil {
		return nil, fmt.Errorf("getting connection %s: %w", connDisplay(user, provider), err)
	}
	c, err := readConn(b, user, provider)
	if err != nil {
		return nil, fmt.Errorf("getting connection %s: %w", connDisplay(user, provider), err)
	}
	return &c, nil
}

// Connections returns user's connections sorted by provider, or every user's
// connections sorted by user then provider when user is "". Values are never
// included.
func (v *Vault) Connections(user string) ([]Connection, error) {
	prefix := ""
	if user != "" {
		if err := checkUser(user); err != nil {
			return nil, err
		}
		prefix = user + sep
	}
	es, err := v.list(context.Background(), bucketConn, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	var out []Connection
	for _, e := range es {
		k, ok := parseConnKey(e.Key)
		if !ok || k.name != "" {
			continue
		}
		c, err := readConn(e.Value, k.user, k.provider)
		if err != nil {
			return nil, fmt.Errorf("listing connections: %w", err)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Provider < out[j].Provider
	})
	return out, nil
}

// UserSecret implements switchboard.SecretStore: it returns the value name of
// user's connection to provider, decrypted. A missing connection or value is
// ErrNotFound (code ENOTFOUND).
func (v *Vault) UserSecret(ctx context.Context, user, provider, name string) (switchboard.Secret, error) {
	ename := connEntry(user, provider, name)
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("getting %s: %w", ename, err)
	}
	if err := checkConn(user, provider); err != nil {
		return "", err
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	stored, err := v.get(ctx, bucketConn, connValueKey(user, provider, name))
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		_, cerr := v.get(ctx, bucketConn, connRecordKey(user, provider))
		switch {
		case switchboard.ErrorCode(cerr) == switchboard.ENOTFOUND:
			err = notFound(fmt.Sprintf("connection %q", connDisplay(user, provider)))
		case cerr != nil:
			err = cerr
		default:
			err = notFound(fmt.Sprintf("secret %q of connection %q", name, connDisplay(user, provider)))
		}
	}
	if err != nil {
		return "", fmt.Errorf("getting %s: %w", ename, err)
	}
	pt, _, err := v.openRead(ctx, bucketConn, connValueKey(user, provider, name), ename, stored)
	if err != nil {
		return "", fmt.Errorf("getting %s: %w", ename, err)
	}
	return v.reveal(pt), nil
}

// Connected reports whether user has a connection to provider (an expired
// OAuth connection is not one). It reads an
// index kept in memory (no values, no lock), so the per-request visibility
// filter can ask it; the vault's own SetConnection and DeleteConnection keep
// it current, and RefreshConnections reads it again after another replica
// changed the store.
func (v *Vault) Connected(user, provider string) bool {
	m := v.connected.Load()
	if m == nil {
		return false
	}
	c, ok := (*m)[user+sep+provider]
	return ok && !c.expired
}

// connState is what the index Connected reads holds of one connection.
type connState struct {
	updated time.Time // its UpdatedAt: another writer's change shows here
	expired bool      // an expired OAuth connection is not connected
}

// ConnRef names one user's connection to one provider.
type ConnRef struct {
	User, Provider string
}

// RefreshConnections rebuilds the index Connected reads when one of changes
// (another writer's, see switchboard.Store.Changes) may have touched the
// connections, and returns the connections that were made, replaced or
// removed, so that the instances using them can restart. Connections the
// changes name (a key, or the prefix of one connection or of one user's) are
// returned even when an index rebuild that ran meanwhile (after a write
// through this vault) already read their new state; a change that names no
// connection (a whole bucket, or anything) is found by comparing with the
// index as it was.
func (v *Vault) RefreshConnections(changes []switchboard.StoreChange) ([]ConnRef, error) {
	if !switchboard.ChangesTouch(changes, bucketConn) {
		return nil, nil
	}
	old, cur, err := v.reloadConnections()
	if err != nil {
		return nil, fmt.Errorf("refreshing connections: %w", err)
	}
	named := map[string]bool{}
	compare := false
	for _, c := range changes {
		switch {
		case c.Bucket == "" || c.Bucket == bucketConn && c.Key == "":
			compare = true
		case c.Bucket != bucketConn:
		case c.Prefix:
			parts := strings.Split(strings.TrimSuffix(c.Key, sep), sep)
			switch {
			case len(parts) == 2:
				named[parts[0]+sep+parts[1]] = true
			case len(parts) == 1 && strings.HasSuffix(c.Key, sep): // all of one user's
				for _, m := range []map[string]connState{old, cur} {
					for k := range m {
						if strings.HasPrefix(k, c.Key) {
							named[k] = true
						}
					}
				}
			default:
				compare = true
			}
		default:
			if k, ok := parseConnKey(c.Key); ok {
				named[k.user+sep+k.provider] = true
			}
		}
	}
	if compare {
		for k, t := range old {
			if u, ok := cur[k]; !ok || !u.updated.Equal(t.updated) || u.expired != t.expired {
				named[k] = true
			}
		}
		for k := range cur {
			if _, ok := old[k]; !ok {
				named[k] = true
			}
		}
	}
	out := make([]ConnRef, 0, len(named))
	for k := range named {
		user, provider, _ := strings.Cut(k, sep)
		out = append(out, ConnRef{User: user, Provider: provider})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Provider < out[j].Provider
	})
	return out, nil
}

// reloadConnections rebuilds the index Connected reads from the store and
// returns the index it replaced and the new one. Rebuilds are serialized, so
// the index always ends up as the newest read saw it: a rebuild that read
// before a write committed cannot store its index after the write's own
// rebuild does.
func (v *Vault) reloadConnections() (old, cur map[string]connState, err error) {
	v.connMu.Lock()
	defer v.connMu.Unlock()
	list, err := v.Connections("")
	if err != nil {
		return nil, nil, err
	}
	cur = make(map[string]connState, len(list))
	for _, c := range list {
		cur[c.User+sep+c.Provider] = connState{updated: c.UpdatedAt, expired: c.Expired}
	}
	if p := v.connected.Swap(&cur); p != nil {
		old = *p
	}
	return old, cur, nil
}
