package main

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
)

// The floors table divides the gateway's CPU per call by the bare floor's
// and by the relay floor's, and its one-client p50 by the sum of the bare
// floor's and direct stdio's and by the relay floor's.
func TestFloorTargets(t *testing.T) {
	r := &mainResults{calls: map[string]*pair{
		"c1-100": {gw: stats.Summary{P50: us(300)}, direct: stats.Summary{P50: us(110)}, floor: stats.Summary{P50: us(120)},
			relay: stats.Summary{P50: us(240)}, hasRel: true},
		"c16-100": {gwCPU: us(90), fCPU: us(30), rCPU: us(48), hasRel: true},
	}}
	var b strings.Builder
	writeFloorTargets(&b, r)
	for _, want := range []string{
		"| CPU per call, 16 clients 100 B | 90 µs | 30 µs | 48 µs | 3.00× | ≤ 2× | **no** | 1.60× | 1.88× |",
		"| 1 client 100 B p50 (floor: bare HTTP floor p50 + direct p50 = 120 µs + 110 µs) | 300 µs | 230 µs | 240 µs | 1.30× | ≤ 1.15× | **no** | 1.04× | 1.25× |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q\n%s", want, b.String())
		}
	}
	// Without the relay floor (an older run's shape) there is no table.
	r.calls["c16-100"].hasRel = false
	b.Reset()
	if writeFloorTargets(&b, r); b.Len() != 0 {
		t.Errorf("table without the relay floor:\n%s", b.String())
	}
}

// us is n microseconds.
func us(n int) time.Duration { return time.Duration(n) * time.Microsecond }
