package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trackingModes are the two ways the gateway tracks provider processes: the
// one it detects here (a cgroup per provider on this machine) and the
// fallback for hosts without a usable cgroup, forced by the environment.
var trackingModes = []struct {
	name string
	env  []string
}{
	{"auto", nil},
	{"subreaper", []string{"SWITCHBOARD_PROCESS_TRACKING=subreaper"}},
}

// gone reports whether pid no longer exists (kill(pid, 0) is ESRCH): dead and
// reaped.
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// descendantsOf lists every live or zombie process below pid.
func descendantsOf(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		ents, _ := os.ReadDir("/proc")
		p := queue[0]
		queue = queue[1:]
		for _, e := range ents {
			var c int
			if _, err := fmt.Sscan(e.Name(), &c); err != nil {
				continue
			}
			if st, err := readStat(c); err == nil && st.ppid == p && !slices.Contains(out, c) {
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// TestSetsidDaemonDiesWithItsProvider: a provider without limits forks a
// child that calls setsid (a new session and process group) and forks a
// daemon that ignores SIGTERM, then exits, so that the daemon is orphaned.
// Whether the provider is removed by a reload, or the gateway is stopped
// with SIGTERM or killed with SIGKILL, the daemon must be gone (kill(pid, 0)
// is ESRCH) within a few seconds, in both tracking modes. Before process
// tracking it survived all three.
func TestSetsidDaemonDiesWithItsProvider(t *testing.T) {
	t.Parallel()
	const config = `
providers:
  daemon:
    command: $BIN/testprovider
    env: {TP_MODE: "daemon,ignore-term", TP_PIDFILE: $DIR/daemon.pid}
  echo:
    command: $BIN/echo
`
	for _, mode := range trackingModes {
		for _, end := range []string{"reload", "SIGTERM", "SIGKILL"} {
			t.Run(mode.name+"/"+end, func(t *testing.T) {
				t.Parallel()
				g := startGateway(t, config, underInit(), withEnv(mode.env...))
				provider := g.waitRunning("daemon", "echo")["daemon"].PID
				daemon := readPID(t, filepath.Join(g.dir, "daemon.pid.daemon"))
				killLater(t, daemon)
				st, err := readStat(daemon)
				if err != nil || st.pgid == provider || !alive(daemon) {
					t.Fatalf("daemon %d: %+v, %v; want it alive outside the provider's group %d", daemon, st, err, provider)
				}
				t.Logf("daemon %d: parent %d, group %d (provider %d)", daemon, st.ppid, st.pgid, provider)
				start := time.Now()
				switch end {
				case "reload":
					cfg := string(must(os.ReadFile(g.cfg)))
					i, j := strings.Index(cfg, "  daemon:\n"), strings.Index(cfg, "  echo:\n")
					if i < 0 || j < i {
						t.Fatalf("unexpected config:\n%s", cfg)
					}
					if err := os.WriteFile(g.cfg, []byte(cfg[:i]+cfg[j:]), 0o600); err != nil {
						t.Fatal(err)
					}
					_ = syscall.Kill(g.pid(), syscall.SIGHUP)
					waitFor(t, 20*time.Second, "the reload to remove the provider", func() bool { return g.provider("daemon").PID == 0 })
				case "SIGTERM":
					if !g.stop(syscall.SIGTERM, 30*time.Second) {
						t.Fatal("gateway still running 30s after SIGTERM")
					}
				case "SIGKILL":
					_ = syscall.Kill(g.pid(), syscall.SIGKILL)
				}
				waitFor(t, 5*time.Second, fmt.Sprintf("daemon %d to be gone after %s", daemon, end), func() bool { return gone(daemon) })
				t.Logf("daemon gone %v after %s", time.Since(start).Round(time.Millisecond), end)
				if !gone(provider) && end != "reload" {
					waitFor(t, 5*time.Second, "the provider to be gone", func() bool { return gone(provider) })
				}
			})
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestNoProviderProcessSurvivesAKilledGatewayBy1s: the gateway is SIGKILLed
// with providers of every shape running: one that double-forked a setsid
// daemon ignoring SIGTERM, one that ignores EOF and SIGTERM with a grandchild
// in its group, an npx-style shell that runs the provider as its child (sh →
// testprovider → sleep), and, when Node is installed, a Node server (npm's
// @modelcontextprotocol/server-memory) directly and under a shell (sh →
// node). Every one of those processes, leaders and descendants, must be gone
// (kill(pid, 0) is ESRCH) within 1 s. The gateway runs under an init that
// reaps at once (testdata/subreaper), as systemd or tini do; the sandbox's
// own PID 1 reaps only every 2 s, which is what made this take 2–3 s when
// measured with kill(pid, 0) before. Several runs per tracking mode; the
// median and the maximum are logged.
func TestNoProviderProcessSurvivesAKilledGatewayBy1s(t *testing.T) {
	if testing.Short() {
		t.Skip("kills ten gateways; skipped with -short")
	}
	t.Parallel()
	config := `
providers:
  daemon:
    command: $BIN/testprovider
    env: {TP_MODE: "daemon,ignore-term", TP_PIDFILE: $DIR/daemon.pid}
  stubborn:
    command: $BIN/testprovider
    env: {TP_MODE: "ignore-eof,ignore-term,fork", TP_PIDFILE: $DIR/stubborn.pid}
  npx:
    command: /bin/sh
    args: ["-c", "$BIN/testprovider; exit $?"]
    env: {TP_MODE: fork, TP_PIDFILE: $DIR/npx.pid}
`
	_, nodeErr := exec.LookPath("node")
	_, memErr := os.Stat(filepath.Join(npmBin, "mcp-server-memory"))
	withNode := nodeErr == nil && memErr == nil
	if withNode {
		config += `
  node:
    command: $NPM/mcp-server-memory
    env: {MEMORY_FILE_PATH: $DIR/memory.jsonl}
  npxnode:
    command: /bin/sh
    args: ["-c", "$NPM/mcp-server-memory; exit $?"]
    env: {MEMORY_FILE_PATH: $DIR/memory2.jsonl}
`
	} else {
		t.Log("node or e2e/node_modules missing (make npm): running without the Node providers")
	}
	const runs = 5
	for _, mode := range trackingModes {
		t.Run(mode.name, func(t *testing.T) {
			var worst []time.Duration
			for run := range runs {
				worst = append(worst, killGatewayAndWait(t, config, withNode, mode.env, run))
			}
			sorted := slices.Clone(worst)
			slices.Sort(sorted)
			t.Logf("%s: every provider process gone after SIGKILL: median %v, max %v over %d runs (%v)",
				mode.name, sorted[len(sorted)/2], sorted[len(sorted)-1], runs, worst)
			if sorted[len(sorted)-1] > time.Second {
				t.Errorf("a provider process outlived the gateway by %v (> 1s)", sorted[len(sorted)-1])
			}
		})
	}
}

// killGatewayAndWait runs one gateway, SIGKILLs it and returns how long
// the last of its provider processes took to be gone (at most 5 s).
func killGatewayAndWait(t *testing.T, config string, withNode bool, env []string, run int) time.Duration {
	t.Helper()
	names := []string{"daemon", "stubborn", "npx"}
	if withNode {
		names = append(names, "node", "npxnode")
	}
	g := startGateway(t, config, underInit(), withEnv(env...))
	running := g.waitRunning(names...)
	daemon := readPID(t, filepath.Join(g.dir, "daemon.pid.daemon"))
	readPID(t, filepath.Join(g.dir, "stubborn.pid.grandchild"))
	readPID(t, filepath.Join(g.dir, "npx.pid.grandchild"))
	pids := map[int]string{daemon: "daemon's setsid daemon"}
	for _, name := range names {
		leader := running[name].PID
		pids[leader] = name
		kids := descendantsOf(leader)
		if name == "npx" || name == "npxnode" || name == "stubborn" {
			if len(kids) == 0 {
				t.Fatalf("provider %s (%s) has no child", name, cmdline(leader))
			}
		}
		for _, k := range kids {
			pids[k] = name + " → " + cmdline(k)
		}
	}
	for pid := range pids {
		killLater(t, pid)
	}
	killed := time.Now()
	if err := syscall.Kill(g.pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	goneAt := map[int]time.Duration{}
	for len(goneAt) < len(pids) && time.Since(killed) < 5*time.Second {
		for pid := range pids {
			if _, ok := goneAt[pid]; !ok && gone(pid) {
				goneAt[pid] = time.Since(killed)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	var last time.Duration
	var report []string
	for pid, what := range pids {
		d, ok := goneAt[pid]
		if !ok {
			d = 5 * time.Second
			t.Errorf("run %d: %s (pid %d) still there 5s after the gateway was SIGKILLed", run, what, pid)
		}
		last = max(last, d)
		report = append(report, fmt.Sprintf("%s %d: %v", what, pid, d.Round(time.Millisecond)))
	}
	slices.Sort(report)
	t.Logf("run %d: %d processes, last gone after %v\n  %s", run, len(pids), last.Round(time.Millisecond), strings.Join(report, "\n  "))
	return last
}
