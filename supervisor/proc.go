//go:build unix

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Read deadlines set on our pipe ends once the child is reaped: enough to read
// what it wrote before dying, short enough that an escaped descendant holding
// the pipe cannot keep anything waiting.
const (
	stdoutDrainAfterExit = 100 * time.Millisecond
	stderrDrainAfterExit = 250 * time.Millisecond
)

// proc is one child process and the supervisor's ends of its pipes.
type proc struct {
	pid    int // also the process group id
	stdin  *os.File
	stdout *os.File
	stderr *os.File

	exited  chan struct{}    // closed once the child is reaped
	state   *os.ProcessState // valid after exited
	waitErr error            // valid after exited

	lim *enforcement // its resource limits; nil if none
}

// spawnMu keeps sweeps of adopted processes (sweepAdopted) out while a child
// is forked and registered in ownChildren: in between, the new child is a
// child of this process that no registry knows.
var spawnMu sync.RWMutex

// ownChildren holds the pids of the children this package forked (providers
// and the reaper helper), from their start until they are reaped.
var ownChildren sync.Map

// placement puts a new child under its resource limits and process tracking
// (see limits_unix.go).
type placement struct {
	// cgroupFD, when >= 0, is an open cgroup v2 directory to start the child
	// in (Linux CLONE_INTO_CGROUP), so that it never runs outside it. If that
	// fails the child is started without it and cloneErr is set.
	cgroupFD int
	cloneErr error
	// before runs on the spawning thread just before the child is started.
	// It reports whether the child will be born in its cgroups (cgroup v1:
	// the thread joined them, and the child inherits them), and returns what
	// to undo right after the start.
	before func() (inherited bool, undo func())
	// after runs right after the child started, on the spawning thread, with
	// whether the child is already in its cgroups. An error kills the child
	// and fails the start.
	after func(pid int, placed bool) error
	// subreaper starts the child through the exec trampoline, which makes it
	// a child subreaper and sets RLIMIT_DATA to dataLimit (if > 0) before it
	// execs the command (track_linux.go).
	subreaper bool
	dataLimit int64
	// deathSig is the child's parent-death signal; zero means SIGKILL.
	deathSig syscall.Signal
}

// startProcess starts path with argv in its own session and process group,
// placed by pl (nil: no limits, plain tracking). Start and Wait run on one
// goroutine locked to its OS thread, which is never unlocked, so the child's
// parent-death signal fires only when the gateway dies, not when the Go
// runtime retires the forking thread (golang/go#27505). The child's stdio are
// *os.File pipe ends, so Wait never waits for copy goroutines.
func startProcess(path string, argv, env []string, dir string, pl *placement) (*proc, error) {
	var files [6]*os.File // childIn, ourIn, ourOut, childOut, ourErr, childErr
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				_ = f.Close()
			}
		}
	}
	var err error
	if files[0], files[1], err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("creating stdin pipe: %w", err)
	}
	if files[2], files[3], err = os.Pipe(); err != nil {
		closeAll()
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	if files[4], files[5], err = os.Pipe(); err != nil {
		closeAll()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	command := path // for errors: path may become the trampoline's
	cgroupFD, deathSig := -1, syscall.SIGKILL
	if pl != nil {
		cgroupFD = pl.cgroupFD
		if pl.deathSig != 0 {
			deathSig = pl.deathSig
		}
		if pl.subreaper {
			path, argv, env = trampoline(path, argv, env, pl.dataLimit)
		}
	}
	newCmd := func(cgroupFD int) *exec.Cmd {
		return &exec.Cmd{
			Path:        path,
			Args:        argv,
			Env:         env,
			Dir:         dir,
			Stdin:       files[0],
			Stdout:      files[3],
			Stderr:      files[5],
			SysProcAttr: sysProcAttr(cgroupFD, deathSig),
		}
	}
	p := &proc{stdin: files[1], stdout: files[2], stderr: files[4], exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see the function comment
		inherited, undo := false, func() {}
		if pl != nil && pl.before != nil {
			inherited, undo = pl.before()
		}
		cmd := newCmd(cgroupFD)
		spawnMu.RLock()
		err := cmd.Start()
		placed := err == nil && (cgroupFD >= 0 || inherited)
		if err != nil && cgroupFD >= 0 { // e.g. a kernel before 5.7: place it by pid
			pl.cloneErr = err
			cmd = newCmd(-1)
			err = cmd.Start()
			placed = err == nil && inherited
		}
		if err == nil {
			ownChildren.Store(cmd.Process.Pid, struct{}{})
		}
		spawnMu.RUnlock()
		undo()
		// The child has its own copies now (or never will).
		_ = files[0].Close()
		_ = files[3].Close()
		_ = files[5].Close()
		if err != nil {
			started <- err
			return
		}
		if pl != nil && pl.after != nil {
			if err := pl.after(cmd.Process.Pid, placed); err != nil {
				_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
				_ = cmd.Wait()
				ownChildren.Delete(cmd.Process.Pid)
				started <- fmt.Errorf("applying resource limits: %w", err)
				return
			}
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.waitErr = cmd.Wait()
		ownChildren.Delete(p.pid)
		p.state = cmd.ProcessState
		now := time.Now()
		_ = p.stdout.SetReadDeadline(now.Add(stdoutDrainAfterExit))
		_ = p.stderr.SetReadDeadline(now.Add(stderrDrainAfterExit))
		_ = killGroup(p.pid, syscall.SIGKILL) // the rest of the group dies with the leader
		close(p.exited)
	}()
	if err := <-started; err != nil {
		_ = files[1].Close()
		_ = files[2].Close()
		_ = files[4].Close()
		return nil, fmt.Errorf("starting %s: %w", command, err)
	}
	return p, nil
}

// closePipes closes the supervisor's ends. Idempotent.
func (p *proc) closePipes() {
	_ = p.stdin.Close()
	_ = p.stdout.Close()
	_ = p.stderr.Close()
}

// killGroup sends sig to the process group pgid. A group that is already gone
// is success.
func killGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return fmt.Errorf("signalling process group %d: refusing", pgid)
	}
	err := syscall.Kill(-pgid, sig)
	if err == nil || errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return fmt.Errorf("signalling process group %d with %s: %w", pgid, sig, err)
}

// exitDetails returns the exit code (-1 if signalled) and the signal name.
func exitDetails(st *os.ProcessState) (code int, signal string) {
	if st == nil {
		return -1, ""
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, ws.Signal().String()
	}
	return st.ExitCode(), ""
}

// childEnv builds the child's environment: the allowlisted names copied from
// the gateway's own environment, then spec's variables. Sorted by name.
func childEnv(base []string, extra map[string]string) []string {
	vars := make(map[string]string, len(base)+len(extra))
	for _, name := range base {
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		}
	}
	for k, v := range extra {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// resolveCommand finds the program to run: absolute as is, relative with a '/'
// against dir, and a bare name in the child's PATH (not the gateway's).
func resolveCommand(command, dir string, env []string) (string, error) {
	switch {
	case command == "":
		return "", errors.New("resolving command: empty")
	case filepath.IsAbs(command):
		return command, checkExecutable(command)
	case strings.Contains(command, "/"):
		p := filepath.Join(dir, command)
		if !filepath.IsAbs(p) {
			abs, err := filepath.Abs(p)
			if err != nil {
				return "", fmt.Errorf("resolving command %q: %w", command, err)
			}
			p = abs
		}
		return p, checkExecutable(p)
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" || !filepath.IsAbs(d) {
			continue // a relative PATH entry would depend on the working directory
		}
		p := filepath.Join(d, command)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("resolving command %q: not found in the provider's PATH", command)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("resolving command: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("resolving command %s: not an executable file", path)
	}
	return nil
}
