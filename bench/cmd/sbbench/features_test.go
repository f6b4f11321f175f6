package main

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
)

// The feature-cost report shows medians over the rounds (not the best round),
// CPU per call over all rounds, and "saved" as the all-on figure minus the
// variant's, with its sign.
func TestFeaturesReport(t *testing.T) {
	rounds := func(p50s ...int) []stats.Summary {
		var out []stats.Summary
		for _, p := range p50s {
			out = append(out, stats.Summary{N: 1000, P50: us(p), P99: us(3 * p), Throughput: 1e6 / float64(p)})
		}
		return out
	}
	r := &featureResults{
		rounds: 3,
		variants: []*variant{
			// all on: median p50 300 µs; 16 clients median 100 µs → 10,000/s;
			// 3,000 calls on 360 ms of gateway CPU → 120 µs per call.
			{name: "all on (shipped defaults)", c1: rounds(300, 200, 900), c16: rounds(100, 90, 110), cpu16: 360 * time.Millisecond, child16: 240 * time.Millisecond, calls16: 3000},
			// 20 µs slower at one client, 30 µs less CPU per call.
			{name: "audit log off", c1: rounds(320, 310, 330), c16: rounds(100, 100, 100), cpu16: 270 * time.Millisecond, child16: 240 * time.Millisecond, calls16: 3000},
		},
		direct:   map[string][]stats.Summary{"c1-100": rounds(100, 100, 100), "c16-100": rounds(50, 50, 50)},
		floor:    map[string][]stats.Summary{"c1-100": rounds(90, 90, 90), "c16-100": rounds(40, 40, 40)},
		dChild16: 150 * time.Millisecond, dCalls16: 3000,
		floor16: 120 * time.Millisecond, fCalls16: 3000,
	}
	out := featuresReport(&options{dur: time.Second, warm: time.Second}, machine{}, r, time.Minute)
	for _, want := range []string{
		"| all on (shipped defaults) | 300 µs |  | 900 µs | 10000 | 0.50× | 120 µs |  | 80 µs |",
		"| audit log off | 320 µs | −20 µs | 960 µs | 10000 | 0.50× | 90 µs | +30 µs | 80 µs |",
		"| direct stdio (no gateway) | 100 µs |  | 300 µs | 20000 | 1.00× | — |  | 50 µs |",
		"| bare HTTP floor (no MCP, no provider) | 90 µs |  | 270 µs | 25000 |  | 40 µs |  |  |",
		"There are 3 rounds",
		"the p50 is 200 µs above direct stdio's, and the bare HTTP floor's p50 is 90 µs; the rest, +110 µs,",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q\n%s", want, out)
		}
	}
}

func TestPerCall(t *testing.T) {
	if got := perCall(time.Second, 0); got != 0 {
		t.Errorf("perCall with no calls = %v", got)
	}
	if got := perCall(time.Second, 4); got != 250*time.Millisecond {
		t.Errorf("perCall = %v", got)
	}
}
