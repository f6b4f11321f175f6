package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// scrape fetches the handler's output over real HTTP.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func checkLines(t *testing.T, out string, want, absent []string) {
	t.Helper()
	lines := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		lines[l] = true
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("missing line %q", w)
		}
	}
	for _, a := range absent {
		if strings.Contains(out, a) {
			t.Errorf("unexpected %q", a)
		}
	}
}

func TestScrape(t *testing.T) {
	m := New()
	m.ToolCall("fs", "read_file", "ok", 20*time.Millisecond)
	m.ToolCall("fs", "read_file", "ok", 3*time.Second)
	m.ToolCall("fs", "write_file", "denied", 0)
	m.ToolCall("gh", "search", "timeout", 30*time.Second)
	m.ProviderState("fs", switchboard.StateRunning)
	m.ProviderState("gh", switchboard.StateRunning)
	m.ProviderState("gh", switchboard.StateBackoff)
	m.ProviderState("notes@alice", switchboard.StateFailed)
	m.ProviderRestart("gh")
	m.ProviderRestart("gh")
	m.SessionOpened("/mcp")
	m.SessionOpened("/mcp")
	m.SessionOpened("/mcp/internal")
	m.SessionClosed("/mcp")
	m.Reload(true)
	m.Reload(false)
	m.RateLimited("/mcp")
	m.AuthFailure("/mcp/internal")
	m.AuthFailure("/mcp/internal")
	m.ConnectionRefused("per_client")

	out := scrape(t, m)
	checkLines(t, out, []string{
		`switchboard_tool_calls_total{outcome="ok",provider="fs",tool="read_file"} 2`,
		`switchboard_tool_calls_total{outcome="denied",provider="fs",tool="write_file"} 1`,
		`switchboard_tool_calls_total{outcome="timeout",provider="gh",tool="search"} 1`,
		`switchboard_tool_call_duration_seconds_count{provider="fs"} 3`,
		`switchboard_tool_call_duration_seconds_bucket{provider="fs",le="0.025"} 2`,
		`switchboard_tool_call_duration_seconds_bucket{provider="fs",le="5"} 3`,
		`switchboard_tool_call_duration_seconds_bucket{provider="gh",le="10"} 0`,
		`switchboard_tool_call_duration_seconds_bucket{provider="gh",le="30"} 1`,
		`switchboard_provider_state{provider="fs",state="running"} 1`,
		`switchboard_provider_state{provider="fs",state="failed"} 0`,
		`switchboard_provider_state{provider="gh",state="running"} 0`,
		`switchboard_provider_state{provider="gh",state="backoff"} 1`,
		`switchboard_provider_state{provider="notes@alice",state="failed"} 1`,
		`switchboard_provider_up{provider="fs"} 1`,
		`switchboard_provider_up{provider="gh"} 0`,
		`switchboard_provider_up{provider="notes@alice"} 0`,
		`switchboard_provider_restarts_total{provider="gh"} 2`,
		`switchboard_sessions_active{endpoint="/mcp"} 1`,
		`switchboard_sessions_active{endpoint="/mcp/internal"} 1`,
		`switchboard_config_reloads_total{result="success"} 1`,
		`switchboard_config_reloads_total{result="failure"} 1`,
		`switchboard_config_last_reload_successful 0`,
		`switchboard_rate_limited_total{endpoint="/mcp"} 1`,
		`switchboard_auth_failures_total{endpoint="/mcp/internal"} 2`,
		`switchboard_connections_refused_total{cap="per_client"} 1`,
		`switchboard_build_info{version="` + switchboard.Version + `"} 1`,
		`# TYPE switchboard_tool_call_duration_seconds histogram`,
	}, nil)
	for _, prefix := range []string{"switchboard_config_last_reload_success_timestamp_seconds ", "go_goroutines ", "process_open_fds "} {
		if !strings.Contains(out, "\n"+prefix) {
			t.Errorf("no %s", prefix)
		}
	}
}

func TestAudit(t *testing.T) {
	m := New()
	if out := scrape(t, m); strings.Contains(out, "switchboard_audit_") {
		t.Fatalf("audit series before Audit was called (audit disabled):\n%s", out)
	}
	var (
		mu      sync.Mutex
		healthy = true
		dropped uint64
	)
	m.Audit(func() bool { mu.Lock(); defer mu.Unlock(); return healthy }, func() uint64 { mu.Lock(); defer mu.Unlock(); return dropped })
	checkLines(t, scrape(t, m), []string{
		`switchboard_audit_log_healthy 1`,
		`switchboard_audit_records_dropped_total 0`,
		`# TYPE switchboard_audit_records_dropped_total counter`,
	}, nil)
	mu.Lock()
	healthy, dropped = false, 3
	mu.Unlock()
	checkLines(t, scrape(t, m), []string{
		`switchboard_audit_log_healthy 0`,
		`switchboard_audit_records_dropped_total 3`,
	}, nil)
}

func TestRemoveProvider(t *testing.T) {
	m := New()
	m.ToolCall("fs", "read_file", "ok", time.Millisecond)
	m.ToolCall("gh", "search", "ok", time.Millisecond)
	m.ProviderState("fs", switchboard.StateRunning)
	m.ProviderRestart("fs")
	m.RemoveProvider("fs")
	out := scrape(t, m)
	checkLines(t, out, []string{`switchboard_tool_calls_total{outcome="ok",provider="gh",tool="search"} 1`},
		[]string{`provider="fs"`})
}

func TestToolCardinalityIsBounded(t *testing.T) {
	m := New()
	m.tools = newLabelSet(3)
	for i := range 10 {
		m.ToolCall("fs", fmt.Sprintf("tool%d", i), "ok", time.Millisecond)
	}
	m.ToolCall("fs", "tool1", "ok", time.Millisecond) // admitted earlier: keeps its series
	for i := range 40 {
		m.ToolCall("fs", "tool0", fmt.Sprintf("weird%d", i), time.Millisecond)
	}
	out := scrape(t, m)
	checkLines(t, out, []string{
		`switchboard_tool_calls_total{outcome="ok",provider="fs",tool="tool0"} 1`,
		`switchboard_tool_calls_total{outcome="ok",provider="fs",tool="tool1"} 2`,
		`switchboard_tool_calls_total{outcome="ok",provider="fs",tool="tool2"} 1`,
		`switchboard_tool_calls_total{outcome="ok",provider="fs",tool="_other"} 7`,
		`switchboard_tool_calls_total{outcome="_other",provider="fs",tool="tool0"} 9`,
	}, []string{`tool="tool3"`, `outcome="weird31"`})

	// Forgetting a provider frees its slots.
	m.RemoveProvider("fs")
	m.ToolCall("gh", "a", "ok", time.Millisecond)
	checkLines(t, scrape(t, m), []string{`switchboard_tool_calls_total{outcome="ok",provider="gh",tool="a"} 1`}, nil)
}

// Label values from callers never make client_golang panic.
func TestHostileLabelValues(t *testing.T) {
	m := New()
	long := strings.Repeat("x", 1000)
	m.ToolCall("fs\xff", "bad\xfe\xfdutf8\n\"}", "ok", time.Millisecond)
	m.ToolCall("fs", long, "ok", time.Millisecond)
	m.ProviderState("\xff", switchboard.ProviderState("bogus"))
	m.SessionOpened("\xc3")
	out := scrape(t, m)
	checkLines(t, out, []string{
		"switchboard_tool_calls_total{outcome=\"ok\",provider=\"fs\uFFFD\",tool=\"bad\uFFFDutf8\\n\\\"}\"} 1",
		`switchboard_tool_calls_total{outcome="ok",provider="fs",tool="` + long[:maxLabelLen] + `"} 1`,
		"switchboard_provider_up{provider=\"\uFFFD\"} 0",
	}, nil)
}

func TestConcurrentUse(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				m.ToolCall("fs", fmt.Sprintf("t%d", i%20), "ok", time.Millisecond)
				m.SessionOpened("/mcp")
				m.SessionClosed("/mcp")
				m.ProviderState(fmt.Sprintf("p%d", g), switchboard.StateRunning)
			}
		})
	}
	wg.Wait()
	checkLines(t, scrape(t, m), []string{
		`switchboard_tool_call_duration_seconds_count{provider="fs"} 4000`,
		`switchboard_sessions_active{endpoint="/mcp"} 0`,
	}, nil)
}

func BenchmarkToolCall(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ToolCall("fs", "read_file", "ok", 12*time.Millisecond)
		}
	})
}

func TestPrincipalSeriesAreOptInAndCapped(t *testing.T) {
	off := New()
	off.PrincipalCall("user", "alice", "fs", "ok", 10, 20)
	if out := scrape(t, off); strings.Contains(out, "switchboard_principal_") {
		t.Error("per-principal series without EnablePrincipals")
	}

	m := New()
	m.EnablePrincipals(2)
	m.PrincipalCall("user", "alice", "fs", "ok", 10, 100)
	m.PrincipalCall("user", "alice", "fs", "ok", 5, 50)
	m.PrincipalCall("service", "cron", "gh", "timeout", 1, 0)
	for i := range 50 { // a flood of principals: one series more, not fifty
		m.PrincipalCall("user", fmt.Sprintf("u%d", i), "fs", "denied", 2, 0)
	}
	m.PrincipalCall("user", "alice", "gh", "ok", 1, 1) // alice keeps her own series
	out := scrape(t, m)
	checkLines(t, out, []string{
		`switchboard_principal_tool_calls_total{outcome="ok",principal="alice",principal_kind="user",provider="fs"} 2`,
		`switchboard_principal_tool_calls_total{outcome="ok",principal="alice",principal_kind="user",provider="gh"} 1`,
		`switchboard_principal_tool_calls_total{outcome="timeout",principal="cron",principal_kind="service",provider="gh"} 1`,
		`switchboard_principal_tool_calls_total{outcome="denied",principal="_other",principal_kind="user",provider="fs"} 50`,
		`switchboard_principal_tool_call_bytes_total{direction="request",principal="alice",principal_kind="user"} 16`,
		`switchboard_principal_tool_call_bytes_total{direction="response",principal="alice",principal_kind="user"} 151`,
		`switchboard_principal_tool_call_bytes_total{direction="request",principal="_other",principal_kind="user"} 100`,
	}, []string{`principal="u0"`, `principal="u49"`})
	m.RemoveProvider("gh")
	if out := scrape(t, m); strings.Contains(out, `provider="gh"`) {
		t.Error("a removed provider's per-principal series remain")
	}
}
