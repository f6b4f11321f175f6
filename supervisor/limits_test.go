//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

func TestLimitsDescribe(t *testing.T) {
	v1 := mechanism{kind: kindCgroup1, memBase: "/m", cpuBase: "/c"}
	v1NoCPU := mechanism{kind: kindCgroup1, memBase: "/m"}
	v2 := mechanism{kind: kindCgroup2, memBase: "/b", cpuBase: "/b"}
	rl := mechanism{kind: kindRlimit}
	none := mechanism{kind: kindNone}
	tests := []struct {
		m    mechanism
		r    resourceLimits
		want string
	}{
		{v1, resourceLimits{}, ""},
		{rl, resourceLimits{}, ""},
		{v1, resourceLimits{memory: 64 << 20, cpu: 0.5}, "cgroup v1: memory 64 MiB, cpu 0.50"},
		{v1, resourceLimits{memory: 64 << 20}, "cgroup v1: memory 64 MiB"},
		{v1, resourceLimits{cpu: 2}, "cgroup v1: cpu 2.00"},
		{v1NoCPU, resourceLimits{memory: 1 << 30, cpu: 0.25}, "cgroup v1: memory 1 GiB (cpu 0.25 not enforced: no cpu controller)"},
		{v2, resourceLimits{memory: 3 << 19, cpu: 1.5}, "cgroup v2: memory 1.5 MiB, cpu 1.50"},
		{rl, resourceLimits{memory: 64 << 20}, "rlimit: data 64 MiB (no cpu limit)"},
		{rl, resourceLimits{memory: 64 << 20, cpu: 0.5}, "rlimit: data 64 MiB (cpu 0.50 not enforced)"},
		{rl, resourceLimits{cpu: 0.5}, "rlimit: (cpu 0.50 not enforced)"},
		{none, resourceLimits{memory: 1000, cpu: 0.5}, "none: (memory 1000 bytes not enforced; cpu 0.50 not enforced)"},
	}
	for _, tt := range tests {
		if got := tt.m.describe(tt.r); got != tt.want {
			t.Errorf("%s %+v: describe = %q, want %q", tt.m.kind, tt.r, got, tt.want)
		}
	}
}

func TestCgroupNames(t *testing.T) {
	tests := []struct {
		key  switchboard.InstanceKey
		want string
	}{
		{switchboard.InstanceKey{Provider: "notes"}, "notes.42.7"},
		{switchboard.InstanceKey{Provider: "notes", User: "alice@example.com"}, "notes@alice@example.com.42.7"},
		{switchboard.InstanceKey{Provider: "../x y/z"}, "p.._x_y_z.42.7"},
		{switchboard.InstanceKey{Provider: "é"}, "__.42.7"},
	}
	for _, tt := range tests {
		got := cgroupName(tt.key, 42, 7)
		if got != tt.want {
			t.Errorf("cgroupName(%v) = %q, want %q", tt.key, got, tt.want)
		}
		if pid, ok := cgroupOwner(got); !ok || pid != 42 {
			t.Errorf("cgroupOwner(%q) = %d, %v", got, pid, ok)
		}
	}
	long := cgroupName(switchboard.InstanceKey{Provider: strings.Repeat("a", 300)}, 1, 1)
	if len(long) > 200 {
		t.Errorf("long name has %d bytes", len(long))
	}
	for _, bad := range []string{"notes", "notes.x.1", "notes.1.", "gateway", ".1.2x"} {
		if _, ok := cgroupOwner(bad); ok {
			t.Errorf("cgroupOwner(%q) accepted", bad)
		}
	}
}

func TestParseCgroupLayout(t *testing.T) {
	const hybridInfo = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/with\040space rw - ext4 /dev/sda1 rw
`
	const hybridSelf = `9:name=systemd:/
4:memory:/docker/abc/sub
2:cpu,cpuacct:/
0::/
`
	mounts := parseMountinfo(hybridInfo)
	if len(mounts) != 5 || mounts[4].point != "/mnt/with space" {
		t.Fatalf("mounts = %+v", mounts)
	}
	if isCgroup2Mount(mounts, "/sys/fs/cgroup") || !isCgroup2Mount(mounts, "/sys/fs/cgroup/unified") {
		t.Error("isCgroup2Mount wrong on a hybrid layout")
	}
	groups := parseProcCgroup(hybridSelf)
	if groups["memory"] != "/docker/abc/sub" || groups["cpuacct"] != "/" || groups[""] != "/" || groups["name=systemd"] != "/" {
		t.Errorf("groups = %v", groups)
	}
	for _, tt := range []struct{ ctrl, want string }{
		{"memory", "/sys/fs/cgroup/memory/sub"}, // the mount shows /docker/abc as its root
		{"cpu", "/sys/fs/cgroup/cpu,cpuacct"},
		{"pids", ""},
	} {
		got, err := ownCgroup1(mounts, groups, tt.ctrl)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("ownCgroup1(%s) = %q, %v; want %q", tt.ctrl, got, err, tt.want)
		}
	}
	// A group outside the mount's root is not reachable through it.
	if got, err := ownCgroup1(mounts, map[string]string{"memory": "/other"}, "memory"); err == nil {
		t.Errorf("ownCgroup1 outside the mount root = %q", got)
	}

	const v2Info = `25 1 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	if !isCgroup2Mount(parseMountinfo(v2Info), "/sys/fs/cgroup") {
		t.Error("pure v2 not recognized")
	}
	if g := parseProcCgroup("0::/system.slice/switchboard.service\n"); g[""] != "/system.slice/switchboard.service" {
		t.Errorf("v2 self = %v", g)
	}
}

func TestStartRejectsBadLimits(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	for _, change := range []func(*Spec){
		func(sp *Spec) { sp.MaxMemoryBytes = -1 },
		func(sp *Spec) { sp.MaxCPU = -0.5 },
		func(sp *Spec) { sp.MaxCPU = math.NaN() },
		func(sp *Spec) { sp.MaxCPU = math.Inf(1) },
		func(sp *Spec) { sp.MaxCPU = 5000 },
	} {
		spec := testSpec(t, "bad", "")
		change(&spec)
		if err := s.Start(spec); switchboard.ErrorCode(err) != switchboard.EINVALID {
			t.Errorf("Start(%v mem, %v cpu) = %v, want EINVALID", spec.MaxMemoryBytes, spec.MaxCPU, err)
		}
	}
}

// cgroupMechanism returns the mechanism this machine gives a Supervisor, or
// skips the test if it is not a cgroup one.
func cgroupMechanism(t *testing.T, s *Supervisor) mechanism {
	t.Helper()
	m := s.limits.mechanism()
	if m.kind != kindCgroup1 && m.kind != kindCgroup2 {
		t.Skipf("no cgroup mechanism here (%s: %s)", m.kind, m.note)
	}
	return m
}

// eventsFor returns the events of key of one kind.
func (r *recorder) eventsFor(key switchboard.InstanceKey, kind string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Key == key && e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// instanceGroups lists the cgroups of key this process made under the bases.
func instanceGroups(m mechanism, key switchboard.InstanceKey) []string {
	prefix := strings.TrimSuffix(cgroupName(key, os.Getpid(), 0), "0")
	var out []string
	for _, base := range []string{m.memBase, m.cpuBase} {
		if base == "" {
			continue
		}
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				out = append(out, filepath.Join(base, e.Name()))
			}
		}
	}
	return out
}

// TestMemoryLimit: a provider over its memory limit is killed and restarted;
// its unlimited sibling keeps running undisturbed.
func TestMemoryLimit(t *testing.T) {
	for _, mode := range []string{"cgroup", "rlimit"} {
		t.Run(mode, func(t *testing.T) {
			s, rec := MustSupervisor(t, Options{})
			var m mechanism
			if mode == "rlimit" {
				s.limits.detect = func() mechanism { return mechanism{kind: kindRlimit} }
				m = s.limits.mechanism()
			} else {
				m = cgroupMechanism(t, s)
			}
			sibling := testSpec(t, "calm", "")
			upSib := MustReady(t, s, sibling)
			sibPID := readPID(t, sibling.Env["TP_PIDFILE"])

			hog := testSpec(t, "hog", "leak")
			hog.MaxMemoryBytes = 64 << 20
			hog.Backoff = BackoffPolicy{Base: 700 * time.Millisecond, Max: 700 * time.Millisecond, ResetAfter: time.Minute, MaxFailures: 10}
			if err := s.Start(hog); err != nil {
				t.Fatal(err)
			}
			lim := statusOf(t, s, hog.Key).Limits
			if !strings.HasPrefix(lim, string(m.kind)+": ") || !strings.Contains(lim, "64 MiB") {
				t.Errorf("Limits = %q, want the %s mechanism and 64 MiB", lim, m.kind)
			}
			if st := statusOf(t, s, sibling.Key); st.Limits != "" {
				t.Errorf("unlimited sibling's Limits = %q", st.Limits)
			}

			waitUntil(t, 20*time.Second, func() bool { return len(rec.eventsFor(hog.Key, EventExit)) > 0 }, "the hog to die")
			exit := rec.eventsFor(hog.Key, EventExit)[0]
			if mode == "cgroup" {
				if exit.Signal != "killed" || exit.Err != "killed: over memory limit (64 MiB)" {
					t.Errorf("exit event = %+v, want SIGKILL over the memory limit", exit)
				}
				// LastError holds until the next start is ready.
				waitUntil(t, 5*time.Second, func() bool {
					return statusOf(t, s, hog.Key).LastError == "killed: over memory limit (64 MiB)"
				}, "LastError naming the memory limit")
			} else if exit.ExitCode == 0 && exit.Signal == "" {
				t.Errorf("exit event = %+v, want a failure", exit)
			}
			if st := statusOf(t, s, hog.Key); st.LastExit == "" || st.LastExit == "exit status 0" {
				t.Errorf("LastExit = %q", st.LastExit)
			}
			waitUntil(t, 20*time.Second, func() bool { return len(rec.eventsFor(hog.Key, EventSpawn)) >= 2 }, "the hog to be restarted")

			// The sibling was not touched.
			got, err := callTool(t.Context(), upSib, "pid", nil)
			if err != nil || got != strconv.Itoa(sibPID) {
				t.Errorf("sibling pid = %q, %v; want %d", got, err, sibPID)
			}
			if got, err := callTool(t.Context(), upSib, "echo", map[string]any{"text": "still here"}); err != nil || got != "still here" {
				t.Errorf("sibling echo = %q, %v", got, err)
			}
			if n := len(rec.eventsFor(sibling.Key, EventExit)); n != 0 {
				t.Errorf("sibling exited %d times", n)
			}

			if err := s.Stop(t.Context(), hog.Key); err != nil {
				t.Fatal(err)
			}
			if left := instanceGroups(m, hog.Key); len(left) > 0 {
				t.Errorf("cgroups left after Stop: %v", left)
			}
		})
	}
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // f[0] is field 3 (state)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// childCgroup returns the directory of pid's group in the hierarchy of base.
func childCgroup(t *testing.T, pid int, base string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		name := filepath.Base(parts[2])
		if dir := filepath.Join(base, name); strings.HasSuffix(parts[2], "/"+cgroupSubtree+"/"+name) && isDir(dir) {
			return dir
		}
	}
	t.Fatalf("pid %d is in no group under %s:\n%s", pid, base, b)
	return ""
}

func TestCPULimit(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	m := cgroupMechanism(t, s)
	if !m.limitsCPU() {
		t.Skipf("no cpu controller (%s)", m.note)
	}
	spec := testSpec(t, "spinner", "spin=2")
	spec.MaxCPU = 0.2
	MustReady(t, s, spec)
	pid := readPID(t, spec.Env["TP_PIDFILE"])
	if lim := statusOf(t, s, spec.Key).Limits; lim != string(m.kind)+": cpu 0.20" {
		t.Errorf("Limits = %q", lim)
	}
	dir := childCgroup(t, pid, m.cpuBase)

	const window = 1500 * time.Millisecond
	start, t0 := cpuTicks(t, pid), time.Now()
	time.Sleep(window)
	used := float64(cpuTicks(t, pid)-start) / 100 / time.Since(t0).Seconds() // USER_HZ is 100
	t.Logf("two spinning goroutines used %.2f CPUs under a 0.20 limit", used)
	if used > 0.6 { // unlimited they take up to 2; generous for a loaded box
		t.Errorf("used %.2f CPUs, want about 0.2", used)
	}
	if n, ok := readKeyed(filepath.Join(dir, "cpu.stat"), "nr_throttled"); !ok || n == 0 {
		t.Errorf("cpu.stat nr_throttled = %d, %v; want > 0", n, ok)
	}

	if err := s.Stop(t.Context(), spec.Key); err != nil {
		t.Fatal(err)
	}
	if isDir(dir) {
		t.Errorf("cgroup %s left after Stop", dir)
	}
}

// TestCgroupKillsEscapedDescendants: with a cgroup in use, a descendant that
// left the process group still dies on Stop.
func TestCgroupKillsEscapedDescendants(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	m := cgroupMechanism(t, s)
	spec := testSpec(t, "escaper", "fork-escape")
	spec.MaxMemoryBytes = 256 << 20
	MustReady(t, s, spec)
	pid := readPID(t, spec.Env["TP_PIDFILE"])
	gpid := readPID(t, spec.Env["TP_PIDFILE"]+".grandchild")
	t.Cleanup(func() { _ = syscall.Kill(gpid, syscall.SIGKILL) })
	dir := childCgroup(t, pid, m.memBase)
	if g, _ := syscall.Getpgid(gpid); g == pid || !alive(gpid) {
		t.Fatalf("grandchild %d not escaped (pgid %d) or not running", gpid, g)
	}
	if err := s.Stop(t.Context(), spec.Key); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, func() bool { return !alive(gpid) }, "the escaped grandchild to die")
	if !rec.logs.Contains("killed processes left behind by the provider") {
		t.Error("the kill of the escaped process was not logged")
	}
	if isDir(dir) {
		t.Errorf("cgroup %s left after Stop", dir)
	}
}

// TestSweepStaleCgroups: groups left by a dead gateway are removed at
// detection; those of live processes are not.
func TestSweepStaleCgroups(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	m := cgroupMechanism(t, s)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(m.memBase, cgroupName(switchboard.InstanceKey{Provider: "old"}, dead.Process.Pid, 1))
	live := filepath.Join(m.memBase, cgroupName(switchboard.InstanceKey{Provider: "old"}, 1, 1)) // pid 1 is alive
	for _, d := range []string{stale, live} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = syscall.Rmdir(live); _ = syscall.Rmdir(stale) })
	sweepStale(m.kind, m.memBase)
	if isDir(stale) || !isDir(live) {
		t.Errorf("after sweep: stale exists %v, live exists %v", isDir(stale), isDir(live))
	}
}

// TestCgroup2Subtree runs the cgroup v2 code on the v2 hierarchy of a hybrid
// host (/sys/fs/cgroup/unified), where only controllers such as hugetlb are
// available: a fake "own" group with a process in it, so that enabling a
// controller needs the move into a leaf; then a child started directly in
// its instance group (CLONE_INTO_CGROUP), one placed by pid after a failed
// clone, and removal of a populated group.
func TestCgroup2Subtree(t *testing.T) {
	const unified = "/sys/fs/cgroup/unified"
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || !isCgroup2Mount(parseMountinfo(string(info)), unified) {
		t.Skip("no cgroup v2 hierarchy at " + unified)
	}
	if ctrls, err := readWords(filepath.Join(unified, "cgroup.controllers")); err != nil || !ctrls["hugetlb"] {
		t.Skip("no hugetlb controller to delegate in " + unified)
	}
	// Our fake "own" group is a child of the root: hugetlb must be enabled
	// there for it. Nothing else uses this hierarchy; restore it anyway.
	if on, _ := readWords(filepath.Join(unified, "cgroup.subtree_control")); !on["hugetlb"] {
		if err := writeCgroupFile(unified, "cgroup.subtree_control", "+hugetlb"); err != nil {
			t.Skipf("cannot enable hugetlb in %s: %v", unified, err)
		}
		t.Cleanup(func() { _ = writeCgroupFile(unified, "cgroup.subtree_control", "-hugetlb") })
	}
	own := filepath.Join(unified, fmt.Sprintf("sbtest-%d", os.Getpid()))
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Skipf("cannot create a v2 group: %v", err)
	}
	base := filepath.Join(own, cgroupSubtree)
	leaf := filepath.Join(own, cgroupLeaf)
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
		for _, d := range []string{base, leaf, own} {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				t.Errorf("removing %s: %v", d, err)
			}
		}
	})
	if err := writeCgroupFile(own, "cgroup.procs", strconv.Itoa(sleeper.Process.Pid)); err != nil {
		t.Fatal(err)
	}

	// A process that is not the gateway's in its cgroup: no moving, no setup.
	stranger := filepath.Join(unified, fmt.Sprintf("sbtest-%d-stranger", os.Getpid()))
	if err := os.Mkdir(stranger, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Rmdir(stranger) })
	// An orphan: its parent exits at once, so it is no longer our descendant.
	out, err := exec.Command("sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(orphan, syscall.SIGKILL) })
	waitUntil(t, 5*time.Second, func() bool { return !ownProcess(orphan) }, "the orphan to be reparented")
	if err := writeCgroupFile(stranger, "cgroup.procs", strconv.Itoa(orphan)); err != nil {
		t.Fatal(err)
	}
	_, _, err = setupCgroup2(stranger, "hugetlb", "")
	_ = syscall.Kill(orphan, syscall.SIGKILL)
	waitUntil(t, 5*time.Second, func() bool { return !alive(orphan) }, "the orphan to die")
	if err == nil || !strings.Contains(err.Error(), "not the gateway's") || isDir(filepath.Join(stranger, cgroupLeaf)) {
		t.Errorf("setupCgroup2 with a foreign process = %v", err)
	}

	got, optOK, err := setupCgroup2(own, "hugetlb", "nosuch")
	if err != nil || got != base || optOK {
		t.Fatalf("setupCgroup2 = %q, %v, %v; want %q", got, optOK, err, base)
	}
	if pids, _ := readPIDs(filepath.Join(leaf, "cgroup.procs")); len(pids) != 1 || pids[0] != sleeper.Process.Pid {
		t.Errorf("leaf processes = %v, want the sleeper", pids)
	}
	for _, d := range []string{own, base} {
		if on, _ := readWords(filepath.Join(d, "cgroup.subtree_control")); !on["hugetlb"] {
			t.Errorf("hugetlb not enabled below %s", d)
		}
	}
	// From inside the leaf, the gateway finds the same subtree again.
	if again, _, err := setupCgroup2(leaf, "hugetlb", ""); err != nil || again != base {
		t.Errorf("setupCgroup2 from the leaf = %q, %v", again, err)
	}

	m := mechanism{kind: kindCgroup2, memBase: base}
	start := func(name string, cloneInto bool, badFD bool) (*cgroup, *proc, *placement) {
		t.Helper()
		cg, err := newCgroup(m, "", "", name, resourceLimits{}, cloneInto)
		if err != nil || cg == nil {
			t.Fatalf("newCgroup = %v, %v", cg, err)
		}
		e := &enforcement{cg: cg}
		pl := e.placement(syscall.SIGKILL)
		var bad *os.File
		if badFD { // not a cgroup directory: clone3 fails, the child is placed by pid
			if bad, err = os.Open("/dev/null"); err != nil {
				t.Fatal(err)
			}
			pl.cgroupFD = int(bad.Fd())
		}
		p, err := startProcess(tpBin, []string{"testprovider"}, nil, "", pl)
		if bad != nil {
			_ = bad.Close()
		}
		cg.closeDir()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = killGroup(p.pid, syscall.SIGKILL); <-p.exited; p.closePipes(); _ = cg.remove() })
		return cg, p, pl
	}
	inGroup := func(pid int, dir string) bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		return strings.Contains(string(b), "0::"+strings.TrimPrefix(dir, unified)+"\n")
	}

	cg, p, pl := start("cloned.1.1", true, false)
	if pl.cgroupFD < 0 || pl.cloneErr != nil || !inGroup(p.pid, cg.dirs[0]) {
		t.Errorf("cloned child: fd %d, clone error %v, in group %v", pl.cgroupFD, pl.cloneErr, inGroup(p.pid, cg.dirs[0]))
	}
	cg2, p2, pl2 := start("placed.1.2", true, true)
	if pl2.cloneErr == nil || !inGroup(p2.pid, cg2.dirs[0]) {
		t.Errorf("placed child: clone error %v, in group %v", pl2.cloneErr, inGroup(p2.pid, cg2.dirs[0]))
	}

	// Removing a populated group kills what is in it.
	if err := cg.remove(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(p.exited, 5*time.Second) || isDir(cg.dirs[0]) {
		t.Errorf("after remove: exited %v, dir exists %v", waitFor(p.exited, 0), isDir(cg.dirs[0]))
	}
}

// TestLimitsSetupFailureIsAStartFailure: limits that cannot be applied keep
// the child from running unlimited; the start fails and is retried.
func TestLimitsSetupFailureIsAStartFailure(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	s.limits.detect = func() mechanism {
		return mechanism{kind: kindCgroup1, memBase: filepath.Join(t.TempDir(), "gone")}
	}
	spec := testSpec(t, "unplaceable", "")
	spec.MaxMemoryBytes = 64 << 20
	spec.Backoff.MaxFailures = 2
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	err := s.WaitReady(t.Context(), spec.Key)
	if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE || !strings.Contains(err.Error(), "creating the cgroup") {
		t.Fatalf("WaitReady = %v, want EUNAVAILABLE about the cgroup", err)
	}
	if n := rec.count(EventSpawn); n != 0 {
		t.Errorf("%d spawns without limits", n)
	}
}
