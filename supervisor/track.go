//go:build unix

package supervisor

import (
	"sync"
)

// Process tracking: how a Supervisor finds every process a provider started,
// whatever it does (a descendant may leave the provider's process group and
// session with setsid, and its parent may exit so that it is reparented), so
// that stopping the provider, or the death of the gateway, kills all of them.
// It is chosen once per Supervisor, at its first Start, and logged.
const (
	// trackCgroup2 and trackCgroup1: every spawn gets a cgroup of its own,
	// with or without resource limits. A cgroup holds every descendant; the
	// process cannot leave it (only a privileged one could move itself).
	trackCgroup2 = kindCgroup2
	trackCgroup1 = kindCgroup1
	// trackSubreaper: without a usable cgroup, each provider is made a child
	// subreaper (PR_SET_CHILD_SUBREAPER, set by an exec trampoline, so no
	// process stays in between), so that its orphaned descendants are
	// reparented to it rather than to init and never leave its subtree; the
	// gateway is a child subreaper too, so that the subtree of a provider that
	// died comes to the gateway, which kills and reaps it.
	trackSubreaper limitKind = "subreaper"
	// trackGroup: only the process group (platforms other than Linux).
	trackGroup limitKind = "process group"
)

// trackingEnv, set to "subreaper", makes the gateway use the subreaper way
// even where it could create cgroups (for tests and troubleshooting).
const trackingEnv = "SWITCHBOARD_PROCESS_TRACKING"

// trackMode is the process tracking a Supervisor uses.
type trackMode struct {
	kind limitKind
	// base is, for the cgroup kinds, the directory in which each spawn gets
	// its group (cgroup v1: in the first of the freezer, pids or memory
	// hierarchies the gateway can create groups in).
	base string
	// note explains the choice for the log: why better ways were not usable.
	note string
}

// tracker holds the tracking mode of one Supervisor, detected on first use.
type tracker struct {
	once   sync.Once
	mode   trackMode
	detect func() trackMode // detectTracking; tests substitute their own
}

// tracking returns the mode in force, detecting and logging it on the first
// call. The subreaper mode makes this process a child subreaper.
func (l *limiter) tracking() trackMode {
	l.track.once.Do(func() {
		m := l.track.detect()
		if m.kind == trackSubreaper {
			if err := becomeSubreaper(); err != nil {
				m = trackMode{kind: trackGroup, note: joinNotes(m.note, err.Error())}
			}
		}
		l.track.mode = m
		ev := l.log.Info()
		if m.kind != trackCgroup1 && m.kind != trackCgroup2 {
			ev = l.log.Warn()
		}
		if m.base != "" {
			ev = ev.Str("cgroup", m.base)
		}
		if m.note != "" {
			ev = ev.Str("note", m.note)
		}
		ev.Str("mechanism", string(m.kind)).Msg("process tracking: mechanism chosen")
	})
	return l.track.mode
}

func joinNotes(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
