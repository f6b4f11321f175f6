package statuspage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-mcp/switchboard"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func fixture() Status {
	return Status{
		Version:   "1.2.3",
		StartedAt: t0.Add(-26 * time.Hour),
		Listen:    "127.0.0.1:8080",
		Providers: []switchboard.ProviderStatus{
			{Provider: "gh", State: switchboard.StateBackoff, Restarts: 3, LastError: "exit status 1", LastExit: "exit 1 after 0.2s"},
			{Provider: "fs", State: switchboard.StateRunning, PID: 4242, StartedAt: t0.Add(-90 * time.Minute), Tools: 11, InFlight: 2, Limits: "mem 512MiB"},
			{Provider: "db", State: switchboard.StateFailed, Restarts: 5, LastError: "too many quick failures",
				StderrTail: []string{"connecting to <db>", `<script>alert("x")</script>`}, Garbage: 7},
			{Provider: "notes", User: "alice", State: switchboard.StateRunning, PID: 5151, StartedAt: t0.Add(-5 * time.Minute), Tools: 4},
		},
		Sessions: []Session{
			{ID: "0123456789abcdef0123456789abcdef", Principal: "user:alice", Endpoint: "/mcp", Client: "claude-code/1.0", CreatedAt: t0.Add(-time.Hour), LastSeen: t0.Add(-time.Minute)},
			{ID: "fedcba9876543210fedcba9876543210", Principal: "user:alice", Endpoint: "/mcp", Client: "claude-code/1.0", CreatedAt: t0.Add(-2 * time.Hour), LastSeen: t0.Add(-10 * time.Second)},
			{ID: "aaaaaaaabbbbbbbbccccccccdddddddd", Principal: "service:ci", Endpoint: "/mcp/internal", Client: "", CreatedAt: t0.Add(-3 * time.Minute), LastSeen: t0},
		},
		LastReload: ReloadStatus{
			At: t0.Add(-2 * time.Minute), OK: false,
			Error:        `gateway.yaml:12: provider "x": command is empty`,
			ConfigHash:   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			NeedsRestart: []string{"listen", "data_dir"},
		},
		Events: []Event{
			{Time: t0.Add(-time.Hour), Kind: "provider", Message: "db failed: too many quick failures"},
			{Time: t0.Add(-time.Minute), Kind: "reload", Message: "reload rejected <b>bold</b>"},
		},
	}
}

func serve(t *testing.T, st Status) *httptest.Server {
	t.Helper()
	old := now
	now = func() time.Time { return t0 }
	t.Cleanup(func() { now = old })
	srv := httptest.NewServer(Handler(func(context.Context) Status { return st }))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, accept string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHTML(t *testing.T) {
	srv := serve(t, fixture())
	resp, body := get(t, srv.URL+"/status", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"Switchboard <span class=\"muted\">1.2.3</span>",
		"up 1d 2h",
		"<code>127.0.0.1:8080</code>",
		`<span class="badge error">failed</span>`,
		"2m 0s ago",
		`config <code title="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08">9f86d081884c</code>`,
		`reload error: <code>gateway.yaml:12: provider &#34;x&#34;: command is empty</code>`,
		"<code>listen</code>, <code>data_dir</code>",
		`<span class="badge running">running</span>`,
		`<span class="badge backoff">backoff</span>`,
		`<span class="badge failed">failed</span>`,
		"<strong>fs</strong>",
		"mem 512MiB",
		"1h 30m",
		`<td class="num mono">4242</td>`,
		"last exit: exit 1 after 0.2s",
		"7 invalid stdout lines",
		"<details><summary>stderr (2 lines)</summary><pre>connecting to &lt;db&gt;\n&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\n</pre></details>",
		"Per-user instances <span class=\"count\">(1)</span>",
		`<strong>notes</strong> <span class="muted">for alice</span>`,
		"Sessions <span class=\"count\">(3)</span>",
		`<td>user:alice</td><td>claude-code/1.0</td><td><code>/mcp</code></td><td class="num">2</td>`,
		`<td>service:ci</td><td>—</td><td><code>/mcp/internal</code></td><td class="num">1</td>`,
		`<td class="mono">01234567…</td>`,
		"reload rejected &lt;b&gt;bold&lt;/b&gt;",
		`<a href="?format=json">JSON</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script>", "<b>bold", "0123456789abcdef", "fedcba9876543210fedcba"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	// Shared providers are sorted; the per-user one is not among them.
	if i, j, k := strings.Index(body, "<strong>db</strong>"), strings.Index(body, "<strong>fs</strong>"), strings.Index(body, "<strong>gh</strong>"); !(i < j && j < k) {
		t.Error("providers are not sorted by name")
	}
	// Newest event first.
	if strings.Index(body, "reload rejected") > strings.Index(body, "db failed") {
		t.Error("events are not newest first")
	}
	// The CSP allows exactly the embedded stylesheet.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no <style>")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(resp.Header.Get("Content-Security-Policy"), want) {
		t.Errorf("CSP %q lacks %q", resp.Header.Get("Content-Security-Policy"), want)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers: %v", resp.Header)
	}
}

func TestJSON(t *testing.T) {
	srv := serve(t, fixture())
	for _, tc := range []struct{ name, url, accept string }{
		{"query", "/?format=json", "text/html"},
		{"accept", "/", "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, srv.URL+tc.url, tc.accept)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var got struct {
				Version   string    `json:"version"`
				StartedAt time.Time `json:"started_at"`
				Uptime    int64     `json:"uptime_seconds"`
				Listen    string    `json:"listen"`
				Providers []struct {
					Provider   string   `json:"provider"`
					User       string   `json:"user"`
					State      string   `json:"state"`
					PID        int      `json:"pid"`
					StderrTail []string `json:"stderr_tail"`
				} `json:"providers"`
				Sessions []struct {
					ID, Principal, Endpoint, Client string
				} `json:"sessions"`
				LastReload struct {
					At           time.Time `json:"at"`
					OK           *bool     `json:"ok"`
					Error        string    `json:"error"`
					ConfigHash   string    `json:"config_hash"`
					NeedsRestart []string  `json:"needs_restart"`
				} `json:"last_reload"`
				Events []Event `json:"events"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v\n%s", err, body)
			}
			if got.Version != "1.2.3" || got.Uptime != 26*3600 || got.Listen != "127.0.0.1:8080" || !got.StartedAt.Equal(t0.Add(-26*time.Hour)) {
				t.Errorf("header fields: %+v", got)
			}
			if len(got.Providers) != 4 || got.Providers[0].Provider != "db" || got.Providers[0].State != "failed" || len(got.Providers[0].StderrTail) != 2 {
				t.Errorf("providers: %+v", got.Providers)
			}
			if p := got.Providers[3]; p.Provider != "notes" || p.User != "alice" || p.PID != 5151 {
				t.Errorf("per-user provider: %+v", p)
			}
			if len(got.Sessions) != 3 || got.Sessions[0].ID != "aaaaaaaa…" || got.Sessions[1].ID != "fedcba98…" || got.Sessions[2].Principal != "user:alice" {
				t.Errorf("sessions: %+v", got.Sessions)
			}
			if r := got.LastReload; r.OK == nil || *r.OK || !strings.Contains(r.Error, "command is empty") || len(r.NeedsRestart) != 2 || r.ConfigHash == "" {
				t.Errorf("last_reload: %+v", r)
			}
			if len(got.Events) != 2 || got.Events[0].Kind != "reload" {
				t.Errorf("events: %+v", got.Events)
			}
			if strings.Contains(body, "0123456789abcdef") {
				t.Error("full session ID in JSON")
			}
		})
	}
}

func TestEmptyStatus(t *testing.T) {
	srv := serve(t, Status{Version: "dev"})
	_, body := get(t, srv.URL+"/?format=json", "")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"providers", "sessions", "events"} {
		if l, ok := got[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, got[k])
		}
	}
	resp, body := get(t, srv.URL, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{"no open sessions", "nothing yet", "none yet", "up —"} {
		if !strings.Contains(body, want) {
			t.Errorf("empty page lacks %q", want)
		}
	}
}

func TestMethods(t *testing.T) {
	srv := serve(t, fixture())
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, err = http.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                              "0s",
		-time.Second:                   "0s",
		12 * time.Second:               "12s",
		4*time.Minute + 10*time.Second: "4m 10s",
		2*time.Hour + 5*time.Minute:    "2h 5m",
		76 * time.Hour:                 "3d 4h",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	if got := r.List(); len(got) != 0 {
		t.Fatalf("new ring: %v", got)
	}
	for i := range 5 {
		r.Add("k", fmt.Sprint(i))
	}
	got := r.List()
	if len(got) != 3 || got[0].Message != "4" || got[1].Message != "3" || got[2].Message != "2" {
		t.Errorf("List = %+v, want 4, 3, 2", got)
	}
	if got[0].Time.IsZero() || got[0].Time.Location() != time.UTC {
		t.Errorf("time %v", got[0].Time)
	}

	long := strings.Repeat("é", maxMessage) // two bytes each
	r.Add("k", long)
	m := r.List()[0].Message
	if !utf8.ValidString(m) || len(m) > maxMessage+len("…") || !strings.HasSuffix(m, "…") {
		t.Errorf("long message cut badly: %d bytes, valid %v", len(m), utf8.ValidString(m))
	}
}

func TestRingConcurrent(t *testing.T) {
	r := NewRing(0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				r.Add("k", fmt.Sprint(g, i))
				_ = r.List()
			}
		})
	}
	wg.Wait()
	if n := len(r.List()); n != 100 {
		t.Errorf("%d events kept, want the default 100", n)
	}
}

func TestUsageSection(t *testing.T) {
	st := fixture()
	st.Usage = &Usage{
		Since: t0.Add(-24 * time.Hour),
		Principals: []UsageRow{
			{Name: "alice", Kind: "user", Calls: 12, ToolErrors: 1, Denied: 2, P50MS: 12.345, P95MS: 1500, ReqBytes: 2048, RespBytes: 5 << 20},
			{Name: "<ci>", Kind: "service", Calls: 3, Timeouts: 1, P50MS: 0.25},
		},
		Providers: []UsageRow{{Name: "fs", Calls: 15, P50MS: 3}},
		Total:     UsageRow{Calls: 15},
	}
	srv := serve(t, st)
	_, body := get(t, srv.URL+"/status", "text/html")
	for _, want := range []string{
		"<h2>Usage, last 24 hours</h2>",
		"15 calls",
		`<td>alice</td><td class="num">12</td><td class="num">1</td><td class="num">0</td>`,
		`<td class="num">12.3 ms</td><td class="num">1.5 s</td>`,
		`<td class="num" title="2048">2.0 KiB</td><td class="num" title="5242880">5.0 MiB</td>`,
		`<td>&lt;ci&gt; <span class="muted">(service)</span></td>`,
		`<td class="num">250 µs</td>`,
		"<th>User or service</th>",
		"<th>Provider</th>",
		`<td>fs</td><td class="num">15</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	_, js := get(t, srv.URL+"/status?format=json", "")
	var doc struct {
		Usage *Usage `json:"usage_24h"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil || doc.Usage == nil || len(doc.Usage.Principals) != 2 || doc.Usage.Principals[0].P95MS != 1500 {
		t.Errorf("json usage %+v (%v)", doc.Usage, err)
	}
	// Without usage the section is absent.
	_, body = get(t, serve(t, fixture()).URL+"/status", "text/html")
	if strings.Contains(body, "Usage, last 24 hours") {
		t.Error("usage section without usage")
	}
}
