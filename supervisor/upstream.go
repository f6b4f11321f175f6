package supervisor

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// limited is the Upstream handed out for a running instance: a Conn behind a
// concurrency limit, a bounded wait queue and a per-call timeout.
type limited struct {
	conn     *Conn
	slots    chan struct{}
	waiting  atomic.Int64
	inFlight *atomic.Int64 // shared with the instance, for Status
	maxQueue int64
	timeout  time.Duration
	timeouts *timeoutStreak // calls that hit timeout in a row; nil: not counted
}

var _ switchboard.Upstream = (*limited)(nil)

func newLimited(conn *Conn, spec Spec, inFlight *atomic.Int64) *limited {
	return &limited{
		conn:     conn,
		slots:    make(chan struct{}, spec.MaxConcurrent),
		inFlight: inFlight,
		maxQueue: int64(spec.MaxQueue),
		timeout:  spec.CallTimeout,
	}
}

// Call waits for a slot (failing at once with EOVERLOADED when the queue is
// full), then calls the child with the per-call timeout.
func (l *limited) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		if l.waiting.Add(1) > l.maxQueue {
			l.waiting.Add(-1)
			return nil, switchboard.Errorf(switchboard.EOVERLOADED, "calling %s: provider is overloaded", method)
		}
		select {
		case l.slots <- struct{}{}:
			l.waiting.Add(-1)
		case <-ctx.Done():
			l.waiting.Add(-1)
			return nil, l.conn.ctxError(method, ctx.Err())
		case <-l.conn.Done():
			l.waiting.Add(-1)
			return nil, l.conn.unavailable(method)
		}
	}
	l.inFlight.Add(1)
	defer func() {
		l.inFlight.Add(-1)
		<-l.slots
	}()
	callCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res, err := l.conn.Call(callCtx, method, params)
	l.timeouts.observe(ctx, err)
	return res, err
}

// ProgressToken registers fn on the underlying Conn.
func (l *limited) ProgressToken(fn func(params json.RawMessage)) (string, func()) {
	return l.conn.ProgressToken(fn)
}
