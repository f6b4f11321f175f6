package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/audit"
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

// records reads every audit record of the gateway.
func (g *gateway) records(t *testing.T) []audit.Record {
	t.Helper()
	f, err := os.Open(g.config().Audit.File)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line is not one JSON object: %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
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
	got := map[string]int{}
	for _, r := range g.records(t) {
		if r.Type == audit.TypeToolCall {
			got[r.Outcome]++
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
	res, err := audit.Verify(g.config().Audit.File)
	if err != nil || res.Broken != nil {
		t.Errorf("audit verify: %+v %v", res.Broken, err)
	}
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

func TestUnwritableAuditLogBlocksCalls(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	callText(t, c, "echo__echo", map[string]any{"text": "before"})
	st, err := os.Stat(g.config().Audit.File)
	if err != nil {
		t.Fatal(err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(st.Size()) + 10, Max: old.Max}); err != nil {
		t.Skip(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			_ = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		}
	}
	defer restore()
	callText(t, c, "echo__echo", map[string]any{"text": "its record cannot be written"})
	txt, isErr := callText(t, c, "echo__echo", map[string]any{"text": "must not run"})
	restore()
	if !isErr || !strings.Contains(txt, "audit log") {
		t.Fatalf("call with a broken audit log = %q (isError %v), want a refusal naming the audit log", txt, isErr)
	}
	waitFor(t, 15*time.Second, func() bool {
		txt, isErr := callText(t, c, "echo__echo", map[string]any{"text": "after"})
		return !isErr && txt == "after"
	}, "calls to work again once the audit log recovers")
}

func TestMetricsAndStatusNeedAdmin(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	callText(t, c, "echo__echo", map[string]any{"text": "x"})
	get := func(path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, g.URL()+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/metrics", nil); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a key: %d", code)
	}
	if code, _ := get("/metrics", g.userKey(t, "plain")); code != http.StatusForbidden {
		t.Errorf("/metrics for a non-admin: %d", code)
	}
	code, body := get("/metrics", g.admin())
	if code != 200 || !strings.Contains(body, `switchboard_tool_calls_total{outcome="ok",provider="echo",tool="echo"} 1`) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	code, body = get("/status", g.admin())
	if code != 200 || !strings.Contains(body, "echo") || !strings.Contains(body, "<html") {
		t.Errorf("/status: %d %.300s", code, body)
	}
	code, body = get("/status?format=json", g.admin())
	if code != 200 || !strings.Contains(body, `"providers"`) {
		t.Errorf("/status json: %d %.300s", code, body)
	}
}
