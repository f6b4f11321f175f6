package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-mcp/switchboard"
)

// Service-token claims. A service token is a JWT signed with EdDSA (Ed25519)
// by the gateway itself; it is only ever accepted on /mcp/internal.
const (
	ServiceIssuer   = "switchboard"
	ServiceAudience = "switchboard:internal"

	// MaxServiceTokenTTL bounds the lifetime Issue accepts.
	MaxServiceTokenTTL = 366 * 24 * time.Hour

	// serviceLeeway absorbs clock skew between the CLI that issued a token and
	// the server (normally the same host).
	serviceLeeway = 30 * time.Second
)

// ServiceTokens issues and verifies the signed, expiring tokens that services
// present on /mcp/internal. The signing key is an Ed25519 key whose 32-byte seed
// the caller generates with GenerateServiceKey and keeps in the data directory.
type ServiceTokens struct {
	priv    ed25519.PrivateKey
	kid     string
	keys    map[string]ed25519.PublicKey // kid → key; the current key and any previous ones
	now     func() time.Time
	methods []string
	revoked func(jti string) bool // set once by SetRevocationCheck, before use
}

// TokenInfo describes a service token: its id (the jti claim), service and
// lifetime. It is not the token and authenticates nothing.
type TokenInfo struct {
	JTI       string    `json:"jti"`
	Service   string    `json:"service"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SetRevocationCheck makes Verify refuse every token whose id revoked reports
// (TokenLog.IsRevoked). Call it before the ServiceTokens is used.
func (s *ServiceTokens) SetRevocationCheck(revoked func(jti string) bool) { s.revoked = revoked }

// GenerateServiceKey returns a new random 32-byte Ed25519 seed for
// NewServiceTokens. Store it with 0600 permissions; anyone holding it can mint
// service tokens.
func GenerateServiceKey() ([]byte, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("generating service key: %w", err)
	}
	return seed, nil
}

// NewServiceTokens returns a ServiceTokens that signs with key (a 32-byte
// Ed25519 seed or a 64-byte Ed25519 private key). Tokens signed by any of the
// previous keys still verify until they expire, which lets the caller rotate the
// signing key without cutting off running services.
func NewServiceTokens(key []byte, previous ...[]byte) (*ServiceTokens, error) {
	priv, err := ed25519Key(key)
	if err != nil {
		return nil, fmt.Errorf("loading service key: %w", err)
	}
	s := &ServiceTokens{
		priv:    priv,
		keys:    map[string]ed25519.PublicKey{},
		now:     time.Now,
		methods: []string{jwt.SigningMethodEdDSA.Alg()},
	}
	s.kid = s.addKey(priv.Public().(ed25519.PublicKey))
	for i, p := range previous {
		pk, err := ed25519Key(p)
		if err != nil {
			return nil, fmt.Errorf("loading previous service key %d: %w", i, err)
		}
		s.addKey(pk.Public().(ed25519.PublicKey))
	}
	return s, nil
}

func ed25519Key(b []byte) (ed25519.PrivateKey, error) {
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		k := ed25519.PrivateKey(append([]byte(nil), b...))
		// A private key embeds its public half; check they agree.
		if !k.Public().(ed25519.PublicKey).Equal(ed25519.NewKeyFromSeed(k.Seed()).Public()) {
			return nil, errors.New("inconsistent ed25519 private key")
		}
		return k, nil
	}
	return nil, fmt.Errorf("want a %d-byte seed or a %d-byte ed25519 key, got %d bytes",
		ed25519.SeedSize, ed25519.PrivateKeySize, len(b))
}

func (s *ServiceTokens) addKey(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	kid := hex.EncodeToString(sum[:8])
	s.keys[kid] = pub
	return kid
}

// serviceClaims are the claims of a service token.
type serviceClaims struct {
	jwt.RegisteredClaims
}

// Issue returns a token for service valid for ttl, and its expiry. The
// service name follows the user-name rules; ttl must be positive and at most
// MaxServiceTokenTTL.
func (s *ServiceTokens) Issue(service string, ttl time.Duration) (string, time.Time, error) {
	tok, info, err := s.IssueInfo(service, ttl)
	return tok, info.ExpiresAt, err
}

// IssueInfo is Issue that also returns the new token's id and lifetime, for
// the caller to record (TokenLog.Issued) so it can be listed and revoked.
func (s *ServiceTokens) IssueInfo(service string, ttl time.Duration) (string, TokenInfo, error) {
	if err := ValidateUserName(service); err != nil {
		return "", TokenInfo{}, fmt.Errorf("issuing service token: %w", err)
	}
	if ttl <= 0 || ttl > MaxServiceTokenTTL {
		return "", TokenInfo{}, fmt.Errorf("issuing service token for %q: %w", service,
			switchboard.Errorf(switchboard.EINVALID, "ttl %s out of range (0, %s]", ttl, MaxServiceTokenTTL))
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", TokenInfo{}, fmt.Errorf("issuing service token for %q: %w", service, err)
	}
	now := s.now().Truncate(time.Second)
	exp := now.Add(ttl)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, serviceClaims{jwt.RegisteredClaims{
		Issuer:    ServiceIssuer,
		Subject:   service,
		Audience:  jwt.ClaimStrings{ServiceAudience},
		ExpiresAt: jwt.NewNumericDate(exp),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        hex.EncodeToString(jti[:]),
	}})
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.priv)
	if err != nil {
		return "", TokenInfo{}, fmt.Errorf("issuing service token for %q: %w", service, err)
	}
	return signed, TokenInfo{JTI: hex.EncodeToString(jti[:]), Service: service, IssuedAt: now, ExpiresAt: exp}, nil
}

// Inspect checks that token is a service token this gateway signed (signature,
// algorithm, issuer, audience) and returns its id, service and lifetime,
// whether or not it has expired or been revoked. It is for revoking a token
// given whole; it authenticates nothing.
func (s *ServiceTokens) Inspect(token string) (TokenInfo, error) {
	var claims serviceClaims
	// Without claims validation the parser checks the signature and algorithm
	// only; issuer and audience are checked here.
	_, err := jwt.ParseWithClaims(token, &claims, s.keyFunc,
		jwt.WithValidMethods(s.methods),
		jwt.WithoutClaimsValidation(),
		jwt.WithStrictDecoding(),
	)
	if err != nil || claims.Issuer != ServiceIssuer || !slices.Contains(claims.Audience, ServiceAudience) ||
		claims.ExpiresAt == nil || claims.IssuedAt == nil || claims.ID == "" {
		return TokenInfo{}, switchboard.Errorf(switchboard.EINVALID, "not a service token signed by this gateway")
	}
	return TokenInfo{JTI: claims.ID, Service: claims.Subject, IssuedAt: claims.IssuedAt.Time, ExpiresAt: claims.ExpiresAt.Time}, nil
}

// Verify checks a service token and returns the service it names. It refuses
// any token whose signature, algorithm, issuer, audience, expiry or issue time
// is wrong, any token without an id or whose id was revoked (see
// SetRevocationCheck), and any token whose service known does not report as
// currently configured (a nil known refuses every token). Every error means
// "deny".
func (s *ServiceTokens) Verify(token string, known func(service string) bool) (string, error) {
	var claims serviceClaims
	_, err := jwt.ParseWithClaims(token, &claims, s.keyFunc,
		jwt.WithValidMethods(s.methods),
		jwt.WithIssuer(ServiceIssuer),
		jwt.WithAudience(ServiceAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(serviceLeeway),
		jwt.WithTimeFunc(s.now),
		jwt.WithStrictDecoding(),
	)
	if err != nil {
		return "", fmt.Errorf("verifying service token: %w", err)
	}
	if claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > MaxServiceTokenTTL {
		return "", errors.New("verifying service token: lifetime out of range")
	}
	if ValidateUserName(claims.Subject) != nil {
		return "", errors.New("verifying service token: invalid subject")
	}
	if claims.ID == "" {
		return "", errors.New("verifying service token: no token id")
	}
	if s.revoked != nil && s.revoked(claims.ID) {
		return "", fmt.Errorf("verifying service token: token %s was revoked", claims.ID)
	}
	if known == nil || !known(claims.Subject) {
		return "", fmt.Errorf("verifying service token: service %q is not configured", claims.Subject)
	}
	return claims.Subject, nil
}

func (s *ServiceTokens) keyFunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	pub, ok := s.keys[kid]
	if !ok {
		return nil, errors.New("unknown key id")
	}
	return pub, nil
}
