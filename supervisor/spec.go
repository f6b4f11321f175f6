package supervisor

import (
	"maps"
	"slices"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/backoff"
	"github.com/switchboard-mcp/switchboard/internal/gate"
)

// Defaults applied to a zero Spec field.
const (
	DefaultInitTimeout  = 30 * time.Second
	DefaultStopGrace    = 2 * time.Second
	DefaultKillGrace    = 2 * time.Second
	DefaultGarbageLimit = 100
)

// Spec describes one provider instance: what to run and its limits. Zero fields
// take the documented defaults.
type Spec struct {
	// Key names the instance.
	Key switchboard.InstanceKey
	// Command is the program, run with Args as argv (never through a shell). A
	// relative Command containing '/' is resolved against Dir; a bare name is
	// looked up in the child's PATH.
	Command string
	Args    []string
	// Env is added to the allowlisted base environment. Values may be secrets:
	// they are never logged.
	Env map[string]string
	// Dir is the child's working directory (usually the config file's folder),
	// and the base for a relative Command. Empty means the gateway's.
	Dir string

	// InitTimeout bounds initialize plus the first catalog fetch (default 30s).
	InitTimeout time.Duration
	// Limits bound the calls through the Upstream: the timeout, the calls
	// in flight and waiting, and the timeouts in a row after which the
	// child is killed and restarted (see gate.Limits for the defaults).
	Limits
	// MaxMessageBytes bounds one line from the child (default 16 MiB).
	MaxMessageBytes int
	// Roots tells the child that the client side answers roots/list (the
	// gateway relays it to the client whose call is in flight). Set it only
	// for an instance that serves one user.
	Roots bool
	// Protocol chooses the era the child is spoken to in: ProtocolAuto
	// (probe with server/discover, else initialize), ProtocolSession or
	// ProtocolStateless.
	Protocol string
	// StopGrace is how long Stop waits after closing stdin before SIGTERM
	// (default 2s); KillGrace is how long it then waits before SIGKILL
	// (default 2s).
	StopGrace, KillGrace time.Duration
	// Backoff is the restart policy. After Backoff.MaxFailures quick failures
	// in a row the child is given up: the instance stays in StateFailed until
	// it is started again.
	Backoff BackoffPolicy
	// GarbageLimit is how many invalid stdout lines per minute are tolerated
	// before the child is killed and restarted (default 100; negative disables).
	GarbageLimit int

	// MaxMemoryBytes caps the child's memory (0 = unlimited). With cgroups it
	// bounds the memory of the child and all its descendants together, and a
	// child over it is OOM-killed; in the rlimit fallback it is each process's
	// RLIMIT_DATA, so allocations beyond it fail. See the package comment.
	MaxMemoryBytes int64
	// MaxCPU caps the child's CPU time, in CPUs (0.5 = half of one CPU;
	// 0 = unlimited; at most 4096). Only cgroups can enforce it; see the
	// package comment.
	MaxCPU float64
}

// BackoffPolicy is the restart policy of a Spec (see internal/backoff).
type BackoffPolicy = backoff.Policy

// Limits are a Spec's limits on calls (see internal/gate).
type Limits = gate.Limits

// withDefaults returns s with zero fields set to their defaults.
func (s Spec) withDefaults() Spec {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&s.InitTimeout, DefaultInitTimeout)
	def(&s.StopGrace, DefaultStopGrace)
	def(&s.KillGrace, DefaultKillGrace)
	s.Backoff = s.Backoff.WithDefaults()
	s.Limits = s.Limits.WithDefaults()
	if s.MaxMessageBytes <= 0 {
		s.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if s.GarbageLimit == 0 {
		s.GarbageLimit = DefaultGarbageLimit
	}
	return s
}

// Equal reports whether s and o describe the same instance with the same
// settings, i.e. whether a reload from o to s needs no restart. Defaults are
// applied before comparing, and a nil Env equals an empty one.
func (s Spec) Equal(o Spec) bool {
	a, b := s.withDefaults(), o.withDefaults()
	return a.Key == b.Key &&
		a.Command == b.Command &&
		slices.Equal(a.Args, b.Args) &&
		maps.Equal(a.Env, b.Env) &&
		a.Dir == b.Dir &&
		a.InitTimeout == b.InitTimeout &&
		a.Limits == b.Limits &&
		a.MaxMessageBytes == b.MaxMessageBytes &&
		a.Roots == b.Roots &&
		a.Protocol == b.Protocol &&
		a.StopGrace == b.StopGrace &&
		a.KillGrace == b.KillGrace &&
		a.Backoff == b.Backoff &&
		a.GarbageLimit == b.GarbageLimit &&
		a.MaxMemoryBytes == b.MaxMemoryBytes &&
		a.MaxCPU == b.MaxCPU
}

// resources returns the resource limits s asks for.
func (s Spec) resources() resourceLimits {
	return resourceLimits{memory: s.MaxMemoryBytes, cpu: s.MaxCPU}
}
