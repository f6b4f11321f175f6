package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/vault"
)

// reopenGateway serves g's config and data again, as a restart would.
func reopenGateway(t *testing.T, g *gateway) *gateway {
	t.Helper()
	g2 := &gateway{Main: NewMain(g.ConfigPath), dir: g.dir, log: &syncBuffer{}}
	g2.Stderr, g2.Getenv, g2.DevKey = g2.log, g.Getenv, true
	if err := g2.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v\n%s", err, g2.log.String())
	}
	t.Cleanup(func() {
		if err := g2.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("restarted gateway log:\n%s", g2.log.String())
		}
	})
	return g2
}

var (
	prevHashRE = regexp.MustCompile(`"prev_hash":"[0-9a-f]{64}"`)
	hashTailRE = regexp.MustCompile(`,"hash":"[0-9a-f]{64}"\}$`)
)

// forgeAuditLog rewrites the audit log as someone who can write the file but
// not read the vault: on the first line containing old it puts new, recomputes
// the hash of that line and of every later one the way the unkeyed chain did
// (SHA-256 of the line without its hash member), and deletes the checkpoint.
func forgeAuditLog(t *testing.T, file, old, new string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	prev, forging := "", false
	for i, line := range lines {
		if !forging && strings.Contains(line, old) {
			forging, line = true, strings.Replace(line, old, new, 1)
		}
		if forging {
			line = prevHashRE.ReplaceAllLiteralString(line, `"prev_hash":"`+prev+`"`)
			text := hashTailRE.ReplaceAllLiteralString(line, "}")
			sum := sha256.Sum256([]byte(text))
			line = strings.TrimSuffix(text, "}") + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}`
			lines[i] = line
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("forged line is not JSON: %v: %s", err, line)
		}
		prev = r.Hash
	}
	if !forging {
		t.Fatalf("no line contains %q", old)
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(file + ".head"); err != nil {
		t.Fatal(err)
	}
}

// removeAuditKey deletes the audit key from the vault, as `secret rm` could.
func removeAuditKey(t *testing.T, v *vault.Vault) {
	t.Helper()
	if err := v.ForgetInternalKey(auditKeySecret); err != nil {
		t.Fatal(err)
	}
}

// The attack of the hardening issue: rewrite a record, recompute every later
// hash, delete the checkpoint. `audit verify` must fail (exit 1), and a
// gateway started on the forged log must log and record that it was altered.
func TestAuditVerifyCatchesARewrittenChain(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	for range 3 {
		callText(t, c, "echo__echo", map[string]any{"text": "x"})
	}
	out, code := runCLI(t, "audit", "verify", "--config", g.ConfigPath)
	if code != 0 || !strings.Contains(out, "ok: ") || !strings.Contains(out, "verified under audit key") {
		t.Fatalf("verify of a clean log (through the gateway): exit %d\n%s", code, out)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	file := g.config().Audit.File
	if out, code := runCLI(t, "audit", "verify", "--config", g.ConfigPath); code != 0 {
		t.Fatalf("verify of a clean log (offline): exit %d\n%s", code, out)
	}

	forgeAuditLog(t, file, `"type":"tool_call"`, `"type":"tool_call","principal":"mallory"`)
	out, code = runCLI(t, "audit", "verify", "--config", g.ConfigPath)
	if code != 1 || !strings.Contains(out, "BROKEN at") || !strings.Contains(out, "unkeyed hash after keyed records") {
		t.Errorf("verify of the forged log: exit %d, want 1 and BROKEN\n%s", code, out)
	}

	g2 := reopenGateway(t, g)
	if !strings.Contains(g2.log.String(), `"level":"error"`) || !strings.Contains(g2.log.String(), "audit log integrity check failed at open") {
		t.Errorf("the gateway started on a forged log without an error:\n%s", g2.log.String())
	}
	var recorded bool
	for _, r := range g2.records(t) {
		recorded = recorded || (r.Detail["event"] == audit.EventOpenAnomaly && strings.Contains(r.Error, "rewritten without the key"))
	}
	if !recorded {
		t.Error("no open_anomaly record in the log")
	}
	_, body := g2.get(t, "/status?format=json", g.admin())
	if !strings.Contains(body, "audit log integrity check failed at startup") {
		t.Errorf("/status does not show the audit alarm: %.500s", body)
	}
}

// Records cut off the end of a stopped gateway's log: the restarted gateway
// records the cut, and verify keeps failing on that alarm although the chain
// it wrote since is sound.
func TestAuditVerifyFailsOnARecordedAlarm(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	for range 3 {
		callText(t, c, "echo__echo", map[string]any{"text": "x"})
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	file := g.config().Audit.File
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if err := os.WriteFile(file, []byte(strings.Join(lines[:len(lines)-3], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, "audit", "verify", "--config", g.ConfigPath)
	if code != 1 || !strings.Contains(out, "records were cut from the end") {
		t.Errorf("verify of a cut log: exit %d\n%s", code, out)
	}

	g2 := reopenGateway(t, g)
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
	out, code = runCLI(t, "audit", "verify", "--config", g.ConfigPath)
	if code != 1 || !strings.Contains(out, "ALARM: ") || !strings.Contains(out, "records were cut from the end") || !strings.Contains(out, "FAILED") {
		t.Errorf("verify after the restart: exit %d, want 1 with the alarm\n%s", code, out)
	}
}

// Removing the audit key from the vault makes verify fail, naming both keys.
func TestAuditVerifyFailsWithoutTheKey(t *testing.T) {
	g := MustOpenGateway(t, opsConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	callText(t, c, "echo__echo", map[string]any{"text": "x"})
	oldID := g.ops.audit.KeyID()
	removeAuditKey(t, g.vault)
	out, code := runCLI(t, "audit", "verify", "--config", g.ConfigPath)
	if code != 1 || !strings.Contains(out, "the checkpoint names audit key "+oldID) || !strings.Contains(out, "the audit key was replaced or removed") {
		t.Errorf("verify after removing the audit key: exit %d, want 1\n%s", code, out)
	}
}

// By default a tools/call answers only once its audit record is in the file:
// each of many concurrent callers finds its own record there (by the HMAC
// digest of its arguments) the moment its answer arrives, with no polling.
func TestAuditRecordIsWrittenBeforeTheAnswerByDefault(t *testing.T) {
	for _, cfg := range []string{"", "audit: {wait_for_write: true}\n", "audit: {wait_for_write: true, fsync: true}\n"} {
		t.Run(strings.TrimSpace(cfg), func(t *testing.T) {
			g := MustOpenGateway(t, opsConfig+cfg)
			g.waitReady(t)
			key, err := auditKey(g.vault)
			if err != nil {
				t.Fatal(err)
			}
			file := g.config().Audit.File
			const callers, calls = 8, 10
			var wg sync.WaitGroup
			for w := range callers {
				c := MustConnect(t, g.URL()+"/mcp", g.admin())
				wg.Go(func() {
					for i := range calls {
						text := fmt.Sprintf("caller %d call %d", w, i)
						if _, isErr := callText(t, c, "echo__echo", map[string]any{"text": text}); isErr {
							t.Errorf("call %q failed", text)
							return
						}
						args, _ := json.Marshal(map[string]any{"text": text})
						digest := audit.Digest(key, args)
						data, err := os.ReadFile(file)
						if err != nil {
							t.Error(err)
							return
						}
						if !strings.Contains(string(data), `"args_digest":"`+digest+`"`) {
							t.Errorf("%q was answered before its audit record was in %s", text, filepath.Base(file))
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
