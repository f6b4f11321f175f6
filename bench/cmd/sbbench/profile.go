package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/critpath"
	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
	"github.com/switchboard-mcp/switchboard/bench/internal/stats"
)

// profilePhase runs the gateway under the call loads while fetching CPU
// profiles, then allocation and heap profiles, into o.profile. The shipped
// binary serves no pprof, so unless it does, a copy of it is built with one
// extra file (a build overlay; the tree is untouched) that serves pprof on its
// own loopback port.
func profilePhase(ctx context.Context, o *options, bins harness.Bins, dir string) ([]string, error) {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return nil, err
	}
	var notes []string
	binary := ""
	logf("profile: checking whether the gateway serves pprof")
	_, g, c, s0, err := startEcho(ctx, o, bins, dir+"-probe", "", 4)
	if err != nil {
		return nil, err
	}
	status, _, _ := c.Get(ctx, "/debug/pprof/")
	_ = g.Stop()
	if status == http.StatusOK {
		notes = append(notes, "bin/switchboard serves /debug/pprof itself; profiled it directly")
	} else {
		logf("profile: it does not (HTTP %d); building a pprof-enabled copy with a build overlay", status)
		binary, err = bins.BuildProfiling(ctx, dir+"-build")
		if err != nil {
			return nil, err
		}
		notes = append(notes, fmt.Sprintf("bin/switchboard serves no pprof (/debug/pprof/ → HTTP %d); profiled a copy of cmd/switchboard built with `go build -overlay` adding one file that serves net/http/pprof on a separate loopback port (no other change)", status))
	}
	_, g, c, s0, err = startEcho(ctx, o, bins, dir, binary, 32)
	if err != nil {
		return notes, err
	}
	defer g.Stop()
	pprofBase := func(g *harness.Gateway) (string, error) {
		if binary == "" {
			return g.Base(), nil
		}
		if g.PprofAddr == "" {
			return "", fmt.Errorf("the profiling build did not report its pprof address")
		}
		return "http://" + g.PprofAddr, nil
	}
	base, err := pprofBase(g)
	if err != nil {
		return notes, err
	}
	sessions := []*mcpclient.Session{s0}
	for len(sessions) < 16 {
		s, err := c.Open(ctx)
		if err != nil {
			return notes, err
		}
		sessions = append(sessions, s)
	}
	fetch := func(path, file string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return err
		}
		if binary == "" {
			req.Header.Set("Authorization", "Bearer "+c.Key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, b)
		}
		f, err := os.Create(filepath.Join(o.profile, file))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	secs := max(1, int(o.profileDur/time.Second))
	loads := []struct {
		name    string
		clients int
		size    int
		list    bool
	}{
		{"call-1c-100b", 1, 100, false},
		{"call-1c-64k", 1, 64 << 10, false},
		{"call-16c-100b", 16, 100, false},
		{"call-16c-64k", 16, 64 << 10, false},
		{"list-1c", 1, 0, true},
	}
	for _, l := range loads {
		var ops []op
		for i := range l.clients {
			if l.list {
				ops = append(ops, listOp(sessCall(sessions[i])))
			} else {
				ops = append(ops, callOp(sessions[i], echoParams("echo__echo", payload(l.size))))
			}
		}
		if _, err := runLoad(ctx, ops, o.warm, o.maxCalls); err != nil {
			return notes, err
		}
		if err := fetch("/debug/pprof/allocs", "allocs-before-"+l.name+".pprof"); err != nil {
			return notes, err
		}
		// underLoad fetches path into file while ops run for secs+1 seconds,
		// and returns how many operations they made.
		underLoad := func(path, file string, secs int) (int, error) {
			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				s, err := runLoad(ctx, ops, time.Duration(secs+1)*time.Second, o.maxCalls*10)
				done <- result{len(s.Lat), err}
			}()
			ferr := fetch(path, file)
			res := <-done
			if ferr != nil {
				return 0, ferr
			}
			return res.n, res.err
		}
		m0, b0 := metricPair(ctx, c)
		cpuFile := "cpu-" + l.name + ".pprof"
		logf("profile: %s, %ds CPU profile", l.name, secs)
		n, err := underLoad(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), cpuFile, secs)
		if err != nil {
			return notes, err
		}
		m1, b1 := metricPair(ctx, c)
		if err := fetch("/debug/pprof/allocs", "allocs-after-"+l.name+".pprof"); err != nil {
			return notes, err
		}
		note := fmt.Sprintf("%s: %d operations during the profile → %s", l.name, n, filepath.Join(o.profile, cpuFile))
		if m1 > m0 && n > 0 {
			note += fmt.Sprintf("; gateway allocations per operation ≈ %.0f objects, %.1f KB (from /metrics, includes the metrics scrapes)",
				(m1-m0)/float64(n), (b1-b0)/float64(n)/1e3)
		}
		notes = append(notes, note)
		if l.clients == 1 && !l.list {
			// The 1-client call is latency-bound, not CPU-bound: an execution
			// trace shows where a call waits (scheduler, netpoll, the child).
			traceFile := "trace-" + l.name + ".out"
			if _, err := underLoad("/debug/pprof/trace?seconds=1", traceFile, 1); err != nil {
				return notes, err
			}
			note := fmt.Sprintf("%s: 1s execution trace → %s", l.name, filepath.Join(o.profile, traceFile))
			if b, err := analyzeTrace(filepath.Join(o.profile, traceFile)); err != nil {
				note += fmt.Sprintf(" (not analyzed: %v)", err)
			} else {
				tableFile := filepath.Join(o.profile, "critpath-"+l.name+".md")
				if err := os.WriteFile(tableFile, []byte(b.Table()), 0o644); err != nil {
					return notes, err
				}
				logf("profile: %s, where the serving goroutine spends a call:\n%s", l.name, b.Table())
				note += fmt.Sprintf("; the goroutine serving the connection spends %s of each call's %s on the call's path, %s of it waiting for the child (segments → %s)",
					stats.Dur(b.OnPath()/time.Duration(b.Calls)), stats.Dur(b.Span/time.Duration(b.Calls)),
					stats.Dur(b.Waiting()/time.Duration(b.Calls)), tableFile)
			}
			notes = append(notes, note)
		}
		summarize(ctx, o.profile, cpuFile, "")
		summarize(ctx, o.profile, "allocs-after-"+l.name+".pprof", "allocs-before-"+l.name+".pprof")
	}
	if err := fetch("/debug/pprof/heap", "heap.pprof"); err != nil {
		return notes, err
	}
	summarize(ctx, o.profile, "heap.pprof", "")
	notes = append(notes, fmt.Sprintf("heap profile after the loads (16 sessions open) → %s; text summaries (`go tool pprof -top`) are next to each profile as *.txt",
		filepath.Join(o.profile, "heap.pprof")))
	if len(o.idle) > 0 {
		n := o.idle[0]
		logf("profile: heap with %d more idle sessions", n)
		if _, err := openSessions(ctx, c, n, 16); err != nil {
			return notes, err
		}
		if err := fetch("/debug/pprof/heap", "heap-idle-sessions.pprof"); err != nil {
			return notes, err
		}
		summarize(ctx, o.profile, "heap-idle-sessions.pprof", "")
		summarizeBase(ctx, o.profile, "heap-idle-sessions.pprof", "heap.pprof", "inuse_space")
		notes = append(notes, fmt.Sprintf("heap profile with %d more idle sessions → %s (and its difference from heap.pprof in heap-idle-sessions.diff.txt)",
			n, filepath.Join(o.profile, "heap-idle-sessions.pprof")))
	}
	_ = g.Stop()

	if o.filterPrincipals <= 0 {
		return notes, nil
	}
	f, err := startFilter(ctx, o, bins, dir+"-filter", binary)
	if err != nil {
		return notes, err
	}
	defer f.g.Stop()
	if base, err = pprofBase(f.g); err != nil {
		return notes, err
	}
	c.Key = f.adminKey // for a gateway that serves pprof behind its admin check
	cycle := f.cycle()
	if _, err := runLoad(ctx, []op{cycle}, o.warm, o.maxCalls); err != nil {
		return notes, err
	}
	done := make(chan int, 1)
	go func() {
		s, _ := runLoad(ctx, []op{cycle}, time.Duration(secs)*time.Second+time.Second, o.maxCalls*10)
		done <- len(s.Lat)
	}()
	logf("profile: filtered tools/list, %ds CPU profile", secs)
	if err := fetch("/debug/pprof/allocs", "allocs-before-filtered-list.pprof"); err != nil {
		return notes, err
	}
	ferr := fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "cpu-filtered-list.pprof")
	n := <-done
	if ferr != nil {
		return notes, ferr
	}
	if err := fetch("/debug/pprof/allocs", "allocs-after-filtered-list.pprof"); err != nil {
		return notes, err
	}
	summarize(ctx, o.profile, "cpu-filtered-list.pprof", "")
	summarize(ctx, o.profile, "allocs-after-filtered-list.pprof", "allocs-before-filtered-list.pprof")
	notes = append(notes, fmt.Sprintf("filtered-list (%d providers × %d tools, %d principals): %d lists during the profile → %s",
		f.fr.providers, f.fr.tools, f.fr.principals, n, filepath.Join(o.profile, "cpu-filtered-list.pprof")))
	return notes, nil
}

// metricPair reads the gateway's cumulative allocation counters.
func metricPair(ctx context.Context, c *mcpclient.Client) (mallocs, bytes float64) {
	mallocs, _ = metricValue(ctx, c, "go_memstats_mallocs_total")
	bytes, _ = metricValue(ctx, c, "go_memstats_alloc_bytes_total")
	return mallocs, bytes
}

// summarize writes `go tool pprof -top` of file (against base, if set) next to it.
func summarize(ctx context.Context, dir, file, base string) {
	args := []string{"tool", "pprof", "-top", "-nodecount=40"}
	if base != "" {
		args = append(args, "-sample_index=alloc_space", "-base", filepath.Join(dir, base))
	}
	out := strings.TrimSuffix(file, ".pprof") + ".txt"
	for _, mode := range []string{"flat", "cum"} {
		a := append(append([]string{}, args...), filepath.Join(dir, file))
		name := out
		if mode == "cum" {
			a = append(args[:len(args):len(args)], "-cum", filepath.Join(dir, file))
			name = strings.TrimSuffix(out, ".txt") + ".cum.txt"
		}
		cmd := exec.CommandContext(ctx, "go", a...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			logf("profile: go tool pprof %s: %v", file, err)
			return
		}
		_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
}

// summarizeBase writes `go tool pprof -top` of file minus base, for one
// sample index, as <file>.diff.txt.
func summarizeBase(ctx context.Context, dir, file, base, index string) {
	out := strings.TrimSuffix(file, ".pprof") + ".diff.txt"
	cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=40", "-sample_index="+index,
		"-base", filepath.Join(dir, base), filepath.Join(dir, file))
	b, err := cmd.CombinedOutput()
	if err != nil {
		logf("profile: go tool pprof %s: %v", file, err)
		return
	}
	_ = os.WriteFile(filepath.Join(dir, out), b, 0o644)
}

// analyzeTrace splits the serving goroutine's time in the trace at path into
// the segments of a call.
func analyzeTrace(path string) (*critpath.Breakdown, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return critpath.Analyze(f, critpath.Gateway)
}
