//go:build unix

package supervisor

import (
	"bytes"
	"errors"
	"fmt"
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
// Unix stream socket to the reaper's stdin and registers, when a provider
// starts, one line per thing to kill, and unregisters them once the provider
// is gone:
//
//	+PGID   its process group
//	+cDIR   a cgroup of it: every process in it (then the group is removed)
//	+tPID   the subtree of PID, a child subreaper (the subreaper mode)
//	+hPID   not a kill: the line carries (SCM_RIGHTS) copies of the
//	        gateway's ends of PID's stdin, stdout and stderr, which the
//	        reaper holds open
//
// ("-" instead of "+" unregisters; "-hPID" closes the copies). When the
// socket reaches EOF, which the kernel guarantees however the gateway dies,
// the reaper kills everything still registered and exits: subtrees first
// (stopping every process of one before killing any, so that nothing leaves
// it), then groups and cgroups.
//
// The held pipes keep a subreaper-mode provider from learning of the
// gateway's death by EOF on its stdin or EPIPE on its stdout before the
// reaper has stopped it. Its parent-death SIGSTOP usually comes first, but
// the kernel closes the dead gateway's files and sends that signal at
// different points of its exit, so under load a provider that exits at EOF
// (as MCP servers do) could exit first; its orphans were then reparented
// past the dead gateway, out of the subtree the reaper walks, and survived.
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

// heldPipes is how many files a "+h" registration carries.
const heldPipes = 3

// runReaper reads registrations from f (the gateway's socket) until it ends,
// then kills what is left. The pipes it holds close when it exits, after the
// kills.
func runReaper(f *os.File) {
	regs := map[string]bool{}
	held := map[string][]int{}
	var rights [][]int // received with "+h" lines not yet parsed, in order
	readLines(f, func(fds []int) { rights = append(rights, fds) }, func(line string) {
		if len(line) < 2 {
			return
		}
		reg := line[1:]
		switch {
		case reg[0] == 'h' && line[0] == '+':
			if len(rights) > 0 {
				closeFDs(held[reg])
				held[reg], rights = rights[0], rights[1:]
			}
		case reg[0] == 'h':
			closeFDs(held[reg])
			delete(held, reg)
		case line[0] == '+':
			regs[reg] = true
		case line[0] == '-':
			delete(regs, reg)
		}
	})
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

// readLines reads f until EOF or an error, calling line for every complete
// line and rights, before it, for the files passed with the bytes read.
// Linux hands files over with the first byte of the message they were sent
// with and never with another message's, so a line's files arrive before
// its end.
func readLines(f *os.File, rights func([]int), line func(string)) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, syscall.CmsgSpace(4*heldPipes))
	var pending []byte
	for {
		var n, oobn int
		var rerr error
		cerr := rc.Read(func(fd uintptr) bool { // the socket blocks
			n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), buf, oob, 0)
			return true
		})
		if errors.Is(rerr, syscall.EINTR) {
			continue
		}
		if oobn > 0 {
			if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if fds, err := syscall.ParseUnixRights(&m); err == nil {
						rights(fds)
					}
				}
			}
		}
		pending = append(pending, buf[:max(n, 0)]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			line(string(pending[:i]))
			pending = pending[i+1:]
		}
		if n <= 0 || rerr != nil || cerr != nil || len(pending) > 64<<10 {
			return
		}
	}
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = syscall.Close(fd)
	}
}

// reaper is the gateway's side: it starts the helper on first use and keeps
// it informed. A helper that died is restarted at once with the current
// registrations.
type reaper struct {
	log zerolog.Logger

	mu      sync.Mutex
	regs    map[string]int // registration (without its sign) -> how many hold it
	held    map[int][]int  // provider pid -> our duplicates of its pipe ends (hold)
	w       *os.File       // our end of the helper's stdin socket; nil when not running
	done    chan struct{}  // closed when the helper exited
	closing bool           // close was called: an exit is not a death
	warned  bool
}

func newReaper(log zerolog.Logger) *reaper {
	return &reaper{log: log, regs: map[string]int{}, held: map[int][]int{}}
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

// hold makes the helper hold the pipe ends of provider pid (its stdin's
// write end, its stdout's and stderr's read ends) until release, or, if the
// gateway dies first, until it has killed everything registered: the
// provider sees no EOF and no EPIPE from the gateway's death before it is
// stopped. The subreaper mode needs it (see the top of this file). A
// provider that is to see EOF on its stdin (a graceful stop) must be
// released first.
func (r *reaper) hold(pid int, files ...*os.File) error {
	fds := make([]int, 0, len(files))
	for _, f := range files {
		fd, err := dupCloexec(f)
		if err != nil {
			closeFDs(fds)
			return fmt.Errorf("holding the pipes of provider %d: %w", pid, err)
		}
		fds = append(fds, fd)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	closeFDs(r.held[pid])
	r.held[pid] = fds
	if r.w == nil {
		r.closing = false
		if err := r.startLocked(); err != nil {
			r.warnLocked(err)
		}
		return nil // startLocked passed every held pipe, these included
	}
	r.sendHeldLocked(pid, fds)
	return nil
}

// release closes our and the helper's copies of pid's pipes. Idempotent.
func (r *reaper) release(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fds, ok := r.held[pid]
	if !ok {
		return
	}
	delete(r.held, pid)
	closeFDs(fds)
	if r.w != nil {
		r.sendLocked('-', "h"+strconv.Itoa(pid))
	}
}

// dupCloexec duplicates f's descriptor (close-on-exec) without changing f's
// mode: (*os.File).Fd would make it blocking and break its deadlines.
func dupCloexec(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		syscall.ForkLock.RLock()
		defer syscall.ForkLock.RUnlock()
		if nfd, derr = syscall.Dup(int(fd)); derr == nil {
			syscall.CloseOnExec(nfd)
		}
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}

func (r *reaper) sendLocked(op byte, reg string) {
	r.sendMsgLocked(fmt.Sprintf("%c%s\n", op, reg), nil)
}

func (r *reaper) sendHeldLocked(pid int, fds []int) {
	r.sendMsgLocked("+h"+strconv.Itoa(pid)+"\n", syscall.UnixRights(fds...))
}

// sendMsgLocked writes line with oob, its ancillary data, sent with the
// line's first byte. The socket blocks.
func (r *reaper) sendMsgLocked(line string, oob []byte) {
	rc, err := r.w.SyscallConn()
	if err == nil {
		b := []byte(line)
		cerr := rc.Write(func(fd uintptr) bool {
			for len(b) > 0 && err == nil {
				var n int
				n, err = syscall.SendmsgN(int(fd), b, oob, nil, 0)
				switch {
				case errors.Is(err, syscall.EINTR):
					err = nil
				case err == nil:
					b, oob = b[n:], nil
				}
			}
			return true
		})
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
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
	pr, pw, err := socketPair()
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
	for pid, fds := range r.held {
		r.sendHeldLocked(pid, fds)
		if r.w == nil {
			return errors.New("starting reaper: it exited at once")
		}
	}
	return nil
}

// socketPair returns the two ends of a Unix stream socket, close-on-exec:
// one for the helper's stdin, one for us.
func socketPair() (theirs, ours *os.File, err error) {
	syscall.ForkLock.RLock() // no fork may inherit them before close-on-exec
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("creating a socket pair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "reaper"), os.NewFile(uintptr(fds[1]), "reaper"), nil
}

// exited is called when the helper fed by w has exited. If nobody closed it,
// it died: it is restarted with the current registrations and held pipes.
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
	if len(r.regs) == 0 && len(r.held) == 0 {
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
