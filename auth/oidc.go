package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/switchboard-mcp/switchboard"
)

// OIDCConfig trusts one OAuth 2.0 / OpenID Connect issuer for /mcp, as the MCP
// authorization spec describes: the caller presents an access token in JWT form
// issued for this gateway.
//
// A token is accepted only if it is a compact JWS signed with an asymmetric
// algorithm (RS*, PS*, ES*, EdDSA; never "none" or HS*) by a key from the
// issuer's JWKS, its "iss" equals Issuer exactly, its "aud" contains Audience,
// "exp" is in the future, "nbf" (if any) is not more than 5 minutes in the
// future, and it has a non-empty "sub".
type OIDCConfig struct {
	// Issuer is the issuer URL, compared byte for byte with the token's "iss".
	// It must be https, or http on a loopback host (or with InsecureAllowHTTP).
	Issuer string `json:"issuer" yaml:"issuer"`
	// Audience must appear in the token's "aud": this gateway's resource URL or
	// the client id the issuer puts there. Required (RFC 8707; MCP forbids
	// accepting tokens issued for anyone else).
	Audience string `json:"audience" yaml:"audience"`
	// JWKSURL is where the issuer's signing keys are. If empty it is discovered
	// from Issuer + "/.well-known/openid-configuration", falling back to the
	// RFC 8414 "/.well-known/oauth-authorization-server" document.
	JWKSURL string `json:"jwks_url,omitempty" yaml:"jwks_url,omitempty"`
	// UserClaim names the claim that becomes the principal's ID. If empty, the
	// "email" claim is used when it is a non-empty string and "email_verified"
	// is not false (lowercased), and "sub" otherwise. A dotted name
	// ("ext.login") walks nested objects. The value must be a string of 1-256
	// printable characters, or the token is refused.
	UserClaim string `json:"user_claim,omitempty" yaml:"user_claim,omitempty"`
	// RolesClaim optionally names a claim holding the caller's groups or roles:
	// an array of strings, or one string of space-separated values (as in
	// "scope"). Dotted names walk nested objects ("realm_access.roles").
	RolesClaim string `json:"roles_claim,omitempty" yaml:"roles_claim,omitempty"`
	// RoleMap maps values of RolesClaim to gateway roles. When it is non-empty
	// only mapped values grant roles; when empty, every value that is a valid
	// role name is used as a role as is.
	RoleMap map[string]string `json:"role_map,omitempty" yaml:"role_map,omitempty"`
	// DefaultRoles are granted to every caller this issuer authenticates.
	DefaultRoles []string `json:"default_roles,omitempty" yaml:"default_roles,omitempty"`
	// Algorithms restricts the accepted signature algorithms. Empty means every
	// supported asymmetric algorithm.
	Algorithms []string `json:"algorithms,omitempty" yaml:"algorithms,omitempty"`
	// InsecureAllowHTTP permits http:// issuer and JWKS URLs on non-loopback
	// hosts. For development only.
	InsecureAllowHTTP bool `json:"insecure_allow_http,omitempty" yaml:"insecure_allow_http,omitempty"`
}

// asymmetricAlgs are the only JWS algorithms ever accepted for user JWTs.
var asymmetricAlgs = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}

// Key-set refresh policy.
const (
	// jwksMinRefresh is the least time between two fetches of a key set that
	// is already loaded, however many tokens with unknown keys arrive.
	jwksMinRefresh = 10 * time.Second
	// jwksRetryEmpty is the least time between two attempts to load a key set
	// that has never loaded; in between, verification fails as "unavailable".
	jwksRetryEmpty = 2 * time.Second
	// jwksMaxAge is how long a loaded key set is used before it is refetched
	// (keeping the old keys if that fails), so removed keys stop verifying.
	jwksMaxAge = 15 * time.Minute
	// fetchTimeout bounds one discovery or JWKS request.
	fetchTimeout = 10 * time.Second
	// maxDocSize bounds a discovery document or JWKS.
	maxDocSize = 1 << 20
	// nbfLeeway is go-oidc's fixed clock-skew allowance for "nbf".
	nbfLeeway = 5 * time.Minute
)

// validate checks c and returns a normalized copy.
func (c OIDCConfig) validate() (OIDCConfig, error) {
	if err := checkFetchURL(c.Issuer, c.InsecureAllowHTTP); err != nil {
		return c, fmt.Errorf("issuer: %w", err)
	}
	if c.Audience == "" {
		return c, fmt.Errorf("issuer %q: audience is required", c.Issuer)
	}
	if c.JWKSURL != "" {
		if err := checkFetchURL(c.JWKSURL, c.InsecureAllowHTTP); err != nil {
			return c, fmt.Errorf("issuer %q: jwks_url: %w", c.Issuer, err)
		}
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(asymmetricAlgs)
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(asymmetricAlgs, a) {
			return c, fmt.Errorf("issuer %q: algorithm %q not allowed (want one of %s)",
				c.Issuer, a, strings.Join(asymmetricAlgs, ", "))
		}
	}
	for k, r := range c.RoleMap {
		if !roleRE.MatchString(r) {
			return c, fmt.Errorf("issuer %q: role_map[%q]: invalid role %q", c.Issuer, k, r)
		}
	}
	roles, err := normalizeRoles(c.DefaultRoles)
	if err != nil {
		return c, fmt.Errorf("issuer %q: default_roles: %w", c.Issuer, err)
	}
	c.DefaultRoles = roles
	return c, nil
}

// checkFetchURL accepts https URLs, and http URLs on loopback hosts or when
// insecure is set. It refuses user info, queries and fragments.
func checkFetchURL(raw string, insecure bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", raw, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want scheme://host[/path] with no user, query or fragment", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure && !isLoopbackHostname(u.Hostname()) {
			return fmt.Errorf("%q: http is only allowed on loopback hosts", raw)
		}
	default:
		return fmt.Errorf("%q: want an https URL", raw)
	}
	return nil
}

// issuer verifies tokens from one configured issuer.
type issuer struct {
	cfg      OIDCConfig
	keys     *keySet
	verifier *oidc.IDTokenVerifier
}

func newIssuer(cfg OIDCConfig, keys *keySet, now func() time.Time) *issuer {
	v := oidc.NewVerifier(cfg.Issuer, keys, &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: cfg.Algorithms,
		Now:                  now,
	})
	return &issuer{cfg: cfg, keys: keys, verifier: v}
}

// fetchFailure collects a key-fetch error from inside go-oidc's verifier, which
// flattens the errors the key set returns.
type fetchFailure struct{ err error }

type fetchFailureKey struct{}

// unavailableError marks a verification that failed for a technical reason
// (the issuer's keys could not be loaded), not because the token is bad.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// verify checks raw and maps its claims to a principal. Any error refuses the
// token; an *unavailableError means the issuer's keys could not be loaded.
func (is *issuer) verify(ctx context.Context, raw string) (*switchboard.Principal, error) {
	ff := new(fetchFailure)
	ctx = context.WithValue(ctx, fetchFailureKey{}, ff)
	tok, err := is.verifier.Verify(ctx, raw)
	if err != nil {
		if ff.err != nil {
			return nil, &unavailableError{fmt.Errorf("verifying jwt from %q: %w", is.cfg.Issuer, ff.err)}
		}
		return nil, err
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("decoding claims: %w", err)
	}
	if sub, _ := claims["sub"].(string); sub == "" {
		return nil, errors.New("no sub claim")
	}
	id, ok := is.userID(claims)
	if !ok {
		return nil, errors.New("no valid user claim")
	}
	return switchboard.NewPrincipal(switchboard.PrincipalUser, id, is.roles(claims), MethodJWT, switchboard.EndpointPublic), nil
}

func (is *issuer) userID(claims map[string]any) (string, bool) {
	var id string
	if is.cfg.UserClaim != "" {
		id, _ = claimAt(claims, is.cfg.UserClaim).(string)
	} else {
		email, _ := claims["email"].(string)
		verified, isBool := claims["email_verified"].(bool)
		if email != "" && (!isBool || verified) {
			id = strings.ToLower(email)
		} else {
			id, _ = claims["sub"].(string)
		}
	}
	return id, validPrincipalID(id)
}

// validPrincipalID accepts 1-256 bytes of valid, printable UTF-8.
func validPrincipalID(id string) bool {
	if id == "" || len(id) > 256 || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func (is *issuer) roles(claims map[string]any) []string {
	roles := slices.Clone(is.cfg.DefaultRoles)
	if is.cfg.RolesClaim != "" {
		var values []string
		switch v := claimAt(claims, is.cfg.RolesClaim).(type) {
		case string:
			values = strings.Fields(v)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					values = append(values, s)
				}
			}
		}
		for _, v := range values {
			if len(is.cfg.RoleMap) > 0 {
				if r, ok := is.cfg.RoleMap[v]; ok {
					roles = append(roles, r)
				}
			} else if roleRE.MatchString(v) {
				roles = append(roles, v)
			}
		}
	}
	slices.Sort(roles)
	return slices.Compact(roles)
}

// claimAt returns the claim named by a dotted path, or nil.
func claimAt(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// unverifiedIssuer returns the "iss" of a compact JWS without verifying it, only
// to pick which configured issuer verifies it. Nothing else is read from it.
func unverifiedIssuer(raw string) (string, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Iss == "" {
		return "", false
	}
	return c.Iss, true
}

// keySet is an issuer's JWKS, fetched lazily and cached. It implements
// oidc.KeySet. Unknown key ids trigger a refetch at most every jwksMinRefresh,
// so bad tokens cannot turn the gateway into a load generator against the
// issuer, and a fetch never blocks verification against already-cached keys.
type keySet struct {
	issuer   string
	jwksURL  string // configured; "" means discover
	insecure bool
	client   *http.Client
	now      func() time.Time

	mu          sync.RWMutex
	keys        []jose.JSONWebKey
	fetchedAt   time.Time // last success
	gen         uint64    // bumped on every fetch attempt
	lastAttempt time.Time
	lastErr     error
	discovered  string // jwks_uri from discovery

	fetchMu sync.Mutex // one fetch at a time
}

// keySetID identifies key sets that can be shared across config reloads.
func keySetID(c OIDCConfig) string {
	return fmt.Sprintf("%s\x00%s\x00%t", c.Issuer, c.JWKSURL, c.InsecureAllowHTTP)
}

func newKeySet(c OIDCConfig, client *http.Client, now func() time.Time) *keySet {
	return &keySet{issuer: c.Issuer, jwksURL: c.JWKSURL, insecure: c.InsecureAllowHTTP, client: client, now: now}
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, joseAlgs(asymmetricAlgs))
	if err != nil {
		return nil, fmt.Errorf("parsing jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	sig := jws.Signatures[0]
	kid, alg := sig.Header.KeyID, sig.Header.Algorithm

	k.mu.RLock()
	keys, gen, fetchedAt, lastAttempt := k.keys, k.gen, k.fetchedAt, k.lastAttempt
	k.mu.RUnlock()
	if payload, ok := verifyWith(jws, keys, kid, alg); ok {
		now := k.now()
		if now.Sub(fetchedAt) > jwksMaxAge && now.Sub(lastAttempt) >= jwksMinRefresh && k.fetchMu.TryLock() {
			// Stale: refresh in this request, at most every jwksMinRefresh;
			// keep the old keys if that fails.
			if k.gen == gen {
				_ = k.fetchLocked(ctx)
			}
			k.fetchMu.Unlock()
			k.mu.RLock()
			keys = k.keys
			k.mu.RUnlock()
			if payload, ok := verifyWith(jws, keys, kid, alg); ok {
				return payload, nil
			}
			return nil, errors.New("signing key no longer published")
		}
		return payload, nil
	}

	// No cached key verifies: refetch if allowed, then try again.
	keys, err = k.refresh(ctx, gen)
	if err != nil {
		if ff, ok := ctx.Value(fetchFailureKey{}).(*fetchFailure); ok {
			ff.err = err
		}
		return nil, err
	}
	if payload, ok := verifyWith(jws, keys, kid, alg); ok {
		return payload, nil
	}
	return nil, errors.New("no published key verifies the signature")
}

// refresh fetches the key set unless another caller already did since gen, or
// the last attempt was too recent. It returns the keys to use, or an error
// when there are none to use because loading failed.
func (k *keySet) refresh(ctx context.Context, gen uint64) ([]jose.JSONWebKey, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	k.mu.RLock()
	changed := k.gen != gen
	since := k.now().Sub(k.lastAttempt)
	empty := k.fetchedAt.IsZero()
	k.mu.RUnlock()
	if !changed && (k.lastAttempt.IsZero() || (empty && since >= jwksRetryEmpty) || since >= jwksMinRefresh) {
		if err := k.fetchLocked(ctx); err != nil {
			return nil, err
		}
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.fetchedAt.IsZero() {
		if k.lastErr == nil {
			return nil, errors.New("signing keys not loaded")
		}
		return nil, k.lastErr
	}
	return k.keys, nil
}

// fetchLocked loads the key set; the caller holds fetchMu. On failure the
// previously loaded keys, if any, stay in use.
func (k *keySet) fetchLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	keys, discovered, err := k.load(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gen++
	k.lastAttempt = k.now()
	k.lastErr = err
	if discovered != "" {
		k.discovered = discovered
	}
	if err == nil {
		k.keys, k.fetchedAt = keys, k.lastAttempt
	}
	return err
}

func (k *keySet) load(ctx context.Context) ([]jose.JSONWebKey, string, error) {
	jwksURL := k.jwksURL
	discovered := ""
	if jwksURL == "" {
		k.mu.RLock()
		jwksURL = k.discovered
		k.mu.RUnlock()
		if jwksURL == "" {
			u, err := discoverJWKS(ctx, k.client, k.issuer, k.insecure)
			if err != nil {
				return nil, "", err
			}
			jwksURL, discovered = u, u
		}
	}
	body, status, err := fetch(ctx, k.client, jwksURL)
	if err != nil {
		return nil, discovered, fmt.Errorf("fetching jwks %q: %w", jwksURL, err)
	}
	if status != http.StatusOK {
		return nil, discovered, fmt.Errorf("fetching jwks %q: status %d", jwksURL, status)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, discovered, fmt.Errorf("parsing jwks %q: %w", jwksURL, err)
	}
	return keys, discovered, nil
}

// discoverJWKS reads the issuer's metadata and returns its jwks_uri.
func discoverJWKS(ctx context.Context, client *http.Client, iss string, insecure bool) (string, error) {
	u, err := url.Parse(iss)
	if err != nil {
		return "", fmt.Errorf("discovering %q: %w", iss, err)
	}
	path := strings.TrimSuffix(u.Path, "/")
	candidates := []string{
		// OpenID Connect Discovery 1.0 §4.
		u.Scheme + "://" + u.Host + path + "/.well-known/openid-configuration",
		// RFC 8414 §3: the well-known segment goes before the issuer's path.
		u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path,
	}
	var lastErr error
	for _, c := range candidates {
		body, status, err := fetch(ctx, client, c)
		if err != nil {
			return "", fmt.Errorf("discovering %q: %w", iss, err)
		}
		if status != http.StatusOK {
			lastErr = fmt.Errorf("discovering %q: %s: status %d", iss, c, status)
			continue
		}
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return "", fmt.Errorf("discovering %q: decoding %s: %w", iss, c, err)
		}
		if doc.Issuer != iss {
			return "", fmt.Errorf("discovering %q: metadata names issuer %q", iss, doc.Issuer)
		}
		if err := checkFetchURL(doc.JWKSURI, insecure); err != nil {
			return "", fmt.Errorf("discovering %q: jwks_uri: %w", iss, err)
		}
		return doc.JWKSURI, nil
	}
	return "", lastErr
}

func fetch(ctx context.Context, client *http.Client, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocSize+1))
	if err != nil {
		return nil, 0, err
	}
	if len(body) > maxDocSize {
		return nil, 0, fmt.Errorf("response larger than %d bytes", maxDocSize)
	}
	return body, resp.StatusCode, nil
}

// parseJWKS keeps the asymmetric public signing keys of a JWKS and skips the
// rest (symmetric keys, encryption keys, unknown key types).
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(r, &k); err != nil {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable signing keys")
	}
	return keys, nil
}

// verifyWith tries the keys matching kid (all keys if kid is empty) whose
// declared algorithm, if any, is alg.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid, alg string) ([]byte, bool) {
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != alg {
			continue
		}
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, true
		}
	}
	return nil, false
}

func joseAlgs(algs []string) []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(algs))
	for i, a := range algs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}

// isLoopbackHostname reports whether h is "localhost" or a loopback IP literal.
func isLoopbackHostname(h string) bool {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "localhost" {
		return true
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
