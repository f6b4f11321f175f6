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
func (l *limited) Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		if l.waiting.Add(1) > l.maxQueue {
			l.waiting.Add(-1)
			return nil, switchboard.Errorf(switchboard.EOVERLOADED, "calling %s: provider is overloaded", req.Method)
		}
		select {
		case l.slots <- struct{}{}:
			l.waiting.Add(-1)
		case <-ctx.Done():
			l.waiting.Add(-1)
			return nil, l.conn.ctxError(req.Method, ctx.Err())
		case <-l.conn.Done():
			l.waiting.Add(-1)
			return nil, l.conn.unavailable(req.Method)
		}
	}
	l.inFlight.Add(1)
	defer func() {
		l.inFlight.Add(-1)
		<-l.slots
	}()
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	return l.conn.Call(ctx, req)
}
