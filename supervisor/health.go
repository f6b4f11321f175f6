package supervisor

import (
	"context"
	"sync/atomic"

	"github.com/switchboard-mcp/switchboard"
)

// timeoutStreak counts the calls through one instance's Upstream that hit
// its CallTimeout in a row. When the count reaches max, tripped is signalled
// once; the instance then kills the child and restarts it (a child that
// times out call after call is wedged, and every later call would wait the
// whole CallTimeout for nothing). A nil *timeoutStreak counts nothing.
type timeoutStreak struct {
	max  int64 // <= 0: never trips
	n    atomic.Int64
	trip chan struct{}
}

func newTimeoutStreak(max int) *timeoutStreak {
	return &timeoutStreak{max: int64(max), trip: make(chan struct{}, 1)}
}

// observe records how a call ended. caller is the caller's own context:
// a call it cancelled, or whose deadline came before CallTimeout, is not the
// child's fault and does not count. Any answer from the child (a result or
// a JSON-RPC error) resets the count; other errors (the connection died, the
// queue was full) leave it alone.
func (t *timeoutStreak) observe(caller context.Context, err error) {
	if t == nil {
		return
	}
	switch {
	case err == nil, switchboard.IsRPCError(err):
		t.n.Store(0)
	case switchboard.ErrorCode(err) == switchboard.ETIMEOUT && caller.Err() == nil:
		if t.n.Add(1) == t.max {
			select {
			case t.trip <- struct{}{}:
			default:
			}
		}
	}
}

// tripped is signalled once the count reaches max.
func (t *timeoutStreak) tripped() <-chan struct{} { return t.trip }

// count is the current number of calls that timed out in a row.
func (t *timeoutStreak) count() int64 { return t.n.Load() }
