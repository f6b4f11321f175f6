package backoff

import (
	"testing"
	"time"
)

func TestDelayJitterBounds(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}
	tests := []struct {
		name     string
		n        int
		u        float64
		min, max time.Duration
	}{
		{"first, low jitter clamps to base", 1, 0, 100 * time.Millisecond, 100 * time.Millisecond},
		{"first, high jitter", 1, 0.999, 100 * time.Millisecond, 125 * time.Millisecond},
		{"third, low", 3, 0, 300 * time.Millisecond, 300 * time.Millisecond},
		{"third, high", 3, 0.999, 499 * time.Millisecond, 500 * time.Millisecond},
		{"huge n caps", 200, 0.5, 5 * time.Second, 5 * time.Second},
		{"largest n caps", int(^uint(0) >> 1), 0.999, 5 * time.Second, 5 * time.Second},
		{"zero n is first", 0, 0.5, 100 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := p.Delay(tt.n, tt.u); d < tt.min || d > tt.max {
				t.Errorf("Delay(%d, %v) = %s, want [%s, %s]", tt.n, tt.u, d, tt.min, tt.max)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := Policy{}.WithDefaults()
	want := Policy{Base: DefaultBase, Max: DefaultMax, ResetAfter: DefaultResetAfter, MaxFailures: DefaultMaxFailures}
	if got != want {
		t.Errorf("zero policy: %+v, want %+v", got, want)
	}
	got = Policy{Base: -time.Second, Max: time.Millisecond, ResetAfter: time.Minute, MaxFailures: 2}.WithDefaults()
	want = Policy{Base: DefaultBase, Max: DefaultBase, ResetAfter: time.Minute, MaxFailures: 2}
	if got != want {
		t.Errorf("negative base, max below it: %+v, want %+v", got, want)
	}
}

func TestRunsCountQuickFailures(t *testing.T) {
	p := Policy{ResetAfter: time.Minute}
	var r Runs
	steps := []struct {
		name              string
		run               Run
		failures, attempt int
	}{
		{"never came up", Run{}, 1, 1},
		{"came up, died soon", Run{Ready: true, Ran: time.Second}, 2, 2},
		{"long but forced", Run{Ready: true, Forced: true, Ran: time.Hour}, 3, 3},
		{"stable run resets", Run{Ready: true, Ran: time.Minute}, 0, 1},
		{"quick failure after it starts over", Run{Ready: true, Ran: time.Second}, 1, 2},
	}
	for _, s := range steps {
		f, a := r.Ended(p, s.run)
		if f != s.failures || a != s.attempt {
			t.Fatalf("%s: Ended = (%d, %d), want (%d, %d)", s.name, f, a, s.failures, s.attempt)
		}
	}
}
