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

	bolt "go.etcd.io/bbolt"

	"github.com/switchboard-mcp/switchboard"
)

// ConnectionKind says how a user's connection to a provider was made.
type ConnectionKind string

// Connection kinds.
const (
	// ConnStatic: the user supplied the secret values (API keys, tokens) directly.
	ConnStatic ConnectionKind = "static"
	// ConnOAuth: reserved for an OAuth flow; tokens are stored as sealed values
	// (e.g. ACCESS_TOKEN, REFRESH_TOKEN) like any other connection secret.
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
}

// Keys inside a provider's connection bucket.
var (
	connRecord = []byte("record")
	connValues = []byte("values")
)

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

// connBucket returns the bucket of user's connection to provider, or nil.
func connBucket(tx *bolt.Tx, user, provider string) *bolt.Bucket {
	ub := tx.Bucket(bucketConn).Bucket([]byte(user))
	if ub == nil {
		return nil
	}
	return ub.Bucket([]byte(provider))
}

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
	err = v.update(func(tx *bolt.Tx) error {
		ub, err := tx.Bucket(bucketConn).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		if ub.Bucket([]byte(provider)) != nil {
			if err := ub.DeleteBucket([]byte(provider)); err != nil {
				return err
			}
		}
		pb, err := ub.CreateBucket([]byte(provider))
		if err != nil {
			return err
		}
		if err := pb.Put(connRecord, rec); err != nil {
			return err
		}
		vals, err := pb.CreateBucket(connValues)
		if err != nil {
			return err
		}
		for _, name := range names {
			sealed, err := v.seal(tx, connEntry(user, provider, name), values[name], now)
			if err != nil {
				return err
			}
			if err := vals.Put([]byte(name), sealed); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("setting connection %s: %w", connDisplay(user, provider), err)
	}
	return nil
}

// DeleteConnection removes user's connection to provider and all its values; a
// missing connection is ErrNotFound.
func (v *Vault) DeleteConnection(user, provider string) error {
	if err := checkConn(user, provider); err != nil {
		return err
	}
	err := v.update(func(tx *bolt.Tx) error {
		conns := tx.Bucket(bucketConn)
		ub := conns.Bucket([]byte(user))
		if ub == nil || ub.Bucket([]byte(provider)) == nil {
			return notFound(fmt.Sprintf("connection %q", connDisplay(user, provider)))
		}
		if err := ub.DeleteBucket([]byte(provider)); err != nil {
			return err
		}
		if k, _ := ub.Cursor().First(); k == nil {
			return conns.DeleteBucket([]byte(user))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting connection %s: %w", connDisplay(user, provider), err)
	}
	return nil
}

// readConn decodes the record of the connection in bucket pb.
func readConn(pb *bolt.Bucket, user, provider string) (Connection, error) {
	var c Connection
	if err := json.Unmarshal(pb.Get(connRecord), &c); err != nil {
		return Connection{}, fmt.Errorf("reading connection %s: %w", connDisplay(user, provider), ErrCorrupt)
	}
	c.User, c.Provider = user, provider // the bucket path is authoritative
	return c, nil
}

// Connection returns user's connection to provider, without secret values; a
// missing connection is ErrNotFound.
func (v *Vault) Connection(user, provider string) (*Connection, error) {
	if err := checkConn(user, provider); err != nil {
		return nil, err
	}
	var c Connection
	err := v.view(func(tx *bolt.Tx) error {
		pb := connBucket(tx, user, provider)
		if pb == nil {
			return notFound(fmt.Sprintf("connection %q", connDisplay(user, provider)))
		}
		var err error
		c, err = readConn(pb, user, provider)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting connection %s: %w", connDisplay(user, provider), err)
	}
	return &c, nil
}

// Connections returns user's connections sorted by provider, or every user's
// connections sorted by user then provider when user is "". Values are never
// included.
func (v *Vault) Connections(user string) ([]Connection, error) {
	if user != "" {
		if err := checkUser(user); err != nil {
			return nil, err
		}
	}
	var out []Connection
	err := v.view(func(tx *bolt.Tx) error {
		conns := tx.Bucket(bucketConn)
		each := func(u []byte) error {
			ub := conns.Bucket(u)
			if ub == nil {
				return nil
			}
			return ub.ForEachBucket(func(p []byte) error {
				c, err := readConn(ub.Bucket(p), string(u), string(p))
				if err != nil {
					return err
				}
				out = append(out, c)
				return nil
			})
		}
		if user != "" {
			return each([]byte(user))
		}
		return conns.ForEachBucket(each)
	})
	if err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
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
	var pt []byte
	err := v.view(func(tx *bolt.Tx) error {
		pb := connBucket(tx, user, provider)
		if pb == nil {
			return notFound(fmt.Sprintf("connection %q", connDisplay(user, provider)))
		}
		var stored []byte
		if vals := pb.Bucket(connValues); vals != nil {
			stored = vals.Get([]byte(name))
		}
		if stored == nil {
			return notFound(fmt.Sprintf("secret %q of connection %q", name, connDisplay(user, provider)))
		}
		var err error
		pt, _, err = v.open(tx, ename, stored)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("getting %s: %w", ename, err)
	}
	return v.reveal(pt), nil
}
