package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// auditToolCalls counts the tool_call records in the gateway's audit log.
func (g *gateway) auditToolCalls(t testing.TB) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(g.dir, "data", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		var r struct {
			Type    string `json:"type"`
			Outcome string `json:"outcome"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Type == "tool_call" && r.Outcome == "ok" {
			n++
		}
	}
	return n
}

// TestAuditRecordSurvivesSIGKILLAfterTheAnswer: by default a tools/call's
// audit record is in the file before its answer leaves the gateway. Each
// answer finds its record already there, and SIGKILLing the gateway the
// moment the last of many concurrent answers arrives loses no record of an
// answered call; the log then verifies with the CLI.
func TestAuditRecordSurvivesSIGKILLAfterTheAnswer(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `
providers:
  echo:
    command: $BIN/echo
`)
	g.waitRunning("echo")
	c := g.connect(t)
	const serial = 20
	for i := range serial {
		mustCall(t, c, "echo__echo", map[string]any{"text": fmt.Sprintf("serial %d", i)})
		if got := g.auditToolCalls(t); got != i+1 {
			t.Fatalf("after answer %d the audit log holds %d tool_call records: the answer left before its record", i+1, got)
		}
	}

	const clients, calls = 8, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := serial
	for range clients {
		cc := g.connect(t)
		wg.Go(func() {
			for i := range calls {
				if _, isErr, err := call(ctxT(t, 30*time.Second), cc, "echo__echo", map[string]any{"text": fmt.Sprintf("concurrent %d", i)}); err != nil || isErr {
					t.Errorf("call: %v (tool error %v)", err, isErr)
					return
				}
				mu.Lock()
				answered++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if !g.stop(syscall.SIGKILL, 10*time.Second) {
		t.Fatal("gateway still running after SIGKILL")
	}
	if got := g.auditToolCalls(t); got != answered {
		t.Errorf("after SIGKILL the audit log holds %d tool_call records for %d answered calls", got, answered)
	}

	cmd := exec.Command(filepath.Join(binDir, "switchboard"), "audit", "verify", "--config", g.cfg)
	cmd.Env, cmd.Dir = g.env, g.dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok: ") {
		t.Errorf("switchboard audit verify after SIGKILL: %v\n%s", err, out)
	}
}
