//go:build linux

package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// trackedGateway is a running trackGateway.
type trackedGateway struct {
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Reader
	provider int
	foreign  int
	tracking limitKind
	pidFile  string
	log      *syncBuffer
}

// startTrackGateway starts a trackGateway with the given extra environment.
func startTrackGateway(t *testing.T, mode string, env ...string) *trackedGateway {
	t.Helper()
	g := &trackedGateway{pidFile: filepath.Join(lingeringTempDir(t), "pid"), log: &syncBuffer{}}
	g.cmd = exec.Command(os.Args[0], "-test.run=^$")
	g.cmd.Env = append(os.Environ(), trackGatewayEnv+"=1", "SB_TP_BIN="+tpBin, "SB_TP_PIDFILE="+g.pidFile, "SB_TP_MODE="+mode, "GORACE=atexit_sleep_ms=0")
	g.cmd.Env = append(g.cmd.Env, env...)
	g.cmd.Stderr = g.log
	var err error
	if g.in, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.out = bufio.NewReader(stdout)
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.log.String())
		}
	})
	f := strings.Fields(g.expect(t, "ready"))
	if len(f) < 4 {
		t.Fatalf("ready line %q", f)
	}
	g.provider, _ = strconv.Atoi(f[1])
	g.foreign, _ = strconv.Atoi(f[2])
	g.tracking = limitKind(strings.Join(f[3:], " "))
	killLaterPID(t, g.foreign)
	return g
}

// lingeringTempDir is t.TempDir for a directory that processes of the test
// may still write to while the test ends: the cleanups kill a restarted
// provider while its gateway lives, the gateway restarts it, and that one
// (or its daemon, until the reaper gets it) writes its pid file. Removal is
// retried for a few seconds instead of failing on "directory not empty".
func lingeringTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbtrack")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered first: runs after every other cleanup
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := os.RemoveAll(dir)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("removing %s: %v", dir, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return dir
}

// expect reads a line from the gateway and fails unless it starts with word.
func (g *trackedGateway) expect(t *testing.T, word string) string {
	t.Helper()
	line, err := g.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, word) {
		t.Fatalf("gateway said %q (%v), want %s; log:\n%s", line, err, word, g.log.String())
	}
	return strings.TrimSpace(line)
}

// do sends a command and waits for its answer.
func (g *trackedGateway) do(t *testing.T, cmd, answer string) string {
	t.Helper()
	if _, err := fmt.Fprintln(g.in, cmd); err != nil {
		t.Fatal(err)
	}
	return g.expect(t, answer)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func killLaterPID(t *testing.T, pid int) {
	t.Cleanup(func() {
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// gone reports whether pid no longer exists at all: kill(pid, 0) is ESRCH,
// so it is dead and was reaped.
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// TestTrackedDaemonDies: a provider without limits double-forks a daemon
// that calls setsid (leaving the provider's process group and session) and
// ignores SIGTERM, and its parent exits, so that it is reparented. Whatever
// ends the provider (Stop, a crash, the gateway's graceful exit, the gateway
// SIGKILLed), the daemon must be gone: kill(pid, 0) is ESRCH. Both tracking
// modes: a cgroup per provider (where this machine allows one) and the
// subreaper way. In the subreaper mode the provider is the daemon's parent,
// and the gateway never touches a child of its own that is not a provider's.
//
// Under the cgroup mode the daemon, an orphan, is reaped by init: this
// sandbox's PID 1 reaps only every 2 seconds, hence the deadline.
func TestTrackedDaemonDies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs gateways as child processes")
	}
	for _, mode := range []string{"auto", "subreaper"} {
		for _, end := range []string{"stop", "crash", "exit", "sigkill"} {
			t.Run(mode+"/"+end, func(t *testing.T) {
				var env []string
				if mode == "subreaper" {
					env = append(env, trackingEnv+"=subreaper")
				}
				g := startTrackGateway(t, "daemon", env...)
				switch {
				case mode == "subreaper" && g.tracking != trackSubreaper:
					t.Fatalf("tracking = %s, want subreaper", g.tracking)
				case mode == "auto" && g.tracking != trackCgroup1 && g.tracking != trackCgroup2:
					t.Skipf("no cgroup tracking here (%s)", g.tracking)
				}
				daemon := readPID(t, g.pidFile+".daemon")
				killLaterPID(t, daemon)
				st, err := readProcStat(daemon)
				if err != nil || st.sid == g.provider || st.pgid == g.provider {
					t.Fatalf("daemon %d: %+v, %v: still in the provider's session or group", daemon, st, err)
				}
				if mode == "subreaper" && st.ppid != g.provider {
					t.Errorf("daemon's parent = %d, want the provider %d (a child subreaper)", st.ppid, g.provider)
				}
				start := time.Now()
				switch end {
				case "stop":
					g.do(t, "stop", "stopped")
				case "crash":
					f := strings.Fields(g.do(t, "crash", "restarted"))
					if next, _ := strconv.Atoi(f[1]); next > 0 {
						killLaterPID(t, next)
					}
					if again := readPID(t, g.pidFile+".daemon"); again != daemon {
						killLaterPID(t, again)
					}
				case "exit":
					_, _ = fmt.Fprintln(g.in, "exit")
					if err := g.cmd.Wait(); err != nil {
						t.Errorf("gateway exit: %v", err)
					}
				case "sigkill":
					_ = g.cmd.Process.Kill()
					_ = g.cmd.Wait()
				}
				waitUntil(t, 5*time.Second, func() bool { return gone(daemon) }, fmt.Sprintf("daemon %d to be gone after %s", daemon, end))
				t.Logf("daemon gone %v after %s", time.Since(start).Round(time.Millisecond), end)
				if end == "sigkill" {
					waitUntil(t, 5*time.Second, func() bool { return !alive(g.provider) }, "the provider to die")
				}
				if end == "stop" || end == "crash" {
					if !alive(g.foreign) {
						t.Errorf("the gateway's own child %d was killed", g.foreign)
					}
				}
			})
		}
	}
}

// TestProviderOutlivesTheKilledGatewaysPipes: in the subreaper mode a
// provider that exits at EOF on its stdin, as MCP servers do, must not learn
// of the gateway's death through its pipes before the reaper has killed its
// subtree: once it has exited, its orphans are reparented past the dead
// gateway, out of the subtree the reaper walks. Its parent-death SIGSTOP
// usually wins that race, but not always under load. The test makes the
// losing order certain: it keeps the reaper from seeing the gateway die by
// holding copies (pidfd_getfd) of the gateway's descriptors (but the
// provider's pipes), SIGKILLs the gateway, cancels the provider's SIGSTOP
// with SIGCONT, gives it a second to exit, and only then closes the copies.
// The provider's setsid daemon must die.
func TestProviderOutlivesTheKilledGatewaysPipes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway as a child process")
	}
	g := startTrackGateway(t, "daemon", trackingEnv+"=subreaper")
	if g.tracking != trackSubreaper {
		t.Fatalf("tracking = %s, want subreaper", g.tracking)
	}
	daemon := readPID(t, g.pidFile+".daemon")
	killLaterPID(t, daemon)
	killLaterPID(t, g.provider)
	release := MustHoldFDs(t, g.cmd.Process.Pid, fdLinks(g.provider))

	_ = g.cmd.Process.Kill()
	_ = g.cmd.Wait() // every thread of it is gone: the parent-death signal was sent
	if err := syscall.Kill(g.provider, syscall.SIGCONT); err != nil {
		t.Fatalf("continuing the provider: %v", err)
	}
	for deadline := time.Now().Add(time.Second); alive(g.provider) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("provider alive a second after the gateway died: %v", alive(g.provider))
	release() // the reaper sees EOF now
	// Dead is enough: an orphan may wait as a zombie for a slow init.
	waitUntil(t, 5*time.Second, func() bool { return !alive(daemon) }, fmt.Sprintf("daemon %d to die", daemon))
	waitUntil(t, 5*time.Second, func() bool { return !alive(g.provider) }, "the provider to die")
}

// fdLinks returns what the descriptors of pid point to ("pipe:[123]", ...).
func fdLinks(pid int) map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil {
			out[l] = true
		}
	}
	return out
}

// MustHoldFDs copies into this process (pidfd_getfd) every descriptor of pid
// but its standard streams that points to nothing in except, and returns a function that closes the
// copies (once; the end of the test calls it too). It skips the test where
// the kernel cannot (before Linux 5.6).
func MustHoldFDs(tb testing.TB, pid int, except map[string]bool) (release func()) {
	tb.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		tb.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var held []int
	release = sync.OnceFunc(func() {
		for _, fd := range held {
			_ = unix.Close(fd)
		}
	})
	tb.Cleanup(release)
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err != nil || except[l] || n <= 2 {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if errors.Is(err, unix.ENOSYS) {
			tb.Skipf("pidfd_getfd: %v", err)
		}
		if err == nil {
			held = append(held, fd)
		}
	}
	if len(held) == 0 {
		tb.Fatalf("no descriptor of %d copied", pid)
	}
	return release
}

// TestTrampolineSetsDataLimit: in the subreaper mode the trampoline, not a
// prlimit after the start, sets RLIMIT_DATA, so the provider never runs
// without it.
func TestTrampolineSetsDataLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway as a child process")
	}
	const limit = 256 << 20
	g := startTrackGateway(t, "", trackingEnv+"=subreaper", "SB_LIMITS=rlimit", "SB_MEMORY="+strconv.Itoa(limit))
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", g.provider))
	if err != nil {
		t.Fatal(err)
	}
	var soft, hard string
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max data size"); ok {
			if f := strings.Fields(rest); len(f) >= 2 {
				soft, hard = f[0], f[1]
			}
		}
	}
	if want := strconv.Itoa(limit); soft != want || hard != want {
		t.Errorf("provider's data limit = %s/%s, want %s", soft, hard, want)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", g.provider))
	if !strings.Contains(string(cmdline), "testprovider") || strings.Contains(string(cmdline), execArg) {
		t.Errorf("provider's command line %q: the trampoline did not exec it", cmdline)
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", g.provider))
	if strings.Contains(string(env), execEnv) {
		t.Errorf("the trampoline's marker leaked into the provider's environment")
	}
	_, _ = fmt.Fprintln(g.in, "exit")
	if err := g.cmd.Wait(); err != nil {
		t.Errorf("gateway exit: %v", err)
	}
}

// TestTrackingPlacementFailureIsNotFatal: a provider without limits whose
// tracking cgroup cannot take it still runs (tracked by its process group),
// with a warning; limits, in contrast, are never skipped (see
// TestLimitsSetupFailureIsAStartFailure).
func TestTrackingPlacementFailureIsNotFatal(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	base := t.TempDir() // a plain directory: groups can be "created", not joined
	s.limits.track.detect = func() trackMode { return trackMode{kind: trackCgroup1, base: base} }
	spec := testSpec(t, "unplaced", "")
	MustReady(t, s, spec)
	if !rec.logs.Contains("placing the provider in its cgroup failed") {
		t.Error("the failed placement was not logged")
	}
	if err := s.Stop(t.Context(), spec.Key); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Errorf("left in %s: %v", base, entries)
	}
}

// reaperPIDs lists this process's live reaper helpers.
func reaperPIDs() []int { return reapersOf(os.Getpid()) }

// reapersOf lists the live reaper helpers that are children of parent.
func reapersOf(parent int) []int {
	var out []int
	for _, pid := range childrenOf(parent) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(b), reaperArg) && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// TestReaperRestartsWhenItDies: a reaper helper that dies is replaced at
// once with every registration, so that a gateway killed afterwards still
// takes its providers' processes with it.
func TestReaperRestartsWhenItDies(t *testing.T) {
	sleeper := exec.Command("sleep", "100")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	r := newReaper(zerolog.New(zerolog.NewTestWriter(t)))
	t.Cleanup(r.close)
	r.add("+" + strconv.Itoa(sleeper.Process.Pid))
	var first []int
	waitUntil(t, 5*time.Second, func() bool { first = reaperPIDs(); return len(first) == 1 }, "the reaper to run")
	if err := syscall.Kill(first[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, func() bool {
		now := reaperPIDs()
		return len(now) == 1 && now[0] != first[0]
	}, "a new reaper")
	r.close() // as the gateway dying would: EOF to the new one
	waitUntil(t, 5*time.Second, func() bool { return !alive(sleeper.Process.Pid) }, "the registered group to be killed by the new reaper")
}

// TestSubreaperStopClosesStdin: the pipes the reaper holds for a provider
// in the subreaper mode are released before a graceful stop closes its
// stdin, so the provider sees EOF and exits by itself, with no SIGTERM
// (StopGrace is long enough that only an EOF that never comes could let it
// run out).
func TestSubreaperStopClosesStdin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a gateway as a child process")
	}
	g := startTrackGateway(t, "", trackingEnv+"=subreaper", "SB_STOP_GRACE=10s")
	if g.tracking != trackSubreaper {
		t.Fatalf("tracking = %s, want subreaper", g.tracking)
	}
	killLaterPID(t, g.provider)
	g.do(t, "stop", "stopped")
	// The gateway's stderr reaches g.log through a copying goroutine, which
	// can lag behind the "stopped" answer on stdout.
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(g.log.String(), "provider stopped") }, "the stop to be logged")
	log := g.log.String()
	if strings.Contains(log, "sending SIGTERM") || !strings.Contains(log, `"exit_code":0,"signal":""`) {
		t.Errorf("the provider did not exit by itself at EOF; log:\n%s", log)
	}
}

// TestReaperHoldsPipesUntilReleased: the pipes given to hold stay open in
// the reaper helper after the gateway closed its own ends, also in a helper
// restarted after the first died, and close when released: then the reader
// sees EOF.
func TestReaperHoldsPipesUntilReleased(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	inode, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", pr.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	r := newReaper(zerolog.New(zerolog.NewTestWriter(t)))
	t.Cleanup(r.close)
	const pid = 1 << 30 // a key only: holding kills nothing
	if err := r.hold(pid, pw); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	holding := func(reaper int) bool { return fdLinks(reaper)[inode] }
	var first []int
	waitUntil(t, 5*time.Second, func() bool { first = reaperPIDs(); return len(first) == 1 && holding(first[0]) }, "the reaper to hold the pipe")

	if err := syscall.Kill(first[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, func() bool {
		now := reaperPIDs()
		return len(now) == 1 && now[0] != first[0] && holding(now[0])
	}, "a new reaper holding the pipe")

	r.release(pid)
	r.release(pid) // idempotent
	_ = pr.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := pr.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read after release = %d, %v; want EOF", n, err)
	}
}

// TestCgroup2Tracking runs the cgroup v2 tracking path on the v2 hierarchy
// of a hybrid host (/sys/fs/cgroup/unified): a fake "own" group holding a
// process, where tracking needs no controller and moves nothing; a child
// cloned into its group there with a setsid daemon; and the kill of the
// group (cgroup.kill), daemon included.
func TestCgroup2Tracking(t *testing.T) {
	const unified = "/sys/fs/cgroup/unified"
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || !isCgroup2Mount(parseMountinfo(string(info)), unified) {
		t.Skip("no cgroup v2 hierarchy at " + unified)
	}
	own := filepath.Join(unified, fmt.Sprintf("sbtrack-%d", os.Getpid()))
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Skipf("cannot create a v2 group: %v", err)
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(own, cgroupSubtree)
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
		for _, d := range []string{base, own} {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				t.Errorf("removing %s: %v", d, err)
			}
		}
	})
	if err := writeCgroupFile(own, "cgroup.procs", strconv.Itoa(sleeper.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	got, err := makeBase2(own)
	if err != nil || got != base {
		t.Fatalf("makeBase2 = %q, %v; want %q", got, err, base)
	}
	if pids, _ := readPIDs(filepath.Join(own, "cgroup.procs")); len(pids) != 1 || pids[0] != sleeper.Process.Pid {
		t.Errorf("own group's processes = %v: tracking must not move them", pids)
	}
	cg, err := newCgroup(mechanism{}, trackCgroup2, base, "tracked.1.1", resourceLimits{}, true)
	if err != nil || cg == nil {
		t.Fatalf("newCgroup = %v, %v", cg, err)
	}
	e := &enforcement{cg: cg, trackOnly: true}
	pidFile := filepath.Join(t.TempDir(), "pid")
	pl := e.placement(syscall.SIGKILL)
	p, err := startProcess(tpBin, []string{"testprovider"}, []string{"TP_MODE=daemon", "TP_PIDFILE=" + pidFile}, "", pl)
	cg.closeDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = killGroup(p.pid, syscall.SIGKILL); <-p.exited; p.closePipes(); _ = cg.remove() })
	if pl.cloneErr != nil || e.placeErr != nil {
		t.Errorf("clone error %v, place error %v", pl.cloneErr, e.placeErr)
	}
	daemon := readPID(t, pidFile+".daemon")
	killLaterPID(t, daemon)
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", daemon))
	if !strings.Contains(string(b), "0::"+strings.TrimPrefix(cg.dirs[0], unified)+"\n") {
		t.Fatalf("daemon's cgroups:\n%s\nwant %s", b, cg.dirs[0])
	}
	_ = killGroup(p.pid, syscall.SIGKILL)
	<-p.exited
	if n := e.killRest(); n < 1 {
		t.Errorf("killRest killed %d, want the daemon at least", n)
	}
	waitUntil(t, 5*time.Second, func() bool { return !alive(daemon) }, "the daemon to die")
	if err := cg.remove(); err != nil || isDir(cg.dirs[0]) {
		t.Errorf("remove = %v", err)
	}
}
