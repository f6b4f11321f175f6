//go:build unix

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// errOverMemory marks the exit of a child killed for exceeding its memory
// limit.
var errOverMemory = errors.New("killed: over memory limit")

// cgroupSeq numbers instance cgroups within this process, across Supervisors.
var cgroupSeq atomic.Uint64

// limiter enforces the resource limits of one Supervisor's children.
type limiter struct {
	log    zerolog.Logger
	detect func() mechanism // detectMechanism; tests substitute their own

	once sync.Once
	mech mechanism

	noCloneInto atomic.Bool // cloning into a cgroup failed once: place children by pid

	track tracker // how every provider's processes are found (track.go)
}

func newLimiter(log zerolog.Logger) *limiter {
	return &limiter{log: log, detect: detectMechanism, track: tracker{detect: detectTracking}}
}

// mechanism returns the mechanism in force, detecting and logging it on the
// first call.
func (l *limiter) mechanism() mechanism {
	l.once.Do(func() {
		l.mech = l.detect()
		ev := l.log.Info()
		if l.mech.kind == kindRlimit || l.mech.kind == kindNone {
			ev = l.log.Warn()
		}
		if l.mech.memBase != "" {
			ev = ev.Str("memory_cgroup", l.mech.memBase)
		}
		if l.mech.cpuBase != "" {
			ev = ev.Str("cpu_cgroup", l.mech.cpuBase)
		}
		if l.mech.note != "" {
			ev = ev.Str("note", l.mech.note)
		}
		ev.Str("mechanism", string(l.mech.kind)).Bool("cpu_limits", l.mech.limitsCPU()).Msg("resource limits: mechanism chosen")
	})
	return l.mech
}

// describe returns the ProviderStatus.Limits text for r ("" when r asks for
// nothing, without detecting anything).
func (l *limiter) describe(r resourceLimits) string {
	if r.none() {
		return ""
	}
	return l.mechanism().describe(r)
}

// enforcement is the limits and the process tracking applied to one spawn
// of a child.
type enforcement struct {
	limits    resourceLimits
	cg        *cgroup // nil when no cgroup is used
	dataLimit int64   // > 0: RLIMIT_DATA set on the child (after start, or by the trampoline)
	// subreaper: the child is started through the exec trampoline, which
	// makes it a child subreaper (tracking without cgroups; see track.go).
	subreaper bool
	// trackOnly: cg enforces no limit, it only tracks. If the child cannot
	// be placed in it, it runs anyway (untracked), with placeErr set.
	trackOnly bool
	placeErr  error
}

// prepare readies the limits and the tracking of one spawn of key, creating
// its cgroup. It returns nil when there is nothing to apply: no limits, and
// tracking by process group only.
func (l *limiter) prepare(key switchboard.InstanceKey, r resourceLimits) (*enforcement, error) {
	t := l.tracking()
	var m mechanism
	if !r.none() {
		m = l.mechanism()
	}
	limitsByCgroup := m.kind == kindCgroup1 || m.kind == kindCgroup2
	trackBase := ""
	if t.kind == trackCgroup1 || t.kind == trackCgroup2 {
		trackBase = t.base
	}
	e := &enforcement{limits: r}
	if limitsByCgroup || trackBase != "" {
		cg, err := newCgroup(m, t.kind, trackBase, cgroupName(key, os.Getpid(), cgroupSeq.Add(1)), r, !l.noCloneInto.Load())
		switch {
		case err != nil && limitsByCgroup:
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "creating the cgroup of provider %s", key)
		case err != nil: // tracking only: run it, tracked by its process group alone
			l.log.Warn().Err(err).Str("provider", key.String()).Msg("process tracking: creating the provider's cgroup failed; descendants that leave its process group will not be found")
		}
		e.cg = cg
		e.trackOnly = !limitsByCgroup
	}
	if m.kind == kindRlimit && r.memory > 0 {
		e.dataLimit = r.memory
	}
	if e.cg == nil && t.kind == trackSubreaper {
		e.subreaper = true
	}
	if e.cg == nil && e.dataLimit == 0 && !e.subreaper {
		return nil, nil
	}
	return e, nil
}

// placement tells startProcess how to put the child under e's limits and
// tracking. deathSig is the child's parent-death signal.
func (e *enforcement) placement(deathSig syscall.Signal) *placement {
	if e == nil {
		return &placement{cgroupFD: -1, deathSig: deathSig}
	}
	pl := &placement{
		cgroupFD:  e.cg.cloneFD(),
		before:    e.cg.joinThread,
		subreaper: e.subreaper,
		deathSig:  deathSig,
		after: func(pid int, placed bool) error {
			if e.cg != nil && !placed {
				if err := e.cg.place(pid); err != nil {
					if !e.trackOnly {
						return err
					}
					e.placeErr = err
				}
			}
			if e.dataLimit > 0 && !e.subreaper {
				return limitData(pid, e.dataLimit)
			}
			return nil
		},
	}
	if e.subreaper {
		pl.dataLimit = e.dataLimit // the trampoline sets it just before exec
	}
	return pl
}

// registrations are the reaper's lines for the child pid under e: its process
// group, its cgroups (every process in them is killed if the gateway dies) or,
// as a child subreaper, its whole subtree.
func (e *enforcement) registrations(pid int) []string {
	regs := []string{"+" + strconv.Itoa(pid)}
	switch {
	case e == nil:
	case e.cg != nil:
		for _, dir := range e.cg.dirs {
			regs = append(regs, "+c"+dir)
		}
	case e.subreaper:
		regs = append(regs, "+t"+strconv.Itoa(pid))
	}
	return regs
}

// started is called once startProcess returned: it closes what only the
// spawn needed and notes a failed clone into the cgroup.
func (l *limiter) started(e *enforcement, pl *placement) {
	if e == nil {
		return
	}
	e.cg.closeDir()
	if pl != nil && pl.cloneErr != nil && l.noCloneInto.CompareAndSwap(false, true) {
		l.log.Warn().Err(pl.cloneErr).Msg("resource limits: starting a child directly in its cgroup failed; moving children in right after start instead")
	}
}

// overMemory reports whether the child, which died of sig, was killed for
// exceeding its memory limit.
func (e *enforcement) overMemory(sig syscall.Signal) bool {
	return e != nil && e.cg != nil && e.limits.memory > 0 && sig == syscall.SIGKILL && e.cg.oomKilled()
}

// overMemoryError is the error recorded for such a child.
func (e *enforcement) overMemoryError() error {
	return fmt.Errorf("%w (%s)", errOverMemory, formatBytes(e.limits.memory))
}

// killRest SIGKILLs every process still in the child's cgroup (descendants
// that left its process group) and, when the gateway is a child subreaper,
// every process it adopted (the subtree of a child subreaper that died), and
// returns how many it signalled.
func (e *enforcement) killRest() int {
	n := 0
	if e != nil && e.cg != nil {
		n = e.cg.killAll()
	}
	return n + sweepAdopted()
}

// release removes the child's cgroup, killing anything left in it.
func (e *enforcement) release(log zerolog.Logger) {
	if e == nil || e.cg == nil {
		return
	}
	if err := e.cg.remove(); err != nil {
		log.Warn().Err(err).Msg("removing the provider's cgroup failed")
	}
}
