package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/internal/redact"
	"github.com/switchboard-mcp/switchboard/metrics"
	"github.com/switchboard-mcp/switchboard/statuspage"
	"github.com/switchboard-mcp/switchboard/supervisor"
)

const opsConfig = `
listen: 127.0.0.1:0
data_dir: ./data
providers:
  echo:
    command: BIN/echo
    limits: {call_timeout: 1s}
  gone:
    command: BIN/echo
    enabled: true
`

// records reads every audit record of the gateway, leaving out a last line the
// log is still writing.
func (g *gateway) records(t *testing.T) []audit.Record {
	t.Helper()
	raw, err := os.ReadFile(g.config().Audit.File)
	if err != nil {
		t.Fatal(err)
	}
	raw = raw[:bytes.LastIndexByte(raw, '\n')+1]
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("audit line is not one JSON object: %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// waitRecords polls the audit log until cond holds for its records: a tool
// call's record is queued when the call answers and written an instant later.
func (g *gateway) waitRecords(t *testing.T, what string, cond func([]audit.Record) bool) []audit.Record {
	t.Helper()
	var recs []audit.Record
	waitFor(t, 15*time.Second, func() bool {
		recs = g.records(t)
		return cond(recs)
	}, what)
	return recs
}

// toolCalls counts tool_call records by outcome.
func toolCalls(recs []audit.Record) map[string]int {
	got := map[string]int{}
	for _, r := range recs {
		if r.Type == audit.TypeToolCall {
			got[r.Outcome]++
		}
	}
	return got
}

func TestAuditOneRecordPerCallOutcome(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	// ok, tool error, timeout, denied (absent), injection bytes in a tool name.
	callText(t, c, "echo__echo", map[string]any{"text": "hi"})
	callText(t, c, "echo__env", map[string]any{"name": "NOPE_NOT_SET"})
	if res, err := tryCall(c, "echo__sleep", map[string]any{"ms": 3000}); err == nil && !res.IsError {
		t.Error("a call past call_timeout succeeded")
	}
	if _, err := tryCall(c, "nope__x", nil); err == nil {
		t.Error("absent tool call succeeded")
	}
	evil := "x\n{\"seq\":1}\x1b[31m\x00"
	_, _ = tryCall(c, evil, nil)

	want := map[string]int{"ok": 1, "tool_error": 1, "timeout": 1, "denied": 2}
	recs := g.waitRecords(t, "a record of each call", func(recs []audit.Record) bool {
		n := 0
		for _, c := range toolCalls(recs) {
			n += c
		}
		return n >= 5
	})
	got := toolCalls(recs)
	for _, r := range recs {
		if r.Type == audit.TypeToolCall {
			if r.Principal != "admin" || r.PrincipalKind != "user" || r.Endpoint != "/mcp" {
				t.Errorf("record lacks the caller: %+v", r)
			}
			if r.Outcome == "ok" && !strings.HasPrefix(r.ArgsDigest, "hmac-sha256:") {
				t.Errorf("args digest = %q", r.ArgsDigest)
			}
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%d tool_call records with outcome %s, want %d (all: %v)", got[k], k, n, got)
		}
	}
	raw, _ := os.ReadFile(g.config().Audit.File)
	if bytes.Contains(raw, []byte(`"hi"`)) || bytes.Contains(raw, []byte("\x1b")) || bytes.Contains(raw, []byte{0}) {
		t.Error("audit log holds raw arguments or unescaped control bytes")
	}
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		if !json.Valid(line) {
			t.Errorf("audit line is not valid JSON: %q", line)
		}
	}
	g.mustVerifyAudit(t)
}

// mustVerifyAudit proves the gateway's audit log with its key from the vault.
func (g *gateway) mustVerifyAudit(t *testing.T) audit.VerifyResult {
	t.Helper()
	key, err := auditKey(g.vault)
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyWithKey(g.config().Audit.File, key)
	if err != nil || !res.OK {
		t.Errorf("audit verify: %+v %v", res, err)
	}
	return res
}

func TestAuditRecordsSecurityAndLifecycleEvents(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	resp := post(t, g.URL()+"/mcp", "", map[string]string{"Authorization": "Bearer wrong"}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	resp.Body.Close()
	g.writeConfig(t, "providers: {bogus\n")
	g.reload(t)
	types := map[string]int{}
	for _, r := range g.records(t) {
		types[r.Type]++
	}
	for _, typ := range []string{audit.TypeStartup, audit.TypeProvider, audit.TypeAuthFailure, audit.TypeConfigReload} {
		if types[typ] == 0 {
			t.Errorf("no %s record (have %v)", typ, types)
		}
	}
}

// fillAuditDisk makes writes past the audit file's current end fail (EFBIG,
// through RLIMIT_FSIZE) until the returned function is called, as a full disk
// would.
func (g *gateway) fillAuditDisk(t *testing.T) (restore func()) {
	t.Helper()
	st, err := os.Stat(g.config().Audit.File)
	if err != nil {
		t.Fatal(err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	t.Cleanup(func() { signal.Reset(syscall.SIGXFSZ) })
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(st.Size()) + 10, Max: old.Max}); err != nil {
		t.Skip(err)
	}
	var once sync.Once
	restore = func() { once.Do(func() { _ = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old) }) }
	t.Cleanup(restore)
	return restore
}

func TestUnwritableAuditLogBlocksCalls(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	callText(t, c, "echo__echo", map[string]any{"text": "before"})
	// The answer may come before the record is written: wait for it, so that
	// the full disk is the next record's problem, not this one's.
	g.waitRecords(t, "the first call's record", func(recs []audit.Record) bool { return toolCalls(recs)["ok"] == 1 })
	restore := g.fillAuditDisk(t)
	callText(t, c, "echo__echo", map[string]any{"text": "its record cannot be written"})
	// The call answered before its record was written; the failed write then
	// closes admission.
	waitFor(t, 15*time.Second, func() bool { return g.ops.audit.Err() != nil }, "the audit log to report the failed write")
	txt, isErr := callText(t, c, "echo__echo", map[string]any{"text": "must not run"})
	if code, body := g.get(t, "/metrics", g.admin()); code != 200 || !strings.Contains(body, "\nswitchboard_audit_log_healthy 0\n") {
		t.Errorf("/metrics while the audit log fails: %d, want switchboard_audit_log_healthy 0", code)
	}
	restore()
	if !isErr || !strings.Contains(txt, "audit log") {
		t.Fatalf("call with a broken audit log = %q (isError %v), want a refusal naming the audit log", txt, isErr)
	}
	waitFor(t, 15*time.Second, func() bool {
		txt, isErr := callText(t, c, "echo__echo", map[string]any{"text": "after"})
		return !isErr && txt == "after"
	}, "calls to work again once the audit log recovers")
	// The record that could not be written was kept, not lost.
	recs := g.waitRecords(t, "the kept record and the recovery", func(recs []audit.Record) bool {
		return toolCalls(recs)["ok"] >= 3
	})
	for _, r := range recs {
		if r.Detail["event"] == "sink_recovered" && r.Detail["lost_records"] != "0" {
			t.Errorf("recovery record reports lost records: %+v", r)
		}
	}
	g.mustVerifyAudit(t)
	_, body := g.get(t, "/metrics", g.admin())
	for _, want := range []string{"\nswitchboard_audit_log_healthy 1\n", "\nswitchboard_audit_records_dropped_total 0\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics after recovery lacks %q", strings.TrimSpace(want))
		}
	}
}

// With audit.wait_for_write, a tools/call answers only once its record is in
// the file: no polling needed.
func TestAuditWaitForWrite(t *testing.T) {
	g := MustOpenGateway(t, opsConfig+"audit: {wait_for_write: true}\n")
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	for i := range 3 {
		callText(t, c, "echo__echo", map[string]any{"text": "x"})
		if got := toolCalls(g.records(t))["ok"]; got != i+1 {
			t.Fatalf("after call %d answered, the log holds %d tool_call records: the answer did not wait for the record", i+1, got)
		}
	}
}

// The call path uses the waiting write only with audit.wait_for_write: only
// the waiting write learns that a record could not be written yet (the queued
// one returns at once and keeps it).
func TestAuditWaitForWriteReportsUnwrittenRecord(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("wait_for_write=%v", wait), func(t *testing.T) {
			g := MustOpenGateway(t, opsConfig+fmt.Sprintf("audit: {wait_for_write: %v}\n", wait))
			g.waitReady(t)
			c := MustConnect(t, g.URL()+"/mcp", g.admin())
			callText(t, c, "echo__echo", map[string]any{"text": "before"})
			g.waitRecords(t, "the first call's record", func(recs []audit.Record) bool { return toolCalls(recs)["ok"] == 1 })
			restore := g.fillAuditDisk(t)
			callText(t, c, "echo__echo", map[string]any{"text": "its record cannot be written"})
			waitFor(t, 15*time.Second, func() bool { return g.ops.audit.Err() != nil }, "the failed write")
			if !wait {
				// Queued: no error to report, the record waits for recovery.
				if strings.Contains(g.log.String(), "audit record for a tool call not written") {
					t.Error("Append reported a record it kept")
				}
				return
			}
			waitFor(t, 15*time.Second, func() bool {
				return strings.Contains(g.log.String(), "audit record for a tool call not written")
			}, "the waiting write to report the unwritten record")
			restore()
			g.waitRecords(t, "the kept record", func(recs []audit.Record) bool { return toolCalls(recs)["ok"] == 2 })
		})
	}
}

func TestMetricsAndStatusNeedAdmin(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	callText(t, c, "echo__echo", map[string]any{"text": "x"})
	if code, _ := g.get(t, "/metrics", nil); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a key: %d", code)
	}
	if code, _ := g.get(t, "/metrics", g.userKey(t, "plain")); code != http.StatusForbidden {
		t.Errorf("/metrics for a non-admin: %d", code)
	}
	code, body := g.get(t, "/metrics", g.admin())
	if code != 200 || !strings.Contains(body, `switchboard_tool_calls_total{outcome="ok",provider="echo",tool="echo"} 1`) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	code, body = g.get(t, "/status", g.admin())
	if code != 200 || !strings.Contains(body, "echo") || !strings.Contains(body, "<html") {
		t.Errorf("/status: %d %.300s", code, body)
	}
	code, body = g.get(t, "/status?format=json", g.admin())
	if code != 200 || !strings.Contains(body, `"providers"`) {
		t.Errorf("/status json: %d %.300s", code, body)
	}
}

// TestLogLines checks the gateway's log stack: lines below the level are
// dropped, secrets are masked, an informational line that follows another
// closely waits for the window while an error goes out at once after it, and
// close leaves nothing held.
func TestLogLines(t *testing.T) {
	out := &syncBuffer{}
	r := redact.New()
	r.Add("canary-secret-42")
	f := newLevelFilter(out, r, "info")
	log := zerolog.New(f)
	log.Debug().Msg("dropped")
	log.Info().Msg("first")                                 // written at once: nothing came before
	log.Info().Str("token", "canary-secret-42").Msg("held") // within the window of the first
	if got := out.String(); !strings.Contains(got, "first") || strings.Contains(got, "held") {
		// The window is 5 ms; a descheduled test can outlast it, which only
		// writes the line early. Then the rest of the test still holds.
		t.Logf("the second line was not held (a slow machine): %q", got)
	}
	log.Error().Msg("failed")
	got := out.String()
	if i, j := strings.Index(got, "held"), strings.Index(got, "failed"); i < 0 || j < i {
		t.Fatalf("the error was not written at once after the held line:\n%s", got)
	}
	if strings.Contains(got, "dropped") || strings.Contains(got, "canary-secret-42") || !strings.Contains(got, redact.Mask) {
		t.Fatalf("level filter or redaction failed:\n%s", got)
	}
	log.Info().Msg("after")
	f.close()
	if !strings.Contains(out.String(), "after") {
		t.Fatal("close left a line held")
	}
}

// The provider_state gauge follows an instance through its start: queued
// while it waits for its turn, starting once spawned, running once ready.
// Waiting is not written to the audit log; the spawn is.
func TestProviderStateThroughTheStartQueue(t *testing.T) {
	o := &ops{metrics: metrics.New(), events: statuspage.NewRing(10), redact: func(s string) string { return s }}
	key := switchboard.InstanceKey{Provider: "notes", User: "alice"}
	state := func() string {
		rec := httptest.NewRecorder()
		o.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		var on []string
		for line := range strings.Lines(rec.Body.String()) {
			if strings.HasPrefix(line, `switchboard_provider_state{provider="notes@alice"`) && strings.HasSuffix(line, " 1\n") {
				on = append(on, line)
			}
		}
		if len(on) != 1 {
			t.Fatalf("provider_state lines at 1: %q, want one", on)
		}
		_, st, _ := strings.Cut(on[0], `state="`)
		st, _, _ = strings.Cut(st, `"`)
		return st
	}
	for _, step := range []struct{ kind, want string }{
		{supervisor.EventQueued, "queued"},
		{supervisor.EventSpawn, "starting"},
		{supervisor.EventReady, "running"},
	} {
		o.providerEvent(supervisor.Event{Key: key, Kind: step.kind, PID: 42})
		if got := state(); got != step.want {
			t.Errorf("after %s: state %q, want %q", step.kind, got, step.want)
		}
	}
}
