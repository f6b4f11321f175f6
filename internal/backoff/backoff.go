// Package backoff is the restart policy every provider instance runs under,
// a child on stdio (supervisor) and a remote server (remote) alike: how long
// to wait before the next attempt, and when a run counts as a quick failure.
// What an owner does once MaxFailures quick failures have come in a row is
// its own: the supervisor gives the child up, the remote manager keeps
// trying every Max.
package backoff

import (
	"math"
	"time"
)

// Defaults applied to a zero Policy field.
const (
	DefaultBase        = 500 * time.Millisecond
	DefaultMax         = 30 * time.Second
	DefaultResetAfter  = 60 * time.Second
	DefaultMaxFailures = 5
)

// Policy is a restart policy. Zero fields take the defaults (WithDefaults).
type Policy struct {
	// Base is the first delay (default 500ms); it doubles with each
	// consecutive quick failure, with ±25% jitter, never below Base.
	Base time.Duration
	// Max caps the delay (default 30s).
	Max time.Duration
	// ResetAfter is how long a run must last to not count as a quick failure;
	// such a run resets the failure count and the delay (default 60s).
	ResetAfter time.Duration
	// MaxFailures consecutive quick failures put the instance in StateFailed
	// (default 5).
	MaxFailures int
}

// WithDefaults returns p with zero (or negative) fields set to their
// defaults, and Max raised to Base if it is below it.
func (p Policy) WithDefaults() Policy {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&p.Base, DefaultBase)
	def(&p.Max, DefaultMax)
	def(&p.ResetAfter, DefaultResetAfter)
	if p.Max < p.Base {
		p.Max = p.Base
	}
	if p.MaxFailures <= 0 {
		p.MaxFailures = DefaultMaxFailures
	}
	return p
}

// Delay is the wait before attempt n (1 is the first restart; below 1 counts
// as 1): Base·2^(n-1), scaled by a jitter factor in [0.75, 1.25) drawn from u
// in [0,1), and kept within [Base, Max].
func (p Policy) Delay(n int, u float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(p.Base) * math.Pow(2, float64(min(n-1, 62)))
	d *= 0.75 + 0.5*u
	if d > float64(p.Max) {
		return p.Max
	}
	if d < float64(p.Base) {
		return p.Base
	}
	return time.Duration(d)
}

// Runs counts an instance's runs under a Policy. The zero value is ready to
// use; it is not safe for concurrent use (an instance's run loop owns it).
type Runs struct {
	failures int // consecutive quick failures
	attempt  int // restarts since the last stable run
}

// Run is how one run of an instance ended.
type Run struct {
	Ready  bool          // it came up (initialized and was published)
	Forced bool          // its owner ended it as unhealthy: always a failure
	Ran    time.Duration // how long it lasted
}

// Ended records a run that ended and returns the quick failures in a row so
// far and the number of the attempt that comes next (for Delay). A run that
// came up, was not forced, and lasted ResetAfter or longer is stable: it
// resets both counts.
func (r *Runs) Ended(p Policy, run Run) (failures, attempt int) {
	if !run.Ready || run.Forced || run.Ran < p.ResetAfter {
		r.failures++
	} else {
		r.failures, r.attempt = 0, 0
	}
	r.attempt++
	return r.failures, r.attempt
}

// Clock is the time source of restart delays; tests inject their own.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the system's clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
