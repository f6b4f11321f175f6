package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soak reports whether the long load test was asked for (make soak).
func soak() bool { return os.Getenv("SOAK") != "" }

// goroutines reads go_goroutines from the gateway's /metrics, or -1.
func (g *gateway) goroutines() int {
	req, _ := http.NewRequest(http.MethodGet, g.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+g.key)
	resp, err := httpClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}

// rss returns the gateway's resident set in KiB.
func rss(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return -1
}

type usage struct {
	fds, threads, goroutines, rssKB int
}

func (g *gateway) usage() usage {
	return usage{openFDs(g.pid()), threads(g.pid()), g.goroutines(), rss(g.pid())}
}

// TestSessionChurnAndLeaks runs initialize → tools/call → DELETE cycles in
// parallel, then sessions that vanish without DELETE (some with an SSE GET
// stream open), and checks that sessions, goroutines and open fds return to
// their baseline. The short version runs in make test; SOAK=1 runs the long
// one (make soak).
func TestSessionChurnAndLeaks(t *testing.T) {
	t.Parallel()
	cycles, parallel, dropped := 1000, 50, 200
	if testing.Short() {
		cycles, dropped = 200, 50
	}
	if soak() {
		cycles, parallel, dropped = 10000, 200, 1000
		if n, err := strconv.Atoi(os.Getenv("SOAK_CYCLES")); err == nil && n > 0 {
			cycles = n
		}
	}
	g := startGateway(t, `
sessions: {idle_timeout: 3s, max_per_principal: 20000}
providers:
  echo:
    command: $BIN/echo
`)
	g.waitRunning("echo")
	tr := &http.Transport{MaxIdleConnsPerHost: parallel, MaxConnsPerHost: parallel}
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	var failures atomic.Int64
	cycle := func(i int) error {
		s, err := g.tryInit(hc)
		if err != nil {
			return err
		}
		want := "cycle " + strconv.Itoa(i)
		resp, body, err := s.try(http.MethodPost, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"`+want+`"}}}`, nil)
		if err != nil {
			return err
		}
		r, ok := parseReply(resp, body)
		if !ok || r.Error != nil {
			return fmt.Errorf("tools/call: %s %s", resp.Status, body)
		}
		if got, _ := callText(r.Result); got != want {
			return fmt.Errorf("tools/call %q answered %q", want, got)
		}
		resp, body, err = s.try(http.MethodDelete, "", nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("DELETE: %s %s", resp.Status, body)
		}
		return nil
	}
	runCycles := func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1))
					if i > n {
						return
					}
					if err := cycle(i); err != nil {
						if failures.Add(1) <= 5 {
							t.Errorf("cycle %d: %v", i, err)
						}
					}
				}
			}()
		}
		wg.Wait()
	}
	settle := func(what string, base usage, check func(u usage) bool) usage {
		tr.CloseIdleConnections()
		var u usage
		deadline := time.Now().Add(30 * time.Second)
		for {
			u = g.usage()
			if check(u) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s: fds %d→%d, goroutines %d→%d, threads %d→%d, rss %d→%d KiB",
			what, base.fds, u.fds, base.goroutines, u.goroutines, base.threads, u.threads, base.rssKB, u.rssKB)
		return u
	}
	near := func(base usage) func(u usage) bool {
		return func(u usage) bool {
			return u.fds <= base.fds+4 && (base.goroutines < 0 || u.goroutines <= base.goroutines+10)
		}
	}

	// Warm up (lazy goroutines, pools, the audit log), then take the baseline.
	runCycles(parallel)
	waitFor(t, 10*time.Second, "warm-up sessions to close", func() bool { return g.status().sessions() == 0 })
	// The baseline is taken once the fd count is steady (the server closes
	// our dropped keep-alive connections asynchronously).
	steady, last := 0, -1
	base := settle("baseline", g.usage(), func(u usage) bool {
		if u.fds == last {
			steady++
		} else {
			steady, last = 0, u.fds
		}
		return steady >= 5
	})

	start := time.Now()
	runCycles(cycles)
	t.Logf("%d cycles at %d in parallel in %v (%d failed)", cycles, parallel, time.Since(start).Round(time.Millisecond), failures.Load())
	waitFor(t, 10*time.Second, "sessions to return to 0 after DELETE", func() bool { return g.status().sessions() == 0 })
	u := settle("after churn", base, near(base))
	if !near(base)(u) {
		t.Errorf("after %d cycles: fds %d (baseline %d), goroutines %d (baseline %d)", cycles, u.fds, base.fds, u.goroutines, base.goroutines)
	}
	if u.threads > max(2*base.threads, base.threads+64) {
		t.Errorf("threads grew from %d to %d", base.threads, u.threads)
	}

	// Ungraceful: sessions that never DELETE; half of them had an SSE GET
	// stream open when their TCP connection dropped. One more session keeps
	// pinging within the idle timeout and must survive the reaping.
	keeper := g.rawInit(t, nil)
	// The keeper pings every 500ms from now on, including while the dropped
	// clients are being opened (which can outlast the idle timeout on a
	// loaded machine).
	var keeperErr error
	var keeperMu sync.Mutex
	stopKeeper := make(chan struct{})
	keeperDone := make(chan struct{})
	go func() {
		defer close(keeperDone)
		for {
			select {
			case <-stopKeeper:
				return
			case <-time.After(500 * time.Millisecond):
			}
			resp, body, err := keeper.try(http.MethodPost, `{"jsonrpc":"2.0","id":3,"method":"ping"}`, nil)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s %s", resp.Status, body)
			}
			keeperMu.Lock()
			if err != nil && keeperErr == nil {
				keeperErr = err
			}
			keeperMu.Unlock()
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := range dropped {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			own := &http.Transport{}
			defer own.CloseIdleConnections()
			s, err := g.tryInit(&http.Client{Transport: own, Timeout: 60 * time.Second})
			if err != nil {
				t.Errorf("dropped client %d: %v", i, err)
				return
			}
			if i%2 == 0 {
				return // vanishes: keep-alive connection closed, no DELETE
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // drops the TCP connection under the open stream
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/mcp", nil)
			req.Header.Set("Authorization", "Bearer "+g.key)
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("Mcp-Session-Id", s.sid)
			req.Header.Set("MCP-Protocol-Version", protocolVersion)
			resp, err := own.RoundTrip(req)
			if err != nil {
				t.Errorf("dropped client %d: GET: %v", i, err)
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("dropped client %d: GET: %s", i, resp.Status)
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if n := g.status().sessions(); n < dropped/2 {
		t.Errorf("only %d sessions open right after %d clients vanished: were they reaped early, or never counted?", n, dropped)
	}
	reaped := time.Now()
	for g.status().sessions() > 1 && time.Since(reaped) < 60*time.Second {
		time.Sleep(500 * time.Millisecond)
	}
	close(stopKeeper)
	<-keeperDone
	t.Logf("vanished sessions reaped %v after the last one left", time.Since(reaped).Round(100*time.Millisecond))
	if n := g.status().sessions(); n != 1 {
		t.Errorf("%d sessions open 60s after %d clients vanished (idle_timeout 3s), want only the active one", n, dropped)
	}
	if keeperErr != nil {
		t.Errorf("a session active within the idle timeout was reaped: ping: %v", keeperErr)
	}
	if resp, body, err := keeper.try(http.MethodDelete, "", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("DELETE of the active session: %v %s", err, body)
	}
	waitFor(t, 10*time.Second, "sessions to return to 0", func() bool { return g.status().sessions() == 0 })
	u = settle("after vanished clients", base, near(base))
	if !near(base)(u) {
		t.Errorf("after %d vanished clients: fds %d (baseline %d), goroutines %d (baseline %d)", dropped, u.fds, base.fds, u.goroutines, base.goroutines)
	}
}
