package auth

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// slowRequest opens a raw connection to srv, sends head (without the blank
// line) plus Content-Length: 1000 and one byte of body, and never sends the
// rest. It returns the status line of the answer, whether it said
// "Connection: close", and whether the server then closed the connection,
// waiting for that at most wait.
func slowRequest(t *testing.T, addr, head string, wait time.Duration) (status string, closeHdr, closed bool) {
	t.Helper()
	return slowRequestN(t, addr, head, 1000, wait)
}

// slowRequestN is slowRequest with a Content-Length of n.
func slowRequestN(t *testing.T, addr, head string, n int, wait time.Duration) (status string, closeHdr, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head+"Content-Length: "+strconv.Itoa(n)+"\r\nContent-Type: application/json\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", false, false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	var ne net.Error
	closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return resp.Status, resp.Close, closed
}

// TestRefusalsDoNotWaitForTheBody: every refusal before authentication of a
// request whose body has not arrived answers at once and closes the
// connection within RefusalDrain; net/http would otherwise drain the body
// after the answer and wait for it as long as the client likes.
func TestRefusalsDoNotWaitForTheBody(t *testing.T) {
	fa := &fakeAuthn{}
	fl := NewFailureLimiter(FailureLimitConfig{Burst: 1, Interval: time.Hour})
	h := chain(http.HandlerFunc(echoHandler), BodyLimit(500), HostOriginGuard(nil, nil), StripInternalHeaders,
		fl.Middleware, RequireAuth(fa.authn, "", func(r *http.Request, _ string) { fl.Fail(r) }))
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	post := "POST /mcp HTTP/1.1\r\nHost: " + addr + "\r\n"
	tests := []struct {
		name string
		head string
		want string
	}{
		{"declared larger than the limit", post + "X-Big: 1\r\n", "413"},
		{"rebinding host", "POST /mcp HTTP/1.1\r\nHost: evil.example\r\n", "403"},
		{"cross-site origin", post + "Origin: http://localhost:5173\r\n", "403"},
		{"bad token", post + "Authorization: Bearer wrong\r\n", "401"},
		{"source over its failure budget", post + "Authorization: Bearer good-alice\r\n", "429"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 400 // within BodyLimit(500)
			if strings.Contains(tt.head, "X-Big") {
				n = 1000
			}
			status, closeHdr, closed := slowRequestN(t, addr, tt.head, n, 10*time.Second)
			if !strings.HasPrefix(status, tt.want) {
				t.Fatalf("status %q, want %s", status, tt.want)
			}
			if !closed || !closeHdr {
				t.Fatalf("connection not closed after the refusal (closed %t, Connection: close %t): the server waits for the body",
					closed, closeHdr)
			}
		})
	}
}

// TestBodyDeadline: an authenticated request's body must arrive within the
// body deadline; once it has, and for a request without a body, the deadline
// is lifted, so a long answer keeps its context.
func TestBodyDeadline(t *testing.T) {
	fa := &fakeAuthn{}
	const deadline = 300 * time.Millisecond
	var readErr atomic.Value
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			readErr.Store(err)
			http.Error(w, "slow body", http.StatusRequestTimeout)
			return
		}
		// A long answer: it must outlive both deadlines with its context intact.
		select {
		case <-time.After(3 * deadline):
			fmt.Fprint(w, "done")
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusInternalServerError)
		}
	})
	h := chain(handler, PreAuthDeadline(deadline), RequireAuth(fa.authn, "", nil), BodyDeadline(deadline))
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	t.Run("slow authenticated body is cut off", func(t *testing.T) {
		start := time.Now()
		_, _, closed := slowRequest(t, addr, "POST /x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer good-alice\r\n", 20*time.Second)
		if !closed {
			t.Fatal("a body that never arrives held the connection")
		}
		var ne net.Error
		if err, _ := readErr.Load().(error); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("handler's read error = %v, want a timeout", err)
		}
		t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
	})
	for _, tt := range []struct {
		name, method, body string
	}{
		{"complete body, long answer", http.MethodPost, `{"x":1}`},
		{"no body, long answer", http.MethodGet, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq(t, tt.method, srv.URL+"/x", strings.NewReader(tt.body))
			if tt.body == "" {
				req.Body = nil
			}
			req.Header.Set("Authorization", "Bearer good-alice")
			resp, body := do(t, req)
			if resp.StatusCode != 200 || string(body) != "done" {
				t.Fatalf("status %d %q: the deadline cut a long answer", resp.StatusCode, body)
			}
		})
	}
}

// TestLimitListener: connections over the per-client cap are reset on
// arrival, other clients are not affected, a closed connection frees its
// slot, and the total cap holds.
func TestLimitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	l := LimitListener(ln, ConnLimitConfig{PerClient: 3, Max: 5, OnRefuse: func(string, string) { refused.Add(1) }})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }),
		ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	addr := ln.Addr().String()

	// dialFrom connects from the loopback address src; a connection reset
	// while connecting (the listener already refused it) gives nil.
	dialFrom := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			return nil
		case err != nil:
			t.Skipf("cannot dial from %s: %v", src, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// served reports whether c gets an answer to a GET (true), or is reset.
	served := func(c net.Conn) bool {
		if c == nil {
			return false
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	waitOpen := func(client string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if n, _ := l.Open(client); n == want {
				return
			}
			if time.Now().After(deadline) {
				n, _ := l.Open(client)
				t.Fatalf("%s has %d open connections, want %d", client, n, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	var held []net.Conn
	for range 3 {
		held = append(held, dialFrom("127.0.0.1"))
	}
	waitOpen("127.0.0.1", 3)
	if served(dialFrom("127.0.0.1")) {
		t.Fatal("a fourth connection from one client was served")
	}
	for deadline := time.Now().Add(10 * time.Second); refused.Load() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("OnRefuse ran %d times, want 1", refused.Load())
		}
	}
	other := dialFrom("127.0.0.2")
	if !served(other) {
		t.Fatal("another client was refused")
	}
	if !served(held[0]) {
		t.Fatal("a held connection within the cap was not served")
	}
	held[1].Close()
	waitOpen("127.0.0.1", 2)
	if !served(dialFrom("127.0.0.1")) {
		t.Fatal("a freed slot was not reused")
	}
	// Total: 3 from .1 and 1 from .2 are open; one more fits, the next does not.
	if !served(dialFrom("127.0.0.3")) {
		t.Fatal("the fifth connection in all was refused")
	}
	if served(dialFrom("127.0.0.4")) {
		t.Fatal("a sixth connection in all was served")
	}
	if _, total := l.Open(""); total != 5 {
		t.Fatalf("total open %d, want 5", total)
	}
}

func TestAggregator(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorConfig{Interval: time.Minute, MaxKeys: 2})
	a.now = clk.Now

	if !a.Observe("ip:1", "invalid") {
		t.Fatal("the first event of a quiet key was not reported at once")
	}
	for range 999 {
		if a.Observe("ip:1", "invalid") {
			t.Fatal("a repeated event was reported at once")
		}
	}
	a.Observe("ip:1", "rate_limited")
	if got := a.Flush(); len(got) != 0 {
		t.Fatalf("Flush before the interval ended: %+v", got)
	}
	clk.Advance(time.Minute)
	got := a.Flush()
	if len(got) != 1 || got[0].Key != "ip:1" || got[0].Count != 1000 ||
		got[0].Labels["invalid"] != 999 || got[0].Labels["rate_limited"] != 1 {
		t.Fatalf("summary %+v, want ip:1 with 1000 events (999 invalid, 1 rate_limited)", got)
	}
	// Still busy: no report at once, one summary per interval.
	if a.Observe("ip:1", "invalid") {
		t.Fatal("a busy key's event was reported at once")
	}
	clk.Advance(time.Minute)
	if got := a.Flush(); len(got) != 1 || got[0].Count != 1 {
		t.Fatalf("second interval: %+v", got)
	}
	// Quiet for a whole interval: forgotten, reported at once again.
	clk.Advance(time.Minute)
	if got := a.Flush(); len(got) != 0 {
		t.Fatalf("quiet interval: %+v", got)
	}
	if !a.Observe("ip:1", "invalid") {
		t.Fatal("a key quiet for an interval was not reported at once")
	}

	// Slots: ip:1 and ip:2 tracked; every further key goes to the overflow.
	if !a.Observe("ip:2", "invalid") {
		t.Fatal("second key not reported")
	}
	for i := range 500 {
		if a.Observe(fmt.Sprintf("ip:x%d", i%50), "invalid") {
			t.Fatal("a key over MaxKeys was reported at once")
		}
	}
	for range 20 {
		a.Observe("ip:2", "missing")
	}
	clk.Advance(time.Minute)
	got = a.Flush()
	if len(got) != 2 || got[0].Key != "ip:2" || got[0].Count != 20 ||
		got[1].Key != OverflowKey || got[1].Count != 500 || got[1].Keys != 50 {
		t.Fatalf("summaries %+v, want ip:2 ×20 and the overflow ×500 over 50 keys", got)
	}

	// Labels are bounded.
	for i := range 20 {
		a.Observe("ip:2", fmt.Sprintf("reason %d", i))
	}
	if got := a.FlushAll(); len(got) != 1 || len(got[0].Labels) > maxAggregateLabels+1 || got[0].Labels["other"] == 0 {
		t.Fatalf("labels not bounded: %+v", got)
	}
	if got := a.FlushAll(); len(got) != 0 {
		t.Fatalf("FlushAll twice: %+v", got)
	}
}

// TestAggregatorBoundsRecords floods with many keys for many intervals and
// checks the number of reports plus summaries per interval never exceeds
// 2×MaxKeys+1, and that the counts add up to the events.
func TestAggregatorBoundsRecords(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorConfig{Interval: time.Minute, MaxKeys: 4})
	a.now = clk.Now
	events, counted := 0, 0
	for interval := range 10 {
		records := 0
		for i := range 5000 {
			events++
			if a.Observe(fmt.Sprintf("ip:%d", (i*7+interval)%300), "invalid") {
				records++
				counted++
			}
		}
		clk.Advance(time.Minute)
		for _, s := range a.Flush() {
			records++
			counted += s.Count
		}
		if records > 2*4+1 {
			t.Fatalf("interval %d wrote %d records", interval, records)
		}
	}
	for _, s := range a.FlushAll() {
		counted += s.Count
	}
	if counted != events {
		t.Fatalf("counts add up to %d, want %d events", counted, events)
	}
}

func TestFailureLimiterSetConfig(t *testing.T) {
	clk := newFakeClock()
	fl := NewFailureLimiter(FailureLimitConfig{Burst: 2, Interval: time.Hour})
	fl.now = clk.Now
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "192.0.2.7:1000"
	fl.Fail(r)
	fl.Fail(r)
	if blocked, _ := fl.Blocked(r); !blocked {
		t.Fatal("not blocked after the burst")
	}
	fl.SetConfig(FailureLimitConfig{Burst: 2, Interval: time.Second})
	fl.Fail(r) // takes the new rate
	clk.Advance(3 * time.Second)
	if blocked, d := fl.Blocked(r); blocked {
		t.Fatalf("still blocked for %v after the interval was shortened", d)
	}
}

// TestCORSForListedOrigins: a browser page on a listed origin gets its
// preflight answered before authentication and can read the answers; an
// unlisted one, even on another port of localhost, cannot.
func TestCORSForListedOrigins(t *testing.T) {
	fa := &fakeAuthn{}
	srv := httptest.NewServer(chain(http.HandlerFunc(echoHandler),
		HostOriginGuard(nil, []string{"http://localhost:6274"}), RequireAuth(fa.authn, "", nil)))
	defer srv.Close()
	preflight := func(origin string) *http.Response {
		req := newReq(t, http.MethodOptions, srv.URL+"/mcp", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type, mcp-session-id")
		resp, _ := do(t, req)
		return resp
	}
	resp := preflight("http://localhost:6274")
	if resp.StatusCode != http.StatusNoContent || fa.calls.Load() != 0 {
		t.Fatalf("listed preflight: %d, authn calls %d", resp.StatusCode, fa.calls.Load())
	}
	h := resp.Header
	if h.Get("Access-Control-Allow-Origin") != "http://localhost:6274" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight headers %v", h)
	}
	if resp := preflight("http://localhost:5173"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("unlisted preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// The real request: even a 401 is readable by the listed page, with the
	// challenge exposed.
	req := newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
	req.Header.Set("Origin", "http://localhost:6274")
	resp, _ = do(t, req)
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:6274" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
		t.Fatalf("listed request: %d %v", resp.StatusCode, resp.Header)
	}
	req = newReq(t, http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Authorization", "Bearer good-alice")
	if resp, body := do(t, req); resp.StatusCode != 200 || !strings.Contains(string(body), `"alice"`) {
		t.Fatalf("listed authenticated request: %d %s", resp.StatusCode, body)
	}
}

// TestFailureLimiterHoldsUnderConcurrency: concurrent bad requests cannot all
// pass on the source's last tokens; an authenticated request gives its token
// back as soon as it is authenticated, even while it runs on.
func TestFailureLimiterHoldsUnderConcurrency(t *testing.T) {
	clk := newFakeClock()
	fl := NewFailureLimiter(FailureLimitConfig{Burst: 5, Interval: time.Hour})
	fl.now = clk.Now
	var reached atomic.Int64
	release := make(chan struct{})
	slowAuthn := func(r *http.Request) (*switchboard.Principal, bool, error) {
		reached.Add(1)
		time.Sleep(20 * time.Millisecond) // let the others arrive meanwhile
		tok, _ := BearerToken(r)
		if tok == "good" {
			return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "al", Endpoint: switchboard.EndpointPublic}, true, nil
		}
		return nil, false, nil
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			<-release
		}
		w.WriteHeader(200)
	})
	srv := httptest.NewServer(chain(inner, fl.Middleware,
		RequireAuth(slowAuthn, "", func(r *http.Request, _ string) { fl.Fail(r) }), fl.Passed))
	defer srv.Close()
	get := func(path, tok string) int {
		req := newReq(t, http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/", "bad") != 401 { // on record now: 4 tokens left
		t.Fatal("first failure not 401")
	}
	// A long authenticated request: its token comes back once it is in.
	streamDone := make(chan int)
	go func() { streamDone <- get("/stream", "good") }()
	for reached.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // past its authentication
	reached.Store(0)
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() { defer wg.Done(); get("/", "bad") }()
	}
	wg.Wait()
	if n := reached.Load(); n != 4 {
		t.Errorf("%d of 40 concurrent bad requests reached authentication with 4 tokens left", n)
	}
	close(release)
	if code := <-streamDone; code != 200 {
		t.Errorf("the long authenticated request: %d", code)
	}
}

// TestFailureLimiterGivesTokensBack: once an address has failed, its
// authenticated requests take a token on the way in and give it back: any
// number of them, however long each takes, is never refused.
func TestFailureLimiterGivesTokensBack(t *testing.T) {
	clk := newFakeClock()
	fl := NewFailureLimiter(FailureLimitConfig{Burst: 5, Interval: time.Hour})
	fl.now = clk.Now
	authn := func(r *http.Request) (*switchboard.Principal, bool, error) {
		clk.Advance(10 * time.Millisecond) // authentication takes time
		if tok, _ := BearerToken(r); tok == "good" {
			return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "al", Endpoint: switchboard.EndpointPublic}, true, nil
		}
		return nil, false, nil
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	h := chain(inner, fl.Middleware, RequireAuth(authn, "", func(r *http.Request, _ string) { fl.Fail(r) }), fl.Passed)
	do := func(tok string) int {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		h.ServeHTTP(w, req)
		return w.Code
	}
	if do("bad") != 401 {
		t.Fatal("the failure was not refused")
	}
	for i := range 100 {
		if code := do("good"); code != 200 {
			t.Fatalf("authenticated request %d: %d", i, code)
		}
	}
	// The failure budget is untouched by them: 4 more failures, then 429.
	for i := range 4 {
		if code := do("bad"); code != 401 {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	if code := do("bad"); code != 429 {
		t.Fatalf("failure past the budget: %d", code)
	}
}
