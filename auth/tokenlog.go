package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// bucketServiceTokens holds one TokenRecord per service token id (jti).
const bucketServiceTokens = "service_tokens"

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
// bucket "service_tokens" of a switchboard.Store, with the
// revoked ids cached in memory so Verify never reads the file. A record is
// dropped once its token has expired (plus the verification leeway): an
// expired token is refused anyway, so the list never grows without bound.
// Writes made through another TokenLog (another replica) are seen after
// Reload.
type TokenLog struct {
	st  switchboard.Store
	now func() time.Time

	wmu     sync.Mutex // serializes writes (with their update of revoked) and reloads
	mu      sync.RWMutex
	revoked map[string]time.Time // jti → expiry
}

// NewTokenLog drops the records of expired tokens from st and loads the
// revoked ids.
func NewTokenLog(st switchboard.Store) (*TokenLog, error) {
	return newTokenLog(st, time.Now)
}

func newTokenLog(st switchboard.Store, now func() time.Time) (*TokenLog, error) {
	if st == nil {
		return nil, errors.New("opening the service token log: nil store")
	}
	l := &TokenLog{st: st, now: now, revoked: map[string]time.Time{}}
	if err := l.update(func(switchboard.StoreTx) error { return nil }); err != nil {
		return nil, fmt.Errorf("opening the service token log: %w", err)
	}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// Refresh re-reads the revoked ids when one of changes (another writer's,
// see switchboard.Store.Changes) may have touched them.
func (l *TokenLog) Refresh(changes []switchboard.StoreChange) error {
	if !switchboard.ChangesTouch(changes, bucketServiceTokens) {
		return nil
	}
	return l.Reload()
}

// Reload re-reads the revoked ids from the store. It waits for a write in
// progress, so that it cannot put back what the write replaced (and forget a
// revocation).
func (l *TokenLog) Reload() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	revoked := map[string]time.Time{}
	es, err := l.st.List(context.Background(), bucketServiceTokens, "")
	if err != nil {
		return fmt.Errorf("loading the service token log: %w", err)
	}
	for _, e := range es {
		var r TokenRecord
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return fmt.Errorf("loading the service token log: decoding service token record %q: %w", e.Key, err)
		}
		if r.Revoked() {
			revoked[r.JTI] = r.ExpiresAt
		}
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
	l.wmu.Lock()
	defer l.wmu.Unlock()
	err := l.update(func(tx switchboard.StoreTx) error { return putRecord(tx, rec) })
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
	l.wmu.Lock()
	defer l.wmu.Unlock()
	err := l.update(func(tx switchboard.StoreTx) error {
		found, err := getRecord(tx, jti)
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
		return putRecord(tx, rec)
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
	es, err := l.st.List(context.Background(), bucketServiceTokens, "")
	if err != nil {
		return nil, fmt.Errorf("listing service tokens: %w", err)
	}
	var out []TokenRecord
	for _, e := range es {
		var r TokenRecord
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return nil, fmt.Errorf("listing service tokens: decoding service token record %q: %w", e.Key, err)
		}
		if r.ExpiresAt.Add(serviceLeeway).After(now) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].IssuedAt.Equal(out[j].IssuedAt) {
			return out[i].IssuedAt.Before(out[j].IssuedAt)
		}
		return out[i].JTI < out[j].JTI
	})
	return out, nil
}

// update runs fn in a store transaction after dropping the records of
// expired tokens, and forgets them in memory once it commits. The caller
// holds wmu (or has the TokenLog to itself).
func (l *TokenLog) update(fn func(tx switchboard.StoreTx) error) error {
	now := l.now()
	var dropped []string
	err := l.st.Update(context.Background(), func(tx switchboard.StoreTx) error {
		dropped = nil
		es, err := tx.List(bucketServiceTokens, "")
		if err != nil {
			return err
		}
		for _, e := range es {
			var r TokenRecord
			if json.Unmarshal(e.Value, &r) == nil && !r.ExpiresAt.Add(serviceLeeway).After(now) {
				if err := tx.Delete(bucketServiceTokens, e.Key); err != nil {
					return err
				}
				dropped = append(dropped, e.Key)
			}
		}
		return fn(tx)
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

func getRecord(tx switchboard.StoreTx, jti string) (*TokenRecord, error) {
	v, err := tx.Get(bucketServiceTokens, jti)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r TokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding service token record %q: %w", jti, err)
	}
	return &r, nil
}

func putRecord(tx switchboard.StoreTx, r TokenRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Put(bucketServiceTokens, r.JTI, v)
}

// clipID shortens what a user passed as a token or id for an error message,
// so a mistyped token is not echoed whole.
func clipID(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}
