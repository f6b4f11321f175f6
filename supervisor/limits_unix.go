//go:build unix

package supervisor

import (
	"errors"
	"fmt"
	"os"
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
}

func newLimiter(log zerolog.Logger) *limiter {
	return &limiter{log: log, detect: detectMechanism}
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

// enforcement is the limits applied to one spawn of a child.
type enforcement struct {
	limits    resourceLimits
	cg        *cgroup // nil when no cgroup is used
	dataLimit int64   // > 0: RLIMIT_DATA set on the child right after start
}

// prepare readies the limits of one spawn of key, creating its cgroup. It
// returns nil when r asks for nothing.
func (l *limiter) prepare(key switchboard.InstanceKey, r resourceLimits) (*enforcement, error) {
	if r.none() {
		return nil, nil
	}
	m := l.mechanism()
	e := &enforcement{limits: r}
	switch m.kind {
	case kindCgroup1, kindCgroup2:
		cg, err := newCgroup(m, cgroupName(key, os.Getpid(), cgroupSeq.Add(1)), r, !l.noCloneInto.Load())
		if err != nil {
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "creating the cgroup of provider %s", key)
		}
		e.cg = cg
	case kindRlimit:
		e.dataLimit = r.memory
	}
	return e, nil
}

// placement tells startProcess how to put the child under e's limits.
func (e *enforcement) placement() *placement {
	if e == nil {
		return nil
	}
	return &placement{
		cgroupFD: e.cg.cloneFD(),
		before:   e.cg.joinThread,
		after: func(pid int, placed bool) error {
			if e.cg != nil && !placed {
				if err := e.cg.place(pid); err != nil {
					return err
				}
			}
			if e.dataLimit > 0 {
				return limitData(pid, e.dataLimit)
			}
			return nil
		},
	}
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
// that left its process group) and returns how many it signalled.
func (e *enforcement) killRest() int {
	if e == nil || e.cg == nil {
		return 0
	}
	return e.cg.killAll()
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
