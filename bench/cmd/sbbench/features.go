package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
	"github.com/switchboard-mcp/switchboard/internal/tracing/otlptest"
)

// A variant is one gateway configuration in the feature-cost table: the
// shipped defaults with some features switched off.
type variant struct {
	name        string
	noAuth      bool
	noAudit     bool
	noAccessLog bool     // log.level warn: no per-request "mcp request" line
	audit       []string // lines under audit: in gateway.yaml
	tracing     []string // lines under tracing: in gateway.yaml
	bin         string   // the gateway binary; "" for bin/switchboard
	rcv         *otlptest.Receiver
	dir         string
	sessions    []*mcpclient.Session
	pids        []int // the gateway, then its echo child
	c1, c16     []stats.Summary
	// CPU used at 16 clients over all rounds, by the gateway and by its child,
	// and the calls it served.
	cpu16, child16 time.Duration
	calls16        int
	// cpuRounds is the gateway's CPU per call at 16 clients in each round.
	cpuRounds []time.Duration
}

// featureScenarios are the two small-call loads of the main table.
var featureScenarios = []scenario{{"c1-100", 1, 100}, {"c16-100", 16, 100}}

type featureResults struct {
	variants      []*variant
	rounds        int
	direct, floor map[string][]stats.Summary
	dChild16      time.Duration // CPU of the direct child at 16 clients, over dCalls16
	dCalls16      int
	floor16       time.Duration // CPU of the floor server at 16 clients, over fCalls16
	fCalls16      int
}

// runFeatures measures what each feature costs on the small-call path: the
// same loads as the main table's 100 B rows, against gateways that differ
// only in what is switched on, next to direct stdio and the bare HTTP floor.
// All gateways run at once (idle ones cost nothing); each round measures
// direct and the floor first, then every gateway, in an order that rotates
// from round to round. On this kind of shared VM whichever runs first after a
// lighter phase tends to run fastest, so there are at least as many rounds as
// variants (each takes every position once) and the report shows medians.
func runFeatures(ctx context.Context, o *options, bins harness.Bins, tmp string) (*featureResults, error) {
	r := &featureResults{
		variants: []*variant{
			{name: "all on (shipped defaults)"},
			{name: "audit log off", noAudit: true},
			{name: "access log off (log.level warn)", noAccessLog: true},
			{name: "authentication off", noAuth: true},
			{name: "all three off", noAuth: true, noAudit: true, noAccessLog: true},
		},
		direct: map[string][]stats.Summary{},
		floor:  map[string][]stats.Summary{},
	}
	if o.featuresAudit {
		r.variants = []*variant{
			{name: "audit: record written before the answer (shipped default, group commit)"},
			{name: "audit: written and fsynced before the answer (fsync: true)", audit: []string{"fsync: true"}},
			{name: "audit: queued, written after the answer (wait_for_write: false)", audit: []string{"wait_for_write: false"}},
			{name: "audit log off", noAudit: true},
		}
	}
	if o.featuresTracing {
		vs, err := tracingVariants(o)
		if err != nil {
			return nil, err
		}
		r.variants = vs
		for _, v := range vs {
			if v.rcv != nil {
				defer v.rcv.Close()
			}
		}
	}
	r.rounds = max(o.rounds, len(r.variants))
	for i, v := range r.variants {
		cfg := harness.Config{
			Providers: []harness.Provider{o.echo(bins)},
			LogLevel:  o.logLevel,
			NoAuth:    v.noAuth,
			NoAudit:   v.noAudit,
			Audit:     v.audit,
			Tracing:   v.tracing,
		}
		if v.noAccessLog {
			cfg.LogLevel = "warn"
		}
		logf("features: starting gateway %d/%d: %s", i+1, len(r.variants), v.name)
		v.dir = filepath.Join(tmp, fmt.Sprintf("features-%d", i))
		g, c, s0, _, err := startGatewayBin(ctx, bins, v.dir, cfg, 1, 32, v.bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		defer g.Stop()
		_, children := harness.SplitChildren(g.Pid())
		if len(children) != 1 {
			return nil, fmt.Errorf("%s: gateway has %d provider children, want 1 echo", v.name, len(children))
		}
		v.pids = []int{g.Pid(), children[0]}
		more, err := openSessions(ctx, c, 15, 4)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		v.sessions = append([]*mcpclient.Session{s0}, more...)
	}
	d, err := harness.StartDirect(ctx, bins.Echo)
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	fl, err := harness.StartFloor(ctx, exe)
	if err != nil {
		return nil, err
	}
	defer fl.Stop()
	floorSessions, err := openSessions(ctx, &mcpclient.Client{URL: fl.URL, HTTP: mcpclient.NewHTTPClient(32)}, 16, 4)
	if err != nil {
		return nil, fmt.Errorf("floor server: %w", err)
	}

	text := payload(100)
	gp, dp := echoParams("echo__echo", text), echoParams("echo", text)
	for round := range r.rounds {
		for _, sc := range featureScenarios {
			var dops, fops []op
			for i := range sc.clients {
				dops = append(dops, directOp(d, dp))
				fops = append(fops, callOp(floorSessions[i], gp))
			}
			ds, cpu, err := measureCPU(ctx, o, dops, d.Pid())
			if err != nil {
				return nil, fmt.Errorf("direct %s: %w", sc.label(), err)
			}
			if sc.clients == 16 {
				r.dChild16 += cpu[0]
				r.dCalls16 += ds.N
			}
			r.direct[sc.name] = append(r.direct[sc.name], ds)
			fs, cpu, err := measureCPU(ctx, o, fops, fl.Pid())
			if err != nil {
				return nil, fmt.Errorf("floor %s: %w", sc.label(), err)
			}
			if sc.clients == 16 {
				r.floor16 += cpu[0]
				r.fCalls16 += fs.N
			}
			r.floor[sc.name] = append(r.floor[sc.name], fs)

			for k := range r.variants {
				v := r.variants[(k+round)%len(r.variants)]
				var gops []op
				for i := range sc.clients {
					gops = append(gops, callOp(v.sessions[i], gp))
				}
				gs, cpu, err := measureCPU(ctx, o, gops, v.pids...)
				if err != nil {
					return nil, fmt.Errorf("%s, %s: %w", v.name, sc.label(), err)
				}
				if sc.clients == 1 {
					v.c1 = append(v.c1, gs)
				} else {
					v.c16 = append(v.c16, gs)
					v.cpu16 += cpu[0]
					v.child16 += cpu[1]
					v.calls16 += gs.N
					v.cpuRounds = append(v.cpuRounds, perCall(cpu[0], gs.N))
				}
				logf("features: round %d %-18s %-32s p50 %s p99 %s %.0f/s", round+1, sc.label(), v.name, stats.Dur(gs.P50), stats.Dur(gs.P99), gs.Throughput)
			}
			logf("features: round %d %-18s %-32s p50 %s p99 %s %.0f/s | floor p50 %s %.0f/s", round+1, sc.label(), "direct stdio",
				stats.Dur(ds.P50), stats.Dur(ds.P99), ds.Throughput, stats.Dur(fs.P50), fs.Throughput)
		}
	}
	return r, nil
}

// tracingVariants are the gateways of -features-tracing: tracing on at
// sample_ratio 1 first (the "saved" column is then what each other setting
// saves over it), off, on at ratio 0, on with the receiver down, and, with
// -baseline, a binary built before tracing.
func tracingVariants(o *options) ([]*variant, error) {
	on := func(ratio, endpoint, queue string) []string {
		return []string{"enabled: true", "endpoint: " + endpoint, "sample_ratio: " + ratio, "max_queue: " + queue, "batch_delay: 200ms"}
	}
	full, err := otlptest.StartHTTPCounter()
	if err != nil {
		return nil, err
	}
	none, err := otlptest.StartHTTPCounter()
	if err != nil {
		full.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	vs := []*variant{
		// A queue large enough that no span is dropped: the cost of
		// exporting every one of them is measured.
		{name: "tracing on, sample_ratio 1 (every call recorded and exported)", tracing: on("1", full.URL, "262144"), rcv: full},
		{name: "tracing off (shipped default)"},
		{name: "tracing on, sample_ratio 0 (trace context passed on, nothing recorded)", tracing: on("0", none.URL, "2048"), rcv: none},
		{name: "tracing on, sample_ratio 1, receiver down (spans dropped)", tracing: on("1", down, "2048")},
	}
	if o.baseline != "" {
		vs = append(vs, &variant{name: "tracing off, binary built before tracing", bin: o.baseline})
	}
	return vs, nil
}

// tracingCPUReport compares each gateway's CPU per call with tracing
// off's, round by round: in every round the gateways ran one after another,
// so the median of the per-round differences is robust to the machine's
// load drifting between rounds.
func tracingCPUReport(r *featureResults) string {
	off := r.variants[1]
	var b strings.Builder
	b.WriteString("Gateway CPU per call at 16 clients, per round, compared with tracing off in the same round:\n\n")
	b.WriteString("| Gateway | median CPU per call | difference with tracing off: median over rounds | min | max |\n|---|--:|--:|--:|--:|\n")
	for _, v := range r.variants {
		var diffs []time.Duration
		for i := range min(len(v.cpuRounds), len(off.cpuRounds)) {
			diffs = append(diffs, v.cpuRounds[i]-off.cpuRounds[i])
		}
		slices.Sort(diffs)
		med, lo, hi := "", "", ""
		if v != off && len(diffs) > 0 {
			med, lo, hi = signedDur(medianDur(diffs)), signedDur(diffs[0]), signedDur(diffs[len(diffs)-1])
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", v.name, stats.Dur(medianDur(slices.Sorted(slices.Values(v.cpuRounds)))), med, lo, hi)
	}
	return b.String()
}

// medianDur is the median of sorted durations.
func medianDur(sorted []time.Duration) time.Duration {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// toolCalls counts the tool_call records in a gateway's audit log: every
// call it served, warm-ups included.
func toolCalls(dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "data", "audit*.log"))
	n := 0
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			n += bytes.Count(b, []byte(`"type":"tool_call"`))
		}
	}
	return n
}

// spanReport says, for each tracing gateway with a receiver, how many spans
// arrived for how many calls.
func spanReport(r *featureResults) string {
	var b strings.Builder
	for _, v := range r.variants {
		if v.rcv == nil {
			continue
		}
		time.Sleep(time.Second) // the last batch
		calls := toolCalls(v.dir)
		per := 0.0
		if calls > 0 {
			per = float64(v.rcv.Count()) / float64(calls)
		}
		fmt.Fprintf(&b, "- %s: the receiver got %d spans for %d tool calls (%.2f per call).\n", v.name, v.rcv.Count(), calls, per)
	}
	return b.String()
}

// measureCPU warms up, then runs ops for o.dur and returns the CPU time pids
// used over that run only, so that it divides by the calls the run made.
func measureCPU(ctx context.Context, o *options, ops []op, pids ...int) (stats.Summary, []time.Duration, error) {
	if _, err := runLoad(ctx, ops, o.warm, o.maxCalls); err != nil {
		return stats.Summary{}, nil, fmt.Errorf("warm-up: %w", err)
	}
	m := startCPU(pids...)
	s, err := runLoad(ctx, ops, o.dur, o.maxCalls)
	cpu, _ := m.stop()
	return s.Summarize(), cpu, err
}

// perCall divides CPU time over calls.
func perCall(cpu time.Duration, calls int) time.Duration {
	if calls == 0 {
		return 0
	}
	return cpu / time.Duration(calls)
}

func featuresReport(o *options, m machine, r *featureResults, took time.Duration) string {
	var b strings.Builder
	title := "What each Switchboard feature costs on a small call"
	switch {
	case o.featuresAudit:
		title = "What each audit log mode costs on a small call"
	case o.featuresTracing:
		title = "What tracing costs on a small call"
	}
	m.header(&b, title, took)
	fmt.Fprintf(&b, "%d gateways, each with one `bin/echo` child, run side by side and differ only in what is switched on; metrics are on in all of them (there is no switch). "+
		"Loads are the main table's: tools/call of a 100 B text from 1 client and from 16 clients (each its own session), closed loop, %s after %s warm-up. "+
		"There are %d rounds; in each, direct stdio and the bare HTTP floor run first, then the gateways in an order that rotates from round to round, so each takes every position. "+
		"Latency and throughput are the median over the rounds; CPU per call is the CPU time the process used over all rounds at 16 clients, divided by the calls served. "+
		"\"Saved\" is the all-on figure minus the variant's: what switching the feature off buys. Differences of a few µs are within this machine's noise (the log of the run has every round).\n\n",
		len(r.variants), o.dur, o.warm, r.rounds)
	all := r.variants[0]
	a1 := stats.Median(all.c1...)
	aCPU := perCall(all.cpu16, all.calls16)
	d1, d16 := stats.Median(r.direct["c1-100"]...), stats.Median(r.direct["c16-100"]...)
	f1, f16 := stats.Median(r.floor["c1-100"]...), stats.Median(r.floor["c16-100"]...)
	b.WriteString("| Gateway | 1 client p50 | saved | 1 client p99 | 16 clients calls/s | ratio to direct | gateway CPU per call (16 clients) | saved | echo child CPU per call |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, v := range r.variants {
		s1, s16 := stats.Median(v.c1...), stats.Median(v.c16...)
		cpu := perCall(v.cpu16, v.calls16)
		_, tr := ratio(s16.Throughput, d16.Throughput)
		saved1, savedCPU := "", ""
		if v != all {
			saved1, savedCPU = signedDur(a1.P50-s1.P50), signedDur(aCPU-cpu)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f | %s | %s | %s | %s |\n", v.name, stats.Dur(s1.P50), saved1, stats.Dur(s1.P99),
			s16.Throughput, tr, stats.Dur(cpu), savedCPU, stats.Dur(perCall(v.child16, v.calls16)))
	}
	fmt.Fprintf(&b, "| direct stdio (no gateway) | %s |  | %s | %.0f | 1.00× | — |  | %s |\n", stats.Dur(d1.P50), stats.Dur(d1.P99), d16.Throughput, stats.Dur(perCall(r.dChild16, r.dCalls16)))
	fmt.Fprintf(&b, "| bare HTTP floor (no MCP, no provider) | %s |  | %s | %.0f |  | %s |  |  |\n\n", stats.Dur(f1.P50), stats.Dur(f1.P99), f16.Throughput, stats.Dur(perCall(r.floor16, r.fCalls16)))
	fmt.Fprintf(&b, "All on, 1 client: the p50 is %s above direct stdio's, and the bare HTTP floor's p50 is %s; the rest, %s, is the gateway's own work on the call's critical path.\n",
		stats.Dur(a1.P50-d1.P50), stats.Dur(f1.P50), signedDur(a1.P50-d1.P50-f1.P50))
	if o.featuresTracing && len(r.variants) > 1 {
		b.WriteString("\n" + tracingCPUReport(r) + "\n" + spanReport(r))
	}
	return b.String()
}

// signedDur shows d with its sign; stats.Dur is for durations that are not
// negative.
func signedDur(d time.Duration) string {
	if d < 0 {
		return "−" + stats.Dur(-d)
	}
	return "+" + stats.Dur(d)
}
