package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/audit"
)

// dialFrom connects to addr from the loopback address src (127.0.0.0/8 is all
// loopback on Linux, so each src is another client address). A connection
// reset while connecting gives nil: the gateway refused it on arrival.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return nil
	case err != nil:
		t.Skipf("cannot dial from %s (needs the whole 127.0.0.0/8 on loopback): %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reads c until the server closes it and reports whether it
// did within d (an answer before the close is read and ignored).
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// answersHealthz sends GET /healthz on c and reports whether a 200 came back.
func answersHealthz(c net.Conn) bool {
	if c == nil {
		return false
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// healthzFrom does GET /healthz on a fresh connection from src.
func healthzFrom(t *testing.T, src, addr string) bool {
	t.Helper()
	return answersHealthz(dialFrom(t, src, addr))
}

// TestSlowClientsCannotExhaustTheGateway: requests that send their headers
// and then one byte of a 1000-byte body are answered and closed at once
// without credentials, and after server.body_timeout with them; connections
// that send nothing are closed after server.read_header_timeout; one client
// address cannot hold more than server.max_conns_per_client connections (the
// rest are reset on arrival) or grow the gateway's file descriptors past that;
// and /healthz answers another client all along.
func TestSlowClientsCannotExhaustTheGateway(t *testing.T) {
	const perClient = 40
	g := startGateway(t, fmt.Sprintf(`
server: {read_header_timeout: 2s, body_timeout: 2s, max_conns_per_client: %d}
providers:
  echo: {command: $BIN/echo}
`, perClient))
	g.waitRunning("echo")
	addr := strings.TrimPrefix(g.url, "http://")
	baseFDs := openFDs(g.pid())

	slow := func(src, auth string) net.Conn {
		c := dialFrom(t, src, addr)
		if c == nil {
			t.Fatalf("a connection from %s was refused", src)
		}
		head := "POST /mcp HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n" +
			"Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n" + auth + "\r\n{"
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("unauthenticated slow bodies are answered and closed at once", func(t *testing.T) {
		var conns []net.Conn
		for range 30 {
			conns = append(conns, slow("127.0.0.3", ""))
		}
		for i, c := range conns {
			if !closedByServer(c, 15*time.Second) {
				t.Fatalf("slow unauthenticated request %d still open after 15s", i)
			}
		}
	})
	t.Run("an authenticated slow body is cut off after body_timeout", func(t *testing.T) {
		c := slow("127.0.0.4", "Authorization: Bearer "+g.key+"\r\n")
		if !closedByServer(c, 30*time.Second) {
			t.Fatal("an authenticated body that never arrives held its connection 30s (body_timeout 2s)")
		}
	})
	t.Run("one client holds at most max_conns_per_client, healthz answers meanwhile", func(t *testing.T) {
		var held []net.Conn
		for range perClient {
			held = append(held, dialFrom(t, "127.0.0.5", addr))
		}
		// The held ones send nothing: the connection cap is what stops the rest.
		refused := 0
		for range 100 {
			if !answersHealthz(dialFrom(t, "127.0.0.5", addr)) {
				refused++
			}
		}
		if refused != 100 {
			t.Errorf("%d of 100 connections over the cap were served", 100-refused)
		}
		if !healthzFrom(t, "127.0.0.2", addr) {
			t.Error("/healthz did not answer another client while one held its cap")
		}
		if n := openFDs(g.pid()); n > baseFDs+perClient+20 {
			t.Errorf("the gateway holds %d fds (from %d) with %d connections allowed", n, baseFDs, perClient)
		}
		for i, c := range held {
			if c == nil {
				t.Fatalf("held connection %d was refused under the cap", i)
			}
			if !closedByServer(c, 20*time.Second) {
				t.Fatalf("held connection %d still open 20s after read_header_timeout 2s", i)
			}
		}
		waitFor(t, 20*time.Second, "the client's slots to free", func() bool { return healthzFrom(t, "127.0.0.5", addr) })
	})
	var refusedLine bool
	for _, l := range g.log.lines() {
		if strings.Contains(l.msg(), "connection refused: over the connection cap") {
			refusedLine = true
		}
	}
	if !refusedLine {
		t.Error("no log line for the refused connections")
	}
}

// TestAuthFloodIsLimitedAndAggregated floods the gateway with bad tokens and
// checks that the source is answered 429 with Retry-After past its failure
// budget, and that the whole flood costs the audit log a handful of records
// whose counts add up to every refused request, so the earlier tool call's
// record is still in the retained files (1 MB × 2 here; one record per
// refusal would have rotated it out).
func TestAuthFloodIsLimitedAndAggregated(t *testing.T) {
	g := startGateway(t, `
audit: {max_size_mb: 1, max_backups: 1}
providers:
  echo: {command: $BIN/echo}
`)
	g.waitRunning("echo")
	c := g.connect(t)
	if got := mustCall(t, c, "echo__echo", map[string]any{"text": "before the flood"}); got != "before the flood" {
		t.Fatalf("echo = %q", got)
	}

	const total, workers = 8000, 8
	tr := httpTransport.Clone()
	tr.MaxIdleConnsPerHost = workers
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var sent, unauthorized, limited atomic.Int64
	var badRetry atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Add(1) <= total {
				req, _ := http.NewRequest(http.MethodGet, g.url+"/mcp", nil)
				req.Header.Set("Authorization", "Bearer sb_not-a-real-key")
				resp, err := hc.Do(req)
				if err != nil {
					badRetry.Store(err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusUnauthorized:
					unauthorized.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
					if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
						badRetry.Store("Retry-After " + resp.Header.Get("Retry-After"))
					}
				default:
					badRetry.Store("status " + resp.Status)
				}
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	if v := badRetry.Load(); v != nil {
		t.Fatalf("bad answer during the flood: %v", v)
	}
	// Default failure budget: 30 at once, then one a second.
	if max := int64(30 + elapsed.Seconds() + 2); unauthorized.Load() > max || limited.Load() == 0 {
		t.Fatalf("%d requests reached authentication in %v (budget %d), %d were answered 429",
			unauthorized.Load(), elapsed.Round(time.Millisecond), max, limited.Load())
	}
	t.Logf("%d bad tokens in %v: %d answered 401, %d answered 429", total, elapsed.Round(time.Millisecond), unauthorized.Load(), limited.Load())

	// What the gateway itself refused (a client retries an idempotent GET
	// whose keep-alive connection broke, so it can be a few more than sent).
	// The MCP client's closing DELETE comes from the blocked address too:
	// close it first, so it is counted here.
	c.Close()
	refused := metricSum(t, g, `switchboard_auth_failures_total{endpoint="/mcp"}`) +
		metricSum(t, g, `switchboard_rate_limited_total{endpoint="/mcp"}`)
	if refused < total || refused > total+workers {
		t.Fatalf("the gateway counted %d refusals of %d requests", refused, total)
	}

	// Shutdown writes the summaries still being counted.
	tr.CloseIdleConnections()
	httpTransport.CloseIdleConnections()
	if !g.stop(syscall.SIGTERM, 30*time.Second) {
		t.Fatal("gateway did not stop")
	}
	recs := readAuditDir(t, filepath.Join(g.dir, "data"))
	var counted, records int
	var toolCall bool
	for _, r := range recs {
		switch {
		case r.Type == audit.TypeToolCall && r.Provider == "echo":
			toolCall = true
		case (r.Type == audit.TypeAuthFailure || r.Type == audit.TypeRateLimited) && r.Principal != "user:e2e":
			records++
			n, err := strconv.Atoi(r.Detail["count"])
			if err != nil {
				t.Fatalf("refusal record without a count: %+v", r)
			}
			counted += n
		}
	}
	if !toolCall {
		t.Error("the tool call's record was pushed out of the retained audit files by the flood")
	}
	if records > 6 || counted != refused {
		t.Errorf("the flood wrote %d refusal records counting %d requests; want a handful counting all %d refused", records, counted, refused)
	}
	verify := exec.Command(filepath.Join(binDir, "switchboard"), "audit", "verify", "--config", g.cfg)
	verify.Env, verify.Dir = g.env, g.dir
	if out, err := verify.CombinedOutput(); err != nil {
		t.Errorf("audit verify after the flood: %v\n%s", err, out)
	}
}

// metricSum returns the value of one series on /metrics, asked from
// 127.0.0.2: the flooding address, 127.0.0.1, is refused for a while whatever
// its credentials.
func metricSum(t *testing.T, g *gateway, series string) int {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, g.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+g.key)
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics from another address: %s %s", resp.Status, b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return int(n)
		}
	}
	t.Fatalf("no %s on /metrics:\n%s", series, b)
	return 0
}

// readAuditDir reads every record of the audit log in dir, rotated files included.
func readAuditDir(t *testing.T, dir string) []audit.Record {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if len(files) == 0 {
		t.Fatalf("no audit files in %s", dir)
	}
	var out []audit.Record
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
			var r audit.Record
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("%s: %q: %v", f, line, err)
			}
			out = append(out, r)
		}
	}
	return out
}
