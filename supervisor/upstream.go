package supervisor

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/gate"
	"github.com/switchboard-mcp/switchboard/internal/listen"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
)

// limited is the Upstream handed out for a running instance: a Conn behind a
// concurrency limit, a bounded wait queue and a per-call timeout.
type limited struct {
	conn    *Conn
	gate    *gate.Gate
	flights *flights // shared with the instance: Status and drains
	// lis is the stateless-era child's subscriptions/listen stream, which
	// carries resource subscriptions; nil for a session-era child.
	lis *listen.Stream
	// key names the instance in traces; tr traces calls (nil: off).
	key switchboard.InstanceKey
	tr  *tracing.Tracer
}

var _ switchboard.Upstream = (*limited)(nil)

func newLimited(conn *Conn, spec Spec, f *flights) *limited {
	return &limited{
		conn:    conn,
		gate:    gate.New(spec.Limits, &f.active),
		flights: f,
		key:     spec.Key,
	}
}

// Call waits for a slot (failing at once with EOVERLOADED when the queue is
// full), then calls the child with the per-call timeout.
func (l *limited) Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	l.flights.begin()
	defer l.flights.end()
	if l.lis != nil && listen.Serves(req.Method) {
		// The stateless era has no such methods: its listen stream
		// carries the subscribed resources.
		return l.lis.Serve(req)
	}
	if l.tr != nil {
		return l.tracedCall(ctx, req)
	}
	return l.call(ctx, req, nil)
}

// tracedCall is call inside a client span (the child round trip, from the
// wait for a slot to the child's answer), when ctx is traced: the child
// gets the span's trace context in _meta (traceparent, tracestate), so an
// instrumented provider continues the trace under it.
func (l *limited) tracedCall(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	// The provider call's span names the provider and instance.
	ctx, sp, ok := l.tr.StartClient(ctx, req.Method)
	if !ok {
		return l.call(ctx, req, nil)
	}
	r := *req
	meta := tracing.AppendMeta(make([]byte, 0, 96+len(req.Meta)), ctx)
	if len(req.Meta) > 0 {
		meta = append(append(meta, ','), req.Meta...)
	}
	r.Meta = meta
	res, err := l.call(ctx, &r, sp)
	tracing.End(sp, switchboard.Outcome(err))
	return res, err
}

// call calls the child through the gate; sp, when traced, learns whether the
// call had to queue.
func (l *limited) call(ctx context.Context, req *switchboard.Request, sp trace.Span) (json.RawMessage, error) {
	var queued func()
	if sp != nil {
		queued = func() { sp.SetAttributes(tracing.KeyQueued.Bool(true)) }
	}
	return l.gate.Call(ctx, l.conn, req, queued)
}

// Notify sends the child a notification (roots/list_changed, for one).
func (l *limited) Notify(ctx context.Context, method string, params any) error {
	return l.conn.Notify(ctx, method, params)
}

// flights counts an instance's calls and wakes a drain once none is left.
// A call takes no lock unless a drain waits.
type flights struct {
	active  atomic.Int64 // in flight at the child (Status)
	pending atomic.Int64 // in flight or queued
	waiters atomic.Int32 // drains waiting

	mu   sync.Mutex
	idle chan struct{} // closed when pending drops to zero; nil while nobody waits
}

func (f *flights) begin() { f.pending.Add(1) }

func (f *flights) end() {
	// pending is decremented before waiters is read, and wait counts itself
	// in waiters before it reads pending: one of the two sees the other.
	if f.pending.Add(-1) != 0 || f.waiters.Load() == 0 {
		return
	}
	f.mu.Lock()
	if f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
	f.mu.Unlock()
}

// wait blocks until no call is in flight or queued, or ctx ends.
func (f *flights) wait(ctx context.Context) error {
	f.waiters.Add(1)
	defer f.waiters.Add(-1)
	for {
		f.mu.Lock()
		if f.pending.Load() == 0 {
			f.mu.Unlock()
			return nil
		}
		if f.idle == nil {
			f.idle = make(chan struct{})
		}
		idle := f.idle
		f.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
