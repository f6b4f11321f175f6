package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// issuer is a local OIDC issuer on loopback with its own RSA key and JWKS.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) token(t *testing.T, claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
	t.Helper()
	if method == nil {
		method, key = jwt.SigningMethodRS256, is.key
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOIDCBearerTokens(t *testing.T) {
	is := newIssuer(t)
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
auth:
  oidc:
    - issuer: `+is.srv.URL+`
      audience: switchboard-test
      roles_claim: groups
      role_map: {engineering: dev}
roles:
  dev: {providers: [notes]}
providers:
  notes: {command: BIN/notes, env: {NOTES_DIR: ./data/notes}}
  echo: {command: BIN/echo}
`)
	g.waitReady(t)
	now := time.Now()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": is.srv.URL, "aud": "switchboard-test", "sub": "u-123", "email": "ann@example.com",
			"email_verified": true, "groups": []string{"engineering"}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	good := is.token(t, base(), nil, nil)
	c := MustConnect(t, g.URL()+"/mcp", map[string]string{"Authorization": "Bearer " + good})
	got := prefixes(toolNames(t, c))
	if !got["notes"] || got["echo"] {
		t.Errorf("OIDC user with group engineering sees %v, want only notes (role dev)", got)
	}

	pubDER, _ := x509.MarshalPKIXPublicKey(&is.key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	bad := map[string]string{
		"expired": is.token(t, func() jwt.MapClaims {
			c := base()
			c["exp"] = now.Add(-time.Hour).Unix()
			return c
		}(), nil, nil),
		"wrong audience":            is.token(t, func() jwt.MapClaims { c := base(); c["aud"] = "another-service"; return c }(), nil, nil),
		"untrusted issuer":          is.token(t, func() jwt.MapClaims { c := base(); c["iss"] = "https://evil.example"; return c }(), nil, nil),
		"not yet valid":             is.token(t, func() jwt.MapClaims { c := base(); c["nbf"] = now.Add(time.Hour).Unix(); return c }(), nil, nil),
		"alg none":                  is.token(t, base(), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
		"hs256 with the public key": is.token(t, base(), jwt.SigningMethodHS256, pubPEM),
		"truncated":                 good[:len(good)-10],
	}
	for name, tok := range bad {
		t.Run(name, func(t *testing.T) {
			resp := post(t, g.URL()+"/mcp", "", map[string]string{"Authorization": "Bearer " + tok},
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode)
			}
		})
	}
	// The OIDC token is a user credential: refused on the internal endpoint.
	resp := post(t, g.URL()+"/mcp/internal", "", map[string]string{"Authorization": "Bearer " + good}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("OIDC token on /mcp/internal: %d", resp.StatusCode)
	}
	if !strings.HasPrefix(is.srv.URL, "http://127.0.0.1") {
		t.Fatalf("issuer not on loopback: %s", is.srv.URL)
	}
}
