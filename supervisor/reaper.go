//go:build unix

package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// The reaper is a tiny helper process, the gateway's own binary re-executed,
// that kills every provider process the gateway leaves behind when it dies
// without stopping them (SIGKILL, OOM kill, panic). Pdeathsig covers only the
// direct children; the reaper covers their descendants. The gateway keeps a
// pipe to the reaper's stdin and registers, when a provider starts, one line
// per thing to kill, and unregisters them once the provider is gone:
//
//	+PGID   its process group
//	+cDIR   a cgroup of it: every process in it (then the group is removed)
//	+tPID   the subtree of PID, a child subreaper (the subreaper mode)
//
// ("-" instead of "+" unregisters). When the pipe reaches EOF, which the
// kernel guarantees however the gateway dies, the reaper kills everything
// still registered and exits: subtrees first (stopping every process of one
// before killing any, so that nothing leaves it), then groups and cgroups.
const (
	reaperEnv = "SWITCHBOARD_SUPERVISOR_REAPER"
	reaperArg = "switchboard-supervisor-reaper"
)

// init turns any binary that imports this package into the reaper when it is
// started as one (the moby/pkg/reexec pattern): no change to main is needed.
func init() {
	if os.Getenv(reaperEnv) == "1" && len(os.Args) == 2 && os.Args[1] == reaperArg {
		runReaper(os.Stdin)
		os.Exit(0)
	}
}

// runReaper reads registrations from r until it ends, then kills what is left.
func runReaper(r io.Reader) {
	regs := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		switch line[0] {
		case '+':
			regs[line[1:]] = true
		case '-':
			delete(regs, line[1:])
		}
	}
	var groups, trees []int
	var dirs []string
	for reg := range regs {
		switch {
		case reg[0] == 'c' && len(reg) > 1 && reg[1] == '/':
			dirs = append(dirs, reg[1:])
		case reg[0] == 't':
			if pid, err := strconv.Atoi(reg[1:]); err == nil && pid > 1 {
				trees = append(trees, pid)
			}
		default:
			if pgid, err := strconv.Atoi(reg); err == nil && pgid > 1 {
				groups = append(groups, pgid)
			}
		}
	}
	var wg sync.WaitGroup
	for _, pid := range trees { // while the subreapers still hold their subtrees
		wg.Go(func() { killSubtree(pid) })
	}
	wg.Wait()
	for _, pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	for _, dir := range dirs {
		wg.Go(func() { releaseCgroupDirs([]string{dir}) })
	}
	wg.Wait()
}

// reaper is the gateway's side: it starts the helper on first use and keeps
// it informed. A helper that died is restarted at once with the current
// registrations.
type reaper struct {
	log zerolog.Logger

	mu      sync.Mutex
	regs    map[string]int // registration (without its sign) -> how many hold it
	w       *os.File       // the helper's stdin; nil when not running
	done    chan struct{}  // closed when the helper exited
	closing bool           // close was called: an exit is not a death
	warned  bool
}

func newReaper(log zerolog.Logger) *reaper {
	return &reaper{log: log, regs: map[string]int{}}
}

// ensure starts the helper if it is not running, and reports whether it runs.
func (r *reaper) ensure() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		r.closing = false
		if err := r.startLocked(); err != nil {
			r.warnLocked(err)
		}
	}
	return r.w != nil
}

func (r *reaper) warnLocked(err error) {
	if !r.warned {
		r.warned = true
		r.log.Warn().Err(err).Msg("starting the process reaper failed; descendants of providers may outlive a killed gateway")
	}
}

// add registers lines made by enforcement.registrations ("+..." each).
func (r *reaper) add(lines ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range lines {
		r.regs[l[1:]]++
	}
	if r.w == nil {
		r.closing = false
		if err := r.startLocked(); err != nil {
			r.warnLocked(err)
		}
		return // startLocked sent every registration, these included
	}
	for _, l := range lines {
		r.sendLocked('+', l[1:])
	}
}

// remove unregisters lines given to add, once the processes are gone.
func (r *reaper) remove(lines ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range lines {
		reg := l[1:]
		if r.regs[reg]--; r.regs[reg] > 0 {
			continue
		}
		delete(r.regs, reg)
		if r.w != nil {
			r.sendLocked('-', reg)
		}
	}
}

func (r *reaper) sendLocked(op byte, reg string) {
	if _, err := fmt.Fprintf(r.w, "%c%s\n", op, reg); err != nil {
		r.log.Warn().Err(err).Msg("process reaper gone; restarting it on the next spawn")
		_ = r.w.Close()
		r.w = nil
	}
}

func (r *reaper) startLocked() error {
	exe := "/proc/self/exe" // still right if the binary was replaced on disk
	if runtime.GOOS != "linux" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("starting reaper: %w", err)
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting reaper: %w", err)
	}
	cmd := &exec.Cmd{
		Path: exe,
		Args: []string{"switchboard", reaperArg},
		// GORACE: a race-enabled binary (tests) otherwise sleeps 1s at exit.
		Env:         []string{reaperEnv + "=1", "GORACE=atexit_sleep_ms=0"},
		Stdin:       pr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}, // out of reach of terminal signals
	}
	spawnMu.RLock()
	err = cmd.Start()
	if err == nil {
		ownChildren.Store(cmd.Process.Pid, struct{}{})
	}
	spawnMu.RUnlock()
	_ = pr.Close()
	if err != nil {
		_ = pw.Close()
		return fmt.Errorf("starting reaper: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		ownChildren.Delete(cmd.Process.Pid)
		close(done)
		r.exited(pw)
	}()
	r.w, r.done = pw, done
	for reg := range r.regs {
		r.sendLocked('+', reg)
		if r.w == nil {
			return errors.New("starting reaper: it exited at once")
		}
	}
	return nil
}

// exited is called when the helper fed by w has exited. If nobody closed it,
// it died: it is restarted with the current registrations.
func (r *reaper) exited(w *os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing || (r.w != nil && r.w != w) {
		return
	}
	if r.w == w {
		_ = w.Close()
		r.w = nil
	}
	if len(r.regs) == 0 {
		return
	}
	r.log.Warn().Msg("process reaper died; restarting it")
	if err := r.startLocked(); err != nil {
		r.warnLocked(err)
	}
}

// close ends the helper (which kills anything still registered) and waits a
// bounded time for it to exit. Idempotent; a later add starts a new helper.
func (r *reaper) close() {
	r.mu.Lock()
	w, done := r.w, r.done
	r.w, r.done = nil, nil
	r.closing = true
	r.mu.Unlock()
	if w != nil {
		_ = w.Close()
	}
	if done != nil {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.log.Warn().Msg("process reaper did not exit")
		}
	}
}
