package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/providers"
)

const reloadBase = `
listen: 127.0.0.1:0
data_dir: ./data
log: {level: debug}
roles:
  ab: {providers: [a, b]}
  aonly: {providers: [a]}
providers:
  a:
    command: BIN/echo
  b:
    command: BIN/echo
    args: [one]
`

func (g *gateway) pids(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, s := range g.sup.Status() {
		if s.State == switchboard.StateRunning {
			out[s.Provider] = s.PID
		}
	}
	return out
}

func (g *gateway) writeConfig(t *testing.T, cfg string) {
	t.Helper()
	cfg = strings.ReplaceAll(cfg, "BIN", binDir)
	tmp := filepath.Join(g.dir, ".gateway.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, g.ConfigPath); err != nil { // an editor's atomic save
		t.Fatal(err)
	}
}

func (g *gateway) reload(t *testing.T) ReloadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := g.rel.Reload(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestReloadRestartsOnlyWhatChanged(t *testing.T) {
	g := MustOpenGateway(t, reloadBase)
	g.waitReady(t)
	before := g.pids(t)
	if len(before) != 2 {
		t.Fatalf("running = %v", before)
	}
	c := MustConnect(t, g.URL()+"/mcp", g.admin())

	// An in-flight call on the unchanged provider completes during the reload.
	done := make(chan error, 1)
	go func() {
		_, err := tryCall(c, "a__sleep", map[string]any{"ms": 800})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	g.writeConfig(t, strings.Replace(reloadBase, "args: [one]", "args: [two]", 1)+"\n  c:\n    command: BIN/echo\n")
	res := g.reload(t)
	if !res.OK || strings.Join(res.Restarted, ",") != "b" || strings.Join(res.Added, ",") != "c" {
		t.Fatalf("reload = %+v", res)
	}
	if err := <-done; err != nil {
		t.Errorf("in-flight call on the unchanged provider failed: %v", err)
	}
	g.waitReady(t)
	after := g.pids(t)
	if after["a"] != before["a"] {
		t.Errorf("unchanged provider a restarted: pid %d → %d", before["a"], after["a"])
	}
	if after["b"] == before["b"] || after["b"] == 0 {
		t.Errorf("changed provider b kept pid %d", before["b"])
	}
	if after["c"] == 0 {
		t.Errorf("added provider c not running: %v", after)
	}

	// Policy-only change: nothing restarts.
	g.writeConfig(t, strings.Replace(reloadBase, "args: [one]", "args: [two]", 1)+"\n  c:\n    command: BIN/echo\n    description: now with words\n")
	res = g.reload(t)
	if !res.OK || len(res.Restarted) != 0 || strings.Join(res.PolicyOnly, ",") != "c" {
		t.Fatalf("policy-only reload = %+v", res)
	}
	if now := g.pids(t); now["c"] != after["c"] || now["a"] != after["a"] {
		t.Errorf("policy-only reload restarted something: %v → %v", after, now)
	}

	// Removing a provider leaves no process of its group.
	g.writeConfig(t, reloadBase)
	res = g.reload(t)
	if !res.OK || strings.Join(res.Removed, ",") != "c" {
		t.Fatalf("remove reload = %+v", res)
	}
	waitFor(t, 5*time.Second, func() bool { return syscall.Kill(-after["c"], 0) == syscall.ESRCH }, "provider c's group to be gone")
	if names := toolNames(t, c); strings.Contains(strings.Join(names, ","), "c__") {
		t.Errorf("removed provider's tools still listed: %v", names)
	}
}

func TestInvalidReloadKeepsOldConfig(t *testing.T) {
	g := MustOpenGateway(t, reloadBase)
	g.waitReady(t)
	before := g.pids(t)
	bad := map[string]string{
		"bad yaml":       "providers:\n  a: [unclosed\n",
		"unknown key":    strings.Replace(reloadBase, "args: [one]", "argz: [one]", 1),
		"duplicate":      reloadBase + "  a:\n    command: BIN/echo\n",
		"unknown prefix": strings.Replace(reloadBase, "providers: [a]", "providers: [zzz]", 1),
	}
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			g.writeConfig(t, cfg)
			res := g.reload(t)
			if res.OK || res.Error == "" {
				t.Fatalf("reload = %+v, want failure", res)
			}
			if !strings.Contains(res.Error, "gateway.yaml:") {
				t.Errorf("error %q does not name file:line", res.Error)
			}
			h := g.health()
			if h.Reload.OK || h.Reload.Error == "" {
				t.Errorf("health does not show the failed reload: %+v", h.Reload)
			}
			if now := g.pids(t); now["a"] != before["a"] || now["b"] != before["b"] {
				t.Errorf("a bad reload restarted providers: %v → %v", before, now)
			}
		})
	}
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	if txt, _ := callText(t, c, "b__echo", map[string]any{"text": "still here"}); txt != "still here" {
		t.Errorf("old config not serving: %q", txt)
	}
}

// TestFileWatchAppliesRenameAndSymlinkSwapOnce covers an editor's atomic save
// and a Kubernetes ConfigMap update (..data symlink swap).
func TestFileWatchAppliesRenameAndSymlinkSwapOnce(t *testing.T) {
	t.Run("rename", func(t *testing.T) {
		g := MustOpenGateway(t, reloadBase)
		g.waitReady(t)
		n := g.rel.Applied()
		g.writeConfig(t, reloadBase+"  c:\n    command: BIN/echo\n")
		waitFor(t, 10*time.Second, func() bool { return g.rel.Applied() == n+1 }, "one applied reload")
		time.Sleep(700 * time.Millisecond)
		if got := g.rel.Applied(); got != n+1 {
			t.Errorf("applied %d reloads, want exactly 1", got-n)
		}
	})
	t.Run("symlink swap", func(t *testing.T) {
		dir := t.TempDir()
		write := func(name, cfg string) {
			d := filepath.Join(dir, name)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg = strings.ReplaceAll(cfg, "BIN", binDir)
			cfg = strings.Replace(cfg, "data_dir: ./data", "data_dir: "+filepath.Join(dir, "state"), 1)
			if err := os.WriteFile(filepath.Join(d, "gateway.yaml"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("..v1", reloadBase)
		if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/gateway.yaml", filepath.Join(dir, "gateway.yaml")); err != nil {
			t.Fatal(err)
		}
		g := &gateway{Main: NewMain(filepath.Join(dir, "gateway.yaml")), dir: dir, log: &syncBuffer{}}
		g.Stderr, g.DevKey, g.Getenv = g.log, true, func(string) string { return "" }
		if err := g.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		g.waitReady(t)
		n := g.rel.Applied()
		// Kubernetes: write the new version, point a temp link at it, rename it over ..data.
		write("..v2", reloadBase+"  c:\n    command: BIN/echo\n")
		if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool { return g.rel.Applied() == n+1 }, "one applied reload after the swap")
		waitFor(t, 20*time.Second, func() bool { return g.pids(t)["c"] != 0 }, "provider c")
		// The watch survives the swap: a second swap is seen too.
		write("..v3", reloadBase)
		_ = os.Symlink("..v3", filepath.Join(dir, "..data_tmp"))
		_ = os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
		waitFor(t, 10*time.Second, func() bool { return g.rel.Applied() == n+2 }, "a second applied reload")
	})
}

func TestReloadStormSettlesOnLastValidFile(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	g := MustOpenGateway(t, reloadBase)
	g.waitReady(t)
	baseG := runtime.NumGoroutine()
	baseFD := countFDs()
	var last string
	for i := 0; i < 100; i++ {
		cfg := strings.Replace(reloadBase, "args: [one]", "args: [v"+itoa(i)+"]", 1)
		if i%7 == 3 {
			cfg = "providers: {a: [broken\n"
		} else {
			last = "v" + itoa(i)
		}
		g.writeConfig(t, cfg)
		if i%10 == 0 {
			_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
			go g.rel.Request("admin")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, 30*time.Second, func() bool {
		h := g.health()
		if !h.Ready || !h.Reload.OK {
			return false
		}
		return strings.Contains(strings.Join(g.config().Providers["b"].Args, ","), last)
	}, "the last valid file ("+last+") to be applied")
	res := g.reload(t)
	if !res.OK {
		t.Fatalf("final reload: %+v", res)
	}
	// One live process group per provider.
	st := g.sup.Status()
	count := map[string]int{}
	for _, s := range st {
		count[s.Provider]++
	}
	if count["a"] != 1 || count["b"] != 1 {
		t.Errorf("instances per provider: %v", count)
	}
	var settled atomic.Bool
	waitFor(t, 10*time.Second, func() bool {
		settled.Store(runtime.NumGoroutine() <= baseG+10 && countFDs() <= baseFD+5)
		return settled.Load()
	}, "goroutines and fds to return to baseline")
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestListChangedOnlyToSessionsWhoseViewChanged checks that after a reload a
// session that can see the changed provider gets one list_changed and a
// session that cannot gets none.
func TestListChangedOnlyToSessionsWhoseViewChanged(t *testing.T) {
	g := MustOpenGateway(t, reloadBase)
	g.waitReady(t)
	var abCount, aCount atomic.Int32
	ab := MustConnectListening(t, g.URL()+"/mcp", g.userKey(t, "abby", "ab"))
	ab.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/tools/list_changed" {
			abCount.Add(1)
		}
	})
	a := MustConnectListening(t, g.URL()+"/mcp", g.userKey(t, "ada", "aonly"))
	a.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/tools/list_changed" {
			aCount.Add(1)
		}
	})
	// Notifications arrive on the GET stream; make sure both are listening.
	toolNames(t, ab)
	toolNames(t, a)
	time.Sleep(300 * time.Millisecond)
	// A policy-only change to b: abby's view loses b__sleep, ada's is unchanged.
	g.writeConfig(t, strings.Replace(reloadBase, "args: [one]", "args: [one]\n    tools: {deny: [sleep]}", 1))
	if res := g.reload(t); !res.OK || len(res.Restarted) != 0 {
		t.Fatalf("reload = %+v", res)
	}
	waitFor(t, 10*time.Second, func() bool { return abCount.Load() >= 1 }, "list_changed for the session that sees b")
	time.Sleep(500 * time.Millisecond)
	if n := abCount.Load(); n != 1 {
		t.Errorf("session whose view changed got %d list_changed, want exactly 1", n)
	}
	if n := aCount.Load(); n != 0 {
		t.Errorf("session whose view did not change got %d list_changed", n)
	}
	if names := strings.Join(toolNames(t, ab), ","); strings.Contains(names, "b__sleep") || !strings.Contains(names, "b__echo") {
		t.Errorf("abby sees %s", names)
	}
}

// TestSlowInPlaceWriterNeverStopsProviders: a process that writes gateway.yaml
// in place and pauses (0.6 s, twice) where the part written so far is valid
// YAML must not get that part applied: the first prefix lacks provider b
// (a removal), the second lacks b's args (a restart). Providers keep their
// pids throughout, and the finished file is applied exactly once.
func TestSlowInPlaceWriterNeverStopsProviders(t *testing.T) {
	const base = `
listen: 127.0.0.1:0
data_dir: ./data
log: {level: debug}
providers:
  a:
    command: BIN/echo
  b:
    command: BIN/echo
    args: [one]
`
	g := MustOpenGateway(t, base)
	g.waitReady(t)
	before := g.pids(t)
	if before["a"] == 0 || before["b"] == 0 {
		t.Fatalf("running = %v", before)
	}
	n := g.rel.Applied()
	final := strings.ReplaceAll(base+"  c:\n    command: BIN/echo\n", "BIN", binDir)
	cut1 := strings.Index(final, "  b:\n")
	cut2 := strings.Index(final, "    args: [one]\n")
	for _, prefix := range []string{final[:cut1], final[:cut2]} { // both are valid configs
		if _, err := providers.Parse([]byte(prefix), g.ConfigPath, ""); err != nil {
			t.Fatalf("test setup: the prefix must be valid YAML: %v", err)
		}
	}

	// A real writer: one open, writes with pauses, one close.
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(g.ConfigPath, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		for _, part := range []string{final[:cut1], final[cut1:cut2], final[cut2:]} {
			if _, err := f.WriteString(part); err != nil {
				done <- err
				return
			}
			time.Sleep(600 * time.Millisecond)
		}
		done <- nil
	}()

	// Sample the providers while the writer works and until the final file is applied.
	check := func() {
		t.Helper()
		now := g.pids(t)
		if now["a"] != before["a"] || now["b"] != before["b"] {
			t.Fatalf("a provider was stopped or restarted while the file was being written: %v → %v\n%s", before, now, g.log.String())
		}
	}
	writing := true
	deadline := time.Now().Add(20 * time.Second)
	for g.pids(t)["c"] == 0 {
		check()
		if writing {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				writing = false
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the finished file was not applied (provider c not running)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	check()
	time.Sleep(providers.WatchSettle + 500*time.Millisecond)
	check()
	if got := g.rel.Applied() - n; got != 1 {
		t.Errorf("applied %d reloads, want exactly 1 (the finished file)", got)
	}
	if h := g.config().Hash; h != providers.FileHash(g.ConfigPath) {
		t.Errorf("the config in force is not the finished file")
	}
}
