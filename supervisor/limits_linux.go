//go:build linux

package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	cgroupRoot      = "/sys/fs/cgroup"
	cgroupLeaf      = "gateway" // where the gateway moves itself on cgroup v2, if it must
	cpuPeriodMicros = 100_000
	minQuotaMicros  = 1_000 // the kernel's minimum CFS quota
	cgroupEmptyWait = 2 * time.Second
)

// detectMechanism picks the best mechanism this process can use: cgroup v2
// with memory (and, if available, cpu) delegated to a subtree it creates,
// else cgroup v1 memory (and cpu) hierarchies it can create groups in, else
// RLIMIT_DATA.
func detectMechanism() mechanism {
	var notes []string
	fallback := func(err error) mechanism {
		notes = append(notes, err.Error())
		return mechanism{kind: kindRlimit, note: strings.Join(notes, "; ")}
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fallback(fmt.Errorf("detecting cgroups: %w", err))
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return fallback(fmt.Errorf("detecting cgroups: %w", err))
	}
	mounts := parseMountinfo(string(info))
	groups := parseProcCgroup(string(self))

	if isCgroup2Mount(mounts, cgroupRoot) {
		path, ok := groups[""]
		if !ok {
			notes = append(notes, "cgroup v2: no v2 entry in /proc/self/cgroup")
		} else {
			base, cpu, err := setupCgroup2(filepath.Join(cgroupRoot, path), "memory", "cpu")
			if err == nil {
				sweepStale(kindCgroup2, base)
				m := mechanism{kind: kindCgroup2, memBase: base}
				if cpu {
					m.cpuBase = base
				} else {
					m.note = "the cpu controller is not available"
				}
				return m
			}
			notes = append(notes, "cgroup v2: "+err.Error())
		}
	} else {
		notes = append(notes, "cgroup v2: "+cgroupRoot+" is not a cgroup2 mount")
	}

	m, err := setupCgroup1(mounts, groups)
	if err != nil {
		return fallback(fmt.Errorf("cgroup v1: %w", err))
	}
	notes = append(notes, m.note)
	m.note = strings.Join(slices.DeleteFunc(notes, func(s string) bool { return s == "" }), "; ")
	return m
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	root, point, fstype string
	superOpts           []string
}

// parseMountinfo parses /proc/self/mountinfo (proc(5)); malformed lines are
// skipped.
func parseMountinfo(s string) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		out = append(out, mountEntry{
			root:      unescapeMount(f[3]),
			point:     unescapeMount(f[4]),
			fstype:    g[0],
			superOpts: strings.Split(g[2], ","),
		})
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseProcCgroup parses /proc/self/cgroup into controller → path. The v2
// entry ("0::/path") is under "".
func parseProcCgroup(s string) map[string]string {
	out := map[string]string{}
	for line := range strings.Lines(s) {
		parts := strings.SplitN(strings.TrimRight(line, "\n"), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c != "" {
				out[c] = parts[2]
			}
		}
	}
	return out
}

func isCgroup2Mount(mounts []mountEntry, point string) bool {
	found := false
	for _, m := range mounts {
		if m.point == point { // the last mount on a point is the visible one
			found = m.fstype == "cgroup2"
		}
	}
	return found
}

// setupCgroup2 prepares own (the gateway's cgroup v2 directory) to hold
// instance groups: the required controller, and the optional one if
// available, are enabled for own's children and for own/switchboard-providers,
// which it returns. Because of the "no internal processes" rule, controllers
// can be enabled below own only if own has no processes; if it has, they are
// all moved into the leaf own/gateway first. A gateway that did that earlier
// (and so now lives in own/gateway) uses own again.
func setupCgroup2(own, required, optional string) (base string, optOK bool, err error) {
	if filepath.Base(own) == cgroupLeaf && isDir(filepath.Join(filepath.Dir(own), cgroupSubtree)) {
		own = filepath.Dir(own)
	}
	ctrls, err := readWords(filepath.Join(own, "cgroup.controllers"))
	if err != nil {
		return "", false, err
	}
	if !ctrls[required] {
		return "", false, fmt.Errorf("the %s controller is not available in %s", required, own)
	}
	optOK = optional != "" && ctrls[optional]
	if err := enableControllers(own, required); err != nil {
		if !errors.Is(err, syscall.EBUSY) {
			return "", false, err
		}
		if err := moveProcesses(own, filepath.Join(own, cgroupLeaf)); err != nil {
			return "", false, fmt.Errorf("moving the processes of %s into a leaf group: %w", own, err)
		}
		if err := enableControllers(own, required); err != nil {
			return "", false, err
		}
	}
	if optOK && enableControllers(own, optional) != nil {
		optOK = false
	}
	base = filepath.Join(own, cgroupSubtree)
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", false, fmt.Errorf("creating %s: %w", base, err)
	}
	if err := enableControllers(base, required); err != nil {
		return "", false, err
	}
	if optOK && enableControllers(base, optional) != nil {
		optOK = false
	}
	return base, optOK, nil
}

// enableControllers enables ctrl for dir's children unless it already is.
func enableControllers(dir, ctrl string) error {
	on, err := readWords(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	if on[ctrl] {
		return nil
	}
	return writeCgroupFile(dir, "cgroup.subtree_control", "+"+ctrl)
}

// moveProcesses moves every process of cgroup v2 directory from into the
// (created if needed) directory to. It refuses, moving nothing, if from holds
// a process that is neither this one nor a descendant: a cgroup shared with
// others (a terminal's, a container's init) is not the gateway's to
// rearrange.
func moveProcesses(from, to string) error {
	pids, err := readPIDs(filepath.Join(from, "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if !ownProcess(pid) {
			return fmt.Errorf("%s also holds process %d, which is not the gateway's; give the gateway a cgroup of its own (systemd: Delegate=yes)", from, pid)
		}
	}
	if err := os.Mkdir(to, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", to, err)
	}
	for range 5 { // processes may fork meanwhile
		pids, err := readPIDs(filepath.Join(from, "cgroup.procs"))
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if err := writeCgroupFile(to, "cgroup.procs", strconv.Itoa(pid)); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
		}
	}
	return fmt.Errorf("%s keeps gaining processes", from)
}

// ownProcess reports whether pid is this process or one of its descendants
// (or already gone).
func ownProcess(pid int) bool {
	self := os.Getpid()
	for range 128 {
		if pid == self {
			return true
		}
		if pid <= 1 {
			return false
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return errors.Is(err, fs.ErrNotExist)
		}
		st := string(b)
		f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:]) // state, ppid, ...
		if len(f) < 2 {
			return false
		}
		if pid, err = strconv.Atoi(f[1]); err != nil {
			return false
		}
	}
	return false
}

// setupCgroup1 finds the gateway's own groups in the v1 memory and cpu
// hierarchies and creates switchboard-providers in each. Memory is required.
func setupCgroup1(mounts []mountEntry, groups map[string]string) (mechanism, error) {
	mem, err := ownCgroup1(mounts, groups, "memory")
	if err != nil {
		return mechanism{}, err
	}
	m := mechanism{kind: kindCgroup1}
	if m.memBase, err = makeBase1(mem); err != nil {
		return mechanism{}, err
	}
	cpu, err := ownCgroup1(mounts, groups, "cpu")
	if err == nil {
		m.cpuBase, err = makeBase1(cpu)
	}
	if err != nil {
		m.cpuBase = ""
		m.note = "no cpu limits: " + err.Error()
	}
	sweepStale(kindCgroup1, m.memBase)
	if m.cpuBase != "" {
		sweepStale(kindCgroup1, m.cpuBase)
	}
	return m, nil
}

// ownCgroup1 returns the directory of this process's group in the v1
// hierarchy that has controller ctrl.
func ownCgroup1(mounts []mountEntry, groups map[string]string, ctrl string) (string, error) {
	path, ok := groups[ctrl]
	if !ok {
		return "", fmt.Errorf("no %s hierarchy in /proc/self/cgroup", ctrl)
	}
	for _, m := range mounts {
		if m.fstype != "cgroup" || !slices.Contains(m.superOpts, ctrl) {
			continue
		}
		rel := path
		if m.root != "/" {
			var ok bool
			if rel, ok = strings.CutPrefix(path, m.root); !ok || (rel != "" && rel[0] != '/') {
				continue // this mount does not show our group
			}
		}
		return filepath.Join(m.point, rel), nil
	}
	return "", fmt.Errorf("the %s hierarchy is not mounted", ctrl)
}

// makeBase1 creates dir/switchboard-providers and checks that groups can be
// created and joined there.
func makeBase1(dir string) (string, error) {
	base := filepath.Join(dir, cgroupSubtree)
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("creating %s: %w", base, err)
	}
	probe := filepath.Join(base, fmt.Sprintf("probe.%d.0", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("creating a group in %s: %w", base, err)
	}
	err := unix.Access(filepath.Join(probe, "cgroup.procs"), unix.W_OK)
	_ = syscall.Rmdir(probe)
	if err != nil {
		return "", fmt.Errorf("checking %s: %w", probe, err)
	}
	return base, nil
}

// sweepStale removes instance groups under base left by gateways that are
// no longer running, killing whatever is still in them.
func sweepStale(kind limitKind, base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		owner, ok := cgroupOwner(e.Name())
		if !e.IsDir() || !ok || owner == os.Getpid() || !errors.Is(syscall.Kill(owner, 0), syscall.ESRCH) {
			continue
		}
		c := &cgroup{kind: kind, dirs: []string{filepath.Join(base, e.Name())}}
		_ = c.remove()
	}
}

// cgroup is the group (v2), or the memory and cpu groups (v1), of one spawn
// of a child.
type cgroup struct {
	kind     limitKind
	dirs     []string
	memDir   string   // the directory with the memory controller's files, if any
	dirFile  *os.File // v2: the directory, open for CLONE_INTO_CGROUP until the spawn
	memLimit int64
}

// newCgroup creates the group(s) of one spawn: its tracking group in
// trackBase (if set; trackKind says which cgroup version that is) and the
// groups that enforce r under m (if m is a cgroup mechanism), sharing one
// directory where the bases are the same. With cloneInto (v2 only) it also
// opens the directory so that the child can be started inside it. It returns
// nil if there is nothing to create.
func newCgroup(m mechanism, trackKind limitKind, trackBase, name string, r resourceLimits, cloneInto bool) (c *cgroup, err error) {
	limitsOn := m.kind == kindCgroup1 || m.kind == kindCgroup2
	if !limitsOn {
		m = mechanism{kind: trackKind}
	}
	c = &cgroup{kind: m.kind, memLimit: r.memory}
	defer func() {
		if err != nil {
			_ = c.remove()
			c = nil
		}
	}()
	made := map[string]string{} // base -> the group made in it
	mkdir := func(base string) (string, error) {
		if dir, ok := made[base]; ok {
			return dir, nil
		}
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", fmt.Errorf("creating %s: %w", dir, err)
		}
		c.dirs = append(c.dirs, dir)
		made[base] = dir
		return dir, nil
	}
	mem := strconv.FormatInt(r.memory, 10)
	quota := strconv.FormatInt(max(minQuotaMicros, int64(math.Round(r.cpu*cpuPeriodMicros))), 10)
	switch m.kind {
	case kindCgroup2:
		base := m.memBase
		if base == "" {
			base = trackBase
		}
		if base == "" {
			return nil, nil
		}
		dir, err := mkdir(base)
		if err != nil {
			return nil, err
		}
		c.memDir = dir
		if limitsOn && r.memory > 0 {
			if err := writeCgroupFile(dir, "memory.max", mem); err != nil {
				return nil, err
			}
			if exists(filepath.Join(dir, "memory.swap.max")) {
				if err := writeCgroupFile(dir, "memory.swap.max", "0"); err != nil {
					return nil, err
				}
			}
		}
		if exists(filepath.Join(dir, "memory.oom.group")) { // an OOM kills the whole group
			_ = writeCgroupFile(dir, "memory.oom.group", "1")
		}
		if limitsOn && r.cpu > 0 && m.limitsCPU() {
			if err := writeCgroupFile(dir, "cpu.max", quota+" "+strconv.Itoa(cpuPeriodMicros)); err != nil {
				return nil, err
			}
		}
		if cloneInto {
			if c.dirFile, err = os.Open(dir); err != nil {
				return nil, fmt.Errorf("opening %s: %w", dir, err)
			}
		}
	case kindCgroup1:
		if trackBase != "" {
			if _, err := mkdir(trackBase); err != nil {
				return nil, err
			}
		}
		if limitsOn && r.memory > 0 {
			dir, err := mkdir(m.memBase)
			if err != nil {
				return nil, err
			}
			c.memDir = dir
			if err := writeCgroupFile(dir, "memory.limit_in_bytes", mem); err != nil {
				return nil, err
			}
			if exists(filepath.Join(dir, "memory.memsw.limit_in_bytes")) { // memory + swap
				if err := writeCgroupFile(dir, "memory.memsw.limit_in_bytes", mem); err != nil {
					return nil, err
				}
			}
		}
		if limitsOn && r.cpu > 0 && m.limitsCPU() {
			dir, err := mkdir(m.cpuBase)
			if err != nil {
				return nil, err
			}
			if err := writeCgroupFile(dir, "cpu.cfs_period_us", strconv.Itoa(cpuPeriodMicros)); err != nil {
				return nil, err
			}
			if err := writeCgroupFile(dir, "cpu.cfs_quota_us", quota); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("creating a cgroup under %s: not a cgroup mechanism", m.kind)
	}
	if len(c.dirs) == 0 {
		return nil, nil
	}
	return c, nil
}

// cloneFD is the descriptor to clone the child into, or -1.
func (c *cgroup) cloneFD() int {
	if c == nil || c.dirFile == nil {
		return -1
	}
	return int(c.dirFile.Fd())
}

// closeDir closes the directory opened for the spawn. Idempotent.
func (c *cgroup) closeDir() {
	if c != nil && c.dirFile != nil {
		_ = c.dirFile.Close()
		c.dirFile = nil
	}
}

// joinThread moves the calling OS thread (locked, about to fork the child)
// into the group(s), so that the child is born there and cannot fork a
// process outside them before being moved, and returns how to move the
// thread back. cgroup v1 only: v2 puts all threads of a process in one group
// and has CLONE_INTO_CGROUP instead. On failure nothing is moved and the
// child is placed by pid after it started.
func (c *cgroup) joinThread() (joined bool, undo func()) {
	if c == nil || c.kind != kindCgroup1 {
		return false, func() {}
	}
	tid := strconv.Itoa(unix.Gettid())
	var moved []string
	undo = func() {
		for _, dir := range moved { // back to the gateway's own group
			_ = writeCgroupFile(filepath.Dir(filepath.Dir(dir)), "tasks", tid)
		}
	}
	for _, dir := range c.dirs {
		if err := writeCgroupFile(dir, "tasks", tid); err != nil {
			undo()
			return false, func() {}
		}
		moved = append(moved, dir)
	}
	return true, undo
}

// place moves pid (a child just started, with all its threads) into the group(s).
func (c *cgroup) place(pid int) error {
	for _, dir := range c.dirs {
		if err := writeCgroupFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// oomKilled reports whether the kernel's OOM killer killed a process of the
// group because of its memory limit.
func (c *cgroup) oomKilled() bool {
	if c == nil || c.memDir == "" {
		return false
	}
	if c.kind == kindCgroup2 {
		n, ok := readKeyed(filepath.Join(c.memDir, "memory.events"), "oom_kill")
		return ok && n > 0
	}
	if n, ok := readKeyed(filepath.Join(c.memDir, "memory.oom_control"), "oom_kill"); ok {
		return n > 0
	}
	// Kernels before 4.13 do not count OOM kills; hitting the limit is the
	// best evidence there is.
	for _, f := range []string{"memory.failcnt", "memory.memsw.failcnt"} {
		if n, err := readInt(filepath.Join(c.memDir, f)); err == nil && n > 0 {
			return true
		}
	}
	return false
}

// pids returns the processes in the group(s).
func (c *cgroup) pids() []int {
	var all []int
	for _, dir := range c.dirs {
		pids, _ := readPIDs(filepath.Join(dir, "cgroup.procs"))
		for _, p := range pids {
			if !slices.Contains(all, p) {
				all = append(all, p)
			}
		}
	}
	return all
}

// killAll SIGKILLs every process in the group(s) until none is left or
// cgroupEmptyWait passes, and returns how many processes it signalled. Where the kernel
// offers it (cgroup v2 cgroup.kill) it kills a group atomically; a cgroup v1
// freezer group is frozen first, so that nothing in it can fork while it is
// being killed. Otherwise it kills what it finds until nothing is left: a
// process with a SIGKILL pending cannot fork.
func (c *cgroup) killAll() int {
	if c == nil {
		return 0
	}
	signalled := map[int]bool{}
	kill := func(pids []int) {
		for _, p := range pids {
			if p > 1 && p != os.Getpid() && syscall.Kill(p, syscall.SIGKILL) == nil {
				signalled[p] = true
			}
		}
	}
	for _, dir := range c.dirs {
		if exists(filepath.Join(dir, "cgroup.kill")) {
			if pids := c.pids(); len(pids) > 0 && writeCgroupFile(dir, "cgroup.kill", "1") == nil {
				for _, p := range pids {
					signalled[p] = true
				}
			}
		}
	}
	thaw := c.freeze()
	kill(c.pids())
	thaw()
	deadline := time.Now().Add(cgroupEmptyWait)
	for {
		pids := c.pids()
		if len(pids) == 0 || time.Now().After(deadline) {
			return len(signalled)
		}
		kill(pids)
		time.Sleep(10 * time.Millisecond)
	}
}

// freezeWait bounds how long freeze waits for a group to be frozen; a task
// in uninterruptible sleep can keep it FREEZING.
const freezeWait = 500 * time.Millisecond

// freeze freezes the group(s) that are cgroup v1 freezer groups holding
// processes, waiting (bounded) until they are, and returns how to thaw them.
func (c *cgroup) freeze() (thaw func()) {
	var frozen []string
	pids := c.pids()
	if len(pids) == 0 || slices.Contains(pids, os.Getpid()) { // never freeze a thread of ours
		return func() {}
	}
	for _, dir := range c.dirs {
		state := filepath.Join(dir, "freezer.state")
		if !exists(state) {
			continue
		}
		if writeCgroupFile(dir, "freezer.state", "FROZEN") != nil {
			continue
		}
		frozen = append(frozen, dir)
		deadline := time.Now().Add(freezeWait)
		for time.Now().Before(deadline) {
			if b, err := os.ReadFile(state); err != nil || strings.TrimSpace(string(b)) == "FROZEN" {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return func() {
		for _, dir := range frozen {
			_ = writeCgroupFile(dir, "freezer.state", "THAWED")
		}
	}
}

// killPIDs SIGKILLs pids, never this process, and returns how many it
// signalled.
func killPIDs(pids []int) int {
	n := 0
	for _, p := range pids {
		if p > 1 && p != os.Getpid() && syscall.Kill(p, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// remove kills what is left in the group(s) and removes them, retrying while
// the kernel finishes the kills. It is idempotent.
func (c *cgroup) remove() error {
	if c == nil {
		return nil
	}
	c.closeDir()
	c.killAll()
	var errs []error
	deadline := time.Now().Add(cgroupEmptyWait)
	for _, dir := range c.dirs {
		for {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, err))
				break
			}
			killPIDs(c.pids())
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// releaseCgroupDirs kills every process in dirs and removes them, as the
// reaper does for the groups of a gateway that died.
func releaseCgroupDirs(dirs []string) {
	_ = (&cgroup{dirs: dirs}).remove()
}

// limitData sets pid's RLIMIT_DATA (soft and hard) to n bytes.
func limitData(pid int, n int64) error {
	lim := &unix.Rlimit{Cur: uint64(n), Max: uint64(n)}
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, lim, nil); err != nil {
		return fmt.Errorf("setting RLIMIT_DATA of %d: %w", pid, err)
	}
	return nil
}

// writeCgroupFile writes value to dir/name in one write, as cgroupfs wants.
func writeCgroupFile(dir, name, value string) error {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, path, err)
	}
	return nil
}

func readWords(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	words := map[string]bool{}
	for _, w := range strings.Fields(string(b)) {
		words[w] = true
	}
	return words, nil
}

func readPIDs(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// readKeyed reads the value of key in a "key value" per line file.
func readKeyed(path, key string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
