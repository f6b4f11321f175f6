package auth

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-mcp/switchboard"
)

const testAudience = "https://gw.test/mcp"

type authFixture struct {
	clk      *fakeClock
	users    *Users
	tokens   *ServiceTokens
	seed     []byte
	iss      *testIssuer
	a        *Authenticator
	aliceKey string
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	f := &authFixture{clk: newFakeClock(), users: MustUsers(t), iss: newTestIssuer(t, "oidc")}
	f.iss.addECKey(t, "e1")
	var err error
	if f.aliceKey, err = f.users.Add("alice", []string{"dev"}); err != nil {
		t.Fatal(err)
	}
	if f.seed, err = GenerateServiceKey(); err != nil {
		t.Fatal(err)
	}
	if f.tokens, err = NewServiceTokens(f.seed); err != nil {
		t.Fatal(err)
	}
	f.tokens.now = f.clk.Now
	if f.a, err = New(f.users, f.tokens, Config{}, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	f.a.now = f.clk.Now
	if err := f.a.SetConfig(f.config()); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *authFixture) config() Config {
	return Config{
		OIDC: []OIDCConfig{{
			Issuer:     f.iss.URL,
			Audience:   testAudience,
			RolesClaim: "groups",
			RoleMap:    map[string]string{"eng": "dev", "ops": "admin"},
		}},
		Services: []string{"ci"},
	}
}

func TestAuthenticate(t *testing.T) {
	f := newAuthFixture(t)
	now := f.clk.Now()
	iss := f.iss

	// Credentials of every class, good and bad.
	bobKey, err := f.users.Add("bob", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.users.Remove("bob"); err != nil {
		t.Fatal(err)
	}
	wrongSuffix := f.aliceKey[:len(f.aliceKey)-4] + flip(f.aliceKey[len(f.aliceKey)-4:])
	unknownID := "sb_" + strings.Repeat("a", 12) + "_" + strings.Repeat("b", 52)

	good := iss.claims(testAudience, now)
	good["groups"] = []any{"eng", "marketing"}
	jwtGood := iss.sign(t, "k1", good)
	jwtES := iss.sign(t, "e1", iss.claims(testAudience, now))

	unverified := iss.claims(testAudience, now)
	unverified["email_verified"] = false
	jwtUnverifiedEmail := iss.sign(t, "k1", unverified)

	with := func(mod func(c jwt.MapClaims)) string {
		c := iss.claims(testAudience, now)
		mod(c)
		return iss.sign(t, "k1", c)
	}
	jwtExpired := with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })
	jwtNoExp := with(func(c jwt.MapClaims) { delete(c, "exp") })
	jwtNBF := with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })
	jwtWrongAud := with(func(c jwt.MapClaims) { c["aud"] = "https://other.test/mcp" })
	jwtNoSub := with(func(c jwt.MapClaims) { delete(c, "sub") })
	jwtAudList := with(func(c jwt.MapClaims) { c["aud"] = []string{"x", testAudience} })

	// A token from an issuer nobody configured.
	other := newTestIssuer(t, "oidc")
	jwtOtherIss := other.sign(t, "k1", other.claims(testAudience, now))
	// Claims the trusted issuer, signed by another issuer's key under the same kid.
	forged := iss.claims(testAudience, now)
	jwtBadSig := signWith(t, jwt.SigningMethodRS256, "k1", other.key("k1"), forged)

	// alg none.
	jwtNone := signWith(t, jwt.SigningMethodNone, "k1", jwt.UnsafeAllowNoneSignatureType, iss.claims(testAudience, now))
	// Algorithm confusion: HS256 keyed with the issuer's RSA public key (PEM and DER).
	der, err := x509.MarshalPKIXPublicKey(iss.key("k1").Public())
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwtHSPEM := signWith(t, jwt.SigningMethodHS256, "k1", pemKey, iss.claims(testAudience, now))
	jwtHSDER := signWith(t, jwt.SigningMethodHS256, "k1", der, iss.claims(testAudience, now))
	jwtTruncated := jwtGood[:len(jwtGood)-20]
	jwtTwoParts := jwtGood[:strings.LastIndex(jwtGood, ".")]

	// Service tokens.
	svcGood, _, err := f.tokens.Issue("ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	svcGhost, _, err := f.tokens.Issue("ghost", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	past, _ := NewServiceTokens(f.seed)
	past.now = func() time.Time { return now.Add(-2 * time.Hour) }
	svcExpired, _, err := past.Issue("ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherSeed, _ := GenerateServiceKey()
	otherTokens, _ := NewServiceTokens(otherSeed)
	otherTokens.now = f.clk.Now
	svcOtherKey, _, _ := otherTokens.Issue("ci", time.Hour)
	priv := ed25519.NewKeyFromSeed(f.seed)
	svcClaims := func(mod func(c jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": ServiceIssuer, "aud": ServiceAudience, "sub": "ci",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": "x"}
		mod(c)
		return c
	}
	svcWrongAud := signWith(t, jwt.SigningMethodEdDSA, f.tokens.kid, priv, svcClaims(func(c jwt.MapClaims) { c["aud"] = "switchboard:public" }))
	svcWrongIss := signWith(t, jwt.SigningMethodEdDSA, f.tokens.kid, priv, svcClaims(func(c jwt.MapClaims) { c["iss"] = "someone" }))
	svcNoExp := signWith(t, jwt.SigningMethodEdDSA, f.tokens.kid, priv, svcClaims(func(c jwt.MapClaims) { delete(c, "exp") }))
	svcFutureIat := signWith(t, jwt.SigningMethodEdDSA, f.tokens.kid, priv, svcClaims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }))
	svcNoKid := signWith(t, jwt.SigningMethodEdDSA, "", priv, svcClaims(func(c jwt.MapClaims) {}))
	svcHS := signWith(t, jwt.SigningMethodHS256, f.tokens.kid, []byte(priv.Public().(ed25519.PublicKey)), svcClaims(func(c jwt.MapClaims) {}))
	svcNone := signWith(t, jwt.SigningMethodNone, f.tokens.kid, jwt.UnsafeAllowNoneSignatureType, svcClaims(func(c jwt.MapClaims) {}))

	user := func(id, method string, roles ...string) *switchboard.Principal {
		return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: id, Roles: roles, Method: method, Endpoint: switchboard.EndpointPublic}
	}
	service := func(id string) *switchboard.Principal {
		return &switchboard.Principal{Kind: switchboard.PrincipalService, ID: id, Method: MethodServiceToken, Endpoint: switchboard.EndpointInternal}
	}

	tests := []struct {
		name     string
		internal bool
		header   []string // Authorization values; nil = none
		want     *switchboard.Principal
	}{
		{name: "public no header"},
		{name: "internal no header", internal: true},
		{name: "empty bearer", header: []string{"Bearer "}},
		{name: "basic scheme", header: []string{"Basic " + f.aliceKey}},
		{name: "no scheme", header: []string{f.aliceKey}},
		{name: "two headers", header: []string{"Bearer " + f.aliceKey, "Bearer " + f.aliceKey}},
		{name: "token with space", header: []string{"Bearer " + f.aliceKey + " x"}},
		{name: "oversized token", header: []string{"Bearer " + strings.Repeat("a", maxTokenLen+1)}},

		{name: "api key", header: []string{"Bearer " + f.aliceKey}, want: user("alice", MethodAPIKey, "dev")},
		{name: "api key lowercase scheme", header: []string{"bearer " + f.aliceKey}, want: user("alice", MethodAPIKey, "dev")},
		{name: "api key revoked", header: []string{"Bearer " + bobKey}},
		{name: "api key valid prefix wrong suffix", header: []string{"Bearer " + wrongSuffix}},
		{name: "api key unknown id", header: []string{"Bearer " + unknownID}},
		{name: "api key truncated", header: []string{"Bearer " + f.aliceKey[:len(f.aliceKey)-1]}},
		{name: "api key malformed", header: []string{"Bearer sb_short"}},
		{name: "api key uppercase", header: []string{"Bearer " + strings.ToUpper(f.aliceKey)}},
		{name: "api key on internal", internal: true, header: []string{"Bearer " + f.aliceKey}},

		{name: "jwt", header: []string{"Bearer " + jwtGood}, want: user("alice@example.com", MethodJWT, "dev")},
		{name: "jwt es256", header: []string{"Bearer " + jwtES}, want: user("alice@example.com", MethodJWT)},
		{name: "jwt aud list", header: []string{"Bearer " + jwtAudList}, want: user("alice@example.com", MethodJWT)},
		{name: "jwt unverified email uses sub", header: []string{"Bearer " + jwtUnverifiedEmail}, want: user("user-123", MethodJWT)},
		{name: "jwt expired", header: []string{"Bearer " + jwtExpired}},
		{name: "jwt no exp", header: []string{"Bearer " + jwtNoExp}},
		{name: "jwt nbf in future", header: []string{"Bearer " + jwtNBF}},
		{name: "jwt wrong aud", header: []string{"Bearer " + jwtWrongAud}},
		{name: "jwt untrusted iss", header: []string{"Bearer " + jwtOtherIss}},
		{name: "jwt bad signature", header: []string{"Bearer " + jwtBadSig}},
		{name: "jwt alg none", header: []string{"Bearer " + jwtNone}},
		{name: "jwt hs256 with rsa public pem", header: []string{"Bearer " + jwtHSPEM}},
		{name: "jwt hs256 with rsa public der", header: []string{"Bearer " + jwtHSDER}},
		{name: "jwt truncated", header: []string{"Bearer " + jwtTruncated}},
		{name: "jwt two parts", header: []string{"Bearer " + jwtTwoParts}},
		{name: "jwt missing sub", header: []string{"Bearer " + jwtNoSub}},
		{name: "jwt on internal", internal: true, header: []string{"Bearer " + jwtGood}},

		{name: "service token", internal: true, header: []string{"Bearer " + svcGood}, want: service("ci")},
		{name: "service token on public", header: []string{"Bearer " + svcGood}},
		{name: "service token unconfigured service", internal: true, header: []string{"Bearer " + svcGhost}},
		{name: "service token expired", internal: true, header: []string{"Bearer " + svcExpired}},
		{name: "service token other key", internal: true, header: []string{"Bearer " + svcOtherKey}},
		{name: "service token wrong aud", internal: true, header: []string{"Bearer " + svcWrongAud}},
		{name: "service token wrong iss", internal: true, header: []string{"Bearer " + svcWrongIss}},
		{name: "service token no exp", internal: true, header: []string{"Bearer " + svcNoExp}},
		{name: "service token iat in future", internal: true, header: []string{"Bearer " + svcFutureIat}},
		{name: "service token no kid", internal: true, header: []string{"Bearer " + svcNoKid}},
		{name: "service token hs256 with public key", internal: true, header: []string{"Bearer " + svcHS}},
		{name: "service token alg none", internal: true, header: []string{"Bearer " + svcNone}},
		{name: "service token truncated", internal: true, header: []string{"Bearer " + svcGood[:len(svcGood)-5]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bearerReq("/mcp", "")
			for _, h := range tt.header {
				r.Header.Add("Authorization", h)
			}
			authn := f.a.AuthenticatePublic
			if tt.internal {
				authn = f.a.AuthenticateInternal
			}
			p, ok, err := authn(r)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if ok != (tt.want != nil) {
				t.Fatalf("ok = %t, principal %+v; want ok = %t", ok, p, tt.want != nil)
			}
			if tt.want == nil {
				if p != nil {
					t.Fatalf("principal %+v returned with ok=false", p)
				}
				return
			}
			if p.Kind != tt.want.Kind || p.ID != tt.want.ID || p.Method != tt.want.Method ||
				p.Endpoint != tt.want.Endpoint || !slices.Equal(p.Roles, tt.want.Roles) {
				t.Fatalf("principal = %+v, want %+v", p, tt.want)
			}
		})
	}
}

// flip changes every character of s to a different valid base32 character.
func flip(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
	}
	return string(b)
}

func TestAuthenticateUserClaimAndRoles(t *testing.T) {
	f := newAuthFixture(t)
	now := f.clk.Now()
	cfg := f.config()
	cfg.OIDC[0].UserClaim = "ext.login"
	cfg.OIDC[0].RolesClaim = "realm_access.roles"
	cfg.OIDC[0].RoleMap = nil
	cfg.OIDC[0].DefaultRoles = []string{"reader"}
	if err := f.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	c := f.iss.claims(testAudience, now)
	c["ext"] = map[string]any{"login": "Carol"}
	c["realm_access"] = map[string]any{"roles": []any{"writer", "bad role", 7}}
	p, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", f.iss.sign(t, "k1", c)))
	if err != nil || !ok {
		t.Fatalf("ok=%t err=%v", ok, err)
	}
	if p.ID != "Carol" || !slices.Equal(p.Roles, []string{"reader", "writer"}) {
		t.Fatalf("principal = %+v", p)
	}

	// A configured user claim that is missing refuses the token.
	delete(c, "ext")
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", f.iss.sign(t, "k1", c))); ok || err != nil {
		t.Fatalf("missing user claim: ok=%t err=%v", ok, err)
	}
	// Space-separated string roles (like "scope").
	cfg.OIDC[0].UserClaim = ""
	cfg.OIDC[0].RolesClaim = "scope"
	cfg.OIDC[0].RoleMap = map[string]string{"mcp:write": "writer"}
	if err := f.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	c = f.iss.claims(testAudience, now)
	c["scope"] = "openid mcp:write email"
	p, ok, _ = f.a.AuthenticatePublic(bearerReq("/mcp", f.iss.sign(t, "k1", c)))
	if !ok || !slices.Equal(p.Roles, []string{"reader", "writer"}) {
		t.Fatalf("scope roles: ok=%t principal=%+v", ok, p)
	}
}

func TestSetConfigAppliesAtOnce(t *testing.T) {
	f := newAuthFixture(t)
	tok, _, err := f.tokens.Issue("ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	jwtGood := f.iss.sign(t, "k1", f.iss.claims(testAudience, f.clk.Now()))
	mustOK := func(want bool, authn func(*http.Request) (*switchboard.Principal, bool, error), tok string) {
		t.Helper()
		if _, ok, err := authn(bearerReq("/mcp", tok)); ok != want || err != nil {
			t.Fatalf("ok=%t err=%v, want ok=%t", ok, err, want)
		}
	}
	mustOK(true, f.a.AuthenticateInternal, tok)
	mustOK(true, f.a.AuthenticatePublic, jwtGood)
	mustOK(true, f.a.AuthenticatePublic, f.aliceKey)
	hits := f.iss.jwksHits.Load()

	// Remove the service: its token is refused on the very next request.
	cfg := f.config()
	cfg.Services = nil
	if err := f.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	mustOK(false, f.a.AuthenticateInternal, tok)
	// Same issuer: cached keys survive the reload.
	mustOK(true, f.a.AuthenticatePublic, jwtGood)
	if got := f.iss.jwksHits.Load(); got != hits {
		t.Fatalf("reload refetched keys: %d hits, want %d", got, hits)
	}

	// API keys can be switched off.
	cfg.DisableAPIKeys = true
	if err := f.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	mustOK(false, f.a.AuthenticatePublic, f.aliceKey)

	// No issuers: JWTs are refused without any fetch.
	cfg.OIDC = nil
	if err := f.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	mustOK(false, f.a.AuthenticatePublic, jwtGood)

	// Bad configs are refused and the current one stays.
	bad := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no audience", Config{OIDC: []OIDCConfig{{Issuer: "https://idp.example"}}}, "audience is required"},
		{"http issuer", Config{OIDC: []OIDCConfig{{Issuer: "http://idp.example", Audience: "a"}}}, "http is only allowed on loopback"},
		{"not a url", Config{OIDC: []OIDCConfig{{Issuer: "switchboard", Audience: "a"}}}, "want scheme://host"},
		{"hs256", Config{OIDC: []OIDCConfig{{Issuer: "https://idp.example", Audience: "a", Algorithms: []string{"HS256"}}}}, "not allowed"},
		{"none", Config{OIDC: []OIDCConfig{{Issuer: "https://idp.example", Audience: "a", Algorithms: []string{"none"}}}}, "not allowed"},
		{"duplicate", Config{OIDC: []OIDCConfig{{Issuer: "https://idp.example", Audience: "a"}, {Issuer: "https://idp.example", Audience: "b"}}}, "duplicate issuer"},
		{"bad jwks url", Config{OIDC: []OIDCConfig{{Issuer: "https://idp.example", Audience: "a", JWKSURL: "file:///etc/keys"}}}, "jwks_url"},
		{"bad role map", Config{OIDC: []OIDCConfig{{Issuer: "https://idp.example", Audience: "a", RoleMap: map[string]string{"g": "bad role"}}}}, "invalid role"},
		{"bad service", Config{Services: []string{"Bad Name"}}, "invalid user name"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := f.a.SetConfig(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if switchboard.ErrorCode(err) != switchboard.EINVALID {
				t.Fatalf("code = %q", switchboard.ErrorCode(err))
			}
		})
	}
	if !f.a.state.Load().cfg.DisableAPIKeys {
		t.Fatal("a refused config replaced the current one")
	}
	if err := ValidateConfig(Config{OIDC: []OIDCConfig{{Issuer: "https://idp.example", Audience: "a"}}}); err != nil {
		t.Fatal(err)
	}
}

func TestOIDCDiscoveryRFC8414(t *testing.T) {
	f := newAuthFixture(t)
	is := newTestIssuer(t, "rfc8414")
	if err := f.a.SetConfig(Config{OIDC: []OIDCConfig{{Issuer: is.URL, Audience: testAudience}}}); err != nil {
		t.Fatal(err)
	}
	p, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", is.sign(t, "k1", is.claims(testAudience, f.clk.Now()))))
	if err != nil || !ok || p.ID != "alice@example.com" {
		t.Fatalf("p=%+v ok=%t err=%v", p, ok, err)
	}
}

func TestOIDCExplicitJWKSURL(t *testing.T) {
	f := newAuthFixture(t)
	cfg := f.config()
	cfg.OIDC[0].JWKSURL = f.iss.srv.URL + "/keys"
	if err := f.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", f.iss.sign(t, "k1", f.iss.claims(testAudience, f.clk.Now())))); !ok || err != nil {
		t.Fatalf("ok=%t err=%v", ok, err)
	}
	if n := f.iss.discHits.Load(); n != 0 {
		t.Fatalf("discovery fetched %d times with an explicit jwks_url", n)
	}
}

func TestOIDCIssuerUnavailable(t *testing.T) {
	f := newAuthFixture(t)
	tok := f.iss.sign(t, "k1", f.iss.claims(testAudience, f.clk.Now()))
	f.iss.down.Store(true)

	// No keys could be loaded: a technical failure, never an allow.
	p, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok))
	if err == nil || ok || p != nil {
		t.Fatalf("issuer down: p=%+v ok=%t err=%v", p, ok, err)
	}
	if strings.Contains(err.Error(), tok) {
		t.Fatal("error contains the token")
	}
	// Within the retry interval the error is repeated without a new fetch.
	hits := f.iss.discHits.Load()
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok)); err == nil || ok {
		t.Fatalf("ok=%t err=%v", ok, err)
	}
	if got := f.iss.discHits.Load(); got != hits {
		t.Fatalf("refetched within retry interval: %d -> %d", hits, got)
	}

	// The issuer recovers.
	f.iss.down.Store(false)
	f.clk.Advance(jwksRetryEmpty)
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok)); !ok || err != nil {
		t.Fatalf("after recovery: ok=%t err=%v", ok, err)
	}

	// Keys are loaded; the issuer goes down again. Known keys keep working.
	f.iss.down.Store(true)
	f.clk.Advance(time.Minute)
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok)); !ok || err != nil {
		t.Fatalf("cached keys with issuer down: ok=%t err=%v", ok, err)
	}
	// Stale keys are kept when the refresh fails.
	f.clk.Advance(jwksMaxAge + time.Second)
	tok = f.iss.sign(t, "k1", f.iss.claims(testAudience, f.clk.Now()))
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok)); !ok || err != nil {
		t.Fatalf("stale keys with issuer down: ok=%t err=%v", ok, err)
	}
	// A failed stale refresh is not retried on every request.
	hits = f.iss.discHits.Load() + f.iss.jwksHits.Load()
	for range 5 {
		if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok)); !ok || err != nil {
			t.Fatalf("stale keys with issuer down: ok=%t err=%v", ok, err)
		}
	}
	if got := f.iss.discHits.Load() + f.iss.jwksHits.Load(); got != hits {
		t.Fatalf("stale refresh retried %d times within the refresh interval", got-hits)
	}
}

func TestOIDCUnreachableIssuer(t *testing.T) {
	f := newAuthFixture(t)
	// A loopback port with nothing listening.
	dead := newTestIssuer(t, "oidc")
	dead.srv.Close()
	if err := f.a.SetConfig(Config{OIDC: []OIDCConfig{{Issuer: dead.URL, Audience: testAudience}}}); err != nil {
		t.Fatal(err)
	}
	_, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", dead.sign(t, "k1", dead.claims(testAudience, f.clk.Now()))))
	if err == nil || ok {
		t.Fatalf("ok=%t err=%v", ok, err)
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	f := newAuthFixture(t)
	now := f.clk.Now()
	if _, ok, _ := f.a.AuthenticatePublic(bearerReq("/mcp", f.iss.sign(t, "k1", f.iss.claims(testAudience, now)))); !ok {
		t.Fatal("k1 refused")
	}
	hits := f.iss.jwksHits.Load()

	// Unknown key ids cannot make the gateway hammer the issuer.
	f.iss.addRSAKey(t, "k2")
	tok2 := f.iss.sign(t, "k2", f.iss.claims(testAudience, now))
	for range 20 {
		if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUifQ."+strings.Split(tok2, ".")[1]+".AAAA")); ok || err != nil {
			t.Fatalf("forged kid: ok=%t err=%v", ok, err)
		}
	}
	if got := f.iss.jwksHits.Load(); got > hits+1 {
		t.Fatalf("%d jwks fetches for 20 unknown-kid tokens", got-hits)
	}

	// After the refresh interval a token with the new key is accepted.
	f.clk.Advance(jwksMinRefresh)
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok2)); !ok || err != nil {
		t.Fatalf("k2: ok=%t err=%v", ok, err)
	}

	// A key the issuer no longer publishes stops verifying once the cache ages out.
	f.iss.unpublish("k1")
	f.clk.Advance(jwksMaxAge + time.Second)
	tok1 := f.iss.sign(t, "k1", f.iss.claims(testAudience, f.clk.Now()))
	if _, ok, err := f.a.AuthenticatePublic(bearerReq("/mcp", tok1)); ok || err != nil {
		t.Fatalf("unpublished k1: ok=%t err=%v", ok, err)
	}
}

func TestOIDCJWKSIgnoresSymmetricKeys(t *testing.T) {
	body := []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"},{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}]}`)
	if _, err := parseJWKS(body); err == nil {
		t.Fatal("jwks of only symmetric and encryption keys accepted")
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header string
		want   string
		ok     bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer abc==", "abc==", true},
		{"Bearer a=b", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Token abc", "", false},
		{"Bearer abc\tdef", "", false},
		{"Bearer abc def", "", false},
		{"Bearer ab\"c", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			r := bearerReq("/", "")
			r.Header.Set("Authorization", tt.header)
			got, ok := BearerToken(r)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("got %q, %t; want %q, %t", got, ok, tt.want, tt.ok)
			}
		})
	}
	// A credential in the query string or a cookie is never read.
	r := bearerReq("/mcp?access_token=abc", "")
	r.AddCookie(&http.Cookie{Name: "token", Value: "abc"})
	if _, ok := BearerToken(r); ok {
		t.Fatal("token read from query or cookie")
	}
}

func BenchmarkAuthenticateAPIKey(b *testing.B) {
	users := MustUsers(b)
	for i := range 1000 {
		if _, err := users.Add("user"+string(rune('a'+i%26))+strings.Repeat("x", i/26), []string{"dev"}); err != nil {
			b.Fatal(err)
		}
	}
	key, err := users.Add("alice", []string{"dev"})
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(users, nil, Config{}, testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	r := bearerReq("/mcp", key)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := a.AuthenticatePublic(r); !ok {
			b.Fatal("refused")
		}
	}
}

func TestCheckRedirect(t *testing.T) {
	mk := func(u string) *http.Request { r, _ := http.NewRequest(http.MethodGet, u, nil); return r }
	if err := checkRedirect(mk("http://idp.example/keys"), []*http.Request{mk("https://idp.example/")}); err == nil {
		t.Error("https to http redirect allowed")
	}
	if err := checkRedirect(mk("https://cdn.example/keys"), []*http.Request{mk("https://idp.example/")}); err != nil {
		t.Error(err)
	}
	via := []*http.Request{mk("https://a"), mk("https://a"), mk("https://a"), mk("https://a"), mk("https://a")}
	if err := checkRedirect(mk("https://a"), via); err == nil {
		t.Error("sixth redirect allowed")
	}
}
