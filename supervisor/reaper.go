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
// that kills every provider process group the gateway leaves behind when it dies
// without stopping them (SIGKILL, OOM kill, panic). Pdeathsig covers only the
// direct children; the reaper covers their descendants. The gateway keeps a pipe
// to the reaper's stdin and sends "+pgid" when a group starts and "-pgid" when
// it is gone; when the pipe reaches EOF, which the kernel guarantees however the
// gateway dies, the reaper SIGKILLs the groups still registered and exits.
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
	groups := map[int]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pgid] = true
		case '-':
			delete(groups, pgid)
		}
	}
	for pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// reaper is the gateway's side: it starts the helper on first use and keeps
// it informed. A helper that died is restarted with the current groups.
type reaper struct {
	log zerolog.Logger

	mu     sync.Mutex
	groups map[int]struct{}
	w      *os.File      // the helper's stdin; nil when not running
	done   chan struct{} // closed when the helper exited
	warned bool
}

func newReaper(log zerolog.Logger) *reaper {
	return &reaper{log: log, groups: map[int]struct{}{}}
}

// add registers a live process group.
func (r *reaper) add(pgid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groups[pgid] = struct{}{}
	if r.w == nil {
		if err := r.startLocked(); err != nil {
			if !r.warned {
				r.warned = true
				r.log.Warn().Err(err).Msg("starting the process-group reaper failed; grandchildren may outlive a killed gateway")
			}
			return
		}
		return // startLocked sent every group, this one included
	}
	r.sendLocked('+', pgid)
}

// remove unregisters a group that is gone.
func (r *reaper) remove(pgid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.groups, pgid)
	if r.w != nil {
		r.sendLocked('-', pgid)
	}
}

func (r *reaper) sendLocked(op byte, pgid int) {
	if _, err := fmt.Fprintf(r.w, "%c%d\n", op, pgid); err != nil {
		r.log.Warn().Err(err).Msg("process-group reaper gone; restarting it on the next spawn")
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
	err = cmd.Start()
	_ = pr.Close()
	if err != nil {
		_ = pw.Close()
		return fmt.Errorf("starting reaper: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.w, r.done = pw, done
	for pgid := range r.groups {
		r.sendLocked('+', pgid)
		if r.w == nil {
			return errors.New("starting reaper: it exited at once")
		}
	}
	return nil
}

// close ends the helper (which kills any group still registered) and waits a
// bounded time for it to exit. Idempotent; a later add starts a new helper.
func (r *reaper) close() {
	r.mu.Lock()
	w, done := r.w, r.done
	r.w, r.done = nil, nil
	r.mu.Unlock()
	if w != nil {
		_ = w.Close()
	}
	if done != nil {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.log.Warn().Msg("process-group reaper did not exit")
		}
	}
}
