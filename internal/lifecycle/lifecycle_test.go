package lifecycle

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

func redact(s string) string { return strings.ReplaceAll(s, "hunter2", "[REDACTED]") }

// An instance made the way supervisor and remote make theirs: run ends its
// goroutine when a stop is requested.
func start(t *testing.T) (*Life, *atomic.Int32) {
	t.Helper()
	l := new(Life)
	var finalized atomic.Int32
	l.Init(func() { finalized.Add(1) })
	go func() {
		defer l.End()
		<-l.Stopping()
	}()
	return l, &finalized
}

func TestStopWaitsForTheGoroutineThenFinalizesOnce(t *testing.T) {
	l, finalized := start(t)
	if l.State != switchboard.StateStarting {
		t.Fatalf("a new instance is %s, want starting", l.State)
	}
	if l.StopRequested() {
		t.Fatal("stop requested before anyone asked")
	}
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !l.StopRequested() {
		t.Error("StopRequested is false after Stop")
	}
	l.RequestStop() // idempotent
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := finalized.Load(); n != 1 {
		t.Errorf("finalize ran %d times, want 1", n)
	}
}

func TestStopGivesUpWithItsContextAndTheStopCarriesOn(t *testing.T) {
	l := new(Life)
	var finalized atomic.Int32
	l.Init(func() { finalized.Add(1) })
	release := make(chan struct{})
	go func() {
		defer l.End()
		<-release // a goroutine slow to notice the stop
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want the context's deadline", err)
	}
	if finalized.Load() != 0 {
		t.Fatal("finalized before the goroutine ended")
	}
	close(release)
	if err := l.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := finalized.Load(); n != 1 {
		t.Errorf("finalize ran %d times, want 1", n)
	}
}

func TestAwaitReady(t *testing.T) {
	for _, tc := range []struct {
		name     string
		to       switchboard.ProviderState
		firstTry bool
		want     string // "" for nil
		code     string
	}{
		{"running", switchboard.StateRunning, false, "", ""},
		{"failed", switchboard.StateFailed, false, "waiting for provider fs: failed: bad password [REDACTED]", switchboard.EUNAVAILABLE},
		{"stopped", switchboard.StateStopped, false, "waiting for provider fs: stopped", switchboard.EUNAVAILABLE},
		{"first try backs off", switchboard.StateBackoff, true, "waiting for provider fs: failed: bad password [REDACTED]", switchboard.EUNAVAILABLE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := start(t)
			defer l.Stop(context.Background())
			got := make(chan error, 1)
			go func() { got <- l.AwaitReady(context.Background(), "provider fs", tc.firstTry, 0, redact) }()
			select {
			case err := <-got:
				t.Fatalf("returned %v while the instance was starting", err)
			case <-time.After(20 * time.Millisecond):
			}
			l.SetErr(errors.New("bad password hunter2"))
			l.SetState(tc.to) // the change wakes the waiter
			err := <-got
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.want || switchboard.ErrorCode(err) != tc.code {
				t.Fatalf("err = %v (%s), want %q (%s)", err, switchboard.ErrorCode(err), tc.want, tc.code)
			}
		})
	}
}

// Backing off is not the end of the wait unless it is the first try.
func TestAwaitReadyWaitsThroughBackoff(t *testing.T) {
	l, _ := start(t)
	defer l.Stop(context.Background())
	l.SetState(switchboard.StateBackoff)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := l.AwaitReady(ctx, "provider fs", false, 0, redact)
	if switchboard.ErrorCode(err) != switchboard.ETIMEOUT || !strings.Contains(err.Error(), "not ready in time") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := l.AwaitReady(cctx, "provider fs", false, 0, redact); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// The bound runs while the instance starts, not while it is queued: a wait
// that outlasted the bound in the queue still ends in readiness; once out of
// the queue the bound applies.
func TestAwaitReadyBoundSkipsTheQueue(t *testing.T) {
	const bound = 50 * time.Millisecond
	l, _ := start(t)
	defer l.Stop(context.Background())
	l.SetState(switchboard.StateQueued)
	got := make(chan error, 1)
	go func() { got <- l.AwaitReady(context.Background(), "provider fs", false, bound, redact) }()
	select {
	case err := <-got:
		t.Fatalf("returned %v while the instance was queued", err)
	case <-time.After(4 * bound):
	}
	l.SetState(switchboard.StateStarting)
	l.SetState(switchboard.StateRunning)
	if err := <-got; err != nil {
		t.Fatalf("err = %v, want nil: the queue's time counted against the bound", err)
	}

	l.SetState(switchboard.StateStarting)
	err := l.AwaitReady(context.Background(), "provider fs", false, bound, redact)
	if switchboard.ErrorCode(err) != switchboard.ETIMEOUT || !strings.Contains(err.Error(), "not ready within 50ms") {
		t.Fatalf("err = %v, want a timeout after the bound", err)
	}
}

func TestIsAndRestarted(t *testing.T) {
	l, _ := start(t)
	defer l.Stop(context.Background())
	if !l.Is(switchboard.StateStarting) || l.Is(switchboard.StateRunning) {
		t.Fatal("Is disagrees with the state")
	}
	l.Restarted()
	l.Restarted()
	l.Mu.Lock()
	n := l.Restarts
	l.Mu.Unlock()
	if n != 2 {
		t.Errorf("Restarts = %d, want 2", n)
	}
}
