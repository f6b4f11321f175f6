package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/audit"
)

// edgeReq sends one initialize to /mcp with the admin's key and Host, and a
// body of at least size bytes, and returns the status.
func (g *gateway) edgeReq(t *testing.T, host string, size int) int {
	t.Helper()
	pad := ""
	if n := size - 200; n > 0 {
		pad = strings.Repeat("x", n)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"},"_pad":"` + pad + `"}}`
	req, err := http.NewRequest(http.MethodPost, g.URL()+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", g.admin()["Authorization"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const edgeConfigV1 = `
listen: 127.0.0.1:0
data_dir: ./data
auth:
  allowed_hosts: [good.example]
  max_body_mb: 1
  rate_limit: {rps: 1000, burst: 1000}
providers:
  a:
    command: BIN/echo
`

// TestReloadAppliesEdgeSettingsLive: allowed_hosts, max_body_mb and the rate
// limit take effect on reload, and the reload does not list them as needing a
// restart: the new host is accepted and the old refused, a body the old
// limit refused passes, and the new rate limits.
func TestReloadAppliesEdgeSettingsLive(t *testing.T) {
	g := MustOpenGateway(t, edgeConfigV1)
	g.waitReady(t)
	const big = 1<<20 + 300<<10 // over 1 MB, under 2 MB
	if code := g.edgeReq(t, "good.example", 0); code != http.StatusOK {
		t.Fatalf("allowed host before reload: %d", code)
	}
	if code := g.edgeReq(t, "other.example", 0); code != http.StatusForbidden {
		t.Fatalf("unlisted host before reload: %d, want 403", code)
	}
	if code := g.edgeReq(t, "good.example", big); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("1.3 MB body under max_body_mb 1: %d, want 413", code)
	}

	g.writeConfig(t, strings.NewReplacer("[good.example]", "[other.example]", "max_body_mb: 1", "max_body_mb: 2",
		"{rps: 1000, burst: 1000}", "{rps: 0.01, burst: 3}").Replace(edgeConfigV1))
	res := g.reload(t)
	if !res.OK || len(res.NeedsRestart) != 0 {
		t.Fatalf("reload = %+v; want ok with nothing left for a restart", res)
	}
	if code := g.edgeReq(t, "other.example", 0); code != http.StatusOK {
		t.Errorf("newly allowed host after reload: %d, want 200", code)
	}
	if code := g.edgeReq(t, "good.example", 0); code != http.StatusForbidden {
		t.Errorf("no longer allowed host after reload: %d, want 403", code)
	}
	if code := g.edgeReq(t, "other.example", big); code == http.StatusRequestEntityTooLarge || code == http.StatusForbidden {
		t.Errorf("1.3 MB body under max_body_mb 2: %d", code)
	}
	// The new burst is 3 (two were spent above): one of the next four is
	// limited, where the old burst of 1000 limited none.
	limited := false
	for range 4 {
		limited = limited || g.edgeReq(t, "other.example", 0) == http.StatusTooManyRequests
	}
	if !limited {
		t.Error("four more requests all passed the new rate limit (burst 3)")
	}
}

const replaceConfig = `
listen: 127.0.0.1:0
data_dir: ./data
auth:
  rate_limit: {rps: 100000, burst: 100000}
providers:
  a:
    command: BIN/echo
  b:
    command: BIN/testprovider
    args: [one]
`

// TestReloadReplacesAProviderWithoutAGap: while a client lists tools and
// asks the provider for its pid in a loop, a reload changes the provider's
// args. Its tools are in every list, every call is answered, and the pid
// changes exactly once.
func TestReloadReplacesAProviderWithoutAGap(t *testing.T) {
	g := MustOpenGateway(t, replaceConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	pid := func() int {
		txt, isErr := callText(t, c, "b__pid", nil)
		n, err := strconv.Atoi(strings.TrimSpace(txt))
		if isErr || err != nil {
			t.Errorf("b__pid answered %q (error %v)", txt, isErr)
			return 0
		}
		return n
	}
	first := pid()
	var stop atomic.Bool
	var mu sync.Mutex
	var pids []int
	var lists, missing int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			names := strings.Join(toolNames(t, c), ",")
			p := pid()
			mu.Lock()
			lists++
			if !strings.Contains(names, "b__pid") {
				missing++
			}
			if len(pids) == 0 || pids[len(pids)-1] != p {
				pids = append(pids, p)
			}
			mu.Unlock()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	g.writeConfig(t, strings.Replace(replaceConfig, "args: [one]", "args: [two]", 1))
	res := g.reload(t)
	// Keep listing a while after the switch.
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	<-done
	if !res.OK || strings.Join(res.Restarted, ",") != "b" {
		t.Fatalf("reload = %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if missing > 0 {
		t.Errorf("b's tools were missing from %d of %d lists during the restart", missing, lists)
	}
	if len(pids) != 2 || pids[0] != first || pids[1] == first || pids[1] == 0 {
		t.Errorf("pids seen in order: %v; want the old %d, then one new pid", pids, first)
	}
}

// TestReloadWithABrokenCommandKeepsTheOldProcess: a reload that gives a
// provider a command that cannot run exits non-zero naming the provider; the
// old process keeps serving, /status and the audit log say what failed.
func TestReloadWithABrokenCommandKeepsTheOldProcess(t *testing.T) {
	g := MustOpenGateway(t, replaceConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	before, _ := callText(t, c, "b__pid", nil)

	g.writeConfig(t, strings.Replace(replaceConfig, "command: BIN/testprovider", "command: BIN/no-such-provider", 1))
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", g.ConfigPath, "reload"})
	err := root.ExecuteContext(context.Background())
	if code := exitCode(err); code == 0 || !strings.Contains(out.String(), "b:") || !strings.Contains(out.String(), "no-such-provider") {
		t.Fatalf("switchboard reload: exit %d, output:\n%s", code, out.String())
	}
	if after, isErr := callText(t, c, "b__pid", nil); isErr || after != before {
		t.Errorf("b after the failed reload: %q (error %v), want the old process %q", after, isErr, before)
	}

	_, body := g.get(t, "/status?format=json", g.admin())
	var st struct {
		Providers []struct {
			Provider  string `json:"provider"`
			State     string `json:"state"`
			LastError string `json:"last_error"`
		} `json:"providers"`
		LastReload struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"last_reload"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	if st.LastReload.OK || !strings.Contains(st.LastReload.Error, "provider b") {
		t.Errorf("/status last_reload = %+v, want the failure of b", st.LastReload)
	}
	found := false
	for _, p := range st.Providers {
		if p.Provider == "b" {
			found = true
			if p.State != "running" || !strings.Contains(p.LastError, "failed to start") {
				t.Errorf("/status b = %+v, want running, with the failed replacement noted", p)
			}
		}
	}
	if !found {
		t.Error("/status does not list b")
	}
	recs := g.waitRecords(t, "the failed reload's audit record", func(recs []audit.Record) bool {
		for _, r := range recs {
			if r.Type == audit.TypeConfigReload && r.Outcome == "error" && r.Detail["failed"] == "b" {
				return true
			}
		}
		return false
	})
	_ = recs

	// Fixing the command and reloading replaces the process.
	g.writeConfig(t, strings.Replace(replaceConfig, "args: [one]", "args: [fixed]", 1))
	if res := g.reload(t); !res.OK || strings.Join(res.Restarted, ",") != "b" {
		t.Fatalf("reload after the fix = %+v", res)
	}
	if after, _ := callText(t, c, "b__pid", nil); after == before {
		t.Error("b was not replaced after the fix")
	}
}

// TestSkillsReloadFromDisk: a skill written into skills.dir is served
// without a rebuild, and a change to it is picked up by `reload` (and by the
// gateway on its own), where it used to say "config unchanged".
func TestSkillsReloadFromDisk(t *testing.T) {
	g := MustOpenGateway(t, replaceConfig+"skills: {dir: ./skills}\n")
	g.waitReady(t)
	write := func(body string) {
		dir := filepath.Join(g.dir, "skills", "b")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		md := "---\nname: b\ndescription: the test provider\nprovider: b\n---\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(dir, "SKILL.md"), []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Call `b__pid` first.")
	res := g.reload(t)
	if res.Unchanged || !res.Skills {
		t.Fatalf("reload after writing a skill = %+v", res)
	}
	rep := g.live.stale(g.mux)
	if len(rep.Problems) != 0 || !strings.Contains(rep.Skills["b"], filepath.Join("skills", "b", "SKILL.md")) {
		t.Fatalf("stale report = %+v", rep)
	}
	write("Call `b__pid` first, never `b__gone`.")
	waitFor(t, 15*time.Second, func() bool {
		rep := g.live.stale(g.mux)
		return len(rep.Problems) == 1 && strings.Contains(rep.Problems[0], "b__gone")
	}, "the changed skill to be served (reloaded on its own)")
}
