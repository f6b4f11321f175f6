// Package harness starts and stops what the benchmarks measure: the real
// gateway binary with a generated config, its users, and provider children
// driven directly over stdio with the gateway's own JSON-RPC client. Every
// process it starts is registered so that StopAll can end them all, even when
// the benchmark is interrupted.
package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// registry holds every live process this package started, by pid, with the
// function that stops it.
var registry = struct {
	sync.Mutex
	m map[int]func() error
}{m: map[int]func() error{}}

func register(pid int, stop func() error) {
	registry.Lock()
	registry.m[pid] = stop
	registry.Unlock()
}

func unregister(pid int) {
	registry.Lock()
	delete(registry.m, pid)
	registry.Unlock()
}

// StopAll stops every process started by this package that is still running.
func StopAll() {
	registry.Lock()
	stops := make([]func() error, 0, len(registry.m))
	for _, f := range registry.m {
		stops = append(stops, f)
	}
	registry.Unlock()
	var wg sync.WaitGroup
	for _, f := range stops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f()
		}()
	}
	wg.Wait()
}

// Live returns how many started processes are still registered.
func Live() int {
	registry.Lock()
	defer registry.Unlock()
	return len(registry.m)
}

// stopProcess sends sig to cmd, waits up to grace for done, then SIGKILLs its
// whole process group and waits for done.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, sig syscall.Signal, grace time.Duration) error {
	if cmd.Process == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return fmt.Errorf("stopping pid %d: killed after %s", cmd.Process.Pid, grace)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stopping pid %d: still running after SIGKILL", cmd.Process.Pid)
	}
}

// RSS returns the resident set size of pid in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("reading rss: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("reading rss: %w", err)
				}
				return kb << 10, nil
			}
		}
	}
	return 0, errors.New("reading rss: no VmRSS line")
}

// clockTick is USER_HZ, 100 on every Linux the benchmark targets.
const clockTick = 10 * time.Millisecond

// CPU returns the user plus system CPU time pid has used.
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("reading cpu time: %w", err)
	}
	// The command name may hold spaces; fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("reading cpu time: malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("reading cpu time: short stat")
	}
	// After ')': state(0) ppid(1) ... utime(11) stime(12).
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("reading cpu time: bad utime/stime")
	}
	return time.Duration(ut+st) * clockTick, nil
}

// Syscalls returns how many read-family and write-family system calls pid's
// threads have made (syscr + syscw in /proc/<pid>/io): reads and writes of
// sockets, pipes and files, which are most of a proxy's system calls. Unlike
// CPU time, the count does not grow when other processes load the machine.
func Syscalls(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return 0, fmt.Errorf("reading syscall counts: %w", err)
	}
	var n int64
	seen := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != "syscr" && k != "syscw" {
			continue
		}
		c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading syscall counts: %s: %w", k, err)
		}
		n += c
		seen++
	}
	if seen != 2 {
		return 0, errors.New("reading syscall counts: no syscr/syscw lines")
	}
	return n, nil
}

// Children returns the pids of pid's direct children.
func Children(pid int) []int {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// SelfCPU returns the CPU time (user plus system) this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RSSSampler records the peak RSS of a process until stopped.
type RSSSampler struct {
	stop chan struct{}
	done chan struct{}
	peak int64
}

// SampleRSS starts sampling pid's RSS every interval.
func SampleRSS(pid int, interval time.Duration) *RSSSampler {
	s := &RSSSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if r, err := RSS(pid); err == nil && r > s.peak {
				s.peak = r
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak RSS in bytes.
func (s *RSSSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	return s.peak
}

// Exe returns the executable of pid (the /proc/<pid>/exe link), or "".
func Exe(pid int) string {
	p, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	if err != nil {
		return ""
	}
	return p
}

// SplitChildren splits pid's children into helpers (the same executable as
// pid, re-executed, like the gateway's reaper) and others (providers).
func SplitChildren(pid int) (helpers, others []int) {
	self := Exe(pid)
	for _, c := range Children(pid) {
		if self != "" && Exe(c) == self {
			helpers = append(helpers, c)
		} else {
			others = append(others, c)
		}
	}
	return helpers, others
}

// Mem is a process's memory from /proc/<pid>/smaps_rollup, in bytes.
type Mem struct {
	RSS       int64 // resident pages, shared ones counted in full
	PSS       int64 // resident pages, shared ones divided among their sharers
	Anonymous int64 // heap, stacks and other private anonymous memory
}

// File returns the file-backed part of RSS (mostly the executable's text).
func (m Mem) File() int64 { return m.RSS - m.Anonymous }

// MemOf reads pid's smaps_rollup.
func MemOf(pid int) (Mem, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return Mem{}, fmt.Errorf("reading memory: %w", err)
	}
	var m Mem
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "Rss":
			m.RSS = kb << 10
		case "Pss":
			m.PSS = kb << 10
		case "Anonymous":
			m.Anonymous = kb << 10
		}
	}
	return m, nil
}
