// Command sbbench benchmarks the Switchboard gateway against talking to the same
// provider child directly over stdio, in one run, and writes a markdown report.
//
// It starts the real bin/switchboard with a generated gateway.yaml in a temp dir
// (authentication on, with users created by `switchboard user add`; audit log
// and metrics as the binary ships them), drives it with its own streamable-HTTP
// load generator on loopback, and drives bin/echo directly with
// supervisor.Conn, the JSON-RPC client the gateway itself uses. Every process it
// starts is stopped before it exits, also on Ctrl-C.
//
//	go run ./bench/cmd/sbbench -out bench/results/latest.md        # main table (make bench)
//	go run ./bench/cmd/sbbench -scaling -out bench/results/scaling.md
//	go run ./bench/cmd/sbbench -features -out bench/results/features.md
//	go run ./bench/cmd/sbbench -features -features-audit -out bench/results/audit.md
//	go run ./bench/cmd/sbbench -features -features-tracing -baseline /tmp/switchboard-main -out bench/results/tracing.md
//	go run ./bench/cmd/sbbench -profile /tmp/prof                  # plus CPU and heap profiles
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
)

type options struct {
	out      string
	root     string
	profile  string
	scaling  bool
	features bool
	// featuresAudit makes -features compare the audit log's modes instead.
	featuresAudit bool
	// featuresTracing makes -features compare tracing off and on instead;
	// baseline, if set, is a gateway binary built before tracing existed,
	// run as one more variant with tracing off.
	featuresTracing bool
	baseline        string
	keep            bool
	logLevel        string
	// childProtocol is the era the gateway speaks to the echo child in
	// (providers' protocol setting); the direct side always initializes a
	// session, so the default compares like with like.
	childProtocol string

	dur      time.Duration
	warm     time.Duration
	settle   time.Duration
	rounds   int
	maxCalls int
	coldRuns int
	idle     []int

	filterProviders  int
	filterTools      int
	filterPrincipals int
	filterPasses     int
	filterDur        time.Duration

	profileDur time.Duration

	scaleProviders []int
	scaleTools     []int
	scaleActive    []int
	scaleIdle      []int
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == harness.FloorArg {
		if err := harness.ServeFloor(); err != nil {
			fmt.Fprintln(os.Stderr, "sbbench floor:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == harness.RelayArg {
		if err := harness.ServeRelay(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "sbbench relay floor:", err)
			os.Exit(1)
		}
		return
	}
	o := &options{}
	var idle, sp, st, sa, si string
	flag.StringVar(&o.out, "out", "", "write the markdown report to this file (it is always printed)")
	flag.StringVar(&o.root, "root", ".", "repository root (with bin/switchboard and bin/echo from `make build`)")
	flag.StringVar(&o.profile, "profile", "", "also write gateway CPU and heap profiles of the load phases into this dir")
	flag.BoolVar(&o.scaling, "scaling", false, "run the scaling curve (providers, tools, sessions) instead of the main table")
	flag.BoolVar(&o.features, "features", false, "measure what each feature (audit, access log, auth) costs on a small call, instead of the main table")
	flag.BoolVar(&o.featuresAudit, "features-audit", false, "with -features: compare the audit log's modes (record written before the answer with group commit, with fsync, queued after the answer, off) instead")
	flag.BoolVar(&o.featuresTracing, "features-tracing", false, "with -features: compare tracing off and on (sample_ratio 1 and 0, receiver down) instead")
	flag.StringVar(&o.baseline, "baseline", "", "with -features-tracing: also run this gateway binary (built before tracing) with tracing off")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, gateway logs, audit logs)")
	flag.StringVar(&o.logLevel, "log-level", "info", "gateway log.level (info is the shipped default)")
	flag.StringVar(&o.childProtocol, "child-protocol", "2025-11-25", "the era the gateway speaks to the echo child in (a provider's protocol setting: 2025-11-25, 2026-07-28, or auto); the direct side speaks 2025-11-25")
	flag.DurationVar(&o.dur, "dur", 2*time.Second, "measuring time of each load phase")
	flag.DurationVar(&o.warm, "warm", 300*time.Millisecond, "warm-up before each load phase")
	flag.DurationVar(&o.settle, "settle", time.Second, "wait before reading an idle RSS")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each call measurement (direct and gateway alternate; the best round is kept)")
	flag.IntVar(&o.maxCalls, "max-calls", 200_000, "cap on operations in one load phase")
	flag.IntVar(&o.coldRuns, "cold-runs", 5, "cold starts of each kind (the median is reported)")
	flag.StringVar(&idle, "idle", "1000,10000", "cumulative idle-session counts for per-session memory (empty: skip)")
	flag.IntVar(&o.filterProviders, "filter-providers", 50, "providers in the filtered tools/list case")
	flag.IntVar(&o.filterTools, "filter-tools", 20, "tools per provider in the filtered tools/list case")
	flag.IntVar(&o.filterPrincipals, "filter-principals", 100, "distinct principals in the filtered tools/list case (0: skip)")
	flag.IntVar(&o.filterPasses, "filter-passes", 20, "tools/list passes over every principal")
	flag.DurationVar(&o.filterDur, "filter-dur", 10*time.Second, "time cap of the filtered tools/list measurement")
	flag.DurationVar(&o.profileDur, "profile-dur", 5*time.Second, "CPU profile length of each profiled load")
	flag.Func("gateway-env", "KEY=VALUE added to the gateway's environment, e.g. GOMAXPROCS=1 (repeatable; providers never see it)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		harness.GatewayEnv = append(harness.GatewayEnv, v)
		return nil
	})
	flag.Func("floor-env", "KEY=VALUE added to the bare HTTP floor's environment, e.g. GOMAXPROCS=1 (repeatable)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		harness.FloorEnv = append(harness.FloorEnv, v)
		return nil
	})
	flag.StringVar(&sp, "scale-providers", "1,10,50,100", "scaling: provider counts (echo children)")
	flag.StringVar(&st, "scale-tools", "10,100,1000,5000", "scaling: tools on one provider")
	flag.StringVar(&sa, "scale-active", "1,10,100,1000", "scaling: concurrent active sessions")
	flag.StringVar(&si, "scale-idle", "0,1000,10000", "scaling: idle sessions next to one active client")
	flag.Parse()
	var err error
	for _, f := range []struct {
		s   string
		dst *[]int
	}{{idle, &o.idle}, {sp, &o.scaleProviders}, {st, &o.scaleTools}, {sa, &o.scaleActive}, {si, &o.scaleIdle}} {
		if *f.dst, err = intList(f.s); err != nil {
			fmt.Fprintln(os.Stderr, "sbbench:", err)
			os.Exit(2)
		}
	}
	if o.scaling && o.features {
		fmt.Fprintln(os.Stderr, "sbbench: -scaling and -features are separate runs; pick one")
		os.Exit(2)
	}
	if o.featuresAudit && o.featuresTracing {
		fmt.Fprintln(os.Stderr, "sbbench: -features-audit and -features-tracing are separate runs; pick one")
		os.Exit(2)
	}
	if o.rounds < 1 {
		o.rounds = 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := 0
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "sbbench:", err)
		code = 1
	}
	stop()
	harness.StopAll()
	os.Exit(code)
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad count %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, o *options) error {
	start := time.Now()
	bins, err := harness.FindBins(o.root)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sbbench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("keeping %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	defer harness.StopAll()
	logf("building the bench provider (bench/internal/manytools)")
	if err := bins.BuildManyTools(ctx, tmp); err != nil {
		return err
	}
	m := machineInfo(ctx, bins)
	var report string
	switch {
	case o.features:
		fr, err := runFeatures(ctx, o, bins, tmp)
		if err != nil {
			return err
		}
		report = featuresReport(o, m, fr, time.Since(start))
	case o.scaling:
		sr, err := runScaling(ctx, o, bins, tmp)
		if err != nil {
			return err
		}
		report = scalingReport(o, m, sr, time.Since(start))
	default:
		r, err := runMain(ctx, o, bins, tmp)
		if err != nil {
			return err
		}
		report = mainReport(o, m, r, time.Since(start))
	}
	if n := harness.Live(); n != 0 {
		logf("warning: %d processes still registered; stopping them", n)
	}
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
		logf("wrote %s (%s)", o.out, time.Since(start).Round(time.Second))
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sbbench: "+format+"\n", args...)
}

// echo is the echo provider of the call measurements, spoken to in
// o.childProtocol.
func (o *options) echo(bins harness.Bins) harness.Provider {
	p := harness.Provider{Name: "echo", Command: bins.Echo}
	if o.childProtocol != "auto" {
		p.Protocol = o.childProtocol
	}
	return p
}
