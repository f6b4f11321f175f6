package e2e

import (
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// TestWedgedProviderIsRestarted: a provider that hangs on every tool call is
// killed and restarted once limits.max_consecutive_timeouts calls in a row
// have timed out; with the setting at 0 it is left alone.
func TestWedgedProviderIsRestarted(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
providers:
  wedged:
    command: $BIN/testprovider
    env: {TP_MODE: hang}
    limits: {call_timeout: 500ms, max_consecutive_timeouts: 2}
  patient:
    command: $BIN/testprovider
    env: {TP_MODE: hang}
    limits: {call_timeout: 500ms, max_consecutive_timeouts: 0}
`)
	before := g.waitRunning("wedged", "patient")
	c := g.connect(t)
	for i := range 3 {
		for _, name := range []string{"patient__echo", "wedged__echo"} {
			if name == "wedged__echo" && i == 2 {
				continue
			}
			if _, isErr, err := call(ctxT(t, 30*time.Second), c, name, map[string]any{"text": "never"}); err == nil && !isErr {
				t.Fatalf("%s answered", name)
			}
		}
	}
	waitFor(t, 20*time.Second, "wedged to run again as a new process", func() bool {
		p := g.provider("wedged")
		return p.State == switchboard.StateRunning && p.PID != 0 && p.PID != before["wedged"].PID
	})
	if p := g.provider("wedged"); p.Restarts != 1 {
		t.Errorf("wedged restarts = %d, want 1", p.Restarts)
	}
	if _, ok := g.log.waitFor(5*time.Second, nil, func(l logLine) bool {
		return l.field("provider") == "wedged" && l.msg() == "provider timed out too many calls in a row; killing its group"
	}); !ok {
		t.Error("the restart was not logged")
	}
	if p := g.provider("patient"); p.PID != before["patient"].PID || p.Restarts != 0 {
		t.Errorf("patient after 3 timeouts: pid %d (was %d), restarts %d; want it left alone", p.PID, before["patient"].PID, p.Restarts)
	}
}
