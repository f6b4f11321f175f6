package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
)

// pair is one measurement through the gateway and over direct stdio.
type pair struct {
	gw, direct stats.Summary
	// floor is the same load against a bare net/http JSON-RPC echo process:
	// what any HTTP front end costs at least.
	floor stats.Summary
	// CPU per operation: the gateway process, the provider child behind it, and
	// this load generator; then the child and the load generator in direct mode.
	gwCPU, gwChildCPU, gwSelfCPU time.Duration
	dChildCPU, dSelfCPU          time.Duration
	// The floor server and this load generator in the floor phase.
	fCPU, fSelfCPU time.Duration
	// relay is the same load against the relay floor: the bare HTTP server
	// passing each call to its own echo child, what any HTTP front end to a
	// stdio provider costs at least. Measured for tools/call only.
	relay  stats.Summary
	rCPU   time.Duration
	hasRel bool
	// Read/write system calls per operation of the gateway process, the floor
	// server and the relay floor server.
	gwSys, fSys, rSys float64
}

// loads is one measurement's operations on each side; a side with no ops is
// skipped.
type loads struct {
	gw, direct, floor, relay []op
}

// pids are the processes whose CPU a measurement attributes: the gateway and
// its child, the direct child, the floor server and the relay floor server
// (without its child).
type pids struct {
	gw                   []int
	direct, floor, relay int
}

// features records what the measured gateway had switched on.
type features struct {
	authStatus    int    // status of initialize without a credential
	metricsStatus int    // GET /metrics with the admin key
	auditGrowth   int64  // bytes the audit log grew during the call phases
	auditCalls    int    // tool calls made during those phases
	auditFile     string // where it was looked for
	logLevel      string
	version       string
}

// mainResults is everything the main suite measures.
type mainResults struct {
	feat      features
	calls     map[string]*pair // by scenario name
	list      *pair
	init      *pair
	echoTools int // tools the echo provider lists
	procs     int // the gateway's GOMAXPROCS (the relay floor runs at it too)
	rssIdle   int64
	memIdle   harness.Mem   // the gateway process, idle
	helperMem []harness.Mem // its helper processes (the supervisor's reaper)
	heapIdle  int64
	rssPeak   int64
	idle      []idleResult
	coldGW    []time.Duration
	coldD     []time.Duration
	filt      *filterResult
	profile   []string // notes on what -profile wrote
	callOrder []scenario
}

type scenario struct {
	name    string
	clients int
	size    int
}

func (s scenario) label() string {
	c := "1 client"
	if s.clients > 1 {
		c = fmt.Sprintf("%d clients", s.clients)
	}
	return fmt.Sprintf("%s, %s", c, sizeLabel(s.size))
}

func sizeLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

type idleResult struct {
	n           int
	added       int // sessions opened in this step, in openTime
	rssDelta    int64
	heapDelta   int64 // from /metrics go_memstats_heap_inuse_bytes, or 0
	openTime    time.Duration
	held, probe int
}

type filterResult struct {
	providers, tools, principals int
	adminSees                    int
	perUserMin, perUserMax       int
	perUserAvg                   float64
	avgBytes                     int // size of a user's tools/list answer, on average
	filtered, admin              stats.Summary
	// handler is the filtered lists' time inside the gateway's MCP handler,
	// from its access log (no network, HTTP parsing or client decoding).
	handler stats.Summary
	startup time.Duration
}

func runMain(ctx context.Context, o *options, bins harness.Bins, tmp string) (*mainResults, error) {
	r := &mainResults{calls: map[string]*pair{}}
	r.callOrder = []scenario{
		{"c1-100", 1, 100}, {"c16-100", 16, 100},
		{"c1-64k", 1, 64 << 10}, {"c16-64k", 16, 64 << 10},
	}
	if err := callPhase(ctx, o, bins, filepath.Join(tmp, "calls"), r); err != nil {
		return r, fmt.Errorf("call phase: %w", err)
	}
	if err := idlePhase(ctx, o, bins, filepath.Join(tmp, "idle"), r); err != nil {
		return r, fmt.Errorf("idle-session phase: %w", err)
	}
	if err := coldPhase(ctx, o, bins, filepath.Join(tmp, "cold"), r); err != nil {
		return r, fmt.Errorf("cold-start phase: %w", err)
	}
	if err := filterPhase(ctx, o, bins, filepath.Join(tmp, "filter"), r); err != nil {
		return r, fmt.Errorf("filtered-list phase: %w", err)
	}
	if o.profile != "" {
		notes, err := profilePhase(ctx, o, bins, filepath.Join(tmp, "profile"))
		r.profile = notes
		if err != nil {
			return r, fmt.Errorf("profile phase: %w", err)
		}
	}
	return r, nil
}

// startEcho starts a gateway with one echo provider and an admin user, and
// returns it with a client and a first session that already lists the tools.
func startEcho(ctx context.Context, o *options, bins harness.Bins, dir, binary string, idle int) (*harness.Env, *harness.Gateway, *mcpclient.Client, *mcpclient.Session, error) {
	env, err := harness.NewEnv(bins, dir, harness.Config{
		Providers: []harness.Provider{o.echo(bins)},
		LogLevel:  o.logLevel,
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	key, err := env.AddUser(ctx, "bench", "admin")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	g, err := env.Start(ctx, binary)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	c := &mcpclient.Client{URL: g.URL, Key: key, HTTP: mcpclient.NewHTTPClient(idle)}
	s, err := harness.OpenSession(ctx, c)
	if err != nil {
		_ = g.Stop()
		return nil, nil, nil, nil, err
	}
	if _, err := harness.WaitTools(ctx, s, 1, 30*time.Second); err != nil {
		_ = g.Stop()
		return nil, nil, nil, nil, err
	}
	return env, g, c, s, nil
}

func callPhase(ctx context.Context, o *options, bins harness.Bins, dir string, r *mainResults) error {
	logf("calls: starting the gateway (echo provider, auth on) and a direct echo child")
	env, g, c, s0, err := startEcho(ctx, o, bins, dir, "", 64)
	if err != nil {
		return err
	}
	defer g.Stop()
	r.feat.logLevel = o.logLevel
	r.feat.auditFile = env.AuditFile
	r.feat.version = versionOf(ctx, bins.Switchboard)

	// What is switched on: auth refuses a missing credential; /metrics answers
	// the admin; the audit log grows (measured over the call phases below).
	anon := &mcpclient.Client{URL: g.URL, HTTP: c.HTTP}
	if _, err := anon.Open(ctx); err != nil {
		var se *mcpclient.StatusError
		if errors.As(err, &se) {
			r.feat.authStatus = se.Status
		}
	} else {
		r.feat.authStatus = 200
	}
	r.feat.metricsStatus, _, _ = c.Get(ctx, "/metrics")
	if res, err := s0.Call(ctx, "tools/list", nil); err == nil {
		r.echoTools = bytes.Count(res, []byte(`"inputSchema"`))
	}

	sleep(ctx, o.settle)
	r.rssIdle, _ = harness.RSS(g.Pid())
	r.memIdle, _ = harness.MemOf(g.Pid())
	r.heapIdle = heapInuse(ctx, c)
	logf("calls: gateway RSS idle %s", stats.Bytes(float64(r.rssIdle)))

	helpers, children := harness.SplitChildren(g.Pid())
	for _, h := range helpers {
		if m, err := harness.MemOf(h); err == nil {
			r.helperMem = append(r.helperMem, m)
		}
	}
	if len(children) != 1 {
		return fmt.Errorf("gateway has %d provider children, want 1 echo", len(children))
	}
	child := children[0]

	d, err := harness.StartDirect(ctx, bins.Echo)
	if err != nil {
		return err
	}
	defer d.Stop()

	sessions := []*mcpclient.Session{s0}
	for len(sessions) < 16 {
		s, err := c.Open(ctx)
		if err != nil {
			return err
		}
		sessions = append(sessions, s)
	}

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fl, err := harness.StartFloor(ctx, exe)
	if err != nil {
		return err
	}
	defer fl.Stop()
	fc := &mcpclient.Client{URL: fl.URL, HTTP: mcpclient.NewHTTPClient(64)}
	floorSessions, err := openSessions(ctx, fc, 16, 4)
	if err != nil {
		return fmt.Errorf("floor server: %w", err)
	}
	// The relay floor runs at the gateway's GOMAXPROCS (which `serve` sets
	// from the host's CPUs), so the two differ only in what the gateway adds.
	procs, ok := metricValue(ctx, c, "go_sched_gomaxprocs_threads")
	if !ok {
		return fmt.Errorf("the gateway's /metrics has no go_sched_gomaxprocs_threads")
	}
	r.procs = int(procs)
	rl, err := harness.StartRelay(ctx, exe, bins.Echo, []string{"GOMAXPROCS=" + strconv.Itoa(r.procs)})
	if err != nil {
		return err
	}
	defer rl.Stop()
	relaySessions, err := openSessions(ctx, &mcpclient.Client{URL: rl.URL, HTTP: mcpclient.NewHTTPClient(64)}, 16, 4)
	if err != nil {
		return fmt.Errorf("relay floor server: %w", err)
	}
	ps := pids{gw: []int{g.Pid(), child}, direct: d.Pid(), floor: fl.Pid(), relay: rl.Pid()}

	auditBefore := harness.FileSize(env.AuditFile)
	sampler := harness.SampleRSS(g.Pid(), 50*time.Millisecond)
	calls := 0
	for _, sc := range r.callOrder {
		r.calls[sc.name] = &pair{}
	}
	r.list, r.init = &pair{}, &pair{}
	var rounds = map[string][]pair{}
	for round := range o.rounds {
		for _, sc := range r.callOrder {
			text := payload(sc.size)
			gp, dp := echoParams("echo__echo", text), echoParams("echo", text)
			if round == 0 { // the answer carries the text back, byte for byte
				if res, err := s0.Call(ctx, "tools/call", gp); err != nil || !bytes.Contains(res, []byte(text)) {
					return fmt.Errorf("gateway echo of %s: %v %.200s", sizeLabel(sc.size), err, res)
				}
				if res, err := d.Call(ctx, "tools/call", dp); err != nil || !bytes.Contains(res, []byte(text)) {
					return fmt.Errorf("direct echo of %s: %v %.200s", sizeLabel(sc.size), err, res)
				}
			}
			var l loads
			for i := range sc.clients {
				l.gw = append(l.gw, callOp(sessions[i], gp))
				l.direct = append(l.direct, directOp(d, dp))
				l.floor = append(l.floor, callOp(floorSessions[i], gp))
				l.relay = append(l.relay, callOp(relaySessions[i], dp))
			}
			p, err := measurePair(ctx, o, l, ps)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.label(), err)
			}
			calls += p.gw.N
			rounds[sc.name] = append(rounds[sc.name], p)
			logf("calls: round %d %-18s gateway p50 %s p99 %s %.0f/s | direct p50 %s p99 %s %.0f/s", round+1, sc.label(),
				stats.Dur(p.gw.P50), stats.Dur(p.gw.P99), p.gw.Throughput, stats.Dur(p.direct.P50), stats.Dur(p.direct.P99), p.direct.Throughput)
		}
		// tools/list and initialize, one client.
		p, err := measurePair(ctx, o, loads{gw: []op{listOp(sessCall(s0))}, direct: []op{listOp(directCall(d))}, floor: []op{listOp(sessCall(floorSessions[0]))}}, ps)
		if err != nil {
			return fmt.Errorf("tools/list: %w", err)
		}
		rounds["list"] = append(rounds["list"], p)
		logf("calls: round %d tools/list          gateway p50 %s p99 %s | direct p50 %s p99 %s", round+1,
			stats.Dur(p.gw.P50), stats.Dur(p.gw.P99), stats.Dur(p.direct.P50), stats.Dur(p.direct.P99))

		var opened []*mcpclient.Session
		initGW := func(ctx context.Context) error {
			s, _, err := c.Initialize(ctx)
			if err == nil {
				opened = append(opened, s)
			}
			return err
		}
		initD := func(ctx context.Context) error {
			_, err := d.Call(ctx, "initialize", mcpclient.InitializeParams)
			return err
		}
		initF := func(ctx context.Context) error {
			_, _, err := fc.Initialize(ctx)
			return err
		}
		p, err = measurePair(ctx, o, loads{gw: []op{initGW}, direct: []op{initD}, floor: []op{initF}}, ps)
		if err != nil {
			return fmt.Errorf("initialize: %w", err)
		}
		for _, s := range opened {
			_ = s.Close(ctx)
		}
		rounds["init"] = append(rounds["init"], p)
		logf("calls: round %d initialize          gateway p50 %s p99 %s | direct p50 %s p99 %s", round+1,
			stats.Dur(p.gw.P50), stats.Dur(p.gw.P99), stats.Dur(p.direct.P50), stats.Dur(p.direct.P99))
	}
	r.rssPeak = sampler.Stop()
	sleep(ctx, 200*time.Millisecond) // let the audit writer catch up
	r.feat.auditGrowth = harness.FileSize(env.AuditFile) - auditBefore
	r.feat.auditCalls = calls
	for name, ps := range rounds {
		best := bestPair(ps)
		switch name {
		case "list":
			r.list = &best
		case "init":
			r.init = &best
		default:
			r.calls[name] = &best
		}
	}
	return nil
}

// measurePair warms up and measures the direct ops, then the floor's and the
// relay floor's (if any), then the gateway's, and attributes CPU time.
func measurePair(ctx context.Context, o *options, l loads, ps pids) (pair, error) {
	var p pair
	side := func(name string, ops []op, pids ...int) (stats.Summary, []time.Duration, time.Duration, []float64, error) {
		if _, err := runLoad(ctx, ops, o.warm, o.maxCalls); err != nil {
			return stats.Summary{}, nil, 0, nil, fmt.Errorf("%s warm-up: %w", name, err)
		}
		m := startCPU(pids...)
		res, err := runLoad(ctx, ops, o.dur, o.maxCalls)
		if err != nil {
			return stats.Summary{}, nil, 0, nil, fmt.Errorf("%s: %w", name, err)
		}
		cpu, self := m.stop()
		n := max(1, len(res.Lat))
		sys := make([]float64, len(pids))
		for i := range cpu {
			cpu[i] /= time.Duration(n)
			sys[i] = perCallSys(m.sys[i], n)
		}
		return res.Summarize(), cpu, self / time.Duration(n), sys, nil
	}
	var err error
	var cpu []time.Duration
	var sys []float64
	if p.direct, cpu, p.dSelfCPU, _, err = side("direct", l.direct, ps.direct); err != nil {
		return p, err
	}
	p.dChildCPU = cpu[0]
	if len(l.floor) > 0 {
		if p.floor, cpu, p.fSelfCPU, sys, err = side("floor", l.floor, ps.floor); err != nil {
			return p, err
		}
		p.fCPU, p.fSys = cpu[0], sys[0]
	}
	if len(l.relay) > 0 {
		if p.relay, cpu, _, sys, err = side("relay floor", l.relay, ps.relay); err != nil {
			return p, err
		}
		p.rCPU, p.rSys, p.hasRel = cpu[0], sys[0], true
	}
	if p.gw, cpu, p.gwSelfCPU, sys, err = side("gateway", l.gw, ps.gw...); err != nil {
		return p, err
	}
	p.gwCPU, p.gwChildCPU, p.gwSys = cpu[0], cpu[1], sys[0]
	return p, nil
}

// bestPair keeps, for each side, the least disturbed of the rounds.
func bestPair(ps []pair) pair {
	var gws, ds, fs, rs []stats.Summary
	for _, p := range ps {
		gws = append(gws, p.gw)
		ds = append(ds, p.direct)
		fs = append(fs, p.floor)
		rs = append(rs, p.relay)
	}
	b := ps[0]
	for _, p := range ps[1:] { // CPU per call: the lowest seen
		b.gwCPU, b.gwChildCPU, b.gwSelfCPU = min(b.gwCPU, p.gwCPU), min(b.gwChildCPU, p.gwChildCPU), min(b.gwSelfCPU, p.gwSelfCPU)
		b.dChildCPU, b.dSelfCPU = min(b.dChildCPU, p.dChildCPU), min(b.dSelfCPU, p.dSelfCPU)
		b.fCPU, b.fSelfCPU = min(b.fCPU, p.fCPU), min(b.fSelfCPU, p.fSelfCPU)
		b.rCPU = min(b.rCPU, p.rCPU)
		b.gwSys, b.fSys, b.rSys = min(b.gwSys, p.gwSys), min(b.fSys, p.fSys), min(b.rSys, p.rSys)
	}
	b.gw, b.direct, b.floor, b.relay = stats.Best(gws...), stats.Best(ds...), stats.Best(fs...), stats.Best(rs...)
	return b
}

func idlePhase(ctx context.Context, o *options, bins harness.Bins, dir string, r *mainResults) error {
	if len(o.idle) == 0 {
		return nil
	}
	logf("idle sessions: starting a fresh gateway")
	_, g, c, _, err := startEcho(ctx, o, bins, dir, "", 32)
	if err != nil {
		return err
	}
	defer g.Stop()
	sleep(ctx, o.settle)
	rss0, _ := harness.RSS(g.Pid())
	heap0 := heapInuse(ctx, c)
	var all []*mcpclient.Session
	for _, n := range o.idle {
		t0 := time.Now()
		more, err := openSessions(ctx, c, n-len(all), 16)
		if err != nil {
			return fmt.Errorf("opening %d sessions: %w", n, err)
		}
		all = append(all, more...)
		took := time.Since(t0)
		sleep(ctx, o.settle)
		rss, _ := harness.RSS(g.Pid())
		heap := heapInuse(ctx, c)
		res := idleResult{n: len(all), added: len(more), rssDelta: rss - rss0, openTime: took}
		if heap0 > 0 && heap > 0 {
			res.heapDelta = heap - heap0
		}
		// Held: the oldest and the newest sessions still answer.
		probe := append(append([]*mcpclient.Session{}, all[:min(10, len(all))]...), all[max(0, len(all)-10):]...)
		for _, s := range probe {
			res.probe++
			if _, err := s.Call(ctx, "tools/list", nil); err == nil {
				res.held++
			}
		}
		r.idle = append(r.idle, res)
		logf("idle sessions: %d open (in %s), RSS +%s (%s/session), heap +%s; %d/%d probed sessions answer",
			len(all), took.Round(time.Millisecond), stats.Bytes(float64(res.rssDelta)), stats.Bytes(float64(res.rssDelta)/float64(len(all))),
			stats.Bytes(float64(res.heapDelta)), res.held, res.probe)
	}
	return nil
}

// openSessions opens n sessions with `workers` concurrent openers.
func openSessions(ctx context.Context, c *mcpclient.Client, n, workers int) ([]*mcpclient.Session, error) {
	if n <= 0 {
		return nil, nil
	}
	out := make([]*mcpclient.Session, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := 0
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop || ctx.Err() != nil {
					return
				}
				s, err := c.Open(ctx)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				out[i] = s
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return out, first
}

func coldPhase(ctx context.Context, o *options, bins harness.Bins, dir string, r *mainResults) error {
	if o.coldRuns <= 0 {
		return nil
	}
	logf("cold start: %d runs each, gateway (exec → first tools/list listing echo's tools) and direct", o.coldRuns)
	env, err := harness.NewEnv(bins, dir, harness.Config{
		Providers: []harness.Provider{o.echo(bins)},
		LogLevel:  o.logLevel,
	})
	if err != nil {
		return err
	}
	key, err := env.AddUser(ctx, "bench", "admin")
	if err != nil {
		return err
	}
	hc := mcpclient.NewHTTPClient(4)
	for range o.coldRuns {
		g, err := env.Start(ctx, "")
		if err != nil {
			return err
		}
		c := &mcpclient.Client{URL: g.URL, Key: key, HTTP: hc}
		s, err := harness.OpenSession(ctx, c)
		if err == nil {
			var at time.Time
			at, err = harness.WaitTools(ctx, s, 1, 30*time.Second)
			if err == nil {
				r.coldGW = append(r.coldGW, at.Sub(g.Started))
			}
		}
		hc.CloseIdleConnections()
		if serr := g.Stop(); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
		t0 := time.Now()
		d, err := harness.StartDirect(ctx, bins.Echo)
		if err != nil {
			return err
		}
		_, err = d.Call(ctx, "tools/list", nil)
		took := time.Since(t0)
		_ = d.Stop()
		if err != nil {
			return err
		}
		r.coldD = append(r.coldD, took)
	}
	slices.Sort(r.coldGW)
	slices.Sort(r.coldD)
	logf("cold start: gateway median %s (min %s), direct median %s (min %s)",
		stats.Dur(median(r.coldGW)), stats.Dur(r.coldGW[0]), stats.Dur(median(r.coldD)), stats.Dur(r.coldD[0]))
	return nil
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)/2]
}

// filterConfig is the 50 providers × 20 tools, 10 roles policy of the filtered
// tools/list case. Roles grant overlapping provider sets; odd roles also
// narrow to tool patterns; the last fifth of the providers are read-only with
// one write tool allowed.
// It also returns how many tools an admin sees: every tool, except on the
// read-only providers, whose write policy applies to everyone.
func filterConfig(o *options, bins harness.Bins, providers, tools int) (harness.Config, int) {
	cfg := harness.Config{Roles: map[string]harness.Role{}, LogLevel: o.logLevel}
	adminSees := 0
	name := func(j int) string { return fmt.Sprintf("mt%02d", j) }
	for j := range providers {
		p := harness.Provider{Name: name(j), Command: bins.ManyTools, Args: []string{"-tools", strconv.Itoa(tools)}}
		adminSees += tools
		if j >= providers*4/5 {
			p.ReadOnly = true
			p.Allow = []string{"tool_*1"} // plus the even (read-only) tools
			adminSees -= tools / 2
			for t := 1; t < tools; t += 2 {
				if strings.HasSuffix(fmt.Sprint(t), "1") {
					adminSees++
				}
			}
		}
		cfg.Providers = append(cfg.Providers, p)
	}
	for i := range 10 {
		var ps []string
		seen := map[string]bool{}
		add := func(j int) {
			if n := name(j % providers); !seen[n] {
				seen[n] = true
				ps = append(ps, n)
			}
		}
		for j := i; j < providers; j += 10 {
			add(j)
		}
		for k := range 5 {
			add(i*7 + k)
		}
		role := harness.Role{Providers: ps}
		if i%2 == 1 {
			role.Tools = []string{"*__tool_0*", "*__tool_1[05]"}
		}
		cfg.Roles[fmt.Sprintf("r%d", i)] = role
	}
	return cfg, adminSees
}

// filterGateway is a running filtered-list gateway with one session per user.
type filterGateway struct {
	g        *harness.Gateway
	env      *harness.Env
	adminKey string
	admin    *mcpclient.Session
	sessions []*mcpclient.Session
	fr       *filterResult
}

// cycle returns an op that lists tools as the next user, round-robin.
func (f *filterGateway) cycle() op {
	i := 0
	return func(ctx context.Context) error {
		s := f.sessions[i%len(f.sessions)]
		i++
		return listOp(sessCall(s))(ctx)
	}
}

// startFilter creates the users, starts the filtered-list gateway (binary, or
// bin/switchboard when empty), opens one session per user and checks that the
// policy filters.
func startFilter(ctx context.Context, o *options, bins harness.Bins, dir, binary string) (*filterGateway, error) {
	fr := &filterResult{providers: o.filterProviders, tools: o.filterTools, principals: o.filterPrincipals}
	logf("filtered tools/list: %d providers × %d tools, %d principals: creating users", fr.providers, fr.tools, fr.principals)
	cfg, adminSees := filterConfig(o, bins, fr.providers, fr.tools)
	fr.adminSees = adminSees
	env, err := harness.NewEnv(bins, dir, cfg)
	if err != nil {
		return nil, err
	}
	adminKey, err := env.AddUser(ctx, "bench", "admin")
	if err != nil {
		return nil, err
	}
	keys := make([]string, fr.principals)
	for k := range fr.principals {
		roles := []string{fmt.Sprintf("r%d", k%10)}
		if k%3 == 0 {
			roles = append(roles, fmt.Sprintf("r%d", (k+5)%10))
		}
		if keys[k], err = env.AddUser(ctx, fmt.Sprintf("u%03d", k), roles...); err != nil {
			return nil, err
		}
	}
	logf("filtered tools/list: starting the gateway with %d providers", fr.providers)
	g, err := env.Start(ctx, binary)
	if err != nil {
		return nil, err
	}
	f := &filterGateway{g: g, env: env, fr: fr, adminKey: adminKey}
	fail := func(err error) (*filterGateway, error) {
		_ = g.Stop()
		return nil, err
	}
	hc := mcpclient.NewHTTPClient(16)
	admin := &mcpclient.Client{URL: g.URL, Key: adminKey, HTTP: hc}
	if f.admin, err = harness.OpenSession(ctx, admin); err != nil {
		return fail(err)
	}
	at, err := harness.WaitTools(ctx, f.admin, adminSees, 120*time.Second)
	if err != nil {
		return fail(err)
	}
	fr.startup = at.Sub(g.Started)
	f.sessions = make([]*mcpclient.Session, fr.principals)
	fr.perUserMin = 1 << 30
	total, size := 0, 0
	for k, key := range keys {
		c := &mcpclient.Client{URL: g.URL, Key: key, HTTP: hc}
		if f.sessions[k], err = c.Open(ctx); err != nil {
			return fail(fmt.Errorf("user u%03d: %w", k, err))
		}
		res, err := f.sessions[k].Call(ctx, "tools/list", nil)
		if err != nil {
			return fail(fmt.Errorf("user u%03d tools/list: %w", k, err))
		}
		n := bytes.Count(res, []byte(`"inputSchema"`))
		size += len(res)
		fr.perUserMin, fr.perUserMax = min(fr.perUserMin, n), max(fr.perUserMax, n)
		total += n
	}
	fr.perUserAvg = float64(total) / float64(fr.principals)
	fr.avgBytes = size / fr.principals
	if fr.perUserMax >= adminSees || fr.perUserMin == 0 {
		return fail(fmt.Errorf("the policy does not filter: users see %d..%d of %d tools", fr.perUserMin, fr.perUserMax, adminSees))
	}
	return f, nil
}

func filterPhase(ctx context.Context, o *options, bins harness.Bins, dir string, r *mainResults) error {
	if o.filterPrincipals <= 0 {
		return nil
	}
	f, err := startFilter(ctx, o, bins, dir, "")
	if err != nil {
		return err
	}
	defer f.g.Stop()
	fr, as := f.fr, f.admin
	adminSees := fr.adminSees
	cycle := f.cycle()
	warm, err := runLoad(ctx, []op{cycle}, o.warm, fr.principals)
	if err != nil {
		return err
	}
	n := o.filterPasses * fr.principals
	// Each user listed once in startFilter, then the warm-up.
	before, err := f.env.WaitHandlerLatencies(ctx, "tools/list", "user:u", fr.principals+len(warm.Lat)+warm.Errors)
	if err != nil {
		return err
	}
	sample, err := runLoad(ctx, []op{cycle}, o.filterDur, n)
	if err != nil {
		return err
	}
	fr.filtered = sample.Summarize()
	after, err := f.env.WaitHandlerLatencies(ctx, "tools/list", "user:u", len(before)+len(sample.Lat)+sample.Errors)
	if err != nil {
		return err
	}
	if got := len(after) - len(before); got != fr.filtered.N+fr.filtered.Errors {
		return fmt.Errorf("the gateway logged %d filtered lists, the load generator made %d", got, fr.filtered.N+fr.filtered.Errors)
	}
	fr.handler = stats.Sample{Lat: after[len(before):], Elapsed: sample.Elapsed}.Summarize()
	sample, err = runLoad(ctx, []op{listOp(sessCall(as))}, o.dur/2, n)
	if err != nil {
		return err
	}
	fr.admin = sample.Summarize()
	logf("filtered tools/list: users see %d–%d tools (avg %.0f); p50 %s p99 %s (in the handler: p50 %s p99 %s) over %d lists; admin (all %d) p50 %s p99 %s",
		fr.perUserMin, fr.perUserMax, fr.perUserAvg, stats.Dur(fr.filtered.P50), stats.Dur(fr.filtered.P99),
		stats.Dur(fr.handler.P50), stats.Dur(fr.handler.P99), fr.filtered.N,
		adminSees, stats.Dur(fr.admin.P50), stats.Dur(fr.admin.P99))
	r.filt = fr
	return nil
}

// heapInuse reads go_memstats_heap_inuse_bytes from /metrics, or 0.
func heapInuse(ctx context.Context, c *mcpclient.Client) int64 {
	v, _ := metricValue(ctx, c, "go_memstats_heap_inuse_bytes")
	return int64(v)
}

func metricValue(ctx context.Context, c *mcpclient.Client, name string) (float64, bool) {
	status, body, err := c.Get(ctx, "/metrics")
	if err != nil || status != 200 {
		return 0, false
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
