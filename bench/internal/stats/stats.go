// Package stats records latencies and summarizes them for the benchmark report.
package stats

import (
	"fmt"
	"slices"
	"time"
)

// Sample is a set of latencies with the wall time they were taken over.
type Sample struct {
	Lat     []time.Duration
	Elapsed time.Duration
	Errors  int
}

// Merge appends o's latencies and errors to s; Elapsed is the larger of the two.
func (s *Sample) Merge(o Sample) {
	s.Lat = append(s.Lat, o.Lat...)
	s.Errors += o.Errors
	s.Elapsed = max(s.Elapsed, o.Elapsed)
}

// Summary is what the report prints for one sample.
type Summary struct {
	N          int
	Errors     int
	P50, P99   time.Duration
	Mean       time.Duration
	Throughput float64 // operations per second over Elapsed
}

// Summarize sorts s's latencies and returns its percentiles and throughput.
func (s Sample) Summarize() Summary {
	sum := Summary{N: len(s.Lat), Errors: s.Errors}
	if len(s.Lat) == 0 {
		return sum
	}
	slices.Sort(s.Lat)
	sum.P50 = Percentile(s.Lat, 0.50)
	sum.P99 = Percentile(s.Lat, 0.99)
	var total time.Duration
	for _, d := range s.Lat {
		total += d
	}
	sum.Mean = total / time.Duration(len(s.Lat))
	if s.Elapsed > 0 {
		sum.Throughput = float64(len(s.Lat)) / s.Elapsed.Seconds()
	}
	return sum
}

// Percentile returns the q-quantile (0..1) of sorted by the nearest-rank method.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// Best returns the summary with the highest throughput, keeping the lowest p50
// and p99 seen in any of them: the least disturbed of several rounds on a shared
// machine.
func Best(all ...Summary) Summary {
	var b Summary
	for i, s := range all {
		if i == 0 {
			b = s
			continue
		}
		if s.Throughput > b.Throughput {
			b.Throughput = s.Throughput
		}
		if s.P50 < b.P50 {
			b.P50 = s.P50
		}
		if s.P99 < b.P99 {
			b.P99 = s.P99
		}
		if s.Mean < b.Mean {
			b.Mean = s.Mean
		}
		b.N += s.N
		b.Errors += s.Errors
	}
	return b
}

// Median returns, figure by figure, the median of several rounds' summaries
// (the mean of the middle two for an even count); N and Errors are totals.
// Where rounds run in a rotating order, it is fairer than Best, which rewards
// whichever configuration happened to run in the machine's quietest moment.
func Median(all ...Summary) Summary {
	var m Summary
	if len(all) == 0 {
		return m
	}
	mid := func(f func(Summary) float64) float64 {
		v := make([]float64, len(all))
		for i, s := range all {
			v[i] = f(s)
		}
		slices.Sort(v)
		if n := len(v); n%2 == 0 {
			return (v[n/2-1] + v[n/2]) / 2
		}
		return v[len(v)/2]
	}
	m.P50 = time.Duration(mid(func(s Summary) float64 { return float64(s.P50) }))
	m.P99 = time.Duration(mid(func(s Summary) float64 { return float64(s.P99) }))
	m.Mean = time.Duration(mid(func(s Summary) float64 { return float64(s.Mean) }))
	m.Throughput = mid(func(s Summary) float64 { return s.Throughput })
	for _, s := range all {
		m.N += s.N
		m.Errors += s.Errors
	}
	return m
}

// Dur formats d for a table: µs below 10 ms, ms above.
func Dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(100 * time.Millisecond).String()
}

// Bytes formats n bytes as KB or MB (1000-based, as the targets are written).
func Bytes(n float64) string {
	switch {
	case n >= 1e6 || n <= -1e6:
		return fmt.Sprintf("%.1f MB", n/1e6)
	case n >= 1e3 || n <= -1e3:
		return fmt.Sprintf("%.1f KB", n/1e3)
	}
	return fmt.Sprintf("%.0f B", n)
}
