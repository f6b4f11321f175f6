// Package gate is what every provider's Upstream enforces on a call, for a
// child on stdio (supervisor) and a remote server (remote) alike: a limit on
// the calls at the provider at once, a bounded queue of calls waiting for a
// slot, a per-call timeout, and the count of calls that hit that timeout in a
// row, which marks a wedged provider.
package gate

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// Conn is a provider connection behind a Gate.
type Conn interface {
	Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error)
	// Done is closed when the connection dies.
	Done() <-chan struct{}
	// Unavailable is the error of a call to method on the dead connection.
	Unavailable(method string) error
}

// Gate admits the calls to one provider connection.
type Gate struct {
	slots    chan struct{}
	waiting  atomic.Int64
	maxQueue int64
	timeout  time.Duration
	active   *atomic.Int64
	streak   *Streak
}

// New returns a gate for at most maxConcurrent calls at the provider at once
// and maxQueue more waiting for a slot (negative: none), each given timeout.
// active counts the calls at the provider (a status page may read it); after
// maxTimeouts calls in a row hit the timeout (≤ 0: never), Tripped is
// signalled.
func New(maxConcurrent, maxQueue int, timeout time.Duration, active *atomic.Int64, maxTimeouts int) *Gate {
	return &Gate{
		slots:    make(chan struct{}, maxConcurrent),
		maxQueue: int64(maxQueue),
		timeout:  timeout,
		active:   active,
		streak:   NewStreak(maxTimeouts),
	}
}

// Call waits for a slot, then calls conn with the per-call timeout. It fails
// at once with EOVERLOADED when the queue is full, and while it waits, when
// ctx ends (switchboard.CallContextError) or conn dies (conn.Unavailable).
// queued, when not nil, is called if the call has to wait.
func (g *Gate) Call(ctx context.Context, conn Conn, req *switchboard.Request, queued func()) (json.RawMessage, error) {
	select {
	case g.slots <- struct{}{}:
	default:
		if g.waiting.Add(1) > g.maxQueue {
			g.waiting.Add(-1)
			return nil, switchboard.Errorf(switchboard.EOVERLOADED, "calling %s: provider is overloaded", req.Method)
		}
		if queued != nil {
			queued()
		}
		select {
		case g.slots <- struct{}{}:
			g.waiting.Add(-1)
		case <-ctx.Done():
			g.waiting.Add(-1)
			return nil, switchboard.CallContextError(req.Method, ctx.Err())
		case <-conn.Done():
			g.waiting.Add(-1)
			return nil, conn.Unavailable(req.Method)
		}
	}
	g.active.Add(1)
	defer func() {
		g.active.Add(-1)
		<-g.slots
	}()
	callCtx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	res, err := conn.Call(callCtx, req)
	g.streak.Observe(ctx, err)
	return res, err
}

// Active is the number of calls at the provider.
func (g *Gate) Active() int64 { return g.active.Load() }

// Waiting is the number of calls waiting for a slot.
func (g *Gate) Waiting() int64 { return g.waiting.Load() }

// Tripped is signalled once maxTimeouts calls in a row have timed out.
func (g *Gate) Tripped() <-chan struct{} { return g.streak.Tripped() }

// Timeouts is the number of calls in a row that have timed out.
func (g *Gate) Timeouts() int64 { return g.streak.Count() }

// Streak counts the calls that hit their timeout in a row. When the count
// reaches max, Tripped is signalled once; the provider's owner then restarts
// it (a provider that times out call after call is wedged, and every later
// call would wait the whole timeout for nothing). A nil *Streak counts
// nothing.
type Streak struct {
	max  int64 // <= 0: never trips
	n    atomic.Int64
	trip chan struct{}
}

// NewStreak returns a streak that trips at max (≤ 0: never).
func NewStreak(max int) *Streak {
	return &Streak{max: int64(max), trip: make(chan struct{}, 1)}
}

// Observe records how a call ended. caller is the caller's own context: a
// call it cancelled, or whose deadline came before the call's timeout, is not
// the provider's fault and does not count. Any answer from the provider (a
// result or a JSON-RPC error) resets the count; other errors (the connection
// died, the queue was full) leave it alone.
func (t *Streak) Observe(caller context.Context, err error) {
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

// Tripped is signalled once the count reaches max; nil for a nil streak.
func (t *Streak) Tripped() <-chan struct{} {
	if t == nil {
		return nil
	}
	return t.trip
}

// Count is the current number of calls that timed out in a row.
func (t *Streak) Count() int64 {
	if t == nil {
		return 0
	}
	return t.n.Load()
}
