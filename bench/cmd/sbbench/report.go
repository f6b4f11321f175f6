package main

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
)

// machine describes where a run happened.
type machine struct {
	nproc    int
	cpu      string
	kernel   string
	goVer    string
	date     string
	load     string
	command  string
	gwVer    string
	memTotal string
}

func machineInfo(ctx context.Context, bins harness.Bins) machine {
	m := machine{
		nproc:   runtime.NumCPU(),
		cpu:     "unknown",
		goVer:   runtime.Version(),
		date:    time.Now().UTC().Format("2006-01-02 15:04 MST"),
		command: "go run ./bench/cmd/sbbench " + strings.Join(os.Args[1:], " "),
		gwVer:   versionOf(ctx, bins.Switchboard),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.load = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.memTotal = strings.TrimSpace(rest)
			}
		}
	}
	if bi, err := buildinfo.ReadFile(bins.Switchboard); err == nil {
		m.goVer = bi.GoVersion + " (gateway build); " + runtime.Version() + " (sbbench)"
	}
	return m
}

func versionOf(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "switchboard"))
}

func (m machine) header(b *strings.Builder, title string, took time.Duration) {
	fmt.Fprintf(b, "# %s\n\n", title)
	fmt.Fprintf(b, "- Machine: %d × %s, %s RAM, Linux %s; load average at start %s (shared box)\n", m.nproc, m.cpu, m.memTotal, m.kernel, m.load)
	fmt.Fprintf(b, "- Go: %s\n", m.goVer)
	fmt.Fprintf(b, "- Gateway: bin/switchboard %s\n", m.gwVer)
	fmt.Fprintf(b, "- Date: %s; the run took %s\n", m.date, took.Round(time.Second))
	fmt.Fprintf(b, "- Command: `make build && %s`\n", m.command)
	env := "none beyond the vault key"
	if len(harness.GatewayEnv) > 0 {
		env = "`" + strings.Join(harness.GatewayEnv, " ") + "`"
	}
	fmt.Fprintf(b, "- Gateway environment: %s\n", env)
	if len(harness.FloorEnv) > 0 {
		fmt.Fprintf(b, "- Floor environment: `%s`\n", strings.Join(harness.FloorEnv, " "))
	}
	b.WriteString("\n")
}

// row is one line of the main table.
type row struct {
	what, gw, direct, ratio, target, met string
	floor, relay                         string
}

func ratio(gw, direct float64) (float64, string) {
	if gw <= 0 || direct <= 0 {
		return 0, "—"
	}
	r := gw / direct
	return r, fmt.Sprintf("%.2f×", r)
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func mainReport(o *options, m machine, r *mainResults, took time.Duration) string {
	var b strings.Builder
	m.header(&b, "Switchboard gateway vs direct stdio", took)
	f := r.feat
	auth := fmt.Sprintf("initialize without a credential → HTTP %d", f.authStatus)
	if f.authStatus == 401 {
		auth = "on (" + auth + ")"
	}
	metrics := "off or admin-only route missing"
	if f.metricsStatus == 200 {
		metrics = "on (GET /metrics with the admin key → 200)"
	} else if f.metricsStatus != 0 {
		metrics = fmt.Sprintf("GET /metrics → HTTP %d", f.metricsStatus)
	}
	audit := fmt.Sprintf("%s did not grow: off, or not written", "audit.log")
	if f.auditGrowth > 0 {
		audit = fmt.Sprintf("on (%s grew %s over %d tool calls, %.0f B per call)", "data/audit.log",
			stats.Bytes(float64(f.auditGrowth)), f.auditCalls, float64(f.auditGrowth)/float64(max(1, f.auditCalls)))
	}
	fmt.Fprintf(&b, "Features of the measured gateway: authentication %s; role filter on every list and call; audit log %s; metrics %s; log level %s to a file; rate limit raised to 10⁹/s (one load-generator principal).\n\n",
		auth, audit, metrics, f.logLevel)
	fmt.Fprintf(&b, "Each call figure is the best of %d rounds of %s (after %s warm-up), direct and gateway alternating. Ratio is gateway ÷ direct stdio: for latency lower is better, for throughput higher is better. Both sides drive the same `bin/echo` (`echo` tool); the direct side uses `supervisor.Conn` in a session (protocol 2025-11-25), with the same number of concurrent callers sharing one child as there are gateway sessions sharing the gateway's one child; the gateway speaks to its child in protocol %s (`-child-protocol`).\n\n",
		o.rounds, o.dur, o.warm, o.childProtocol)

	var rows []row
	for _, sc := range r.callOrder {
		p := r.calls[sc.name]
		if p == nil {
			continue
		}
		lab := "tools/call " + sc.label()
		r50, s50 := ratio(p.gw.P50.Seconds(), p.direct.P50.Seconds())
		r99, s99 := ratio(p.gw.P99.Seconds(), p.direct.P99.Seconds())
		rt, st := ratio(p.gw.Throughput, p.direct.Throughput)
		row50 := row{lab + " p50", stats.Dur(p.gw.P50), stats.Dur(p.direct.P50), s50, "", "", stats.Dur(p.floor.P50), relayDur(p, p.relay.P50)}
		row99 := row{lab + " p99", stats.Dur(p.gw.P99), stats.Dur(p.direct.P99), s99, "", "", stats.Dur(p.floor.P99), relayDur(p, p.relay.P99)}
		rowT := row{lab + " throughput", fmt.Sprintf("%.0f calls/s", p.gw.Throughput), fmt.Sprintf("%.0f calls/s", p.direct.Throughput), st, "", "", perSec(p.floor.Throughput, "calls/s"), perSec(p.relay.Throughput, "calls/s")}
		switch sc.name {
		case "c1-100":
			row50.target, row50.met = "≤ 1.3×", verdict(r50 <= 1.3)
			row99.target, row99.met = "≤ 2×", verdict(r99 <= 2)
		case "c16-100":
			rowT.target, rowT.met = "≥ 0.7×", verdict(rt >= 0.7)
		case "c1-64k", "c16-64k":
			rowT.target, rowT.met = "≥ 0.9×", verdict(rt >= 0.9)
		}
		rows = append(rows, row50, row99, rowT)
		if p.gw.Errors+p.direct.Errors > 0 {
			rows = append(rows, row{lab + " errors", fmt.Sprint(p.gw.Errors), fmt.Sprint(p.direct.Errors), "", "", "", "", ""})
		}
	}
	for _, x := range []struct {
		name string
		p    *pair
	}{{fmt.Sprintf("tools/list (echo: %d tools), 1 client", r.echoTools), r.list}, {"initialize, 1 client", r.init}} {
		if x.p == nil || x.p.gw.N == 0 {
			continue
		}
		_, s50 := ratio(x.p.gw.P50.Seconds(), x.p.direct.P50.Seconds())
		_, s99 := ratio(x.p.gw.P99.Seconds(), x.p.direct.P99.Seconds())
		rows = append(rows,
			row{x.name + " p50", stats.Dur(x.p.gw.P50), stats.Dur(x.p.direct.P50), s50, "", "", stats.Dur(x.p.floor.P50), ""},
			row{x.name + " p99", stats.Dur(x.p.gw.P99), stats.Dur(x.p.direct.P99), s99, "", "", stats.Dur(x.p.floor.P99), ""})
	}
	if fr := r.filt; fr != nil {
		lab := fmt.Sprintf("filtered tools/list, %d providers × %d tools, %d principals", fr.providers, fr.tools, fr.principals)
		rows = append(rows,
			row{lab + " p50", stats.Dur(fr.filtered.P50), "—", "", "", "", "", ""},
			row{lab + " p99", stats.Dur(fr.filtered.P99), "—", "", "≤ 2 ms", verdict(fr.filtered.P99 <= 2*time.Millisecond), "", ""},
			row{"… of which in the gateway's MCP handler (access-log latency) p50 / p99", stats.Dur(fr.handler.P50) + " / " + stats.Dur(fr.handler.P99), "—", "", "", "", "", ""},
			row{fmt.Sprintf("tools/list as admin (%d tools) p99", fr.adminSees), stats.Dur(fr.admin.P99), "—", "", "", "", "", ""})
	}
	if r.rssIdle > 0 {
		rows = append(rows, row{"gateway RSS idle (1 provider, 1 session)", stats.Bytes(float64(r.rssIdle)), "—", "", "≤ 15 MB", verdict(r.rssIdle <= 15e6), "", ""})
		if m := r.memIdle; m.RSS > 0 {
			rows = append(rows, row{"… of which anonymous (heap, stacks) / file-backed (executable text)",
				stats.Bytes(float64(m.Anonymous)) + " / " + stats.Bytes(float64(m.File())), "—", "", "", "", "", ""})
		}
		for _, h := range r.helperMem {
			rows = append(rows, row{"helper process (supervisor reaper) idle: RSS / PSS / anonymous",
				stats.Bytes(float64(h.RSS)) + " / " + stats.Bytes(float64(h.PSS)) + " / " + stats.Bytes(float64(h.Anonymous)), "—", "", "", "", "", ""})
		}
	}
	if r.rssPeak > 0 {
		rows = append(rows, row{"gateway RSS peak over the call phases (16 clients, up to 64 KiB; includes the sessions the initialize phase opens, ~16 KB each)", stats.Bytes(float64(r.rssPeak)), "—", "", "", "", "", ""})
	}
	for _, ir := range r.idle {
		per := float64(ir.rssDelta) / float64(ir.n)
		heap := ""
		if ir.heapDelta != 0 {
			heap = fmt.Sprintf(" (Go heap in use: %s)", stats.Bytes(float64(ir.heapDelta)/float64(ir.n)))
		}
		rows = append(rows, row{fmt.Sprintf("memory per idle session, %d held (%d/%d probed answer)", ir.n, ir.held, ir.probe),
			stats.Bytes(per) + heap, "—", "", "≤ 30 KB", verdict(per <= 30e3 && ir.held == ir.probe), "", ""})
	}
	if len(r.coldGW) > 0 {
		g, d := median(r.coldGW), median(r.coldD)
		_, s := ratio(g.Seconds(), d.Seconds())
		rows = append(rows, row{fmt.Sprintf("cold start: exec → first tools/list, median of %d", len(r.coldGW)), stats.Dur(g), stats.Dur(d), s, "≤ 50 ms", verdict(g <= 50*time.Millisecond), "", ""})
	}
	if p := r.calls["c16-100"]; p != nil && p.gwCPU > 0 {
		rows = append(rows,
			row{"CPU per call, 16 clients 100 B: gateway process (floors: the server process, without its child)", stats.Dur(p.gwCPU), "—", "", "", "", stats.Dur(p.fCPU), relayDur(p, p.rCPU)},
			row{"CPU per call, 16 clients 100 B: echo child", stats.Dur(p.gwChildCPU), stats.Dur(p.dChildCPU), "", "", "", "", ""},
			row{"CPU per call, 16 clients 100 B: load generator", stats.Dur(p.gwSelfCPU), stats.Dur(p.dSelfCPU), "", "", "", stats.Dur(p.fSelfCPU), ""})
	}
	if p := r.calls["c16-64k"]; p != nil && p.gwCPU > 0 {
		rows = append(rows, row{"CPU per call, 16 clients 64 KiB: gateway process", stats.Dur(p.gwCPU), "—", "", "", "", "", ""})
	}
	for _, k := range []struct{ name, what string }{{"c1-100", "1 client"}, {"c16-100", "16 clients"}} {
		if p := r.calls[k.name]; p != nil && p.gwSys > 0 {
			rel := ""
			if p.hasRel {
				rel = fmt.Sprintf("%.2f", p.rSys)
			}
			rows = append(rows, row{"read/write system calls per call, " + k.what + " 100 B: gateway process (floors: the server process)",
				fmt.Sprintf("%.2f", p.gwSys), "—", "", "", "", fmt.Sprintf("%.2f", p.fSys), rel})
		}
	}

	b.WriteString("| Measurement | Gateway | Direct stdio | Ratio | Target | Met | Bare HTTP floor | Relay floor |\n|---|--:|--:|--:|--:|:-:|--:|--:|\n")
	for _, x := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", x.what, x.gw, x.direct, x.ratio, x.target, x.met, x.floor, x.relay)
	}
	writeFloorTargets(&b, r)
	b.WriteString("\nNotes:\n\n")
	b.WriteString("- Bare HTTP floor: the same load generator against a separate process that is nothing but a Go net/http server answering each JSON-RPC POST with its params after splitting its envelope (no MCP, no auth, no provider). The load generator, the floor and the direct side's `supervisor.Conn` all split envelopes with the same code (`internal/jsonrpc`: delimits the members, validates none), so no side pays for JSON work the others skip. No HTTP front end can beat it; the gap between it and direct stdio is the price of HTTP itself on this machine.\n")
	fmt.Fprintf(&b, "- Relay floor: the bare HTTP floor with an echo child of its own behind it (`sbbench -serve-relay`): each tools/call is passed to the child over stdio with `supervisor.Conn`, the client the gateway uses for its providers, and the child's result is the answer. It is what any HTTP front end to a stdio provider pays at least, with nothing a gateway adds (no MCP sessions, names, authentication, policy, audit, logs or metrics). It runs at the gateway's GOMAXPROCS (%d, read from the gateway's /metrics); its CPU is its own process's, not its child's.\n", r.procs)
	b.WriteString("- Memory is decimal (1 MB = 10⁶ B). RSS is VmRSS of the gateway process from /proc (never its providers); the helper row is the gateway's own executable re-run as a child (the supervisor's reaper), whose RSS is mostly text pages shared with the gateway (PSS divides shared pages among their sharers). Per-session memory is the RSS growth after opening the sessions (initialize + notifications/initialized, no GET stream), divided by their number.\n")
	b.WriteString("- CPU per call is the process's user+system time over a load phase (from /proc, 10 ms ticks) divided by the calls made; the load generator shares the machine's cores with the gateway and the child.\n")
	b.WriteString("- System calls per call are the read- and write-family calls the process made over a load phase (syscr + syscw in /proc/<pid>/io: sockets, pipes, files) divided by the calls made, the lowest of the rounds. Unlike CPU time they do not grow when the machine is busy, and on this VM each costs several µs of kernel and hypervisor time; futex, epoll and nanosleep calls are not counted.\n")
	if fr := r.filt; fr != nil {
		fmt.Fprintf(&b, "- Filtered tools/list: %d users over 10 roles (overlapping provider sets, half of them narrowed by tool globs, the last fifth of providers read-only), each seeing %d–%d tools (avg %.0f, a %s answer) of %d; one session per user, lists issued one at a time round-robin (%d lists). The client-side figure includes moving the answer over loopback and the load generator's envelope split of it; the handler figure is the gateway's access-log latency of the same requests, from the MCP handler's start (after the HTTP request is read and authenticated) to the answer's flush and its bookkeeping. The gateway with %d children was ready (admin lists every tool) %s after exec.\n",
			fr.principals, fr.perUserMin, fr.perUserMax, fr.perUserAvg, stats.Bytes(float64(fr.avgBytes)), fr.adminSees, fr.filtered.N, fr.providers, fr.startup.Round(time.Millisecond))
	}
	if len(r.coldGW) > 0 {
		fmt.Fprintf(&b, "- Cold start: gateway min %s / max %s (exec of `switchboard serve` with an existing vault and user, to the first tools/list through it that lists echo's tools); direct min %s / max %s (exec of `bin/echo`, initialize, tools/list).\n",
			stats.Dur(r.coldGW[0]), stats.Dur(r.coldGW[len(r.coldGW)-1]), stats.Dur(r.coldD[0]), stats.Dur(r.coldD[len(r.coldD)-1]))
	}
	for _, ir := range r.idle {
		fmt.Fprintf(&b, "- %d more idle sessions opened by 16 concurrent clients in %s (%.0f sessions/s).\n", ir.added, ir.openTime.Round(time.Millisecond), float64(ir.added)/ir.openTime.Seconds())
	}
	for _, n := range r.profile {
		fmt.Fprintf(&b, "- Profile: %s\n", n)
	}
	return b.String()
}

func perSec(v float64, unit string) string {
	if v <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

// relayDur is d, or nothing for a pair measured without the relay floor.
func relayDur(p *pair, d time.Duration) string {
	if !p.hasRel {
		return ""
	}
	return stats.Dur(d)
}

// writeFloorTargets writes issue 18's two ratios to the floors, and the same
// figures against the relay floor: how far the gateway is from what any HTTP
// front end to a stdio provider costs.
func writeFloorTargets(b *strings.Builder, r *mainResults) {
	p1, p16 := r.calls["c1-100"], r.calls["c16-100"]
	if p1 == nil || p16 == nil || !p1.hasRel || !p16.hasRel || p16.fCPU <= 0 || p16.rCPU <= 0 {
		return
	}
	sum := p1.floor.P50 + p1.direct.P50
	cpu := float64(p16.gwCPU) / float64(p16.fCPU)
	lat := float64(p1.gw.P50) / float64(sum)
	b.WriteString("\nAgainst the floors (issue 18, item 5):\n\n| Measure | Gateway | Bare HTTP floor | Relay floor | Gateway ÷ floor | Target | Met | Relay floor ÷ floor | Gateway ÷ relay floor |\n|---|--:|--:|--:|--:|--:|:-:|--:|--:|\n")
	fmt.Fprintf(b, "| CPU per call, 16 clients 100 B | %s | %s | %s | %.2f× | ≤ 2× | %s | %.2f× | %.2f× |\n",
		stats.Dur(p16.gwCPU), stats.Dur(p16.fCPU), stats.Dur(p16.rCPU), cpu, verdict(cpu <= 2),
		float64(p16.rCPU)/float64(p16.fCPU), float64(p16.gwCPU)/float64(p16.rCPU))
	fmt.Fprintf(b, "| 1 client 100 B p50 (floor: bare HTTP floor p50 + direct p50 = %s + %s) | %s | %s | %s | %.2f× | ≤ 1.15× | %s | %.2f× | %.2f× |\n",
		stats.Dur(p1.floor.P50), stats.Dur(p1.direct.P50), stats.Dur(p1.gw.P50), stats.Dur(sum), stats.Dur(p1.relay.P50), lat, verdict(lat <= 1.15),
		float64(p1.relay.P50)/float64(sum), float64(p1.gw.P50)/float64(p1.relay.P50))
}
