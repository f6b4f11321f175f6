// Package lifecycle is the life of one provider instance as the supervisor
// (a child on stdio) and the remote manager (a server over HTTP) both keep
// it: the state a status shows and the channel that announces each change,
// the stop signal and the end of the instance's goroutine, and the wait for
// readiness. What an instance does in each state (spawn and watch a child,
// connect to a server), and what it does when it keeps failing, stays with
// its owner.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// Life is embedded in an instance and set up with Init before the
// instance's goroutine starts. The fields after Mu are guarded by it; set
// State only with SetState or SetStateLocked, which announce the change.
type Life struct {
	stopOnce  sync.Once
	stopCh    chan struct{} // closed by RequestStop
	done      chan struct{} // closed by End, when the instance's goroutine returns
	finalized chan struct{} // closed after the finalizer has run
	finalize  func()

	Mu        sync.Mutex
	State     switchboard.ProviderState
	Restarts  int
	StartedAt time.Time
	LastErr   string
	LastExit  string
	Tools     int
	changed   chan struct{} // closed and replaced on every state change
}

// Init makes l a starting instance's. finalize runs once, after a stop was
// requested and the instance's goroutine has ended (End); it takes the
// instance out of its owner's table.
func (l *Life) Init(finalize func()) {
	l.stopCh = make(chan struct{})
	l.done = make(chan struct{})
	l.finalized = make(chan struct{})
	l.changed = make(chan struct{})
	l.finalize = finalize
	l.State = switchboard.StateStarting
}

// End is deferred by the instance's goroutine: it has returned.
func (l *Life) End() { close(l.done) }

// RequestStop asks the instance's goroutine to stop and return, and starts
// the finalizer, which waits for it. Idempotent.
func (l *Life) RequestStop() {
	l.stopOnce.Do(func() {
		close(l.stopCh)
		go func() {
			defer close(l.finalized)
			<-l.done
			l.finalize()
		}()
	})
}

// Stop requests a stop and waits until the instance is finalized. If ctx
// ends first it returns ctx's error and the stop carries on.
func (l *Life) Stop(ctx context.Context) error {
	l.RequestStop()
	select {
	case <-l.finalized:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stopping is closed once a stop was requested.
func (l *Life) Stopping() <-chan struct{} { return l.stopCh }

// StopRequested reports whether a stop was requested.
func (l *Life) StopRequested() bool {
	select {
	case <-l.stopCh:
		return true
	default:
		return false
	}
}

// SetState sets the state and announces the change.
func (l *Life) SetState(st switchboard.ProviderState) {
	l.Mu.Lock()
	l.SetStateLocked(st)
	l.Mu.Unlock()
}

// SetStateLocked is SetState with Mu held.
func (l *Life) SetStateLocked(st switchboard.ProviderState) {
	l.State = st
	close(l.changed)
	l.changed = make(chan struct{})
}

// SetErr records the error a status shows.
func (l *Life) SetErr(err error) {
	l.Mu.Lock()
	l.LastErr = err.Error()
	l.Mu.Unlock()
}

// Is reports whether the instance is in state st.
func (l *Life) Is(st switchboard.ProviderState) bool {
	l.Mu.Lock()
	defer l.Mu.Unlock()
	return l.State == st
}

// Restarted counts one more restart.
func (l *Life) Restarted() {
	l.Mu.Lock()
	l.Restarts++
	l.Mu.Unlock()
}

// AwaitReady blocks until the instance runs (nil), has failed or stopped
// (an EUNAVAILABLE error), or ctx ends. With firstTry, a failed attempt the
// instance backs off from is an error too. A bound above zero limits the
// wait to that long from when the instance last left StateQueued (ETIMEOUT
// past it): the time an instance waits for its turn to start is not its own,
// and only ctx bounds that. name is what the errors call the instance
// ("provider fs"); redact scrubs the last error before it is shown.
func (l *Life) AwaitReady(ctx context.Context, name string, firstTry bool, bound time.Duration, redact func(string) string) error {
	var timer *time.Timer
	var expired <-chan time.Time // nil while queued, or without a bound
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.Mu.Lock()
		st, lastErr, changed := l.State, l.LastErr, l.changed
		l.Mu.Unlock()
		switch {
		case st == switchboard.StateRunning:
			return nil
		case st == switchboard.StateFailed, firstTry && st == switchboard.StateBackoff:
			return switchboard.Errorf(switchboard.EUNAVAILABLE, "waiting for %s: failed: %s", name, redact(lastErr))
		case st == switchboard.StateStopping, st == switchboard.StateStopped:
			return switchboard.Errorf(switchboard.EUNAVAILABLE, "waiting for %s: stopped", name)
		case st == switchboard.StateQueued:
			if timer != nil {
				timer.Stop()
				timer, expired = nil, nil
			}
		case bound > 0 && timer == nil:
			timer = time.NewTimer(bound)
			expired = timer.C
		}
		select {
		case <-changed:
		case <-expired:
			return switchboard.Errorf(switchboard.ETIMEOUT, "waiting for %s: not ready within %s", name, bound)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return switchboard.WrapError(switchboard.ETIMEOUT, ctx.Err(), "waiting for %s: not ready in time", name)
			}
			return fmt.Errorf("waiting for %s: %w", name, ctx.Err())
		}
	}
}
