package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/backoff"
	"github.com/switchboard-mcp/switchboard/internal/gate"
)

// tpBin is the testprovider binary, built once in TestMain.
var tpBin string

// modernBin is the modernprovider binary (both protocol eras, mcp-go).
var modernBin string

func TestMain(m *testing.M) {
	if os.Getenv(miniGatewayEnv) != "" {
		miniGateway()
		return
	}
	if os.Getenv(trackGatewayEnv) != "" {
		trackGateway()
		return
	}
	dir, err := os.MkdirTemp("", "supervisor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tpBin = filepath.Join(dir, "testprovider")
	modernBin = filepath.Join(dir, "modernprovider")
	for bin, pkg := range map[string]string{tpBin: "../internal/testprovider", modernBin: "../internal/modernprovider"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// recorder collects what the supervisor reports.
type recorder struct {
	mu      sync.Mutex
	events  []Event
	ups     map[switchboard.InstanceKey]switchboard.Upstream
	cats    map[switchboard.InstanceKey]*switchboard.Catalog
	catalog int // OnCatalog calls with a catalog
	downs   int // OnCatalog calls with nil
	logs    syncBuffer
}

// syncBuffer is a log sink tests can search.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Contains(sub string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), sub)
}

func newRecorder() *recorder {
	return &recorder{ups: map[switchboard.InstanceKey]switchboard.Upstream{}, cats: map[switchboard.InstanceKey]*switchboard.Catalog{}}
}

func (r *recorder) onCatalog(key switchboard.InstanceKey, up switchboard.Upstream, cat *switchboard.Catalog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up == nil {
		r.downs++
		delete(r.ups, key)
		delete(r.cats, key)
		return
	}
	r.catalog++
	r.ups[key] = up
	r.cats[key] = cat
}

func (r *recorder) onEvent(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (r *recorder) last(kind string) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Kind == kind {
			return r.events[i]
		}
	}
	return Event{}
}

func (r *recorder) restartDelays() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ds []time.Duration
	for _, e := range r.events {
		if e.Kind == EventRestart {
			ds = append(ds, e.Delay)
		}
	}
	return ds
}

// counts returns how many times OnCatalog published an instance and took one down.
func (r *recorder) counts() (published, down int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.catalog, r.downs
}

func (r *recorder) catalogFor(key switchboard.InstanceKey) *switchboard.Catalog {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cats[key]
}

// testClock is the real clock shifted by an offset tests can advance.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time                         { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (c *testClock) Advance(d time.Duration)                { c.offset.Add(int64(d)) }

// MustSupervisor returns a supervisor whose instances are all stopped at the
// end of the test.
func MustSupervisor(tb testing.TB, opts Options) (*Supervisor, *recorder) {
	tb.Helper()
	rec := newRecorder()
	own := opts.OnCatalog // the test's own, called before the recorder's
	opts.OnCatalog = func(key switchboard.InstanceKey, up switchboard.Upstream, cat *switchboard.Catalog) {
		if own != nil {
			own(key, up, cat)
		}
		rec.onCatalog(key, up, cat)
	}
	opts.OnEvent = rec.onEvent
	if opts.Jitter == nil {
		opts.Jitter = func() float64 { return 0.5 } // no jitter
	}
	w := zerolog.MultiLevelWriter(zerolog.NewTestWriter(tb), &rec.logs)
	s := New(zerolog.New(w).With().Timestamp().Logger().Level(zerolog.InfoLevel), opts)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.StopAll(ctx); err != nil {
			tb.Errorf("StopAll: %v", err)
		}
	})
	return s, rec
}

// testSpec returns a spec for the testprovider with small timings.
func testSpec(tb testing.TB, name, mode string) Spec {
	tb.Helper()
	return Spec{
		Key:         switchboard.InstanceKey{Provider: name},
		Command:     tpBin,
		Env:         map[string]string{"TP_MODE": mode, "TP_PIDFILE": filepath.Join(tb.TempDir(), "pid")},
		InitTimeout: 30 * time.Second,
		Limits:      Limits{CallTimeout: 30 * time.Second},
		StopGrace:   500 * time.Millisecond,
		KillGrace:   500 * time.Millisecond,
		Backoff:     BackoffPolicy{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond, ResetAfter: time.Minute, MaxFailures: 5},
	}
}

// MustReady starts spec and waits until it runs.
func MustReady(tb testing.TB, s *Supervisor, spec Spec) switchboard.Upstream {
	tb.Helper()
	if err := s.Start(spec); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx, spec.Key); err != nil {
		tb.Fatalf("WaitReady: %v", err)
	}
	up, ok := s.Running(spec.Key)
	if !ok {
		tb.Fatal("Upstream not available after WaitReady")
	}
	return up
}

// callTool calls a testprovider tool and returns its text.
func callTool(ctx context.Context, up switchboard.Upstream, name string, args map[string]any) (string, error) {
	res, err := callUp(ctx, up, "tools/call", map[string]any{"name": name, "arguments": args})
	if err != nil {
		return "", err
	}
	var r struct {
		Content []struct{ Text string } `json:"content"`
	}
	if err := json.Unmarshal(res, &r); err != nil || len(r.Content) != 1 {
		return "", fmt.Errorf("bad result %s: %v", res, err)
	}
	return r.Content[0].Text, nil
}

// readPID polls for a pid file written by the testprovider.
func readPID(tb testing.TB, file string) int {
	tb.Helper()
	var pid int
	waitUntil(tb, 10*time.Second, func() bool {
		b, err := os.ReadFile(file)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	}, "pid file "+file)
	return pid
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// groupGone reports whether no live process is in group pgid: kill(-pgid, 0)
// returns ESRCH, or only zombies remain (which nobody may reap in a sandbox).
func groupGone(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && alive(pid) {
			return false
		}
	}
	return true
}

func stderrContains(s *Supervisor, key switchboard.InstanceKey, sub string) bool {
	for _, st := range s.Status() {
		if st.Provider == key.Provider && st.User == key.User {
			for _, l := range st.StderrTail {
				if strings.Contains(l, sub) {
					return true
				}
			}
		}
	}
	return false
}

func statusOf(tb testing.TB, s *Supervisor, key switchboard.InstanceKey) switchboard.ProviderStatus {
	tb.Helper()
	for _, st := range s.Status() {
		if st.Provider == key.Provider && st.User == key.User {
			return st
		}
	}
	tb.Fatalf("no status for %s", key)
	return switchboard.ProviderStatus{}
}

func TestHappyPath(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "happy", "ask-client")
	spec.Env["TP_PAGE_SIZE"] = "2" // tools/list in three pages
	up := MustReady(t, s, spec)
	ctx := t.Context()

	cat := rec.catalogFor(spec.Key)
	if cat == nil {
		t.Fatal("OnCatalog not called")
	}
	var names []string
	for _, raw := range cat.Tools {
		var tool struct{ Name string }
		_ = json.Unmarshal(raw, &tool)
		names = append(names, tool.Name)
	}
	if want := []string{"echo", "env", "sleep", "pid", "crash", "add_tool", "log", "fail"}; !slices.Equal(names, want) {
		t.Errorf("tools = %v, want %v", names, want)
	}
	if len(cat.Prompts) != 1 || len(cat.Resources) != 1 || len(cat.ResourceTemplates) != 0 || cat.Instructions != "A test provider." {
		t.Errorf("catalog = %d prompts, %d resources, %d templates, instructions %q", len(cat.Prompts), len(cat.Resources), len(cat.ResourceTemplates), cat.Instructions)
	}

	t.Run("echo", func(t *testing.T) {
		got, err := callTool(ctx, up, "echo", map[string]any{"text": "hi there"})
		if err != nil || got != "hi there" {
			t.Fatalf("echo = %q, %v", got, err)
		}
	})

	t.Run("resources/read", func(t *testing.T) {
		res, err := callUp(ctx, up, "resources/read", map[string]string{"uri": "test://hello"})
		if err != nil || !strings.Contains(string(res), `"text":"hello"`) {
			t.Fatalf("read = %s, %v", res, err)
		}
	})

	t.Run("progress", func(t *testing.T) {
		caller := &countingCaller{}
		_, err := up.Call(ctx, &switchboard.Request{Method: "tools/call",
			Params:   json.RawMessage(`{"name":"sleep","arguments":{"ms":200}}`),
			Progress: json.RawMessage(`"mine"`), Caller: caller})
		if err != nil {
			t.Fatal(err)
		}
		if caller.progress.Load() == 0 {
			t.Error("no progress notification delivered")
		}
	})

	t.Run("cancellation reaches the child", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := callTool(cctx, up, "sleep", map[string]any{"ms": 10000})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancel took %s", d)
		}
		waitUntil(t, 10*time.Second, func() bool { return stderrContains(s, spec.Key, "cancelled ") }, `"cancelled" in the child's stderr`)
	})

	t.Run("child requests are answered", func(t *testing.T) {
		// With no client call in flight, a request that only a client can
		// answer is refused with a reason; ping is answered by the gateway.
		for _, want := range []string{`"tp-ping","result":{}`,
			`"tp-roots","error":{"code":-32603,"message":"switchboard cannot relay roots/list: no client call is in flight`,
			`"tp-other","error":{"code":-32603,"message":"switchboard cannot relay sampling/createMessage: no client call is in flight`} {
			waitUntil(t, 10*time.Second, func() bool { return stderrContains(s, spec.Key, want) }, want)
		}
	})

	t.Run("list_changed refetches the catalog", func(t *testing.T) {
		if _, err := callTool(ctx, up, "add_tool", map[string]any{"name": "extra"}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, func() bool {
			c := rec.catalogFor(spec.Key)
			return c != nil && len(c.Tools) == 8
		}, "catalog with 8 tools")
		if st := statusOf(t, s, spec.Key); st.Tools != 8 {
			t.Errorf("Status.Tools = %d, want 8", st.Tools)
		}
	})

	st := statusOf(t, s, spec.Key)
	pid := readPID(t, spec.Env["TP_PIDFILE"])
	if st.State != switchboard.StateRunning || st.PID != pid || st.Restarts != 0 || st.StartedAt.IsZero() || st.Limits != "" {
		t.Errorf("status = %+v", st)
	}
	if !s.Has(spec.Key) || len(s.Specs()) != 1 {
		t.Error("Has/Specs do not show the instance")
	}
	if err := s.Stop(ctx, spec.Key); err != nil {
		t.Fatal(err)
	}
	if s.Has(spec.Key) || alive(pid) {
		t.Error("instance still there after Stop")
	}
	if _, ok := s.Running(spec.Key); ok {
		t.Error("Upstream available after Stop")
	}
	if _, downs := rec.counts(); downs != 1 || rec.count(EventStop) != 1 {
		t.Errorf("downs = %d, stop events = %d; want 1, 1", downs, rec.count(EventStop))
	}
	if err := s.Stop(ctx, spec.Key); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestCrashLoopBacksOffThenFails(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "crashy", "exit-now")
	spec.Backoff = BackoffPolicy{Base: 50 * time.Millisecond, Max: 150 * time.Millisecond, ResetAfter: time.Minute, MaxFailures: 5}
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := s.WaitReady(ctx, spec.Key)
	if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE || !strings.Contains(err.Error(), "gave up after 5") {
		t.Fatalf("WaitReady = %v, want EUNAVAILABLE failed", err)
	}
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}
	if got := rec.restartDelays(); !slices.Equal(got, want) {
		t.Errorf("delays = %v, want %v", got, want)
	}
	if n := rec.count(EventSpawn); n != 5 {
		t.Errorf("spawns = %d, want 5", n)
	}
	if pub, _ := rec.counts(); rec.count(EventFailed) != 1 || pub != 0 {
		t.Errorf("failed events = %d, catalogs = %d", rec.count(EventFailed), pub)
	}
	if e := rec.last(EventExit); e.ExitCode != 1 || e.PID == 0 {
		t.Errorf("exit event = %+v", e)
	}
	st := statusOf(t, s, spec.Key)
	if st.State != switchboard.StateFailed || st.Restarts != 4 || st.LastExit != "exit status 1" || !slices.Contains(st.StderrTail, "exiting now") {
		t.Errorf("status = %+v", st)
	}
	time.Sleep(300 * time.Millisecond) // longer than Max: nothing more may spawn
	if n := rec.count(EventSpawn); n != 5 {
		t.Errorf("spawns after failed = %d, want 5", n)
	}
	// Start again revives a failed instance.
	spec.Env["TP_MODE"] = ""
	MustReady(t, s, spec)
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	clock := &testClock{}
	s, rec := MustSupervisor(t, Options{Clock: clock})
	spec := testSpec(t, "stable", "")
	spec.Backoff = BackoffPolicy{Base: 40 * time.Millisecond, Max: time.Second, ResetAfter: time.Hour, MaxFailures: 10}
	crash := func(advance time.Duration) {
		t.Helper()
		up := MustReady(t, s, spec)
		clock.Advance(advance)
		n := rec.count(EventRestart)
		_, err := callTool(t.Context(), up, "crash", nil)
		if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
			t.Fatalf("crash call: err = %v, want EUNAVAILABLE", err)
		}
		waitUntil(t, 10*time.Second, func() bool { return rec.count(EventRestart) == n+1 }, "restart")
		waitUntil(t, 10*time.Second, func() bool { return s.WaitReady(t.Context(), spec.Key) == nil }, "ready again")
	}
	crash(0)
	crash(0)
	crash(2 * time.Hour) // a stable run: back to the base delay
	crash(0)
	want := []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	if got := rec.restartDelays(); !slices.Equal(got, want) {
		t.Errorf("delays = %v, want %v", got, want)
	}
	if e := rec.last(EventExit); e.ExitCode != 3 {
		t.Errorf("exit event = %+v, want code 3", e)
	}
}

func TestEarlyFailuresCount(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		command string
		wantErr string
	}{
		{"dies at start", "exit-now", "", "exit status 1"},
		{"exits 0 at start", "exit-now,exit-code=0", "", "exit status 0"},
		{"never initializes", "no-init", "", "did not answer in time"},
		{"unsupported protocol", "proto=1999-01-01", "", `unsupported protocol version "1999-01-01"`},
		{"command not found", "", "no-such-provider-binary", "not found in the provider's PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, rec := MustSupervisor(t, Options{})
			spec := testSpec(t, "early", tt.mode)
			if tt.mode == "no-init" {
				spec.InitTimeout = 300 * time.Millisecond
			}
			spec.Backoff.MaxFailures = 2
			wantSpawns := 2
			if tt.command != "" {
				spec.Command = tt.command
				wantSpawns = 0
			}
			if err := s.Start(spec); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			err := s.WaitReady(ctx, spec.Key)
			if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("WaitReady = %v, want failure mentioning %q", err, tt.wantErr)
			}
			if pub, _ := rec.counts(); rec.count(EventSpawn) != wantSpawns || pub != 0 || rec.count(EventReady) != 0 {
				t.Errorf("spawns = %d, catalogs = %d, ready = %d; want %d, 0, 0", rec.count(EventSpawn), pub, rec.count(EventReady), wantSpawns)
			}
			if _, ok := s.Running(spec.Key); ok {
				t.Error("Upstream of a failed instance")
			}
		})
	}
}

func TestStopEscalation(t *testing.T) {
	const grace = time.Second // long enough for a loaded box to let (a) exit
	tests := []struct {
		name       string
		mode       string
		wantSignal string
		min, max   time.Duration
	}{
		{"exits on stdin EOF", "", "", 0, grace},
		{"ignores EOF, exits on SIGTERM", "ignore-eof", "terminated", grace, 2*grace + 5*time.Second},
		{"ignores EOF and SIGTERM", "ignore-eof,ignore-term", "killed", 2 * grace, 2*grace + 5*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, rec := MustSupervisor(t, Options{})
			spec := testSpec(t, "stopper", tt.mode)
			spec.StopGrace, spec.KillGrace = grace, grace
			MustReady(t, s, spec)
			pid := readPID(t, spec.Env["TP_PIDFILE"])
			start := time.Now()
			if err := s.Stop(t.Context(), spec.Key); err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			if d < tt.min || d > tt.max {
				t.Errorf("Stop took %s, want [%s, %s]", d, tt.min, tt.max)
			}
			e := rec.last(EventExit)
			if e.Signal != tt.wantSignal || e.PID != pid {
				t.Errorf("exit event = %+v, want signal %q", e, tt.wantSignal)
			}
			if tt.wantSignal == "" && e.ExitCode != 0 {
				t.Errorf("exit code = %d, want 0", e.ExitCode)
			}
			if term := rec.logs.Contains("sending SIGTERM"); term != (tt.wantSignal != "") {
				t.Errorf("SIGTERM escalation logged: %v", term)
			}
			if kill := rec.logs.Contains("sending SIGKILL"); kill != (tt.wantSignal == "killed") {
				t.Errorf("SIGKILL escalation logged: %v", kill)
			}
			if !groupGone(pid) {
				t.Error("process group still alive after Stop")
			}
		})
	}
}

func TestStopDuringInitialize(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "slowinit", "no-init")
	spec.InitTimeout = time.Minute
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	pid := readPID(t, spec.Env["TP_PIDFILE"])
	start := time.Now()
	if err := s.Stop(t.Context(), spec.Key); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > spec.StopGrace {
		t.Errorf("Stop during initialize took %s", d)
	}
	if !groupGone(pid) || rec.count(EventRestart) != 0 {
		t.Errorf("group gone %v, restarts %d", groupGone(pid), rec.count(EventRestart))
	}
}

func TestStopDuringBackoffIsQuick(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "backoff", "exit-now")
	spec.Backoff.Base, spec.Backoff.Max = time.Minute, time.Minute
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool { return rec.count(EventRestart) == 1 }, "backoff")
	if st := statusOf(t, s, spec.Key); st.State != switchboard.StateBackoff {
		t.Errorf("state = %s, want backoff", st.State)
	}
	start := time.Now()
	if err := s.Stop(t.Context(), spec.Key); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop during backoff took %s", d)
	}
}

func TestGrandchildDiesWithGroup(t *testing.T) {
	t.Run("on stop", func(t *testing.T) {
		s, _ := MustSupervisor(t, Options{})
		spec := testSpec(t, "forker", "fork")
		MustReady(t, s, spec)
		pid := readPID(t, spec.Env["TP_PIDFILE"])
		gpid := readPID(t, spec.Env["TP_PIDFILE"]+".grandchild")
		if !alive(gpid) {
			t.Fatal("grandchild not running")
		}
		if err := s.Stop(t.Context(), spec.Key); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 5*time.Second, func() bool { return groupGone(pid) && !alive(gpid) }, "group gone")
	})
	t.Run("on crash, before the restart", func(t *testing.T) {
		s, rec := MustSupervisor(t, Options{})
		spec := testSpec(t, "forker", "fork")
		up := MustReady(t, s, spec)
		pid := readPID(t, spec.Env["TP_PIDFILE"])
		gpid := readPID(t, spec.Env["TP_PIDFILE"]+".grandchild")
		_ = os.Remove(spec.Env["TP_PIDFILE"])
		_, _ = callTool(t.Context(), up, "crash", nil)
		waitUntil(t, 10*time.Second, func() bool { return rec.count(EventSpawn) == 2 }, "restart")
		// The group was killed before the new child was spawned; allow for the
		// reparented grandchild's last breath.
		waitUntil(t, 2*time.Second, func() bool { return groupGone(pid) && !alive(gpid) }, "old group gone")
		MustReady(t, s, spec)
	})
}

// TestEscapedPipeHolderCannotHangStop: a descendant that left the process
// group keeps the provider's pipes open. Tracked (a cgroup, or the subreaper
// way), it is killed on Stop; tracked by its process group alone, it survives
// but cannot hold Stop up, and is logged.
func TestEscapedPipeHolderCannotHangStop(t *testing.T) {
	for _, tracked := range []bool{true, false} {
		t.Run(fmt.Sprintf("tracked=%v", tracked), func(t *testing.T) {
			s, rec := MustSupervisor(t, Options{})
			if !tracked {
				s.limits.track.detect = func() trackMode { return trackMode{kind: trackGroup} }
			}
			spec := testSpec(t, "escaper", "fork-escape")
			MustReady(t, s, spec)
			gpid := readPID(t, spec.Env["TP_PIDFILE"]+".grandchild")
			t.Cleanup(func() { _ = syscall.Kill(gpid, syscall.SIGKILL) })
			if !alive(gpid) {
				t.Fatal("escaped grandchild not running")
			}
			start := time.Now()
			if err := s.Stop(t.Context(), spec.Key); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > spec.StopGrace+5*time.Second { // generous: the box is shared
				t.Errorf("Stop took %s with a descendant holding the pipes", d)
			}
			if tracked {
				if mode := s.limits.tracking(); mode.kind == trackGroup {
					t.Skipf("no tracking here: %s", mode.note)
				}
				waitUntil(t, 5*time.Second, func() bool { return !alive(gpid) }, "the escaped pipe holder to die")
				if !rec.logs.Contains("killed processes left behind by the provider") {
					t.Error("the kill of the escaped pipe holder was not logged")
				}
				return
			}
			if !rec.logs.Contains("a process outside the provider's group still holds its stdout") {
				t.Error("escaped pipe holder not logged")
			}
		})
	}
}

func TestKillMidCallFailsInFlightCalls(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "victim", "")
	spec.MaxConcurrent = 200
	up := MustReady(t, s, spec)
	pid := readPID(t, spec.Env["TP_PIDFILE"])

	// Under load, every caller gets its own answer.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			want := fmt.Sprintf("caller-%d", i)
			if got, err := callTool(t.Context(), up, "echo", map[string]any{"text": want}); err != nil || got != want {
				t.Errorf("echo %d = %q, %v", i, got, err)
			}
		})
	}
	wg.Wait()

	const n = 50
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := callTool(context.Background(), up, "sleep", map[string]any{"ms": 30000})
			errs <- err
		}()
	}
	waitUntil(t, 10*time.Second, func() bool { return statusOf(t, s, spec.Key).InFlight == n }, "50 calls in flight")
	time.Sleep(100 * time.Millisecond) // let the last requests reach the child
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Milliseconds on an idle box; the bound is generous for a shared one, and
	// far below the 30s call timeout.
	deadline := time.After(2 * time.Second)
	for range n {
		select {
		case err := <-errs:
			if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
				t.Errorf("err = %v, want EUNAVAILABLE", err)
			}
		case <-deadline:
			t.Fatal("in-flight calls not failed within 2s of the kill")
		}
	}
	waitUntil(t, 10*time.Second, func() bool { return rec.count(EventReady) == 2 }, "restarted")
	if e := rec.last(EventExit); e.Signal != "killed" {
		t.Errorf("exit event = %+v", e)
	}
	up2, _ := s.Running(spec.Key)
	if got, err := callTool(t.Context(), up2, "echo", map[string]any{"text": "again"}); err != nil || got != "again" {
		t.Errorf("after restart: %q, %v", got, err)
	}
}

func TestGarbageOutput(t *testing.T) {
	t.Run("dropped and counted", func(t *testing.T) {
		s, _ := MustSupervisor(t, Options{})
		spec := testSpec(t, "garbage", "garbage")
		spec.GarbageLimit = 1000
		up := MustReady(t, s, spec)
		for i := range 5 {
			want := fmt.Sprint(i)
			if got, err := callTool(t.Context(), up, "echo", map[string]any{"text": want}); err != nil || got != want {
				t.Fatalf("echo = %q, %v", got, err)
			}
		}
		// initialize + 4 lists + 5 calls, 3 bad lines each.
		if g := statusOf(t, s, spec.Key).Garbage; g != 30 {
			t.Errorf("Garbage = %d, want 30", g)
		}
	})
	t.Run("threshold restarts", func(t *testing.T) {
		s, rec := MustSupervisor(t, Options{})
		spec := testSpec(t, "garbage", "garbage")
		spec.GarbageLimit = 20 // startup writes 15
		up := MustReady(t, s, spec)
		for range 3 {
			_, _ = callTool(t.Context(), up, "echo", map[string]any{"text": "x"})
		}
		waitUntil(t, 10*time.Second, func() bool { return rec.count(EventSpawn) >= 2 }, "restart after garbage")
		if st := statusOf(t, s, spec.Key); !strings.Contains(st.LastError, "invalid lines") && st.Restarts == 0 {
			t.Errorf("status = %+v", st)
		}
	})
}

func TestOversizedLine(t *testing.T) {
	const size = 2 << 20
	t.Run("under the limit is delivered", func(t *testing.T) {
		s, _ := MustSupervisor(t, Options{})
		spec := testSpec(t, "big", fmt.Sprintf("big=%d", size))
		spec.MaxMessageBytes = 4 << 20
		up := MustReady(t, s, spec)
		got, err := callTool(t.Context(), up, "echo", nil)
		if err != nil || len(got) != size {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
	})
	t.Run("over the limit fails the transport and restarts", func(t *testing.T) {
		s, rec := MustSupervisor(t, Options{})
		spec := testSpec(t, "big", fmt.Sprintf("big=%d", size))
		spec.MaxMessageBytes = 1 << 20
		up := MustReady(t, s, spec)
		_, err := callTool(t.Context(), up, "echo", nil)
		if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
			t.Fatalf("err = %v, want EUNAVAILABLE", err)
		}
		waitUntil(t, 10*time.Second, func() bool { return rec.count(EventReady) == 2 }, "restart")
		if st := statusOf(t, s, spec.Key); st.Restarts != 1 {
			t.Errorf("restarts = %d", st.Restarts)
		}
	})
}

func TestHungCallTimesOut(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	spec := testSpec(t, "hung", "hang")
	spec.CallTimeout = 300 * time.Millisecond
	up := MustReady(t, s, spec)
	start := time.Now()
	_, err := callTool(t.Context(), up, "echo", map[string]any{"text": "x"})
	d := time.Since(start)
	if switchboard.ErrorCode(err) != switchboard.ETIMEOUT {
		t.Fatalf("err = %v, want ETIMEOUT", err)
	}
	if d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %s, want about 300ms", d)
	}
	waitUntil(t, 10*time.Second, func() bool { return stderrContains(s, spec.Key, "cancelled ") }, "child logs cancelled")
	if st := statusOf(t, s, spec.Key); st.InFlight != 0 {
		t.Errorf("InFlight = %d after timeout", st.InFlight)
	}
}

func TestQueueBound(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	spec := testSpec(t, "queue", "")
	spec.MaxConcurrent, spec.MaxQueue = 1, 1
	up := MustReady(t, s, spec)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 2 { // one in flight, one queued
		wg.Go(func() { _, _ = callTool(ctx, up, "sleep", map[string]any{"ms": 20000}) })
	}
	waitUntil(t, 10*time.Second, func() bool {
		l := up.(*limited)
		return l.flights.active.Load() == 1 && l.gate.Waiting() == 1
	}, "one in flight and one queued")
	start := time.Now()
	_, err := callTool(t.Context(), up, "echo", map[string]any{"text": "x"})
	if switchboard.ErrorCode(err) != switchboard.EOVERLOADED {
		t.Errorf("err = %v, want EOVERLOADED", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("overload answer took %s", d)
	}
	cancel()
	wg.Wait()
	if got, err := callTool(t.Context(), up, "echo", map[string]any{"text": "x"}); err != nil || got != "x" {
		t.Errorf("after draining: %q, %v", got, err)
	}
}

func TestStderrFloodDoesNotBlockCalls(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "flood", "stderr-flood")
	up := MustReady(t, s, spec)
	start := time.Now()
	for i := range 50 {
		want := fmt.Sprint(i)
		if got, err := callTool(t.Context(), up, "echo", map[string]any{"text": want}); err != nil || got != want {
			t.Fatalf("echo = %q, %v", got, err)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("50 calls took %s under a stderr flood", d)
	}
	if tail := statusOf(t, s, spec.Key).StderrTail; len(tail) != stderrTailLines {
		t.Errorf("stderr tail has %d lines, want %d", len(tail), stderrTailLines)
	}
	waitUntil(t, 10*time.Second, func() bool { return rec.logs.Contains("dropped provider stderr lines") }, "dropped-lines warning")
}

func TestForeignProgressTokens(t *testing.T) {
	var mu sync.Mutex
	var forwarded []string
	s, _ := MustSupervisor(t, Options{OnNotification: func(key switchboard.InstanceKey, method string, params json.RawMessage) {
		mu.Lock()
		defer mu.Unlock()
		forwarded = append(forwarded, key.Provider+" "+method)
	}})
	spec := testSpec(t, "foreign", "foreign-progress")
	up := MustReady(t, s, spec)
	caller := &countingCaller{}
	_, err := up.Call(t.Context(), &switchboard.Request{Method: "tools/call",
		Params:   json.RawMessage(`{"name":"echo","arguments":{"text":"x"}}`),
		Progress: json.RawMessage(`"mine"`), Caller: caller})
	if err != nil {
		t.Fatal(err)
	}
	if n := caller.progress.Load(); n != 0 {
		t.Errorf("foreign progress reached the caller %d times", n)
	}
	waitUntil(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(forwarded) == 3 }, "3 forwarded notifications")
	mu.Lock()
	defer mu.Unlock()
	for _, f := range forwarded {
		if f != "foreign notifications/progress" {
			t.Errorf("forwarded %q", f)
		}
	}
}

func TestEnvIsolation(t *testing.T) {
	t.Setenv("SB_TEST_CANARY", "gateway-secret")
	s, rec := MustSupervisor(t, Options{Redact: func(s string) string { return strings.ReplaceAll(s, "declared-secret", "<secret>") }})
	spec := testSpec(t, "env", "")
	spec.Env["DECLARED"] = "declared-secret"
	up := MustReady(t, s, spec)
	all, err := callTool(t.Context(), up, "env", nil)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"DECLARED": true, "TP_MODE": true, "TP_PIDFILE": true}
	for _, n := range DefaultBaseEnv {
		allowed[n] = true
	}
	for _, kv := range strings.Split(all, "\n") {
		name, _, _ := strings.Cut(kv, "=")
		if !allowed[name] {
			t.Errorf("child sees %s, which is neither base nor declared", name)
		}
	}
	if _, err := callTool(t.Context(), up, "log", map[string]any{"text": "token=declared-secret"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool { return stderrContains(s, spec.Key, "token=<secret>") }, "redacted stderr tail")
	if rec.logs.Contains("declared-secret") {
		t.Error("a declared env value reached the log")
	}
	if strings.Contains(all, "SB_TEST_CANARY") {
		t.Error("gateway canary leaked into the child")
	}
	if !strings.Contains(all, "DECLARED=declared-secret") || !strings.Contains(all, "PATH="+os.Getenv("PATH")) {
		t.Errorf("child env lacks declared or base variables:\n%s", all)
	}
}

func TestResolveCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bin/tool", "local"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "noexec"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command string
		env     []string
		want    string
		wantErr bool
	}{
		{"absolute", filepath.Join(dir, "local"), nil, filepath.Join(dir, "local"), false},
		{"relative to dir", "./local", nil, filepath.Join(dir, "local"), false},
		{"relative subdir", "bin/tool", nil, filepath.Join(dir, "bin/tool"), false},
		{"bare name in the child's PATH", "tool", []string{"PATH=/nonexistent:" + bin}, filepath.Join(bin, "tool"), false},
		{"bare name not in the child's PATH", "tool", []string{"PATH=/usr/bin"}, "", true},
		{"relative PATH entries ignored", "tool", []string{"PATH=bin"}, "", true},
		{"no PATH", "sh", nil, "", true},
		{"not executable", "./noexec", nil, "", true},
		{"missing", "./missing", nil, "", true},
		{"empty", "", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveCommand(tt.command, dir, tt.env)
			if (err != nil) != tt.wantErr || got != tt.want && !tt.wantErr {
				t.Errorf("resolveCommand(%q) = %q, %v; want %q, error %v", tt.command, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestStartConflictsAndRestart(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "conf", "")
	MustReady(t, s, spec)
	if err := s.Start(spec); err != nil {
		t.Errorf("Start with an equal spec: %v", err)
	}
	other := spec
	other.Args = []string{"x"}
	if err := s.Start(other); switchboard.ErrorCode(err) != switchboard.ECONFLICT {
		t.Errorf("Start with a different spec: %v, want ECONFLICT", err)
	}
	if err := s.Start(Spec{Key: spec.Key}); switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Errorf("Start without command: %v", err)
	}
	pid := readPID(t, spec.Env["TP_PIDFILE"])
	_ = os.Remove(spec.Env["TP_PIDFILE"])
	if err := s.Restart(t.Context(), spec.Key); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(t.Context(), spec.Key); err != nil {
		t.Fatal(err)
	}
	if pid2 := readPID(t, spec.Env["TP_PIDFILE"]); pid2 == pid || alive(pid) {
		t.Errorf("Restart kept pid %d", pid)
	}
	if rec.count(EventSpawn) != 2 {
		t.Errorf("spawns = %d", rec.count(EventSpawn))
	}
	if err := s.Restart(t.Context(), switchboard.InstanceKey{Provider: "nope"}); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("Restart unknown: %v", err)
	}
	if err := s.WaitReady(t.Context(), switchboard.InstanceKey{Provider: "nope"}); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("WaitReady unknown: %v", err)
	}
}

func TestSpecEqual(t *testing.T) {
	base := Spec{Key: switchboard.InstanceKey{Provider: "a"}, Command: "x", Args: []string{"1"}, Env: map[string]string{"K": "v"}}
	tests := []struct {
		name   string
		change func(*Spec)
		equal  bool
	}{
		{"same", func(*Spec) {}, true},
		{"explicit defaults", func(s *Spec) {
			s.CallTimeout = gate.DefaultCallTimeout
			s.Backoff.MaxFailures = backoff.DefaultMaxFailures
		}, true},
		{"args", func(s *Spec) { s.Args = []string{"2"} }, false},
		{"env value", func(s *Spec) { s.Env = map[string]string{"K": "w"} }, false},
		{"env added", func(s *Spec) { s.Env = map[string]string{"K": "v", "L": "v"} }, false},
		{"user", func(s *Spec) { s.Key.User = "u" }, false},
		{"limit", func(s *Spec) { s.MaxConcurrent = 3 }, false},
		{"backoff", func(s *Spec) { s.Backoff.Base = time.Hour }, false},
		{"memory limit", func(s *Spec) { s.MaxMemoryBytes = 64 << 20 }, false},
		{"cpu limit", func(s *Spec) { s.MaxCPU = 0.5 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.Env = maps.Clone(base.Env)
			tt.change(&o)
			if got := base.Equal(o); got != tt.equal {
				t.Errorf("Equal = %v, want %v", got, tt.equal)
			}
		})
	}
}

func TestStopAllParallel(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	var pids []int
	for i := range 3 {
		spec := testSpec(t, fmt.Sprintf("p%d", i), "ignore-eof")
		spec.StopGrace = time.Second // each exits on SIGTERM after it
		MustReady(t, s, spec)
		pids = append(pids, readPID(t, spec.Env["TP_PIDFILE"]))
	}
	start := time.Now()
	if err := s.StopAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond { // one after another would take 3s
		t.Errorf("StopAll took %s; not parallel?", d)
	}
	for _, pid := range pids {
		if !groupGone(pid) {
			t.Errorf("group %d alive", pid)
		}
	}
	if len(s.Status()) != 0 {
		t.Error("Status not empty after StopAll")
	}
}

func TestStopContextEndsFirst(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "stubborn", "ignore-eof,ignore-term")
	MustReady(t, s, spec)
	pid := readPID(t, spec.Env["TP_PIDFILE"])
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx, spec.Key); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want deadline exceeded", err)
	}
	if err := s.Start(spec); switchboard.ErrorCode(err) != switchboard.ECONFLICT {
		t.Errorf("Start while stopping = %v, want ECONFLICT", err)
	}
	// The stop carries on in the background and cleans up.
	waitUntil(t, 10*time.Second, func() bool { return !s.Has(spec.Key) }, "instance removed")
	if !groupGone(pid) || rec.count(EventStop) != 1 {
		t.Errorf("group gone %v, stop events %d", groupGone(pid), rec.count(EventStop))
	}
}

// WaitReady must not return before OnCatalog has the instance: a user's first
// tools/list starts their per-user instance and waits for it, then lists the
// mux's tools. A slow OnCatalog makes the old order (Running, then publish)
// fail every time.
func TestWaitReadyAfterCatalogPublished(t *testing.T) {
	var published atomic.Bool
	s, _ := MustSupervisor(t, Options{
		OnCatalog: func(_ switchboard.InstanceKey, up switchboard.Upstream, _ *switchboard.Catalog) {
			if up != nil {
				time.Sleep(100 * time.Millisecond)
				published.Store(true)
			}
		},
	})
	MustReady(t, s, testSpec(t, "slowcat", ""))
	if !published.Load() {
		t.Fatal("WaitReady returned before OnCatalog had the instance's catalog")
	}
}

// callUp calls up with params encoded as JSON.
func callUp(ctx context.Context, up switchboard.Upstream, method string, params any) (json.RawMessage, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	return up.Call(ctx, &switchboard.Request{Method: method, Params: raw})
}

// countingCaller counts the progress notifications relayed to it, each with
// the client's token "mine".
type countingCaller struct{ progress atomic.Int64 }

func (c *countingCaller) Key() string { return "counting" }

func (c *countingCaller) Notify(method string, params json.RawMessage) {
	if method == "notifications/progress" && strings.Contains(string(params), `"progressToken":"mine"`) {
		c.progress.Add(1)
	}
}

func (c *countingCaller) Request(context.Context, string, json.RawMessage) (json.RawMessage, error) {
	return nil, errors.New("not supported")
}

// Options.MaxStarting: no more instances start at once than it allows, the
// rest show as queued and start in their turn, and each one's wait and init
// timeout run from its turn, not from its Start.
func TestStartsTakeTurns(t *testing.T) {
	const maxStarting, n = 2, 6
	s, rec := MustSupervisor(t, Options{MaxStarting: maxStarting})
	var keys []switchboard.InstanceKey
	for i := range n {
		spec := testSpec(t, fmt.Sprintf("turn%d", i), "slow=100ms")
		spec.InitTimeout = 5 * time.Second
		if err := s.Start(spec); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, spec.Key)
	}
	sawQueued := false
	waitUntil(t, 30*time.Second, func() bool {
		running := 0
		for _, st := range s.Status() {
			switch st.State {
			case switchboard.StateQueued:
				sawQueued = true
			case switchboard.StateRunning:
				running++
			}
		}
		return running == n
	}, "every instance running")
	if !sawQueued {
		t.Error("no instance was ever shown queued")
	}
	for _, key := range keys {
		if err := s.WaitReady(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	// Spawn takes a turn and ready gives it back: the events, in order, never
	// show more than maxStarting instances between the two.
	rec.mu.Lock()
	starting, most := 0, 0
	for _, e := range rec.events {
		switch e.Kind {
		case EventSpawn:
			starting++
			most = max(most, starting)
		case EventReady:
			starting--
		}
	}
	rec.mu.Unlock()
	if most != maxStarting {
		t.Errorf("at most %d instances started at once, want %d", most, maxStarting)
	}
}

// An instance stopped while it waits for its turn ends there: it never
// spawns, and its stop does not wait for the instance holding the turn.
func TestStopWhileQueued(t *testing.T) {
	s, rec := MustSupervisor(t, Options{MaxStarting: 1})
	hold := testSpec(t, "hold", "no-init") // keeps the only turn until its init timeout
	if err := s.Start(hold); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool { return rec.count(EventSpawn) == 1 }, "hold spawned")
	queued := testSpec(t, "queued", "")
	if err := s.Start(queued); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool {
		for _, st := range s.Status() {
			if st.Provider == "queued" && st.State == switchboard.StateQueued {
				return true
			}
		}
		return false
	}, "queued shown as queued")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second) // hold's init timeout is 30 s
	defer cancel()
	if err := s.Stop(ctx, queued.Key); err != nil {
		t.Fatalf("Stop of a queued instance: %v", err)
	}
	if s.Has(queued.Key) {
		t.Error("the stopped instance is still supervised")
	}
	if n := rec.count(EventSpawn); n != 1 {
		t.Errorf("%d spawns, want 1: the queued instance spawned", n)
	}
}
