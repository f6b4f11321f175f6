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

// Defaults applied to a zero Limits field.
const (
	DefaultCallTimeout            = 60 * time.Second
	DefaultMaxConcurrent          = 32
	DefaultMaxQueue               = 256
	DefaultMaxConsecutiveTimeouts = 3
)

// Limits are a provider's limits on the calls made to it, as its spec gives
// them: the supervisor's and the remote manager's specs embed them. Zero
// fields take the defaults (WithDefaults).
type Limits struct {
	// CallTimeout bounds each call made through the Upstream (default 60s).
	CallTimeout time.Duration
	// MaxConcurrent bounds calls in flight to the provider (default 32).
	MaxConcurrent int
	// MaxQueue bounds calls waiting for a slot; more fail at once with
	// EOVERLOADED (default 256; negative means no waiting at all).
	MaxQueue int
	// MaxConsecutiveTimeouts is how many calls in a row may hit CallTimeout
	// before the provider is restarted (a child) or reconnected (a remote
	// server), which counts as a failure (default 3; negative disables).
	// Any answer from the provider, a result or an error, resets the count;
	// a call the caller cancelled, or whose own deadline came first, does
	// not count.
	MaxConsecutiveTimeouts int
}

// WithDefaults returns l with zero (and, for the timeout and the
// concurrency, negative) fields set to their defaults. A negative MaxQueue
// or MaxConsecutiveTimeouts stays negative (none), so applying the defaults
// twice changes nothing.
func (l Limits) WithDefaults() Limits {
	if l.CallTimeout <= 0 {
		l.CallTimeout = DefaultCallTimeout
	}
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = DefaultMaxConcurrent
	}
	if l.MaxQueue == 0 {
		l.MaxQueue = DefaultMaxQueue
	}
	if l.MaxConsecutiveTimeouts == 0 {
		l.MaxConsecutiveTimeouts = DefaultMaxConsecutiveTimeouts
	}
	return l
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

// New returns a gate that enforces l (with its defaults applied). active
// counts the calls at the provider (a status page may read it); after
// l.MaxConsecutiveTimeouts calls in a row hit the timeout (negative: never),
// Tripped is signalled.
func New(l Limits, active *atomic.Int64) *Gate {
	l = l.WithDefaults()
	return &Gate{
		slots:    make(chan struct{}, l.MaxConcurrent),
		maxQueue: int64(max(l.MaxQueue, 0)),
		timeout:  l.CallTimeout,
		active:   active,
		streak:   NewStreak(l.MaxConsecutiveTimeouts),
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
