package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestServiceTokens(t *testing.T) {
	seed, err := GenerateServiceKey()
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("seed %d bytes, err %v", len(seed), err)
	}
	clk := newFakeClock()
	st, err := NewServiceTokens(seed)
	if err != nil {
		t.Fatal(err)
	}
	st.now = clk.Now
	known := func(s string) bool { return s == "ci" }

	tok, exp, err := st.Issue("ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := exp.Sub(clk.Now()); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("expiry in %s", d)
	}
	// The claims are what the spec says.
	parts := strings.Split(tok, ".")
	var hdr, claims map[string]any
	for i, v := range []*map[string]any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	if hdr["alg"] != "EdDSA" || hdr["kid"] != st.kid {
		t.Fatalf("header %v", hdr)
	}
	if claims["iss"] != "switchboard" || claims["sub"] != "ci" || claims["jti"] == "" ||
		claims["exp"] == nil || claims["iat"] == nil {
		t.Fatalf("claims %v", claims)
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "switchboard:internal" {
		t.Fatalf("aud %v", claims["aud"])
	}
	tok2, _, _ := st.Issue("ci", time.Hour)
	if tok2 == tok {
		t.Fatal("two tokens are identical (jti not random)")
	}

	if svc, err := st.Verify(tok, known); err != nil || svc != "ci" {
		t.Fatalf("verify: %q %v", svc, err)
	}
	if _, err := st.Verify(tok, nil); err == nil {
		t.Fatal("nil known set accepted a token")
	}
	clk.Advance(time.Hour + serviceLeeway + time.Second)
	if _, err := st.Verify(tok, known); err == nil {
		t.Fatal("expired token accepted")
	}

	// Rotation: tokens of the previous key still verify; the new key signs.
	clk2 := newFakeClock()
	st.now = clk2.Now
	oldTok, _, _ := st.Issue("ci", time.Hour)
	newSeed, _ := GenerateServiceKey()
	rotated, err := NewServiceTokens(newSeed, seed)
	if err != nil {
		t.Fatal(err)
	}
	rotated.now = clk2.Now
	if _, err := rotated.Verify(oldTok, known); err != nil {
		t.Fatalf("previous-key token refused after rotation: %v", err)
	}
	newTok, _, _ := rotated.Issue("ci", time.Hour)
	if _, err := st.Verify(newTok, known); err == nil {
		t.Fatal("old verifier accepted a token of an unknown key")
	}
	// Dropping the old key revokes its tokens.
	only, _ := NewServiceTokens(newSeed)
	only.now = clk2.Now
	if _, err := only.Verify(oldTok, known); err == nil {
		t.Fatal("token of a dropped key accepted")
	}
}

func TestServiceTokensBadInput(t *testing.T) {
	seed, _ := GenerateServiceKey()
	priv := ed25519.NewKeyFromSeed(seed)
	if _, err := NewServiceTokens(priv); err != nil {
		t.Fatalf("64-byte key refused: %v", err)
	}
	for _, n := range []int{0, 16, 31, 33, 63, 65} {
		if _, err := NewServiceTokens(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key accepted", n)
		}
	}
	bad := append([]byte(nil), priv...)
	bad[40] ^= 1 // public half no longer matches
	if _, err := NewServiceTokens(bad); err == nil {
		t.Error("inconsistent private key accepted")
	}
	if _, err := NewServiceTokens(seed, []byte("short")); err == nil {
		t.Error("bad previous key accepted")
	}
	st, _ := NewServiceTokens(seed)
	for _, tt := range []struct {
		name string
		ttl  time.Duration
	}{
		{"", time.Hour}, {"Bad Name", time.Hour}, {"ci", 0}, {"ci", -time.Second}, {"ci", MaxServiceTokenTTL + time.Second},
	} {
		if _, _, err := st.Issue(tt.name, tt.ttl); err == nil {
			t.Errorf("Issue(%q, %s) accepted", tt.name, tt.ttl)
		}
	}
}
