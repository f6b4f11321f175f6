package main

import (
	"strings"
	"testing"
	"time"
)

// TestMemoryLimitFromGatewayYAML: limits.max_memory_mb reaches the child; a
// provider that allocates without bound is killed and restarted while its
// sibling keeps its pid, and status names the mechanism in force.
func TestMemoryLimitFromGatewayYAML(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
providers:
  hog:
    command: BIN/testprovider
    env: {TP_MODE: leak}
    limits: {max_memory_mb: 64}
  calm:
    command: BIN/echo
`)
	waitFor(t, 20*time.Second, func() bool { return g.pids(t)["calm"] != 0 }, "calm to run")
	calm := g.pids(t)["calm"]
	waitFor(t, 60*time.Second, func() bool {
		for _, st := range g.health().Providers {
			if st.Provider == "hog" && st.Restarts > 0 {
				return true
			}
		}
		return false
	}, "the over-limit provider to be killed and restarted")
	for _, st := range g.health().Providers {
		if st.Provider == "hog" && (st.Limits == "" || !strings.Contains(st.Limits, "64 MiB")) {
			t.Errorf("hog limits = %q, want the mechanism and 64 MiB", st.Limits)
		}
	}
	if now := g.pids(t)["calm"]; now != calm {
		t.Errorf("the sibling restarted: pid %d → %d", calm, now)
	}
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	if txt, _ := callText(t, c, "calm__echo", map[string]any{"text": "fine"}); txt != "fine" {
		t.Errorf("sibling answered %q", txt)
	}
}
