package stats

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"median of even: lower", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ms(seq(100)...), 0.99, 99 * time.Millisecond},
		{"p99 of 1000", ms(seq(1000)...), 0.99, 990 * time.Millisecond},
		{"max", ms(1, 2, 3), 1, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestSummarizeAndBest(t *testing.T) {
	s := Sample{Lat: []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}, Elapsed: time.Second, Errors: 1}
	sum := s.Summarize()
	if sum.N != 3 || sum.Errors != 1 || sum.P50 != 2*time.Millisecond || sum.Mean != 2*time.Millisecond || sum.Throughput != 3 {
		t.Fatalf("Summarize = %+v", sum)
	}
	other := Summary{N: 5, P50: time.Millisecond, P99: 10 * time.Millisecond, Throughput: 2}
	b := Best(sum, other)
	if b.Throughput != 3 || b.P50 != time.Millisecond || b.P99 != sum.P99 || b.N != 8 {
		t.Fatalf("Best = %+v", b)
	}
}

func TestMedian(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// The figures are medians one by one: the round with the best p50 is not
	// the round with the best throughput.
	odd := Median(
		Summary{N: 1, P50: ms(9), P99: ms(20), Throughput: 100},
		Summary{N: 2, P50: ms(1), P99: ms(40), Throughput: 300, Errors: 1},
		Summary{N: 3, P50: ms(5), P99: ms(30), Throughput: 200},
	)
	if odd.P50 != ms(5) || odd.P99 != ms(30) || odd.Throughput != 200 || odd.N != 6 || odd.Errors != 1 {
		t.Fatalf("Median of three = %+v", odd)
	}
	even := Median(Summary{P50: ms(2), Throughput: 10}, Summary{P50: ms(4), Throughput: 30})
	if even.P50 != ms(3) || even.Throughput != 20 {
		t.Fatalf("Median of two = %+v", even)
	}
	if z := Median(); z != (Summary{}) {
		t.Fatalf("Median() = %+v", z)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{Dur(0), "—"},
		{Dur(1500 * time.Microsecond), "1500 µs"},
		{Dur(25 * time.Millisecond), "25.0 ms"},
		{Bytes(512), "512 B"},
		{Bytes(17_300), "17.3 KB"},
		{Bytes(23_000_000), "23.0 MB"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
