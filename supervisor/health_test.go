package supervisor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// TestHangingChildIsRestarted: a child that hangs on every tool call is
// killed and restarted once MaxConsecutiveTimeouts calls in a row have timed
// out, with a clear error and an event, instead of failing every later call
// at the timeout.
func TestHangingChildIsRestarted(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "wedged", "hang")
	spec.CallTimeout = 200 * time.Millisecond
	spec.MaxConsecutiveTimeouts = 2
	up := MustReady(t, s, spec)
	first := statusOf(t, s, spec.Key).PID

	if _, err := callTool(t.Context(), up, "echo", map[string]any{"text": "x"}); switchboard.ErrorCode(err) != switchboard.ETIMEOUT {
		t.Fatalf("first call: %v, want ETIMEOUT", err)
	}
	if n := rec.count(EventUnhealthy); n != 0 {
		t.Fatalf("unhealthy after one timeout: %d events", n)
	}
	if _, err := callTool(t.Context(), up, "echo", map[string]any{"text": "x"}); switchboard.ErrorCode(err) != switchboard.ETIMEOUT {
		t.Fatalf("second call: %v, want ETIMEOUT", err)
	}
	waitUntil(t, 10*time.Second, func() bool { return rec.count(EventSpawn) == 2 }, "the restart")
	ev := rec.last(EventUnhealthy)
	if ev.PID != first || !strings.Contains(ev.Err, "timed out 2 calls in a row (call_timeout 200ms)") {
		t.Errorf("unhealthy event = %+v", ev)
	}
	if ex := rec.last(EventExit); ex.PID != first || ex.Signal != "killed" {
		t.Errorf("exit event = %+v, want the first child killed", ex)
	}
	if r := rec.last(EventRestart); !strings.Contains(r.Err, "timed out 2 calls in a row") {
		t.Errorf("restart event error = %q", r.Err)
	}
	if !rec.logs.Contains("provider timed out too many calls in a row; killing its group") {
		t.Error("the kill was not logged")
	}
	up = MustReady(t, s, spec)
	st := statusOf(t, s, spec.Key)
	if st.PID == first || st.Restarts != 1 {
		t.Errorf("after restart: pid %d (first %d), restarts %d", st.PID, first, st.Restarts)
	}
	// The new child starts with a clean count: one more timeout is not enough.
	if _, err := callTool(t.Context(), up, "echo", map[string]any{"text": "x"}); switchboard.ErrorCode(err) != switchboard.ETIMEOUT {
		t.Fatalf("call after restart: %v, want ETIMEOUT", err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := rec.count(EventSpawn); n != 2 {
		t.Errorf("%d spawns after one timeout of the new child", n)
	}
}

// TestTimeoutCountRules: an answer resets the count; disabled, or when the
// caller's own deadline ends the calls, timeouts never restart the child.
func TestTimeoutCountRules(t *testing.T) {
	slow := map[string]any{"ms": 5000}
	tests := []struct {
		name    string
		max     int
		calls   []string // "slow": times out at CallTimeout; "fast": answered; "caller": the caller's deadline first
		restart bool
	}{
		{name: "an answer resets the count", max: 2, calls: []string{"slow", "fast", "slow"}},
		{name: "two in a row after the reset", max: 2, calls: []string{"slow", "fast", "slow", "slow"}, restart: true},
		{name: "disabled", max: -1, calls: []string{"slow", "slow", "slow", "slow"}},
		{name: "the caller's deadline", max: 2, calls: []string{"caller", "caller", "caller"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec := MustSupervisor(t, Options{})
			spec := testSpec(t, "slowpoke", "")
			spec.CallTimeout = 300 * time.Millisecond
			spec.MaxConsecutiveTimeouts = tt.max
			up := MustReady(t, s, spec)
			for i, c := range tt.calls {
				if rec.count(EventUnhealthy) > 0 {
					t.Fatalf("restarted before call %d", i)
				}
				var err error
				switch c {
				case "fast":
					_, err = callTool(t.Context(), up, "echo", map[string]any{"text": "x"})
				case "slow":
					_, err = callTool(t.Context(), up, "sleep", slow)
					if switchboard.ErrorCode(err) == switchboard.ETIMEOUT {
						err = nil
					}
				case "caller":
					ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
					_, err = callTool(ctx, up, "sleep", slow)
					cancel()
					if switchboard.ErrorCode(err) == switchboard.ETIMEOUT {
						err = nil
					}
				}
				if err != nil {
					t.Fatalf("call %d (%s): %v", i, c, err)
				}
			}
			if tt.restart {
				waitUntil(t, 10*time.Second, func() bool { return rec.count(EventUnhealthy) == 1 && rec.count(EventSpawn) == 2 }, "the restart")
				return
			}
			time.Sleep(200 * time.Millisecond)
			if n := rec.count(EventUnhealthy); n != 0 {
				t.Errorf("%d unhealthy events", n)
			}
		})
	}
}
