package gate

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

func TestStreakObserve(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	timeout := switchboard.WrapError(switchboard.ETIMEOUT, context.DeadlineExceeded, "calling tools/call: provider did not answer in time")
	tests := []struct {
		name    string
		calls   []error
		callers []context.Context // nil entries: live
		want    int64
		tripped bool
	}{
		{name: "timeouts in a row trip", calls: []error{timeout, timeout, timeout}, want: 3, tripped: true},
		{name: "below the limit", calls: []error{timeout, timeout}, want: 2},
		{name: "a result resets", calls: []error{timeout, timeout, nil, timeout}, want: 1},
		{name: "an error answer resets", calls: []error{timeout, timeout, &switchboard.RPCError{Code: -32602, Message: "bad"}, timeout}, want: 1},
		{name: "a dead connection changes nothing", calls: []error{timeout, switchboard.Errorf(switchboard.EUNAVAILABLE, "gone"), timeout, timeout}, want: 3, tripped: true},
		{name: "overload changes nothing", calls: []error{timeout, switchboard.Errorf(switchboard.EOVERLOADED, "full"), timeout}, want: 2},
		{name: "the caller's own deadline does not count", calls: []error{timeout, timeout, timeout}, callers: []context.Context{ended, ended, nil}, want: 1},
		{name: "a cancelled call does not count", calls: []error{timeout, errors.New("calling tools/call: context canceled")}, callers: []context.Context{nil, ended}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStreak(3)
			for i, err := range tt.calls {
				caller := live
				if i < len(tt.callers) && tt.callers[i] != nil {
					caller = tt.callers[i]
				}
				s.Observe(caller, err)
			}
			if got := s.Count(); got != tt.want {
				t.Errorf("count = %d, want %d", got, tt.want)
			}
			select {
			case <-s.Tripped():
				if !tt.tripped {
					t.Error("tripped")
				}
			default:
				if tt.tripped {
					t.Error("not tripped")
				}
			}
		})
	}
	var none *Streak
	none.Observe(live, timeout) // a nil streak counts nothing
	if s := NewStreak(-1); func() bool { s.Observe(live, timeout); s.Observe(live, timeout); return len(s.trip) > 0 }() {
		t.Error("a disabled streak tripped")
	}
}

// conn answers each call when release is signalled, or times out with its
// context; dead closes it.
type conn struct {
	release chan struct{}
	dead    chan struct{}
	started chan struct{}
}

func newConn() *conn {
	return &conn{release: make(chan struct{}), dead: make(chan struct{}), started: make(chan struct{}, 16)}
}

func (c *conn) Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	c.started <- struct{}{}
	select {
	case <-c.release:
		return json.RawMessage(`{}`), nil
	case <-ctx.Done():
		return nil, switchboard.CallContextError(req.Method, ctx.Err())
	}
}

func (c *conn) Done() <-chan struct{} { return c.dead }

func (c *conn) Unavailable(method string) error {
	return switchboard.Errorf(switchboard.EUNAVAILABLE, "calling %s: gone", method)
}

// One call at the provider, one waiting: the third fails at once; the one
// waiting is told it queued, runs when the slot frees, and fails as the
// caller's context or the connection says when either ends first.
func TestGate(t *testing.T) {
	var active atomic.Int64
	g := New(Limits{MaxConcurrent: 1, MaxQueue: 1, CallTimeout: time.Minute, MaxConsecutiveTimeouts: -1}, &active)
	c := newConn()
	req := &switchboard.Request{Method: "tools/call"}
	first := make(chan error, 1)
	go func() { _, err := g.Call(context.Background(), c, req, nil); first <- err }()
	<-c.started
	if n := g.Active(); n != 1 {
		t.Fatalf("active = %d, want 1", n)
	}
	var queued atomic.Bool
	second := make(chan error, 1)
	go func() { _, err := g.Call(context.Background(), c, req, func() { queued.Store(true) }); second <- err }()
	for g.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := g.Call(context.Background(), c, req, nil); switchboard.ErrorCode(err) != switchboard.EOVERLOADED {
		t.Fatalf("third call: %v, want EOVERLOADED", err)
	}
	c.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-c.started // the second has the slot now
	c.release <- struct{}{}
	if err := <-second; err != nil || !queued.Load() {
		t.Fatalf("second call: %v, queued %v", err, queued.Load())
	}
	if n := active.Load(); n != 0 {
		t.Fatalf("active = %d after both, want 0", n)
	}

	// While one call holds the slot, a waiting call ends with its context...
	go func() { _, err := g.Call(context.Background(), c, req, nil); first <- err }()
	<-c.started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.Call(ctx, c, req, nil); switchboard.ErrorCode(err) != switchboard.ETIMEOUT || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past the caller's deadline: %v, want ETIMEOUT", err)
	}
	// ... or with the connection.
	go func() { _, err := g.Call(context.Background(), c, req, nil); second <- err }()
	for g.Waiting() != 1 {
		time.Sleep(time.Millisecond)
	}
	close(c.dead)
	if err := <-second; switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("waiting on a dead connection: %v, want EUNAVAILABLE", err)
	}
	c.release <- struct{}{}
	<-first
}

// The per-call timeout ends a call the provider does not answer, and enough
// of them in a row trip the gate.
func TestGateTimeout(t *testing.T) {
	var active atomic.Int64
	g := New(Limits{MaxConcurrent: 4, MaxQueue: 4, CallTimeout: 10 * time.Millisecond, MaxConsecutiveTimeouts: 2}, &active)
	c := newConn()
	req := &switchboard.Request{Method: "tools/call"}
	for i := range 2 {
		if _, err := g.Call(context.Background(), c, req, nil); switchboard.ErrorCode(err) != switchboard.ETIMEOUT {
			t.Fatalf("call %d: %v, want ETIMEOUT", i, err)
		}
		<-c.started
	}
	select {
	case <-g.Tripped():
	default:
		t.Fatalf("not tripped after %d timeouts", g.Timeouts())
	}
}

// Defaults applied twice (a spec's, then the gate's) change nothing: a
// negative queue stays "no waiting", not the default queue.
func TestLimitsDefaultsAreIdempotent(t *testing.T) {
	for _, l := range []Limits{
		{},
		{MaxQueue: -1, MaxConsecutiveTimeouts: -1},
		{CallTimeout: -time.Second, MaxConcurrent: -2, MaxQueue: 7, MaxConsecutiveTimeouts: 9},
	} {
		once := l.WithDefaults()
		if twice := once.WithDefaults(); twice != once {
			t.Errorf("%+v: once %+v, twice %+v", l, once, twice)
		}
	}
	d := Limits{}.WithDefaults()
	if d != (Limits{CallTimeout: DefaultCallTimeout, MaxConcurrent: DefaultMaxConcurrent, MaxQueue: DefaultMaxQueue, MaxConsecutiveTimeouts: DefaultMaxConsecutiveTimeouts}) {
		t.Errorf("defaults %+v", d)
	}
	var active atomic.Int64
	if g := New(Limits{MaxQueue: -1}.WithDefaults(), &active); g.maxQueue != 0 {
		t.Errorf("a negative queue admits %d waiting calls, want none", g.maxQueue)
	}
}
