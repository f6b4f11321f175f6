//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// detectTracking picks how every provider's processes are tracked: a cgroup
// v2 group per spawn when the gateway may create groups below its own cgroup
// (no controller needs to be delegated for that), else a cgroup v1 group per
// spawn in the first of the freezer, pids and memory hierarchies it can
// create groups in, else the subreaper way. Groups left by dead gateways are
// swept.
func detectTracking() trackMode {
	if os.Getenv(trackingEnv) == "subreaper" {
		return trackMode{kind: trackSubreaper, note: trackingEnv + "=subreaper"}
	}
	var notes []string
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return trackMode{kind: trackSubreaper, note: "detecting cgroups: " + err.Error()}
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return trackMode{kind: trackSubreaper, note: "detecting cgroups: " + err.Error()}
	}
	mounts := parseMountinfo(string(info))
	groups := parseProcCgroup(string(self))

	if isCgroup2Mount(mounts, cgroupRoot) {
		path, ok := groups[""]
		if !ok {
			notes = append(notes, "cgroup v2: no v2 entry in /proc/self/cgroup")
		} else {
			base, err := makeBase2(filepath.Join(cgroupRoot, path))
			if err == nil {
				sweepStale(kindCgroup2, base)
				return trackMode{kind: trackCgroup2, base: base}
			}
			notes = append(notes, "cgroup v2: "+err.Error())
		}
		return trackMode{kind: trackSubreaper, note: strings.Join(notes, "; ")}
	}
	notes = append(notes, "cgroup v2: "+cgroupRoot+" is not a cgroup2 mount")
	for _, ctrl := range []string{"freezer", "pids", "memory"} {
		dir, err := ownCgroup1(mounts, groups, ctrl)
		if err == nil {
			var base string
			if base, err = makeBase1(dir); err == nil {
				sweepStale(kindCgroup1, base)
				return trackMode{kind: trackCgroup1, base: base, note: strings.Join(notes, "; ")}
			}
		}
		notes = append(notes, "cgroup v1 "+ctrl+": "+err.Error())
	}
	return trackMode{kind: trackSubreaper, note: strings.Join(notes, "; ")}
}

// makeBase2 creates own/switchboard-providers (own being the gateway's cgroup
// v2 directory, or its parent if the gateway moved itself into the leaf
// own/gateway for limits) and checks that groups can be created there and
// children started in them: that needs write access to the cgroup.procs of
// the new group and of own, their common ancestor with the gateway's group.
// Without controllers enabled for them, such groups may sit next to
// processes (the "no internal processes" rule is about controllers).
func makeBase2(own string) (string, error) {
	if filepath.Base(own) == cgroupLeaf && isDir(filepath.Join(filepath.Dir(own), cgroupSubtree)) {
		own = filepath.Dir(own)
	}
	if err := unix.Access(filepath.Join(own, "cgroup.procs"), unix.W_OK); err != nil {
		return "", fmt.Errorf("checking %s: %w", filepath.Join(own, "cgroup.procs"), err)
	}
	return makeBase1(own) // the same steps: create the subtree, probe a group
}

// subreaperOn is set once this process made itself a child subreaper.
var subreaperOn atomic.Bool

// becomeSubreaper makes this process a child subreaper: orphaned descendants
// (the subtrees of providers that died) are reparented to it, not to init.
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a child subreaper: %w", err)
	}
	subreaperOn.Store(true)
	return nil
}

// sweepAdopted kills and reaps the processes this process adopted, and
// returns how many it signalled. As a child subreaper (the subreaper mode),
// it adopts only what was left of the subtree of a provider that died (each
// provider is itself a child subreaper, so orphans of a live provider stay
// with it); those are killed, and then every process they leave behind,
// until none is left or cgroupEmptyWait passes. As PID 1 (a container's
// first process) without the subreaper mode, it adopts any orphan of the
// container; those are only reaped when they are zombies, never killed.
//
// A child is adopted if this package did not fork it (ownChildren) and it is
// not in this process's session: providers run in sessions of their own, and
// so do all their descendants, while children that other code of the process
// forks stay in its session unless that code asks for a new one.
func sweepAdopted() int {
	kill := subreaperOn.Load()
	self := os.Getpid()
	if !kill && self != 1 {
		return 0
	}
	sid, err := unix.Getsid(0)
	if err != nil {
		return 0
	}
	n := 0
	killed := map[int]bool{}
	deadline := time.Now().Add(cgroupEmptyWait)
	for {
		var adopted []int
		spawnMu.Lock()
		for _, pid := range childrenOf(self) {
			if _, ours := ownChildren.Load(pid); ours {
				continue
			}
			st, err := readProcStat(pid)
			if err != nil || st.sid == sid {
				continue
			}
			adopted = append(adopted, pid)
			if kill && !killed[pid] && st.state != 'Z' {
				killed[pid] = true
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					n++
				}
			}
		}
		spawnMu.Unlock()
		for _, pid := range adopted {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
		if !kill || len(adopted) == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The exec trampoline starts a provider as a child subreaper: the child of
// the gateway is first the gateway's own binary (/proc/self/exe), which sets
// PR_SET_CHILD_SUBREAPER (kept across execve) and, if asked, RLIMIT_DATA, and
// then execs the provider in the same process. Nothing stays in between, so
// it costs no memory; its pid, process group, session, cgroup and
// parent-death signal are the provider's.
const (
	execEnv = "SWITCHBOARD_SUPERVISOR_EXEC"
	execArg = "switchboard-supervisor-exec"
)

// init turns any binary that imports this package into the trampoline when
// started as one. Package initialization runs on the main thread (the
// runtime locks it there), so the exec keeps the parent-death signal, which
// belongs to that thread.
func init() {
	if os.Getenv(execEnv) == "1" && len(os.Args) >= 5 && os.Args[1] == execArg {
		runTrampoline(os.Args[2], os.Args[3], os.Args[4:])
	}
}

// runTrampoline becomes a child subreaper, limits data if dataLimit > 0, and
// execs path with argv and the environment minus the trampoline's marker.
// It returns only by exiting 127.
func runTrampoline(dataLimit, path string, argv []string) {
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "switchboard: starting %s: %v\n", path, err)
		os.Exit(127)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fail(fmt.Errorf("becoming a child subreaper: %w", err))
	}
	if n, err := strconv.ParseInt(dataLimit, 10, 64); err != nil {
		fail(fmt.Errorf("bad data limit %q", dataLimit))
	} else if n > 0 {
		if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: uint64(n), Max: uint64(n)}); err != nil {
			fail(fmt.Errorf("setting RLIMIT_DATA: %w", err))
		}
	}
	env := os.Environ()
	for i, kv := range env {
		if strings.HasPrefix(kv, execEnv+"=") {
			env = append(env[:i], env[i+1:]...)
			break
		}
	}
	fail(syscall.Exec(path, argv, env))
}

// trampoline returns what to start instead of path with argv and env so that
// the child becomes a child subreaper (and gets RLIMIT_DATA dataLimit, if > 0)
// before it execs path.
func trampoline(path string, argv, env []string, dataLimit int64) (string, []string, []string) {
	args := append([]string{"switchboard", execArg, strconv.FormatInt(dataLimit, 10), path}, argv...)
	return "/proc/self/exe", args, append(env[:len(env):len(env)], execEnv+"=1")
}

// killSubtree kills root, a child subreaper, and all its descendants, and
// returns how many descendants it found. Nothing can leave the subtree of a
// live subreaper, so it stops root first (the gateway's death usually did,
// through the parent-death signal), then stops every descendant it finds,
// walking again until a walk finds no new one (a stopped process cannot
// fork), and only then kills them all.
func killSubtree(root int) int {
	_ = syscall.Kill(root, syscall.SIGSTOP)
	seen := map[int]bool{}
	for range 100 {
		fresh := 0
		for _, pid := range descendants(root) {
			if !seen[pid] {
				seen[pid] = true
				fresh++
				_ = syscall.Kill(pid, syscall.SIGSTOP)
			}
		}
		if fresh == 0 {
			break
		}
	}
	for pid := range seen {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(root, syscall.SIGKILL)
	return len(seen)
}

// descendants lists every process below pid.
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 && len(out) < 1<<16 {
		kids := childrenOf(queue[0])
		queue = append(queue[1:], kids...)
		out = append(out, kids...)
	}
	return out
}

// childrenOf lists the children of pid (zombies included), from the
// children files of its threads, or by scanning /proc on kernels without
// them.
func childrenOf(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	read := false
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		read = true
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	if read {
		return out
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(c); err == nil && st.ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// procStat is the part of /proc/PID/stat the tracking reads.
type procStat struct {
	state           byte
	ppid, pgid, sid int
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("reading /proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp session ...
	if len(f) < 4 || f[0] == "" {
		return procStat{}, fmt.Errorf("reading /proc/%d/stat: malformed", pid)
	}
	st := procStat{state: f[0][0]}
	var errs [3]error
	st.ppid, errs[0] = strconv.Atoi(f[1])
	st.pgid, errs[1] = strconv.Atoi(f[2])
	st.sid, errs[2] = strconv.Atoi(f[3])
	if err := errors.Join(errs[:]...); err != nil {
		return procStat{}, fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
	}
	return st, nil
}
