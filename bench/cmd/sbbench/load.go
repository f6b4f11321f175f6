package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
)

// op is one operation of one simulated client; it must not be shared between
// workers.
type op func(ctx context.Context) error

// runLoad runs every op in its own goroutine, in a closed loop, until dur has
// passed or maxCalls operations completed in total, and records each
// operation's latency. The first error of each worker is kept in firstErr.
func runLoad(ctx context.Context, ops []op, dur time.Duration, maxCalls int) (stats.Sample, error) {
	var (
		wg       sync.WaitGroup
		count    atomic.Int64
		mu       sync.Mutex
		sample   stats.Sample
		firstErr error
	)
	per := maxCalls/len(ops) + 1
	start := time.Now()
	deadline := start.Add(dur)
	for _, o := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, min(per, 1<<16))
			errs := 0
			var werr error
			for ctx.Err() == nil && count.Load() < int64(maxCalls) {
				t0 := time.Now()
				if t0.After(deadline) {
					break
				}
				err := o(ctx)
				d := time.Since(t0)
				count.Add(1)
				if err != nil {
					errs++
					if werr == nil {
						werr = err
					}
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			sample.Lat = append(sample.Lat, lat...)
			sample.Errors += errs
			if firstErr == nil && werr != nil {
				firstErr = werr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	sample.Elapsed = time.Since(start)
	return sample, firstErr
}

// callOp is a tools/call through a gateway session that checks the answer is a
// successful result.
func callOp(s *mcpclient.Session, params []byte) op {
	return func(ctx context.Context) error {
		res, err := s.Call(ctx, "tools/call", params)
		if err != nil {
			return err
		}
		return checkToolResult(res)
	}
}

// directOp is the same tools/call over direct stdio.
func directOp(d *harness.Direct, params []byte) op {
	return func(ctx context.Context) error {
		res, err := d.Call(ctx, "tools/call", params)
		if err != nil {
			return err
		}
		return checkToolResult(res)
	}
}

var errToolError = errors.New("tool returned isError")

func checkToolResult(res []byte) error {
	if len(res) == 0 || bytes.Contains(res, []byte(`"isError":true`)) {
		return fmt.Errorf("%w: %.200s", errToolError, res)
	}
	return nil
}

// listOp is a tools/list through a session (or anything with that Call shape).
func listOp(call func(ctx context.Context, method string, params []byte) ([]byte, error)) op {
	return func(ctx context.Context) error {
		res, err := call(ctx, "tools/list", nil)
		if err != nil {
			return err
		}
		if !bytes.Contains(res, []byte(`"tools"`)) {
			return fmt.Errorf("tools/list answer has no tools: %.200s", res)
		}
		return nil
	}
}

func sessCall(s *mcpclient.Session) func(ctx context.Context, method string, params []byte) ([]byte, error) {
	return func(ctx context.Context, method string, params []byte) ([]byte, error) {
		return s.Call(ctx, method, params)
	}
}

func directCall(d *harness.Direct) func(ctx context.Context, method string, params []byte) ([]byte, error) {
	return func(ctx context.Context, method string, params []byte) ([]byte, error) {
		return d.Call(ctx, method, params)
	}
}

// payload returns n bytes of printable ASCII that JSON carries unescaped.
func payload(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,:;"
	var b strings.Builder
	b.Grow(n)
	for i := range n {
		b.WriteByte(alphabet[(i*7+i/len(alphabet))%len(alphabet)])
	}
	return b.String()
}

// echoParams is the tools/call params calling tool with text.
func echoParams(tool, text string) []byte {
	return []byte(`{"name":"` + tool + `","arguments":{"text":"` + text + `"}}`)
}

// cpuMeter measures CPU time, and read/write system calls, used by some
// processes over a phase.
type cpuMeter struct {
	pids     []int
	start    []time.Duration
	startSys []int64
	self     time.Duration
	// sys is each pid's read/write system calls over the phase, set by stop.
	sys []int64
}

func startCPU(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids, self: harness.SelfCPU()}
	for _, p := range pids {
		c, _ := harness.CPU(p)
		n, _ := harness.Syscalls(p)
		m.start = append(m.start, c)
		m.startSys = append(m.startSys, n)
	}
	return m
}

// stop returns the CPU used by each pid, then by this process, and records
// each pid's system calls in m.sys.
func (m *cpuMeter) stop() ([]time.Duration, time.Duration) {
	out := make([]time.Duration, len(m.pids))
	m.sys = make([]int64, len(m.pids))
	for i, p := range m.pids {
		c, _ := harness.CPU(p)
		out[i] = c - m.start[i]
		if n, err := harness.Syscalls(p); err == nil {
			m.sys[i] = n - m.startSys[i]
		}
	}
	return out, harness.SelfCPU() - m.self
}

// perCallSys divides a system call count over calls.
func perCallSys(n int64, calls int) float64 {
	if calls == 0 {
		return 0
	}
	return float64(n) / float64(calls)
}
