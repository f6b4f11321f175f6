package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// mustTokens returns service tokens on clk that consult log for revocations.
func mustTokens(tb testing.TB, clk *fakeClock, log *TokenLog) *ServiceTokens {
	tb.Helper()
	seed, err := GenerateServiceKey()
	if err != nil {
		tb.Fatal(err)
	}
	st, err := NewServiceTokens(seed)
	if err != nil {
		tb.Fatal(err)
	}
	st.now = clk.Now
	st.SetRevocationCheck(log.IsRevoked)
	return st
}

func mustIssue(tb testing.TB, st *ServiceTokens, log *TokenLog, service string, ttl time.Duration) (string, TokenInfo) {
	tb.Helper()
	tok, info, err := st.IssueInfo(service, ttl)
	if err != nil {
		tb.Fatal(err)
	}
	if err := log.Issued(info); err != nil {
		tb.Fatal(err)
	}
	return tok, info
}

// TestRevokeOneServiceToken: a revoked token is refused on its next Verify,
// another token of the same service still verifies, and the revocation
// survives reopening the file.
func TestRevokeOneServiceToken(t *testing.T) {
	db, clk := MustDB(t), newFakeClock()
	log, err := newTokenLog(db, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	st := mustTokens(t, clk, log)
	known := func(s string) bool { return s == "ci" }
	tok1, info1 := mustIssue(t, st, log, "ci", time.Hour)
	tok2, info2 := mustIssue(t, st, log, "ci", time.Hour)
	tok3, info3 := mustIssue(t, st, log, "ci", time.Hour)

	// By the token itself.
	got, err := st.Inspect(tok1)
	if err != nil || got != info1 {
		t.Fatalf("Inspect = %+v, %v; want %+v", got, err, info1)
	}
	rec, err := log.Revoke(got.JTI, &got)
	if err != nil || !rec.Revoked() || rec.Service != "ci" || !rec.ExpiresAt.Equal(info1.ExpiresAt) {
		t.Fatalf("Revoke = %+v, %v", rec, err)
	}
	if _, err := st.Verify(tok1, known); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked token verifies: %v", err)
	}
	if svc, err := st.Verify(tok2, known); err != nil || svc != "ci" {
		t.Errorf("another token of the same service: %q, %v", svc, err)
	}
	// By id alone: the issue record supplies service and expiry.
	rec, err = log.Revoke(info2.JTI, nil)
	if err != nil || rec.Service != "ci" || !rec.ExpiresAt.Equal(info2.ExpiresAt) {
		t.Fatalf("Revoke by id = %+v, %v", rec, err)
	}
	if _, err := st.Verify(tok2, known); err == nil {
		t.Error("token revoked by id still verifies")
	}
	// Revoking twice changes nothing.
	again, err := log.Revoke(info2.JTI, nil)
	if err != nil || !again.RevokedAt.Equal(rec.RevokedAt) {
		t.Errorf("second Revoke = %+v, %v", again, err)
	}

	// A new TokenLog on the same file (a restart) still refuses them.
	log2, err := newTokenLog(db, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	st.SetRevocationCheck(log2.IsRevoked)
	for _, tok := range []string{tok1, tok2} {
		if _, err := st.Verify(tok, known); err == nil {
			t.Error("revocation lost on reopen")
		}
	}
	if _, err := st.Verify(tok3, known); err != nil {
		t.Errorf("unrevoked token after reopen: %v", err)
	}
	list, err := log2.List()
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]bool{}
	for _, r := range list {
		states[r.JTI] = r.Revoked()
	}
	if len(list) != 3 || !states[info1.JTI] || !states[info2.JTI] || states[info3.JTI] {
		t.Errorf("List = %+v", list)
	}
}

// TestTokenLogForgetsExpiredTokens: records are dropped once their token has
// expired, so the list does not grow forever; an id without a record is kept
// for the longest lifetime a token can have.
func TestTokenLogForgetsExpiredTokens(t *testing.T) {
	db, clk := MustDB(t), newFakeClock()
	log, err := newTokenLog(db, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	st := mustTokens(t, clk, log)
	_, short := mustIssue(t, st, log, "ci", time.Hour)
	_, long := mustIssue(t, st, log, "ci", 48*time.Hour)
	if _, err := log.Revoke(short.JTI, nil); err != nil {
		t.Fatal(err)
	}
	unknown := strings.Repeat("ab", 16) // issued before tokens were recorded
	rec, err := log.Revoke(unknown, nil)
	if err != nil || rec.Service != "" || rec.ExpiresAt.Before(clk.Now().Add(MaxServiceTokenTTL)) {
		t.Fatalf("Revoke of an unrecorded id = %+v, %v", rec, err)
	}

	clk.Advance(2 * time.Hour)
	log2, err := newTokenLog(db, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if log2.IsRevoked(short.JTI) {
		t.Error("an expired token's revocation is still loaded")
	}
	var keys []string
	for _, e := range allEntries(t, db, bucketServiceTokens) {
		keys = append(keys, e.Key)
	}
	if len(keys) != 2 || strings.Contains(strings.Join(keys, ","), short.JTI) {
		t.Errorf("records after expiry = %v, want the 48h token's and the unrecorded id's only", keys)
	}
	if !log2.IsRevoked(unknown) {
		t.Error("the unrecorded id is no longer revoked")
	}

	// Revoking an expired token: nothing to do, said plainly.
	_, err = log2.Revoke(short.JTI, &short)
	if !errors.Is(err, ErrTokenExpired) || switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Errorf("Revoke of an expired token: %v", err)
	}
	// Malformed ids are refused without echoing them whole.
	_, err = log2.Revoke("eyJhbGciOiJFZERTQSJ9.garbage-token-text", nil)
	if switchboard.ErrorCode(err) != switchboard.EINVALID || strings.Contains(err.Error(), "garbage-token-text") {
		t.Errorf("Revoke of a malformed id: %v", err)
	}
	if list, _ := log2.List(); len(list) != 2 || list[len(list)-1].JTI != long.JTI && list[0].JTI != long.JTI {
		t.Errorf("List = %+v", list)
	}
}

// TestInspectRefusesForeignTokens: Inspect reads only tokens this gateway
// signed, expired or not.
func TestInspectRefusesForeignTokens(t *testing.T) {
	clk := newFakeClock()
	log, err := newTokenLog(MustDB(t), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	ours, other := mustTokens(t, clk, log), mustTokens(t, clk, log)
	tok, info := mustIssue(t, ours, log, "ci", time.Hour)
	foreign, _ := mustIssue(t, other, log, "ci", time.Hour)
	clk.Advance(3 * time.Hour)
	if got, err := ours.Inspect(tok); err != nil || got != info {
		t.Errorf("Inspect of an expired own token = %+v, %v", got, err)
	}
	for name, bad := range map[string]string{"other key": foreign, "garbage": "a.b.c", "empty": ""} {
		if _, err := ours.Inspect(bad); err == nil {
			t.Errorf("Inspect accepted %s", name)
		}
	}
}
