package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// echo is the innermost handler of the test chains: it reads the body and
// reports the principal and the header names it saw.
type echoReply struct {
	Principal *switchboard.Principal `json:"principal"`
	Headers   []string               `json:"headers"`
	BodyLen   int                    `json:"body_len"`
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if IsBodyTooLarge(err) {
		writeJSON(w, http.StatusRequestEntityTooLarge, bodyTooLarge)
		return
	}
	var names []string
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echoReply{switchboard.PrincipalFromContext(r.Context()), names, len(body)})
}

// fakeAuthn accepts "Bearer good-<name>" as user <name>, fails with an error
// on "Bearer boom", and counts calls and the headers it saw.
type fakeAuthn struct {
	calls atomic.Int64
	mu    sync.Mutex
	saw   []http.Header
}

func (f *fakeAuthn) authn(r *http.Request) (*switchboard.Principal, bool, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.saw = append(f.saw, r.Header.Clone())
	f.mu.Unlock()
	tok, ok := BearerToken(r)
	switch {
	case !ok:
		return nil, false, nil
	case tok == "boom":
		return nil, false, errors.New("issuer keys unavailable")
	case strings.HasPrefix(tok, "good-"):
		return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: strings.TrimPrefix(tok, "good-"),
			Method: MethodAPIKey, Endpoint: switchboard.EndpointPublic}, true, nil
	}
	return nil, false, nil
}

func chain(h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestBodyLimit(t *testing.T) {
	fa := &fakeAuthn{}
	srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler),
		BodyLimit(1024), RequireAuth(fa.authn, "", nil)))
	defer srv.Close()

	// Declared too large: 413 and authentication never ran.
	req := newReq(t, http.MethodPost, srv.URL+"/mcp", bytes.NewReader(make([]byte, 4096)))
	req.Header.Set("Authorization", "Bearer good-alice")
	resp, body := do(t, req)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || fa.calls.Load() != 0 {
		t.Fatalf("status %d, authn calls %d", resp.StatusCode, fa.calls.Load())
	}
	if !bytes.Equal(body, bodyTooLarge) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("body %q", body)
	}

	// Within the limit.
	req = newReq(t, http.MethodPost, srv.URL+"/mcp", bytes.NewReader(make([]byte, 1024)))
	req.Header.Set("Authorization", "Bearer good-alice")
	resp, body = do(t, req)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"body_len":1024`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}

	// Chunked, no length: the reader is cut off at the limit.
	req = newReq(t, http.MethodPost, srv.URL+"/mcp", io.MultiReader(bytes.NewReader(make([]byte, 4096))))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer good-alice")
	resp, _ = do(t, req)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: status %d", resp.StatusCode)
	}
}

func TestHostOriginGuard(t *testing.T) {
	fa := &fakeAuthn{}
	guard := HostOriginGuard(
		[]string{"gw.example.com", "Ports.Example.com:8443"},
		[]string{"https://app.example.com", "http://dev.example.com:3000/", "http://localhost:6274"},
	)
	srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler), guard, RequireAuth(fa.authn, "", nil)))
	defer srv.Close()

	tests := []struct {
		name   string
		host   string
		origin []string
		want   int
	}{
		{name: "loopback ip", host: "127.0.0.1", want: 200},
		{name: "localhost any port", host: "localhost:1234", want: 200},
		{name: "ipv6 loopback", host: "[::1]:8080", want: 200},
		{name: "127/8", host: "127.1.2.3:80", want: 200},
		{name: "allowed host", host: "gw.example.com", want: 200},
		{name: "allowed host any port", host: "GW.example.com:9999", want: 200},
		{name: "allowed host:port", host: "ports.example.com:8443", want: 200},
		{name: "allowed host wrong port", host: "ports.example.com:8444", want: 403},
		{name: "rebinding host", host: "evil.example", want: 403},
		{name: "rebinding host with port", host: "evil.example:8080", want: 403},
		{name: "localhost suffix", host: "localhost.evil.example", want: 403},
		{name: "loopback-looking name", host: "127.0.0.1.nip.io", want: 403},
		{name: "private ip", host: "192.168.1.10", want: 403},
		{name: "no origin", host: "localhost", want: 200},
		{name: "evil origin", host: "localhost", origin: []string{"https://evil.example"}, want: 403},
		{name: "allowed origin", host: "gw.example.com", origin: []string{"https://app.example.com"}, want: 200},
		{name: "allowed origin default port", host: "gw.example.com", origin: []string{"https://APP.example.com:443"}, want: 200},
		{name: "allowed origin with port", host: "gw.example.com", origin: []string{"http://dev.example.com:3000"}, want: 200},
		{name: "origin wrong scheme", host: "gw.example.com", origin: []string{"http://app.example.com"}, want: 403},
		{name: "origin wrong port", host: "gw.example.com", origin: []string{"http://dev.example.com:3001"}, want: 403},
		{name: "origin subdomain", host: "gw.example.com", origin: []string{"https://x.app.example.com"}, want: 403},
		{name: "own origin", host: "localhost:8080", origin: []string{"http://localhost:8080"}, want: 200},
		{name: "own origin default port", host: "127.0.0.1", origin: []string{"http://127.0.0.1:80"}, want: 200},
		{name: "own origin of a listed host", host: "gw.example.com:8080", origin: []string{"http://gw.example.com:8080"}, want: 200},
		{name: "page on another local port", host: "localhost:8080", origin: []string{"http://localhost:5173"}, want: 403},
		{name: "page on another local port, ip", host: "127.0.0.1:8080", origin: []string{"http://127.0.0.1:5173"}, want: 403},
		{name: "other loopback name, same port", host: "localhost:8080", origin: []string{"http://127.0.0.1:8080"}, want: 403},
		{name: "own origin over https", host: "localhost:8080", origin: []string{"https://localhost:8080"}, want: 403},
		{name: "listed local origin", host: "localhost:8080", origin: []string{"http://localhost:6274"}, want: 200},
		{name: "listed local origin to ip host", host: "127.0.0.1:8080", origin: []string{"http://localhost:6274"}, want: 200},
		{name: "unlisted loopback origin to public host", host: "gw.example.com", origin: []string{"http://localhost:5173"}, want: 403},
		{name: "null origin", host: "localhost", origin: []string{"null"}, want: 403},
		{name: "garbage origin", host: "localhost", origin: []string{"::::"}, want: 403},
		{name: "origin with path", host: "localhost", origin: []string{"http://localhost/x"}, want: 403},
		{name: "two origins", host: "localhost", origin: []string{"http://localhost", "https://evil.example"}, want: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fa.calls.Load()
			req := newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
			req.Host = tt.host
			req.Header.Set("Authorization", "Bearer good-alice")
			if tt.origin != nil {
				req.Header["Origin"] = tt.origin
			}
			resp, body := do(t, req)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.want, body)
			}
			if tt.want == 403 {
				if fa.calls.Load() != before {
					t.Fatal("authentication ran before the 403")
				}
				if !bytes.Equal(body, bodyForbidden) {
					t.Fatalf("body %q", body)
				}
			}
		})
	}
}

// TestHostOriginGuardNonLoopback exercises a non-loopback listener through the
// local-address context value net/http sets (tests only bind loopback).
func TestHostOriginGuardNonLoopback(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	lan := &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 8080}
	tests := []struct {
		name   string
		hosts  []string
		host   string
		origin string
		want   int
	}{
		{"no allowlist passes any host", nil, "10.0.0.5:8080", "", 200},
		{"no allowlist still checks origin", nil, "10.0.0.5:8080", "https://evil.example", 403},
		{"allowlist refuses other hosts", []string{"gw.lan"}, "evil.example", "", 403},
		{"allowlist refuses the raw ip", []string{"gw.lan"}, "10.0.0.5:8080", "", 403},
		{"allowlist passes listed host", []string{"gw.lan"}, "gw.lan:8080", "", 200},
		{"localhost passes", []string{"gw.lan"}, "localhost:8080", "", 200},
		{"own origin of a listed host passes", []string{"gw.lan"}, "gw.lan:8080", "http://gw.lan:8080", 200},
		{"own origin of an unlisted host is refused (rebinding)", nil, "rebound.example:8080", "http://rebound.example:8080", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(lan)))
			r.Host = tt.host
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			w := httptest.NewRecorder()
			HostOriginGuard(tt.hosts, nil)(ok).ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
		})
	}
	// Without a local address (not served by net/http) the strict loopback rules apply.
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Host = "evil.example"
	w := httptest.NewRecorder()
	HostOriginGuard(nil, nil)(ok).ServeHTTP(w, r)
	if w.Code != 403 {
		t.Fatalf("no local addr: status %d", w.Code)
	}
}

func TestRequireAuth(t *testing.T) {
	f := newAuthFixture(t)
	const meta = "http://127.0.0.1:9/.well-known/oauth-protected-resource"
	var mu sync.Mutex
	var reasons []string
	onFail := func(r *http.Request, reason string) {
		mu.Lock()
		reasons = append(reasons, reason)
		mu.Unlock()
	}
	srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler), RequireAuth(f.a.AuthenticatePublic, meta, onFail)))
	defer srv.Close()
	now := f.clk.Now()
	expired := f.iss.claims(testAudience, now)
	expired["exp"] = now.Add(-time.Hour).Unix()
	svc, _, _ := f.tokens.Issue("ci", time.Hour)

	refusals := []struct {
		name   string
		header string
		reason string
	}{
		{"missing", "", ReasonMissing},
		{"basic", "Basic YWxpY2U6cHc=", ReasonInvalid},
		{"garbage", "Bearer garbage", ReasonInvalid},
		{"wrong key", "Bearer sb_aaaaaaaaaaaa_" + strings.Repeat("b", 52), ReasonInvalid},
		{"expired jwt", "Bearer " + f.iss.sign(t, "k1", expired), ReasonInvalid},
		{"service token on public", "Bearer " + svc, ReasonInvalid},
	}
	var firstBody []byte
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, body := do(t, req)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got, want := resp.Header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+meta+`"`; got != want {
				t.Fatalf("WWW-Authenticate %q, want %q", got, want)
			}
			if resp.Header.Get("Content-Type") != "application/json" || string(body) != `{"error":"unauthorized"}`+"\n" {
				t.Fatalf("body %q", body)
			}
			if firstBody == nil {
				firstBody = body
			} else if !bytes.Equal(body, firstBody) {
				t.Fatalf("body differs by cause: %q vs %q", body, firstBody)
			}
			mu.Lock()
			last := reasons[len(reasons)-1]
			mu.Unlock()
			if last != tt.reason {
				t.Fatalf("reason %q, want %q", last, tt.reason)
			}
		})
	}

	// Success: the principal reaches the handler through the context.
	req := newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+f.aliceKey)
	resp, body := do(t, req)
	var rep echoReply
	if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if rep.Principal == nil || rep.Principal.ID != "alice" || rep.Principal.Method != MethodAPIKey {
		t.Fatalf("principal %+v", rep.Principal)
	}

	// Technical failures deny with 503, never pass.
	fa := &fakeAuthn{}
	nilOK := func(*http.Request) (*switchboard.Principal, bool, error) { return nil, true, nil }
	okAndErr := func(*http.Request) (*switchboard.Principal, bool, error) {
		return &switchboard.Principal{ID: "x"}, true, errors.New("half failed")
	}
	for name, authn := range map[string]func(*http.Request) (*switchboard.Principal, bool, error){
		"error": fa.authn, "ok without principal": nilOK, "ok with error": okAndErr,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler), RequireAuth(authn, "", onFail)))
			defer srv.Close()
			req := newReq(t, http.MethodPost, srv.URL+"/mcp", nil)
			req.Header.Set("Authorization", "Bearer boom")
			resp, body := do(t, req)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" ||
				!bytes.Equal(body, bodyUnavailable) {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			mu.Lock()
			last := reasons[len(reasons)-1]
			mu.Unlock()
			if !strings.HasPrefix(last, ReasonError+": ") {
				t.Fatalf("reason %q", last)
			}
		})
	}

	// Without a metadata URL the challenge is bare.
	srv2 := httptest.NewServer(chain(http.HandlerFunc(echoHandler), RequireAuth(fa.authn, "", nil)))
	defer srv2.Close()
	resp, _ = do(t, newReq(t, http.MethodGet, srv2.URL, nil))
	if resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("challenge %q", resp.Header.Get("WWW-Authenticate"))
	}
}

func TestStripInternalHeaders(t *testing.T) {
	fa := &fakeAuthn{}
	srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler), StripInternalHeaders, RequireAuth(fa.authn, "", nil)))
	defer srv.Close()
	req := newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer good-alice")
	spoofed := []string{
		"X-Switchboard-Principal", "x-switchboard-user", "X-SWITCHBOARD-ROLES", "X-Forwarded-User",
		"X-Gateway-Principal", "X-Mcp-Virtualserver", "X-Forwarded-Email", "X-Auth-Request-User", "Remote-User",
	}
	for _, h := range spoofed {
		req.Header.Set(h, "admin")
	}
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("Mcp-Session-Id", "kept")
	resp, body := do(t, req)
	var rep echoReply
	if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	check := func(where string, names []string) {
		for _, n := range names {
			if isInternalHeader(n) {
				t.Errorf("%s saw %s", where, n)
			}
		}
		if !slices.Contains(names, "X-Custom") || !slices.Contains(names, "Mcp-Session-Id") {
			t.Errorf("%s lost ordinary headers: %v", where, names)
		}
	}
	check("handler", rep.Headers)
	var authnNames []string
	for k := range fa.saw[0] {
		authnNames = append(authnNames, k)
	}
	check("authenticator", authnNames)
	if rep.Principal == nil || rep.Principal.ID != "alice" {
		t.Fatalf("principal %+v", rep.Principal)
	}
}

func TestRateLimit(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	var tripped []string
	rl := NewRateLimiter(RateLimitConfig{RPS: 1, Burst: 2, IdleTTL: 5 * time.Minute,
		OnLimit: func(r *http.Request, key string, d time.Duration) {
			mu.Lock()
			tripped = append(tripped, key)
			mu.Unlock()
		}})
	rl.now = clk.Now
	fa := &fakeAuthn{}
	srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler), RequireAuth(fa.authn, "", nil), rl.Middleware))
	defer srv.Close()
	call := func(user string) (*http.Response, []byte) {
		req := newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer good-"+user)
		return do(t, req)
	}
	for i := range 2 {
		if resp, _ := call("alice"); resp.StatusCode != 200 {
			t.Fatalf("call %d: status %d", i, resp.StatusCode)
		}
	}
	resp, body := call("alice")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra != 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if string(body) != `{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"rate limit exceeded"}}`+"\n" {
		t.Fatalf("body %q", body)
	}
	var rpc struct {
		JSONRPC string `json:"jsonrpc"`
		ID      any    `json:"id"`
		Error   struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &rpc); err != nil || rpc.JSONRPC != "2.0" || rpc.ID != nil || rpc.Error.Code != -32000 {
		t.Fatalf("not a JSON-RPC error: %s", body)
	}
	mu.Lock()
	if !slices.Equal(tripped, []string{"user:alice"}) {
		t.Fatalf("hook calls %v", tripped)
	}
	mu.Unlock()

	// Another principal is unaffected.
	if resp, _ := call("bob"); resp.StatusCode != 200 {
		t.Fatalf("bob: status %d", resp.StatusCode)
	}
	// The budget comes back after Retry-After.
	clk.Advance(time.Duration(ra) * time.Second)
	if resp, _ := call("alice"); resp.StatusCode != 200 {
		t.Fatalf("after Retry-After: status %d", resp.StatusCode)
	}

	// New settings apply to existing buckets.
	rl.SetConfig(RateLimitConfig{RPS: 0.1, Burst: 1, IdleTTL: 5 * time.Minute})
	clk.Advance(time.Minute)
	if resp, _ := call("alice"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	resp, _ = call("alice")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "10" {
		t.Fatalf("status %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// Idle buckets are evicted.
	if n := rl.Len(); n != 2 {
		t.Fatalf("%d buckets, want 2", n)
	}
	clk.Advance(10 * time.Minute)
	rl.Allow("user:carol")
	if n := rl.Len(); n != 1 {
		t.Fatalf("%d buckets after idle sweep, want 1", n)
	}

	// RPS <= 0 disables limiting.
	rl.SetConfig(RateLimitConfig{})
	for range 100 {
		if ok, _ := rl.Allow("user:carol"); !ok {
			t.Fatal("disabled limiter refused")
		}
	}
}

func TestRateLimiterMaxKeys(t *testing.T) {
	rl := NewRateLimiter(RateLimitConfig{RPS: 1, MaxKeys: 10})
	for i := range 100 {
		rl.Allow("k" + strconv.Itoa(i))
	}
	if n := rl.Len(); n > 10 {
		t.Fatalf("%d buckets, cap 10", n)
	}
}

func TestFailureLimiter(t *testing.T) {
	clk := newFakeClock()
	var tripped atomic.Int64
	fl := NewFailureLimiter(FailureLimitConfig{Burst: 3, Interval: time.Minute,
		OnLimit: func(*http.Request, string, time.Duration) { tripped.Add(1) }})
	fl.now = clk.Now
	fa := &fakeAuthn{}
	onFail := func(r *http.Request, _ string) { fl.Fail(r) }
	srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler), fl.Middleware, RequireAuth(fa.authn, "", onFail)))
	defer srv.Close()
	call := func(tok string) *http.Response {
		req := newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, _ := do(t, req)
		return resp
	}
	for i := range 3 {
		if resp := call("wrong"); resp.StatusCode != 401 {
			t.Fatalf("failure %d: status %d", i, resp.StatusCode)
		}
	}
	calls := fa.calls.Load()
	resp := call("good-alice")
	if resp.StatusCode != 429 {
		t.Fatalf("after 3 failures: status %d", resp.StatusCode)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if fa.calls.Load() != calls || tripped.Load() != 1 {
		t.Fatalf("authn ran while blocked (calls %d->%d), hook %d", calls, fa.calls.Load(), tripped.Load())
	}
	clk.Advance(time.Minute)
	if resp := call("good-alice"); resp.StatusCode != 200 {
		t.Fatalf("after interval: status %d", resp.StatusCode)
	}
}

func TestSourceIP(t *testing.T) {
	tests := map[string]string{
		"192.0.2.1:1234":             "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.1]:80":      "192.0.2.1",
		"not-an-address":             "not-an-address",
	}
	for addr, want := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		if got := SourceIP(r); got != want {
			t.Errorf("SourceIP(%q) = %q, want %q", addr, got, want)
		}
	}
	if got := retryAfterSeconds(1500 * time.Millisecond); got != 2 {
		t.Errorf("retryAfterSeconds(1.5s) = %d", got)
	}
	if got := retryAfterSeconds(0); got != 1 {
		t.Errorf("retryAfterSeconds(0) = %d", got)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	issuers := []string{"https://idp.example"}
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.Handle("/.well-known/oauth-protected-resource", ProtectedResourceMetadataFunc("https://gw.test/mcp",
		func() []string { mu.Lock(); defer mu.Unlock(); return issuers }))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func() map[string]any {
		resp, body := do(t, newReq(t, http.MethodGet, srv.URL+"/.well-known/oauth-protected-resource", nil))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d", resp.StatusCode)
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	doc := get()
	if doc["resource"] != "https://gw.test/mcp" ||
		!slices.Equal(toStrings(doc["authorization_servers"]), []string{"https://idp.example"}) ||
		!slices.Equal(toStrings(doc["bearer_methods_supported"]), []string{"header"}) {
		t.Fatalf("doc %v", doc)
	}
	mu.Lock()
	issuers = nil
	mu.Unlock()
	if _, ok := get()["authorization_servers"]; ok {
		t.Fatal("empty issuer list still listed")
	}
	resp, _ := do(t, newReq(t, http.MethodPost, srv.URL+"/.well-known/oauth-protected-resource", nil))
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d", resp.StatusCode)
	}

	// The static form.
	w := httptest.NewRecorder()
	ProtectedResourceMetadata("https://gw.test/mcp", []string{"https://a", "https://b"}).
		ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-protected-resource", nil))
	if !strings.Contains(w.Body.String(), `"authorization_servers":["https://a","https://b"]`) {
		t.Fatalf("body %s", w.Body)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

// TestEdgeChain runs the whole documented order and checks which step
// answers first.
func TestEdgeChain(t *testing.T) {
	fa := &fakeAuthn{}
	fl := NewFailureLimiter(FailureLimitConfig{Burst: 100})
	rl := NewRateLimiter(RateLimitConfig{RPS: 100, Burst: 100})
	h := chain(http.HandlerFunc(echoHandler),
		BodyLimit(1024), HostOriginGuard(nil, nil), StripInternalHeaders, fl.Middleware,
		RequireAuth(fa.authn, "", func(r *http.Request, _ string) { fl.Fail(r) }), rl.Middleware)
	srv := httptest.NewServer(h)
	defer srv.Close()
	tests := []struct {
		name  string
		host  string
		size  int
		tok   string
		want  int
		authn bool
	}{
		{"oversize from evil host: body limit first", "evil.example", 4096, "good-alice", 413, false},
		{"evil host: guard before auth", "evil.example", 10, "good-alice", 403, false},
		{"bad token", "localhost", 10, "nope", 401, true},
		{"good", "localhost", 10, "good-alice", 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fa.calls.Load()
			req := newReq(t, http.MethodPost, srv.URL+"/mcp", bytes.NewReader(make([]byte, tt.size)))
			req.Host = tt.host
			req.Header.Set("Authorization", "Bearer "+tt.tok)
			resp, _ := do(t, req)
			if resp.StatusCode != tt.want || (fa.calls.Load() != before) != tt.authn {
				t.Fatalf("status %d (want %d), authn ran %t", resp.StatusCode, tt.want, fa.calls.Load() != before)
			}
		})
	}
}
