package e2e

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// usageCall is one call a usage test made, and what the gateway must have
// recorded for it.
type usageCall struct {
	user, provider, tool string
	outcome              string // ok, tool_error, timeout, denied
	req, resp            int64
	latency              time.Duration // as the client measured it
}

// callFor makes one tools/call in s and returns what usage must count.
func callFor(t *testing.T, s *rawSession, user string, id int, exposed, args string) usageCall {
	t.Helper()
	start := time.Now()
	resp, body := s.do(t, http.MethodPost, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, exposed, args), nil)
	lat := time.Since(start)
	r, ok := parseReply(resp, body)
	if !ok {
		t.Fatalf("tools/call %s: %s %s", exposed, resp.Status, body)
	}
	provider, tool, _ := strings.Cut(exposed, "__")
	c := usageCall{user: user, provider: provider, tool: tool, req: int64(len(args)), latency: lat}
	switch {
	case r.Error != nil:
		// An unknown tool: denied, with no provider, named as the client
		// named it, and nothing sent back but the error.
		c.outcome, c.provider, c.tool = "denied", "", exposed
	default:
		c.resp = int64(len(r.Result))
		text, isErr := callText(r.Result)
		switch {
		case !isErr:
			c.outcome = "ok"
		case strings.Contains(text, "did not answer in time"):
			c.outcome = "timeout"
		default:
			c.outcome = "tool_error"
		}
	}
	return c
}

// usageRow is one row of a usage report, from any of its formats.
type usageRow struct {
	keys                                            string // the grouped values joined by "|"
	calls, ok, toolErrors, errors, denied, timeouts int64
	reqBytes, respBytes                             int64
	p95                                             time.Duration
}

// expected sums calls by the dimensions, as switchboard usage must.
func expected(calls []usageCall, by []string) map[string]usageRow {
	out := map[string]usageRow{}
	for _, c := range calls {
		var keys []string
		for _, d := range by {
			switch d {
			case "user":
				keys = append(keys, c.user)
			case "service":
				keys = append(keys, "") // no service made a call
			case "provider":
				keys = append(keys, c.provider)
			case "tool":
				keys = append(keys, c.tool)
			}
		}
		k := strings.Join(keys, "|")
		r := out[k]
		r.keys = k
		r.calls++
		switch c.outcome {
		case "ok":
			r.ok++
		case "tool_error":
			r.toolErrors++
		case "timeout":
			r.timeouts++
		case "denied":
			r.denied++
		}
		r.reqBytes += c.req
		r.respBytes += c.resp
		out[k] = r
	}
	return out
}

// runUsage runs `switchboard usage` with args and returns its output.
func runUsage(t *testing.T, g *gateway, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "switchboard"), append([]string{"usage"}, args...)...)
	cmd.Env, cmd.Dir = g.env, g.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("switchboard usage %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

func parseJSONReport(t *testing.T, out []byte, by []string) map[string]usageRow {
	t.Helper()
	var doc struct {
		By   []string         `json:"by"`
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if strings.Join(doc.By, ",") != strings.Join(by, ",") {
		t.Errorf("json by %v, want %v", doc.By, by)
	}
	rows := map[string]usageRow{}
	for _, m := range doc.Rows {
		var keys []string
		for _, d := range by {
			keys = append(keys, m[d].(string))
		}
		n := func(k string) int64 { return int64(m[k].(float64)) }
		r := usageRow{keys: strings.Join(keys, "|"), calls: n("calls"), ok: n("ok"), toolErrors: n("tool_errors"), errors: n("errors"),
			denied: n("denied"), timeouts: n("timeouts"), reqBytes: n("req_bytes"), respBytes: n("resp_bytes"),
			p95: time.Duration(m["p95_ms"].(float64) * float64(time.Millisecond))}
		rows[r.keys] = r
	}
	return rows
}

func parseCSVReport(t *testing.T, out []byte, by []string) map[string]usageRow {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	want := append(slices.Clone(by), "calls", "ok", "tool_errors", "errors", "denied", "timeouts", "p50_ms", "p95_ms", "req_bytes", "resp_bytes")
	if strings.Join(recs[0], ",") != strings.Join(want, ",") {
		t.Fatalf("csv header %v, want %v", recs[0], want)
	}
	rows := map[string]usageRow{}
	for _, rec := range recs[1:] {
		nb := len(by)
		n := func(i int) int64 { v, _ := strconv.ParseInt(rec[nb+i], 10, 64); return v }
		p95, _ := strconv.ParseFloat(rec[nb+7], 64)
		r := usageRow{keys: strings.Join(rec[:nb], "|"), calls: n(0), ok: n(1), toolErrors: n(2), errors: n(3), denied: n(4), timeouts: n(5),
			reqBytes: n(8), respBytes: n(9), p95: time.Duration(p95 * float64(time.Millisecond))}
		rows[r.keys] = r
	}
	return rows
}

// parseTableReport reads the text table: key columns ("-" for none), then
// the counts, two latencies and the bytes; the TOTAL line and the footer are
// left out.
func parseTableReport(t *testing.T, out []byte, by []string) map[string]usageRow {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	rows := map[string]usageRow{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "TOTAL" || strings.HasPrefix(line, "period:") || strings.HasPrefix(line, "read ") {
			continue
		}
		if len(f) != len(by)+10 {
			t.Fatalf("table line %q has %d fields, want %d", line, len(f), len(by)+10)
		}
		keys := f[:len(by)]
		for i, k := range keys {
			if k == "-" {
				keys[i] = ""
			}
		}
		nb := len(by)
		n := func(i int) int64 { v, _ := strconv.ParseInt(f[nb+i], 10, 64); return v }
		r := usageRow{keys: strings.Join(keys, "|"), calls: n(0), ok: n(1), toolErrors: n(2), errors: n(3), denied: n(4), timeouts: n(5),
			reqBytes: n(8), respBytes: n(9)}
		rows[r.keys] = r
	}
	return rows
}

func sameRows(t *testing.T, format string, by []string, got, want map[string]usageRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s by %v: %d rows, want %d:\n got %v\nwant %v", format, by, len(got), len(want), got, want)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s by %v: no row %q", format, by, k)
			continue
		}
		g.p95 = 0
		if g != w {
			t.Errorf("%s by %v, row %q:\n got %+v\nwant %+v", format, by, k, g, w)
		}
	}
}

// TestUsageReportsExactlyTheCallsMade: two users call three providers on two
// gateways (replicas, each with its own audit log); `switchboard usage`
// over both logs reports exactly the calls made — counts by outcome and
// bytes — by user, service, provider, tool and combinations, as a table,
// JSON and CSV. The status page shows the last day's calls by user and by
// provider.
func TestUsageReportsExactlyTheCallsMade(t *testing.T) {
	t.Parallel()
	cfg := `
providers:
  echo:
    command: $BIN/echo
  tp:
    command: $BIN/testprovider
    limits: {call_timeout: 300ms}
  raw:
    command: $BIN/rawecho
`
	// The second replica also counts calls per principal in its metrics,
	// with room for one principal of its own.
	g1, g2 := startGateway(t, cfg), startGateway(t, cfg+`
metrics:
  principal_label: true
  max_principals: 1
`)
	g1.waitRunning("echo", "tp", "raw")
	g2.waitRunning("echo", "tp", "raw")
	bob := *g2
	bob.key = g2.addUser("bob")
	before := time.Now()

	var calls []usageCall
	id := 10
	do := func(s *rawSession, user, tool, args string) {
		id++
		calls = append(calls, callFor(t, s, user, id, tool, args))
	}
	a1, a2, b2 := g1.rawInit(t, nil), g2.rawInit(t, nil), bob.rawInit(t, nil)
	for i := range 3 {
		do(a1, "e2e", "echo__echo", fmt.Sprintf(`{"text":"hello %d"}`, i))
	}
	do(a1, "e2e", "echo__env", `{"name":"NOT_SET_ANYWHERE"}`) // a tool error
	do(a1, "e2e", "tp__echo", `{"text":"a"}`)
	do(a1, "e2e", "tp__fail", `{"text":"no"}`)
	do(a1, "e2e", "tp__sleep", `{"ms":3000}`) // times out at 300 ms
	do(a1, "e2e", "raw__raw", `{"x":[1,2,3]}`)
	do(a1, "e2e", "nosuch__tool", `{}`) // denied
	do(a2, "e2e", "echo__echo", `{"text":"from the other replica"}`)
	do(b2, "bob", "echo__echo", `{"text":"b"}`)
	do(b2, "bob", "raw__raw", `{"y":"zz"}`)
	do(b2, "bob", "raw__raw", `{}`)
	do(b2, "bob", "tp__echo", `{"text":"bb"}`)
	do(b2, "bob", "tp__fail", `{"text":"x"}`)
	outcomes := map[string]int{}
	for _, c := range calls {
		outcomes[c.outcome]++
	}
	if outcomes["ok"] != 10 || outcomes["tool_error"] != 3 || outcomes["timeout"] != 1 || outcomes["denied"] != 1 {
		t.Fatalf("the calls did not go as planned: %v %+v", outcomes, calls)
	}

	logs := []string{filepath.Join(g1.dir, "data"), filepath.Join(g2.dir, "data", "audit.log")}
	for _, by := range [][]string{{"user"}, {"service"}, {"provider"}, {"provider", "tool"}, {"user", "provider"}, {"user", "service", "provider", "tool"}} {
		want := expected(calls, by)
		flags := append([]string{"--since", "1h", "--by", strings.Join(by, ",")}, logs...)
		sameRows(t, "json", by, parseJSONReport(t, runUsage(t, g1, append(flags, "--json")...), by), want)
		sameRows(t, "csv", by, parseCSVReport(t, runUsage(t, g1, append(flags, "--csv")...), by), want)
		sameRows(t, "table", by, parseTableReport(t, runUsage(t, g1, flags...), by), want)
	}

	// --by tool groups by provider too; the timed-out call is in tp's p95.
	rows := parseJSONReport(t, runUsage(t, g1, append([]string{"--by", "tool", "--json"}, logs...)...), []string{"provider", "tool"})
	if r := rows["tp|sleep"]; r.timeouts != 1 || r.p95 < 300*time.Millisecond {
		t.Errorf("tp sleep: %+v, want the timeout with p95 at least 300ms", r)
	}
	// One replica's log alone, found from the config: only its calls.
	want := expected(calls[:9], []string{"user"}) // the first nine went to g1
	sameRows(t, "json", []string{"user"}, parseJSONReport(t, runUsage(t, g1, "--config", g1.cfg, "--json"), []string{"user"}), want)
	// A period before the calls: nothing.
	empty := parseJSONReport(t, runUsage(t, g1, append([]string{"--until", before.Add(-time.Minute).UTC().Format(time.RFC3339), "--json"}, logs...)...), []string{"user"})
	if len(empty) != 0 {
		t.Errorf("calls before they were made: %v", empty)
	}

	// The status page: the last day's calls by user and by provider.
	var st struct {
		Usage struct {
			Principals []struct {
				Name  string `json:"name"`
				Calls int64  `json:"calls"`
			} `json:"by_principal"`
			Providers []struct {
				Name     string `json:"name"`
				Calls    int64  `json:"calls"`
				Timeouts int64  `json:"timeouts"`
			} `json:"by_provider"`
		} `json:"usage_24h"`
	}
	g2.getJSON("/status?format=json", true, &st)
	got := map[string]int64{}
	for _, p := range st.Usage.Principals {
		got[p.Name] = p.Calls
	}
	if got["e2e"] != 1 || got["bob"] != 5 || len(got) != 2 {
		t.Errorf("status page usage by principal on the second replica: %v, want e2e 1, bob 5", got)
	}
	g1.getJSON("/status?format=json", true, &st)
	prov := map[string]int64{}
	for _, p := range st.Usage.Providers {
		prov[p.Name] = p.Calls
		if p.Name == "tp" && p.Timeouts != 1 {
			t.Errorf("status page: tp has %d timeouts, want 1", p.Timeouts)
		}
	}
	if prov["echo"] != 4 || prov["tp"] != 3 || prov["raw"] != 1 || prov[""] != 1 {
		t.Errorf("status page usage by provider on the first replica: %v", prov)
	}

	// Per-principal metrics on the second replica: e2e called first and got
	// the one series; bob's calls count as _other.
	for series, want := range map[string]int{
		`switchboard_principal_tool_calls_total{outcome="ok",principal="e2e",principal_kind="user",provider="echo"}`:          1,
		`switchboard_principal_tool_calls_total{outcome="ok",principal="_other",principal_kind="user",provider="raw"}`:        2,
		`switchboard_principal_tool_calls_total{outcome="tool_error",principal="_other",principal_kind="user",provider="tp"}`: 1,
	} {
		if got := metricSum(t, g2, series); got != want {
			t.Errorf("%s = %d, want %d", series, got, want)
		}
	}
	var req int64
	for _, c := range calls[10:] {
		req += c.req
	}
	if got := metricSum(t, g2, `switchboard_principal_tool_call_bytes_total{direction="request",principal="_other",principal_kind="user"}`); int64(got) != req {
		t.Errorf("bob's request bytes under _other: %d, want %d", got, req)
	}
}
