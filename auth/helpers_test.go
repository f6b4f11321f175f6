package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a settable clock shared by the code under test.
type fakeClock struct{ t atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// MustDB opens a store on a bbolt file in a temp dir, closed at test end.
func MustDB(tb testing.TB) *bolt.Store {
	tb.Helper()
	return MustOpenStore(tb, filepath.Join(tb.TempDir(), bolt.FileName))
}

// MustOpenStore opens the store at path, closed at test end.
func MustOpenStore(tb testing.TB, path string) *bolt.Store {
	tb.Helper()
	st, err := bolt.Open(path, bolt.Options{LockTimeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

// allEntries returns every key and value in the store's buckets.
func allEntries(tb testing.TB, st switchboard.Store, buckets ...string) []switchboard.StoreEntry {
	tb.Helper()
	var out []switchboard.StoreEntry
	for _, b := range buckets {
		es, err := st.List(context.Background(), b, "")
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, es...)
	}
	return out
}

// MustUsers returns a Users on a fresh bbolt file.
func MustUsers(tb testing.TB) *Users {
	tb.Helper()
	u, err := NewUsers(MustDB(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func testLogger(tb testing.TB) zerolog.Logger {
	if t, ok := tb.(*testing.T); ok {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// testIssuer is a local OAuth/OIDC issuer: discovery document, JWKS, and
// token signing with its own keys. Keys can be added and removed at runtime.
type testIssuer struct {
	srv *httptest.Server
	URL string

	mu        sync.Mutex
	keys      map[string]crypto.Signer // kid → private key
	published map[string]bool
	jwksHits  atomic.Int64
	discHits  atomic.Int64
	// mode: "oidc" serves openid-configuration; "rfc8414" only the OAuth one.
	mode string
	down atomic.Bool
}

func newTestIssuer(tb testing.TB, mode string) *testIssuer {
	tb.Helper()
	is := &testIssuer{keys: map[string]crypto.Signer{}, published: map[string]bool{}, mode: mode}
	is.addRSAKey(tb, "k1")
	mux := http.NewServeMux()
	meta := func(w http.ResponseWriter, r *http.Request) {
		is.discHits.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	}
	switch mode {
	case "rfc8414":
		mux.HandleFunc("/.well-known/oauth-authorization-server/tenant", meta)
	default:
		mux.HandleFunc("/.well-known/openid-configuration", meta)
	}
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHits.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range is.keys {
			if !is.published[kid] {
				continue
			}
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Use: "sig"})
		}
		is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewServer(mux)
	tb.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	if mode == "rfc8414" {
		is.URL += "/tenant"
	}
	return is
}

func (is *testIssuer) addRSAKey(tb testing.TB, kid string) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys[kid], is.published[kid] = k, true
	return k
}

func (is *testIssuer) addECKey(tb testing.TB, kid string) {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys[kid], is.published[kid] = k, true
}

func (is *testIssuer) unpublish(kid string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published[kid] = false
}

func (is *testIssuer) key(kid string) crypto.Signer {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[kid]
}

// claims returns valid default claims for aud, at now.
func (is *testIssuer) claims(aud string, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   is.URL,
		"sub":   "user-123",
		"aud":   aud,
		"exp":   now.Add(time.Hour).Unix(),
		"iat":   now.Unix(),
		"email": "Alice@Example.com",
	}
}

// sign signs claims with the key kid, using RS256 or ES256 by key type.
func (is *testIssuer) sign(tb testing.TB, kid string, claims jwt.MapClaims) string {
	tb.Helper()
	k := is.key(kid)
	var m jwt.SigningMethod = jwt.SigningMethodRS256
	if _, ok := k.(*ecdsa.PrivateKey); ok {
		m = jwt.SigningMethodES256
	}
	return signWith(tb, m, kid, k, claims)
}

func signWith(tb testing.TB, m jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(m, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// bearerReq returns a request to path with "Authorization: Bearer tok" (no
// header if tok is empty).
func bearerReq(path, tok string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}
