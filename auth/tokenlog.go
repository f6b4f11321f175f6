package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/switchboard-mcp/switchboard"
)

// bucketServiceTokens holds one TokenRecord per service token id (jti).
var bucketServiceTokens = []byte("service_tokens")

// jtiRE is the form of the ids Issue gives tokens: 16 random bytes in hex.
var jtiRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TokenRecord is what the gateway remembers of one service token: never the
// token itself, only its id, service and lifetime, and when it was revoked.
type TokenRecord struct {
	JTI       string    `json:"jti"`
	Service   string    `json:"service,omitempty"` // "" for an id revoked without a record
	IssuedAt  time.Time `json:"issued_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Revoked reports whether the token was revoked.
func (r TokenRecord) Revoked() bool { return !r.RevokedAt.IsZero() }

// ErrTokenExpired means a token to revoke has expired already: it is refused
// everywhere without a revocation.
var ErrTokenExpired = errors.New("service token has expired already")

// TokenLog is the record of issued and revoked service tokens, kept in the
// bucket "service_tokens" of a bbolt file opened by the caller, with the
// revoked ids cached in memory so Verify never reads the file. A record is
// dropped once its token has expired (plus the verification leeway): an
// expired token is refused anyway, so the list never grows without bound.
// Use one TokenLog per file; writes made through another are seen after
// Reload.
type TokenLog struct {
	db  *bbolt.DB
	now func() time.Time

	mu      sync.RWMutex
	revoked map[string]time.Time // jti → expiry
}

// NewTokenLog creates the bucket in db if needed, drops expired records and
// loads the revoked ids.
func NewTokenLog(db *bbolt.DB) (*TokenLog, error) {
	return newTokenLog(db, time.Now)
}

func newTokenLog(db *bbolt.DB, now func() time.Time) (*TokenLog, error) {
	if db == nil {
		return nil, errors.New("opening the service token log: nil database")
	}
	l := &TokenLog{db: db, now: now, revoked: map[string]time.Time{}}
	if !db.IsReadOnly() {
		if err := l.update(func(*bbolt.Bucket) error { return nil }); err != nil {
			return nil, fmt.Errorf("opening the service token log: %w", err)
		}
	}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload re-reads the revoked ids from the file.
func (l *TokenLog) Reload() error {
	revoked := map[string]time.Time{}
	err := l.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketServiceTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r TokenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding service token record %q: %w", k, err)
			}
			if r.Revoked() {
				revoked[r.JTI] = r.ExpiresAt
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("loading the service token log: %w", err)
	}
	l.mu.Lock()
	l.revoked = revoked
	l.mu.Unlock()
	return nil
}

// IsRevoked reports whether the token with id jti was revoked. It reads memory
// only; Verify calls it on every request.
func (l *TokenLog) IsRevoked(jti string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.revoked[jti]
	return ok
}

// Issued records a token Issue just made.
func (l *TokenLog) Issued(info TokenInfo) error {
	rec := TokenRecord{JTI: info.JTI, Service: info.Service, IssuedAt: info.IssuedAt.UTC(), ExpiresAt: info.ExpiresAt.UTC()}
	err := l.update(func(b *bbolt.Bucket) error { return putRecord(b, rec) })
	if err != nil {
		return fmt.Errorf("recording service token %s: %w", info.JTI, err)
	}
	return nil
}

// Revoke revokes the token with id jti, effective for the next Verify. info,
// when the caller has the token itself (see ServiceTokens.Inspect), gives the
// token's service and expiry; without it the record made when the token was
// issued does. An id with neither (a token issued before tokens were recorded)
// is kept revoked for MaxServiceTokenTTL, the longest any token lives.
// Revoking a revoked token returns its record unchanged; an expired one is
// ErrTokenExpired.
func (l *TokenLog) Revoke(jti string, info *TokenInfo) (TokenRecord, error) {
	if !jtiRE.MatchString(jti) {
		return TokenRecord{}, switchboard.Errorf(switchboard.EINVALID, "%q is neither a service token nor a token id (32 hex digits)", clipID(jti))
	}
	now := l.now().UTC()
	var rec TokenRecord
	err := l.update(func(b *bbolt.Bucket) error {
		found, err := getRecord(b, jti)
		if err != nil {
			return err
		}
		switch {
		case found != nil:
			rec = *found
		case info != nil:
			rec = TokenRecord{JTI: jti, Service: info.Service, IssuedAt: info.IssuedAt.UTC(), ExpiresAt: info.ExpiresAt.UTC()}
		default:
			rec = TokenRecord{JTI: jti, ExpiresAt: now.Add(MaxServiceTokenTTL + serviceLeeway)}
		}
		if rec.Revoked() {
			return nil
		}
		if !rec.ExpiresAt.Add(serviceLeeway).After(now) {
			return ErrTokenExpired
		}
		rec.RevokedAt = now
		return putRecord(b, rec)
	})
	if err != nil {
		if errors.Is(err, ErrTokenExpired) {
			return TokenRecord{}, &switchboard.Error{Code: switchboard.EINVALID, Err: err,
				Message: fmt.Sprintf("service token %s expired at %s: it is refused already", jti, rec.ExpiresAt.Format(time.RFC3339))}
		}
		return TokenRecord{}, fmt.Errorf("revoking service token %s: %w", jti, err)
	}
	l.mu.Lock()
	l.revoked[jti] = rec.ExpiresAt
	l.mu.Unlock()
	return rec, nil
}

// List returns the records of tokens that have not expired, oldest first.
func (l *TokenLog) List() ([]TokenRecord, error) {
	now := l.now()
	var out []TokenRecord
	err := l.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketServiceTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r TokenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding service token record %q: %w", k, err)
			}
			if r.ExpiresAt.Add(serviceLeeway).After(now) {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing service tokens: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].IssuedAt.Equal(out[j].IssuedAt) {
			return out[i].IssuedAt.Before(out[j].IssuedAt)
		}
		return out[i].JTI < out[j].JTI
	})
	return out, nil
}

// update runs fn on the bucket in a write transaction after dropping the
// records of expired tokens, and forgets them in memory once it commits.
func (l *TokenLog) update(fn func(b *bbolt.Bucket) error) error {
	now := l.now()
	var dropped []string
	err := l.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketServiceTokens)
		if err != nil {
			return err
		}
		var stale [][]byte
		err = b.ForEach(func(k, v []byte) error {
			var r TokenRecord
			if json.Unmarshal(v, &r) == nil && !r.ExpiresAt.Add(serviceLeeway).After(now) {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
			dropped = append(dropped, string(k))
		}
		return fn(b)
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	for _, k := range dropped {
		delete(l.revoked, k)
	}
	l.mu.Unlock()
	return nil
}

func getRecord(b *bbolt.Bucket, jti string) (*TokenRecord, error) {
	v := b.Get([]byte(jti))
	if v == nil {
		return nil, nil
	}
	var r TokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding service token record %q: %w", jti, err)
	}
	return &r, nil
}

func putRecord(b *bbolt.Bucket, r TokenRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.JTI), v)
}

// clipID shortens what a user passed as a token or id for an error message,
// so a mistyped token is not echoed whole.
func clipID(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}
