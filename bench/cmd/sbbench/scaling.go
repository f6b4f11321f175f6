package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
)

// Limits of the scaling gateways: enough queue that 1,000 concurrent callers
// wait instead of being refused with EOVERLOADED (the default queue is 256).
const (
	scaleMaxConcurrent = 64
	scaleMaxQueue      = 4096
)

type provPoint struct {
	providers, tools int
	startup          time.Duration
	call, list       stats.Summary
	listBytes        int
	rss              int64
}

type toolPoint struct {
	tools                int
	startup              time.Duration
	call, list           stats.Summary
	dCall, dList         stats.Summary
	listBytes, dListSize int
	rss                  int64
}

type activePoint struct {
	sessions int
	gw, d    stats.Summary
	rssPeak  int64
}

type idlePoint struct {
	idle       int
	call, list stats.Summary
	rss        int64
}

type scalingResults struct {
	echoTools  int
	dCall      stats.Summary
	dList      stats.Summary
	providers  []provPoint
	tools      []toolPoint
	active     []activePoint
	idle       []idlePoint
	callParams string
}

func runScaling(ctx context.Context, o *options, bins harness.Bins, tmp string) (*scalingResults, error) {
	r := &scalingResults{}
	text := payload(100)

	// The direct baseline for one echo child, and how many tools echo has.
	d, err := harness.StartDirect(ctx, bins.Echo)
	if err != nil {
		return nil, err
	}
	res, err := d.Call(ctx, "tools/list", nil)
	if err != nil {
		_ = d.Stop()
		return nil, err
	}
	r.echoTools = bytes.Count(res, []byte(`"inputSchema"`))
	if r.dCall, err = measure(ctx, o, []op{directOp(d, echoParams("echo", text))}); err == nil {
		r.dList, err = measure(ctx, o, []op{listOp(directCall(d))})
	}
	_ = d.Stop()
	if err != nil {
		return nil, err
	}

	for i, n := range o.scaleProviders {
		p, err := scaleProviders(ctx, o, bins, filepath.Join(tmp, fmt.Sprintf("providers-%d-%d", i, n)), n, r.echoTools, text)
		if err != nil {
			return nil, fmt.Errorf("%d providers: %w", n, err)
		}
		r.providers = append(r.providers, p)
	}
	for i, n := range o.scaleTools {
		p, err := scaleTools(ctx, o, bins, filepath.Join(tmp, fmt.Sprintf("tools-%d-%d", i, n)), n, text)
		if err != nil {
			return nil, fmt.Errorf("%d tools: %w", n, err)
		}
		r.tools = append(r.tools, p)
	}
	if err := scaleSessions(ctx, o, bins, filepath.Join(tmp, "sessions"), text, r); err != nil {
		return nil, err
	}
	return r, nil
}

// measure warms up and runs ops for o.dur.
func measure(ctx context.Context, o *options, ops []op) (stats.Summary, error) {
	if _, err := runLoad(ctx, ops, o.warm, o.maxCalls); err != nil {
		return stats.Summary{}, err
	}
	s, err := runLoad(ctx, ops, o.dur, o.maxCalls)
	return s.Summarize(), err
}

// startScaled starts a gateway for cfg, with the scaling limits, an admin user
// and waits until it lists want tools.
func startScaled(ctx context.Context, o *options, bins harness.Bins, dir string, cfg harness.Config, want, idle int) (*harness.Gateway, *mcpclient.Client, *mcpclient.Session, time.Duration, error) {
	cfg.LogLevel = o.logLevel
	cfg.MaxConcurrent, cfg.MaxQueue = scaleMaxConcurrent, scaleMaxQueue
	return startGateway(ctx, bins, dir, cfg, want, idle)
}

// startGateway starts a gateway for cfg as is, with an admin user, and waits
// until it lists want tools. It returns the time from exec to that list.
func startGateway(ctx context.Context, bins harness.Bins, dir string, cfg harness.Config, want, idle int) (*harness.Gateway, *mcpclient.Client, *mcpclient.Session, time.Duration, error) {
	return startGatewayBin(ctx, bins, dir, cfg, want, idle, "")
}

// startGatewayBin is startGateway running binary instead of bin/switchboard
// ("" for bin/switchboard).
func startGatewayBin(ctx context.Context, bins harness.Bins, dir string, cfg harness.Config, want, idle int, binary string) (*harness.Gateway, *mcpclient.Client, *mcpclient.Session, time.Duration, error) {
	env, err := harness.NewEnv(bins, dir, cfg)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	key, err := env.AddUser(ctx, "bench", "admin")
	if err != nil {
		return nil, nil, nil, 0, err
	}
	g, err := env.Start(ctx, binary)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	c := &mcpclient.Client{URL: g.URL, Key: key, HTTP: mcpclient.NewHTTPClient(idle)}
	s, err := harness.OpenSession(ctx, c)
	if err != nil {
		_ = g.Stop()
		return nil, nil, nil, 0, err
	}
	at, err := harness.WaitTools(ctx, s, want, 180*time.Second)
	if err != nil {
		_ = g.Stop()
		return nil, nil, nil, 0, err
	}
	return g, c, s, at.Sub(g.Started), nil
}

func scaleProviders(ctx context.Context, o *options, bins harness.Bins, dir string, n, echoTools int, text string) (provPoint, error) {
	p := provPoint{providers: n, tools: n * echoTools}
	logf("scaling: %d echo providers", n)
	var cfg harness.Config
	for i := range n {
		cfg.Providers = append(cfg.Providers, harness.Provider{Name: fmt.Sprintf("e%03d", i), Command: bins.Echo})
	}
	g, _, s, startup, err := startScaled(ctx, o, bins, dir, cfg, p.tools, 4)
	if err != nil {
		return p, err
	}
	defer g.Stop()
	p.startup = startup
	sleep(ctx, o.settle)
	p.rss, _ = harness.RSS(g.Pid())
	if p.call, err = measure(ctx, o, []op{callOp(s, echoParams("e000__echo", text))}); err != nil {
		return p, err
	}
	if p.list, err = measure(ctx, o, []op{listOp(sessCall(s))}); err != nil {
		return p, err
	}
	res, _ := s.Call(ctx, "tools/list", nil)
	p.listBytes = len(res)
	logf("scaling: %d providers: call p50 %s, list p50 %s (%s), RSS %s, ready in %s", n, stats.Dur(p.call.P50), stats.Dur(p.list.P50),
		stats.Bytes(float64(p.listBytes)), stats.Bytes(float64(p.rss)), startup.Round(time.Millisecond))
	return p, nil
}

func scaleTools(ctx context.Context, o *options, bins harness.Bins, dir string, n int, text string) (toolPoint, error) {
	p := toolPoint{tools: n}
	logf("scaling: one provider with %d tools", n)
	args := []string{"-tools", strconv.Itoa(n)}
	tool := fmt.Sprintf("tool_%0*d", len(strconv.Itoa(n-1)), 0)
	cfg := harness.Config{Providers: []harness.Provider{{Name: "mt", Command: bins.ManyTools, Args: args}}}
	g, _, s, startup, err := startScaled(ctx, o, bins, dir, cfg, n, 4)
	if err != nil {
		return p, err
	}
	defer g.Stop()
	p.startup = startup
	sleep(ctx, o.settle)
	p.rss, _ = harness.RSS(g.Pid())
	d, err := harness.StartDirect(ctx, bins.ManyTools, args...)
	if err != nil {
		return p, err
	}
	defer d.Stop()
	if p.dCall, err = measure(ctx, o, []op{directOp(d, echoParams(tool, text))}); err != nil {
		return p, err
	}
	if p.call, err = measure(ctx, o, []op{callOp(s, echoParams("mt__"+tool, text))}); err != nil {
		return p, err
	}
	if p.dList, err = measure(ctx, o, []op{listOp(directCall(d))}); err != nil {
		return p, err
	}
	if p.list, err = measure(ctx, o, []op{listOp(sessCall(s))}); err != nil {
		return p, err
	}
	res, _ := s.Call(ctx, "tools/list", nil)
	p.listBytes = len(res)
	dres, _ := d.Call(ctx, "tools/list", nil)
	p.dListSize = len(dres)
	logf("scaling: %d tools: call p50 %s (direct %s), list p50 %s (direct %s), %s", n, stats.Dur(p.call.P50), stats.Dur(p.dCall.P50),
		stats.Dur(p.list.P50), stats.Dur(p.dList.P50), stats.Bytes(float64(p.listBytes)))
	return p, nil
}

func scaleSessions(ctx context.Context, o *options, bins harness.Bins, dir, text string, r *scalingResults) error {
	maxActive := 1
	for _, n := range o.scaleActive {
		maxActive = max(maxActive, n)
	}
	logf("scaling: sessions (up to %d active, up to %d idle)", maxActive, maxInt(o.scaleIdle))
	cfg := harness.Config{Providers: []harness.Provider{{Name: "echo", Command: bins.Echo}}}
	g, c, s0, _, err := startScaled(ctx, o, bins, dir, cfg, 1, maxActive+16)
	if err != nil {
		return err
	}
	defer g.Stop()
	d, err := harness.StartDirect(ctx, bins.Echo)
	if err != nil {
		return err
	}
	defer d.Stop()
	gp, dp := echoParams("echo__echo", text), echoParams("echo", text)

	sessions := []*mcpclient.Session{s0}
	for _, n := range o.scaleActive {
		more, err := openSessions(ctx, c, n-len(sessions), 16)
		if err != nil {
			return err
		}
		sessions = append(sessions, more...)
		var gops, dops []op
		for i := range n {
			gops = append(gops, callOp(sessions[i], gp))
			dops = append(dops, directOp(d, dp))
		}
		pt := activePoint{sessions: n}
		if pt.d, err = measure(ctx, o, dops); err != nil {
			return fmt.Errorf("%d active, direct: %w", n, err)
		}
		sampler := harness.SampleRSS(g.Pid(), 50*time.Millisecond)
		pt.gw, err = measure(ctx, o, gops)
		pt.rssPeak = sampler.Stop()
		if err != nil {
			return fmt.Errorf("%d active, gateway: %w", n, err)
		}
		r.active = append(r.active, pt)
		logf("scaling: %d active sessions: gateway %.0f calls/s p50 %s p99 %s | direct %.0f calls/s p50 %s p99 %s", n,
			pt.gw.Throughput, stats.Dur(pt.gw.P50), stats.Dur(pt.gw.P99), pt.d.Throughput, stats.Dur(pt.d.P50), stats.Dur(pt.d.P99))
	}

	// Idle sessions next to one active client, on a fresh gateway.
	_ = g.Stop()
	g, c, s0, _, err = startScaled(ctx, o, bins, dir+"-idle", cfg, 1, 32)
	if err != nil {
		return err
	}
	defer g.Stop()
	var idle []*mcpclient.Session
	for _, n := range o.scaleIdle {
		more, err := openSessions(ctx, c, n-len(idle), 16)
		if err != nil {
			return err
		}
		idle = append(idle, more...)
		sleep(ctx, o.settle)
		pt := idlePoint{idle: len(idle)}
		pt.rss, _ = harness.RSS(g.Pid())
		if pt.call, err = measure(ctx, o, []op{callOp(s0, gp)}); err != nil {
			return err
		}
		if pt.list, err = measure(ctx, o, []op{listOp(sessCall(s0))}); err != nil {
			return err
		}
		r.idle = append(r.idle, pt)
		logf("scaling: %d idle sessions: call p50 %s p99 %s, list p50 %s, RSS %s", len(idle), stats.Dur(pt.call.P50), stats.Dur(pt.call.P99),
			stats.Dur(pt.list.P50), stats.Bytes(float64(pt.rss)))
	}
	return nil
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func scalingReport(o *options, m machine, r *scalingResults, took time.Duration) string {
	var b strings.Builder
	m.header(&b, "Switchboard scaling curve", took)
	fmt.Fprintf(&b, "Every gateway runs with authentication on (admin API key), audit log and metrics as shipped, log level %s, defaults max_concurrent %d and max_queue %d (so that 1,000 concurrent callers queue instead of being refused). Latencies are one client in a closed loop for %s after %s warm-up, tools/call of a 100 B text; direct is the same child driven over stdio with supervisor.Conn.\n\n",
		o.logLevel, scaleMaxConcurrent, scaleMaxQueue, o.dur, o.warm)

	if len(r.providers) > 0 {
		fmt.Fprintf(&b, "## Providers (each a `bin/echo` child with %d tools)\n\nDirect stdio to one echo child: tools/call p50 %s, p99 %s; tools/list p50 %s.\n\n", r.echoTools, stats.Dur(r.dCall.P50), stats.Dur(r.dCall.P99), stats.Dur(r.dList.P50))
		b.WriteString("| Providers | Tools | Ready after exec | tools/call p50 | tools/call p99 | tools/list p50 | tools/list p99 | tools/list size | Gateway RSS idle |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, p := range r.providers {
			fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", p.providers, p.tools, stats.Dur(p.startup), stats.Dur(p.call.P50), stats.Dur(p.call.P99),
				stats.Dur(p.list.P50), stats.Dur(p.list.P99), stats.Bytes(float64(p.listBytes)), stats.Bytes(float64(p.rss)))
		}
		b.WriteString("\n")
	}
	if len(r.tools) > 0 {
		b.WriteString("## Tools (one `manytools` provider exposing N tools)\n\n")
		b.WriteString("| Tools | Ready after exec | tools/call p50 (direct) | tools/call p99 (direct) | tools/list p50 (direct) | tools/list p99 (direct) | list ratio p50 | tools/list size (direct) | Gateway RSS idle |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, p := range r.tools {
			_, lr := ratio(p.list.P50.Seconds(), p.dList.P50.Seconds())
			fmt.Fprintf(&b, "| %d | %s | %s (%s) | %s (%s) | %s (%s) | %s (%s) | %s | %s (%s) | %s |\n", p.tools, stats.Dur(p.startup),
				stats.Dur(p.call.P50), stats.Dur(p.dCall.P50), stats.Dur(p.call.P99), stats.Dur(p.dCall.P99),
				stats.Dur(p.list.P50), stats.Dur(p.dList.P50), stats.Dur(p.list.P99), stats.Dur(p.dList.P99), lr,
				stats.Bytes(float64(p.listBytes)), stats.Bytes(float64(p.dListSize)), stats.Bytes(float64(p.rss)))
		}
		b.WriteString("\n")
	}
	if len(r.active) > 0 {
		b.WriteString("## Concurrent active sessions (each its own session and connection, calling in a closed loop; direct: as many callers sharing one stdio child)\n\n")
		b.WriteString("| Sessions | Gateway calls/s | Direct calls/s | Throughput ratio | Gateway p50 | Direct p50 | Gateway p99 | Direct p99 | Errors (gw/direct) | Gateway RSS peak |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, p := range r.active {
			_, tr := ratio(p.gw.Throughput, p.d.Throughput)
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %s | %s | %s | %s | %s | %d/%d | %s |\n", p.sessions, p.gw.Throughput, p.d.Throughput, tr,
				stats.Dur(p.gw.P50), stats.Dur(p.d.P50), stats.Dur(p.gw.P99), stats.Dur(p.d.P99), p.gw.Errors, p.d.Errors, stats.Bytes(float64(p.rssPeak)))
		}
		b.WriteString("\n")
	}
	if len(r.idle) > 0 {
		b.WriteString("## Idle sessions next to one active client\n\n")
		b.WriteString("| Idle sessions | tools/call p50 | tools/call p99 | tools/list p50 | tools/list p99 | Gateway RSS |\n|--:|--:|--:|--:|--:|--:|\n")
		for _, p := range r.idle {
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", p.idle, stats.Dur(p.call.P50), stats.Dur(p.call.P99), stats.Dur(p.list.P50), stats.Dur(p.list.P99), stats.Bytes(float64(p.rss)))
		}
		b.WriteString("\n")
	}
	return b.String()
}
