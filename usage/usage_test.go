package usage

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func call(at time.Duration, kind, who, provider, tool, outcome string, lat time.Duration, req, resp int64) *Call {
	decision := "allow"
	if outcome == "denied" {
		decision = "deny"
	}
	return &Call{Time: t0.Add(at), PrincipalKind: kind, Principal: who, Provider: provider, Tool: tool,
		Decision: decision, Outcome: outcome, Latency: lat, ReqBytes: req, RespBytes: resp}
}

func calls() []*Call {
	return []*Call{
		call(0, "user", "alice", "fs", "read", "ok", 10*time.Millisecond, 10, 100),
		call(1*time.Minute, "user", "alice", "fs", "read", "ok", 30*time.Millisecond, 10, 200),
		call(2*time.Minute, "user", "alice", "fs", "write", "tool_error", 20*time.Millisecond, 5, 50),
		call(3*time.Minute, "user", "bob", "fs", "read", "timeout", 2*time.Second, 7, 80),
		call(4*time.Minute, "user", "bob", "git", "log", "denied", 0, 3, 40),
		call(5*time.Minute, "service", "cron", "git", "log", "error", 5*time.Millisecond, 1, 30),
		call(2*time.Hour, "user", "alice", "git", "log", "ok", time.Millisecond, 2, 20), // outside [0, 1h)
	}
}

func TestParseDims(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string
		bad  bool
	}{
		{"one", []string{"user"}, "user", false},
		{"combined, column order, no repeats", []string{"provider,user", "user"}, "user,provider", false},
		{"tool implies provider", []string{"tool"}, "provider,tool", false},
		{"all", []string{"tool,service,user"}, "user,service,provider,tool", false},
		{"unknown", []string{"principal"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDims(tc.in...)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v", err)
			}
			var s []string
			for _, d := range got {
				s = append(s, string(d))
			}
			if strings.Join(s, ",") != tc.want {
				t.Errorf("got %v, want %s", s, tc.want)
			}
		})
	}
}

func report(by ...Dim) Report {
	a := NewAggregator(t0, t0.Add(time.Hour), by)
	for _, c := range calls() {
		a.Add(c)
	}
	return a.Report()
}

func TestAggregatorGroupsAndCounts(t *testing.T) {
	r := report(DimUser, DimService)
	want := map[Key]Counts{
		{User: "alice"}:   {Calls: 3, OK: 2, ToolErrors: 1, ReqBytes: 25, RespBytes: 350},
		{User: "bob"}:     {Calls: 2, Timeouts: 1, Denied: 1, ReqBytes: 10, RespBytes: 120},
		{Service: "cron"}: {Calls: 1, Errors: 1, ReqBytes: 1, RespBytes: 30},
	}
	if len(r.Rows) != len(want) {
		t.Fatalf("rows %+v", r.Rows)
	}
	for _, row := range r.Rows {
		if row.Counts != want[row.Key] {
			t.Errorf("%+v: counts %+v, want %+v", row.Key, row.Counts, want[row.Key])
		}
	}
	if r.Total.Calls != 6 || r.Total.Calls != r.Total.OK+r.Total.ToolErrors+r.Total.Errors+r.Total.Denied+r.Total.Timeouts {
		t.Errorf("total %+v", r.Total.Counts)
	}
	// Percentiles over allowed calls, nearest rank.
	alice := r.Rows[0]
	if alice.User != "alice" || alice.P50 != 20*time.Millisecond || alice.P95 != 30*time.Millisecond {
		t.Errorf("alice %+v p50 %v p95 %v", alice.Key, alice.P50, alice.P95)
	}
	bob := r.Rows[1]
	if bob.P50 != 2*time.Second || bob.P95 != 2*time.Second {
		t.Errorf("bob's percentiles %v %v: the denial must not count", bob.P50, bob.P95)
	}

	byTool := report(DimTool)
	if len(byTool.Rows) != 3 || byTool.Rows[0].Provider != "fs" || byTool.Rows[0].Tool != "read" || byTool.Rows[0].Calls != 3 {
		t.Errorf("by tool: %+v", byTool.Rows)
	}
	none := report()
	if len(none.Rows) != 0 || none.Total.Calls != 6 {
		t.Errorf("no grouping: %+v", none)
	}
}

func TestFormatsAgree(t *testing.T) {
	r := report(DimUser, DimProvider)
	var table, js, cs bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Since string           `json:"since"`
		Until string           `json:"until"`
		By    []string         `json:"by"`
		Rows  []map[string]any `json:"rows"`
		Total map[string]any   `json:"total"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("%s: %v", js.Bytes(), err)
	}
	recs, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Rows) != len(r.Rows) || len(recs) != len(r.Rows)+1 {
		t.Fatalf("json rows %d, csv lines %d, report rows %d", len(doc.Rows), len(recs), len(r.Rows))
	}
	if strings.Join(recs[0], ",") != "user,provider,calls,ok,tool_errors,errors,denied,timeouts,p50_ms,p95_ms,req_bytes,resp_bytes" {
		t.Errorf("csv header %v", recs[0])
	}
	for i, row := range r.Rows {
		j, c := doc.Rows[i], recs[i+1]
		if j["user"] != row.User || j["provider"] != row.Provider || c[0] != row.User || c[1] != row.Provider {
			t.Errorf("row %d keys: json %v csv %v report %+v", i, j, c, row.Key)
		}
		if int64(j["calls"].(float64)) != row.Calls || c[2] != strconv.FormatInt(row.Calls, 10) || int64(j["resp_bytes"].(float64)) != row.RespBytes {
			t.Errorf("row %d counts: json %v csv %v report %+v", i, j, c, row.Counts)
		}
		if math.Abs(j["p95_ms"].(float64)-ms(row.P95)) > 1e-9 {
			t.Errorf("row %d p95: %v vs %v", i, j["p95_ms"], row.P95)
		}
		if !strings.Contains(table.String(), row.User) {
			t.Errorf("table lacks %s", row.User)
		}
	}
	if doc.Since != "2026-03-01T12:00:00Z" || doc.Until != "2026-03-01T13:00:00Z" || strings.Join(doc.By, ",") != "user,provider" {
		t.Errorf("json header %+v", doc)
	}
	if int64(doc.Total["calls"].(float64)) != 6 || !strings.Contains(table.String(), "TOTAL") {
		t.Errorf("total: json %v\n%s", doc.Total, table.String())
	}
	// A service's row has no user: "-" in the table, "" in JSON and CSV.
	if !strings.Contains(table.String(), "-") {
		t.Errorf("table:\n%s", table.String())
	}
}

func TestCSVDefusesFormulas(t *testing.T) {
	a := NewAggregator(time.Time{}, time.Time{}, []Dim{DimUser})
	a.Add(&Call{Time: t0, PrincipalKind: "user", Principal: "=HYPERLINK(\"x\")", Outcome: "ok", Decision: "allow"})
	r := a.Report()
	var b bytes.Buffer
	if err := r.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `'=HYPERLINK`) {
		t.Errorf("csv %s", b.String())
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(24, 2)
	now := t0.Add(30 * time.Minute)
	for _, c := range calls() {
		if c.Time.Before(now) {
			w.Add(c)
		}
	}
	// Too old: more than 24 hours before the newest hour.
	w.Add(call(-30*time.Hour, "user", "old", "fs", "read", "ok", time.Millisecond, 1, 1))
	// Past the key cap of 2: a third principal goes to Other.
	w.Add(call(6*time.Minute, "user", "carol", "fs", "read", "ok", time.Millisecond, 1, 1))
	principals, providers, total := w.Snapshot(now)
	got := map[string]int64{}
	for _, r := range principals {
		got[r.User+r.Service] = r.Calls
	}
	want := map[string]int64{"alice": 3, "bob": 2, Other: 2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("principals %v, want %v", got, want)
			break
		}
	}
	if total.Calls != 7 {
		t.Errorf("total %d calls, want 7", total.Calls)
	}
	if len(providers) != 2 || providers[0].Provider != "fs" || providers[0].Calls != 5 || providers[1].Calls != 2 {
		t.Errorf("providers %+v", providers)
	}
	// A day later it is all gone.
	if p, v, tot := w.Snapshot(now.Add(25 * time.Hour)); len(p)+len(v) != 0 || tot.Calls != 0 {
		t.Errorf("a day later: %v %v %v", p, v, tot)
	}
}

func TestHistogramWithinThreePercent(t *testing.T) {
	var h hist
	var exact []time.Duration
	for i := 1; i <= 5000; i++ {
		d := time.Duration(i*i) * time.Microsecond / 7
		h.add(d)
		exact = append(exact, d.Truncate(time.Microsecond))
	}
	for _, q := range []float64{0.5, 0.95} {
		want := exact[int(q*float64(len(exact))+0.999999)-1]
		got := h.quantile(q)
		if diff := math.Abs(float64(got-want)) / float64(want); diff > 0.035 {
			t.Errorf("q%.2f = %v, exact %v (%.1f%% off)", q, got, want, diff*100)
		}
	}
	for us := int64(0); us < 100000; us = us*3/2 + 1 {
		i := histIndex(us)
		if mid := histMiddle(i); math.Abs(float64(mid-us)) > float64(us)*0.035+1 {
			t.Errorf("%d µs lands in bucket %d, middle %d", us, i, mid)
		}
	}
}
