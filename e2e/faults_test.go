package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/switchboard-mcp/switchboard"
)

// TestCrashLoopBacksOffAndFails: a provider that exits at once, and one that
// never answers initialize, are restarted with growing delays and end in the
// visible failed state; the gateway keeps serving the healthy provider.
//
// gateway.yaml has no backoff knob (supervisor.Spec.Backoff is not mapped from
// limits), so this runs on the defaults: 500ms base doubling with ±25% jitter,
// failed after 5 quick failures, about 7.5s in all.
func TestCrashLoopBacksOffAndFails(t *testing.T) {
	if testing.Short() {
		t.Skip("about 15s of restart backoff; skipped with -short")
	}
	t.Parallel()
	g := startGateway(t, `
providers:
  crash:
    command: $BIN/testprovider
    env: {TP_MODE: exit-now}
  noinit:
    command: $BIN/testprovider
    env: {TP_MODE: no-init}
    limits: {init_timeout: 1s}
  ok:
    command: $BIN/echo
`)
	g.waitRunning("ok")
	waitFor(t, 90*time.Second, "crash and noinit to be failed in /healthz", func() bool {
		h := g.healthz()
		return h["crash"] == string(switchboard.StateFailed) && h["noinit"] == string(switchboard.StateFailed)
	})

	spawns := func(prov string) []time.Time {
		var out []time.Time
		for _, l := range g.log.lines() {
			if l.msg() == "provider spawned" && l.field("provider") == prov {
				out = append(out, l.at)
			}
		}
		return out
	}
	for _, prov := range []string{"crash", "noinit"} {
		at := spawns(prov)
		if len(at) < 3 {
			t.Errorf("%s: spawned %d times before failing, want at least 3 attempts", prov, len(at))
			continue
		}
		var gaps []time.Duration
		for i := 1; i < len(at); i++ {
			gaps = append(gaps, at[i].Sub(at[i-1]).Round(time.Millisecond))
		}
		t.Logf("%s: %d starts, gaps %v", prov, len(at), gaps)
		for _, gap := range gaps {
			if gap < 300*time.Millisecond {
				t.Errorf("%s: restarted after only %v: no backoff (gaps %v)", prov, gap, gaps)
			}
		}
		if prov == "crash" && gaps[len(gaps)-1] < gaps[0]*3/2 {
			t.Errorf("%s: restart delays do not grow: %v", prov, gaps)
		}
	}

	// Failed means failed: no more restarts, and nothing of it is exposed.
	before := len(spawns("crash"))
	c := g.connect(t)
	for _, n := range toolNames(t, c) {
		if strings.HasPrefix(n, "crash__") || strings.HasPrefix(n, "noinit__") {
			t.Errorf("failed provider exposes %s", n)
		}
	}
	if got := mustCall(t, c, "ok__echo", map[string]any{"text": "still serving"}); got != "still serving" {
		t.Errorf("ok__echo = %q", got)
	}
	time.Sleep(1500 * time.Millisecond) // asserting an absence: nothing to poll for
	if after := len(spawns("crash")); after != before {
		t.Errorf("crash was spawned again after reaching failed (%d → %d starts)", before, after)
	}
	st := g.provider("crash")
	if st.State != switchboard.StateFailed || st.LastError == "" && st.LastExit == "" {
		t.Errorf("/status crash = %+v, want failed with a last error or exit", st)
	}
}

// TestKilledMidCall: SIGKILL a provider during a call. The call fails within
// about a second, not at a timeout, and the provider is restarted with a new
// pid and serves again.
func TestKilledMidCall(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
providers:
  tp:
    command: $BIN/testprovider
    env: {TP_PIDFILE: $DIR/tp.pid}
`)
	first := g.waitRunning("tp")["tp"]
	if filePID := readPID(t, filepath.Join(g.dir, "tp.pid")); filePID != first.PID {
		t.Fatalf("/status pid %d, pid file %d", first.PID, filePID)
	}
	c := g.connect(t)

	type outcome struct {
		text  string
		isErr bool
		err   error
		at    time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		text, isErr, err := call(ctxT(t, 120*time.Second), c, "tp__sleep", map[string]any{"ms": 60000})
		done <- outcome{text, isErr, err, time.Now()}
	}()
	waitFor(t, 20*time.Second, "the call to be in flight", func() bool { return g.provider("tp").InFlight == 1 })
	killed := time.Now()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var o outcome
	select {
	case o = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the in-flight call did not end within 30s of its provider being killed")
	}
	took := o.at.Sub(killed)
	t.Logf("in-flight call ended %v after the kill: err=%v isError=%v text=%q", took, o.err, o.isErr, o.text)
	if o.err == nil && !o.isErr {
		t.Errorf("the call to a killed provider succeeded: %q", o.text)
	}
	if took > 2*time.Second {
		t.Errorf("the in-flight call took %v to fail after the provider died, want about a second", took)
	}

	// Restarted: a new process that serves calls.
	var now switchboard.ProviderStatus
	waitFor(t, 30*time.Second, "tp to run again with a new pid", func() bool {
		now = g.provider("tp")
		return now.State == switchboard.StateRunning && now.PID != 0 && now.PID != first.PID && now.Tools > 0
	})
	if now.Restarts < 1 {
		t.Errorf("restarts = %d after a crash", now.Restarts)
	}
	if got := mustCall(t, c, "tp__pid", map[string]any{}); got != strconv.Itoa(now.PID) {
		t.Errorf("tp__pid = %s, /status says %d", got, now.PID)
	}
	if got := mustCall(t, c, "tp__echo", map[string]any{"text": "back"}); got != "back" {
		t.Errorf("tp__echo after restart = %q", got)
	}
}

// TestCrashedProviderTakesItsGrandchildren: when a provider that forked a
// grandchild into its process group dies, the grandchild dies with it.
func TestCrashedProviderTakesItsGrandchildren(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
providers:
  fork:
    command: $BIN/testprovider
    env: {TP_MODE: fork, TP_PIDFILE: $DIR/fork.pid}
`)
	first := g.waitRunning("fork")["fork"]
	gc := readPID(t, filepath.Join(g.dir, "fork.pid.grandchild"))
	killLater(t, gc)
	st, err := readStat(gc)
	if err != nil || st.pgid != first.PID {
		t.Fatalf("grandchild %d: pgid %d (%v), want the provider's group %d", gc, st.pgid, err, first.PID)
	}
	_ = os.Remove(filepath.Join(g.dir, "fork.pid.grandchild"))

	c := g.connect(t)
	_, _, _ = call(ctxT(t, 30*time.Second), c, "fork__crash", map[string]any{})
	waitFor(t, 5*time.Second, fmt.Sprintf("grandchild %d to die with its provider", gc), func() bool { return !alive(gc) })
	waitFor(t, 5*time.Second, "the crashed provider's group to be empty", func() bool { return !groupAlive(first.PID) })

	// The restarted provider has its own grandchild, again in its group.
	waitFor(t, 30*time.Second, "fork to run again", func() bool {
		p := g.provider("fork")
		return p.State == switchboard.StateRunning && p.PID != first.PID && p.PID != 0
	})
	gc2 := readPID(t, filepath.Join(g.dir, "fork.pid.grandchild"))
	killLater(t, gc2)
	if gc2 == gc || !alive(gc2) {
		t.Errorf("restarted provider's grandchild %d (old %d) is not a new live process", gc2, gc)
	}
}

// stopFixture is a gateway with every kind of hard-to-stop provider.
const stopFixture = `
providers:
  fork:
    command: $BIN/testprovider
    env: {TP_MODE: fork, TP_PIDFILE: $DIR/fork.pid}
  stubborn:
    command: $BIN/testprovider
    env: {TP_MODE: "ignore-eof,ignore-term,fork", TP_PIDFILE: $DIR/stubborn.pid}
  escape:
    command: $BIN/testprovider
    env: {TP_MODE: fork-escape, TP_PIDFILE: $DIR/escape.pid}
  echo:
    command: $BIN/echo
`

type stopPIDs struct {
	providers   map[string]int
	grandkids   []int // in their provider's group
	escaped     int   // left the group (setsid) holding the provider's pipes
	allChildren []int
}

func startStopFixture(t *testing.T) (*gateway, stopPIDs) {
	g := startGateway(t, stopFixture)
	run := g.waitRunning("fork", "stubborn", "escape", "echo")
	p := stopPIDs{providers: map[string]int{}}
	for name, st := range run {
		p.providers[name] = st.PID
		p.allChildren = append(p.allChildren, st.PID)
	}
	for _, name := range []string{"fork", "stubborn"} {
		gc := readPID(t, filepath.Join(g.dir, name+".pid.grandchild"))
		killLater(t, gc)
		p.grandkids = append(p.grandkids, gc)
	}
	p.escaped = readPID(t, filepath.Join(g.dir, "escape.pid.grandchild"))
	killLater(t, p.escaped) // nothing in a process group can reach it
	return g, p
}

// TestGatewaySIGTERMLeavesNoOrphans: SIGTERM stops every provider group,
// escalating to SIGKILL for one that ignores EOF and SIGTERM, is not hung by a
// grandchild that escaped the group holding the pipes, and exits 0 in bounded
// time.
func TestGatewaySIGTERMLeavesNoOrphans(t *testing.T) {
	t.Parallel()
	g, p := startStopFixture(t)
	start := time.Now()
	if !g.stop(syscall.SIGTERM, 30*time.Second) {
		t.Fatalf("gateway still running 30s after SIGTERM")
	}
	t.Logf("gateway exited %v after SIGTERM: %v", time.Since(start).Round(time.Millisecond), g.ps)
	if code := g.ps.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	for name, pid := range p.providers {
		if groupAlive(pid) {
			t.Errorf("provider %s: group %d still has live processes %s", name, pid, describeGroup(pid))
		}
	}
	for _, gc := range p.grandkids {
		if alive(gc) {
			t.Errorf("grandchild %d outlived the gateway", gc)
		}
	}
	if stopped := g.log.count(func(l logLine) bool { return l.msg() == "switchboard stopped" }); stopped != 1 {
		t.Errorf(`"switchboard stopped" logged %d times`, stopped)
	}
}

// TestGatewaySIGKILLLeavesNoLiveProvider: when the gateway is SIGKILLed it
// cannot stop anything itself; every provider must still die at once through
// its parent-death signal (set up on the thread that spawned it), including
// those that ignore SIGTERM. Grandchildren are checked too.
func TestGatewaySIGKILLLeavesNoLiveProvider(t *testing.T) {
	t.Parallel()
	g, p := startStopFixture(t)
	kids := childrenOf(g.pid()) // providers and the gateway's helpers
	killed := time.Now()
	if !g.stop(syscall.SIGKILL, 10*time.Second) {
		t.Fatal("gateway still running after SIGKILL")
	}
	deadline := killed.Add(2 * time.Second)
	for _, pid := range p.allChildren {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for name, pid := range p.providers {
		if alive(pid) {
			t.Errorf("provider %s (pid %d) still alive %v after the gateway was SIGKILLed", name, pid, time.Since(killed).Round(time.Millisecond))
		}
	}
	deadline = killed.Add(3 * time.Second)
	for _, pid := range kids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("gateway child %d (%q) still alive after the gateway was SIGKILLed", pid, strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	for _, gc := range p.grandkids {
		for alive(gc) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(gc) {
			st, _ := readStat(gc)
			t.Errorf("grandchild %d (group %d) still alive %v after the gateway was SIGKILLed: Pdeathsig reaches only direct children",
				gc, st.pgid, time.Since(killed).Round(time.Millisecond))
		}
	}
}

// TestFiftyCallsInFlightWhenTheChildDies: 50 calls from 5 sessions are in
// flight when the provider is killed: all fail fast, none gets another's
// answer, and after the restart 50 concurrent calls each get their own.
func TestFiftyCallsInFlightWhenTheChildDies(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
providers:
  tp:
    command: $BIN/testprovider
    limits: {max_concurrent: 64}
`)
	first := g.waitRunning("tp")["tp"]
	clients := make([]*client.Client, 5)
	for i := range clients {
		clients[i] = g.connect(t)
	}

	// Echo traffic alongside: every answer is the caller's own.
	echoAll := func(round string) {
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf("%s-%d-%s", round, i, strings.Repeat("x", i))
				text, isErr, err := call(ctxT(t, 60*time.Second), clients[i%5], "tp__echo", map[string]any{"text": want})
				if err != nil || isErr || text != want {
					t.Errorf("echo %s = %q (isError %v, err %v)", want, text, isErr, err)
				}
			}()
		}
		wg.Wait()
	}

	type outcome struct {
		i     int
		text  string
		isErr bool
		err   error
		at    time.Time
	}
	results := make(chan outcome, 50)
	for i := range 50 {
		go func() {
			text, isErr, err := call(ctxT(t, 120*time.Second), clients[i%5], "tp__sleep", map[string]any{"ms": 60000 + i})
			results <- outcome{i, text, isErr, err, time.Now()}
		}()
	}
	waitFor(t, 30*time.Second, "50 calls in flight", func() bool { return g.provider("tp").InFlight == 50 })
	echoAll("before")

	killed := time.Now()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var slowest time.Duration
	for range 50 {
		select {
		case o := <-results:
			took := o.at.Sub(killed)
			slowest = max(slowest, took)
			if o.err == nil && !o.isErr {
				t.Errorf("sleep call %d succeeded after its provider was killed: %q", o.i, o.text)
			}
			if strings.Contains(o.text, "slept") {
				t.Errorf("sleep call %d got a sleep answer: %q", o.i, o.text)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("in-flight calls still pending 30s after the provider died")
		}
	}
	t.Logf("all 50 in-flight calls failed within %v of the kill", slowest.Round(time.Millisecond))
	if slowest > 3*time.Second {
		t.Errorf("slowest in-flight call took %v to fail after the provider died", slowest)
	}
	waitFor(t, 30*time.Second, "tp to run again", func() bool {
		p := g.provider("tp")
		return p.State == switchboard.StateRunning && p.PID != first.PID && p.PID != 0 && p.Tools > 0
	})
	echoAll("after")
}

// TestHungCallTimesOut: a call to a provider that never answers fails at the
// provider's call_timeout, the child is told to cancel, and the gateway (and
// the hung provider) keep serving.
func TestHungCallTimesOut(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
providers:
  hang:
    command: $BIN/testprovider
    env: {TP_MODE: hang}
    limits: {call_timeout: 1s}
  echo:
    command: $BIN/echo
`)
	before := g.waitRunning("hang", "echo")["hang"]
	c := g.connect(t)
	for round := range 2 {
		start := time.Now()
		text, isErr, err := call(ctxT(t, 60*time.Second), c, "hang__echo", map[string]any{"text": "never"})
		took := time.Since(start)
		t.Logf("hung call %d ended after %v: err=%v isError=%v text=%q", round, took.Round(time.Millisecond), err, isErr, text)
		if err == nil && !isErr {
			t.Errorf("hung call succeeded: %q", text)
		}
		if took < 900*time.Millisecond || took > 10*time.Second {
			t.Errorf("hung call ended after %v, want about the 1s call_timeout", took)
		}
		if got := mustCall(t, c, "echo__echo", map[string]any{"text": "alive"}); got != "alive" {
			t.Errorf("echo__echo = %q", got)
		}
	}
	// The child got notifications/cancelled (it logs "cancelled <id>").
	if _, ok := g.log.waitFor(10*time.Second, nil, func(l logLine) bool {
		return l.field("provider") == "hang" && strings.HasPrefix(l.field("line"), "cancelled ")
	}); !ok {
		t.Error("the hung provider never received notifications/cancelled")
	}
	after := g.provider("hang")
	if after.PID != before.PID || after.State != switchboard.StateRunning {
		t.Errorf("hang provider after timeouts: %+v, want the same running process %d", after, before.PID)
	}
	waitFor(t, 10*time.Second, "in_flight to return to 0", func() bool { return g.provider("hang").InFlight == 0 })
}

// TestQueueBoundAnswersOverloadAtOnce: with max_concurrent 2 and max_queue 4,
// 20 concurrent slow calls: 6 are served, the rest fail at once with an
// overload error instead of waiting.
func TestQueueBoundAnswersOverloadAtOnce(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
providers:
  slow:
    command: $BIN/testprovider
    limits: {max_concurrent: 2, max_queue: 4}
`)
	g.waitRunning("slow")
	clients := make([]*client.Client, 4)
	for i := range clients {
		clients[i] = g.connect(t)
	}
	const n = 20
	type outcome struct {
		text  string
		isErr bool
		err   error
		took  time.Duration
	}
	results := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			text, isErr, err := call(ctxT(t, 60*time.Second), clients[i%4], "slow__sleep", map[string]any{"ms": 2500})
			results[i] = outcome{text, isErr, err, time.Since(start)}
		}()
	}
	wg.Wait()
	ok, overloaded := 0, 0
	for i, o := range results {
		switch {
		case o.err == nil && !o.isErr && strings.HasPrefix(o.text, "slept"):
			ok++
		case strings.Contains(strings.ToLower(o.text+fmt.Sprint(o.err)), "overload"):
			overloaded++
			if o.took > 2*time.Second {
				t.Errorf("call %d waited %v before its overload error", i, o.took)
			}
		default:
			t.Errorf("call %d: unexpected outcome %+v", i, o)
		}
	}
	t.Logf("%d served, %d refused as overloaded", ok, overloaded)
	if ok < 6 || overloaded < n-8 || ok+overloaded != n {
		t.Errorf("%d served and %d overloaded of %d, want 6 served (2 running + 4 queued) and the rest refused", ok, overloaded, n)
	}
}
