package e2e

import (
	"os"
	"testing"
)

const (
	issue18 = "pending: protocol front end (issue 18)"
	issue19 = "pending: MCP 2026-07-28 (issue 19)"
)

// pendingProtocol lists the tests that today's gateway fails and the
// protocol rewrite must turn green, by full test name, with the issue that
// promises them. They are skipped unless E2E_PENDING=1. When the rewrite
// lands, run `E2E_PENDING=1 go test ./e2e/` and delete every entry that
// passes: a pending test that passes is reported in its log.
var pendingProtocol = map[string]string{
	// The session-era conformance scenarios the gateway answers with
	// "-32601 … not supported" today.
	"TestConformance/2025-11-25/logging-set-level":     issue18,
	"TestConformance/2025-11-25/completion-complete":   issue18,
	"TestConformance/2025-11-25/resources-subscribe":   issue18,
	"TestConformance/2025-11-25/resources-unsubscribe": issue18,

	// Every 2026-07-28 scenario: the gateway refuses the version.
	"TestConformance/2026-07-28/server-stateless":                     issue19,
	"TestConformance/2026-07-28/caching":                              issue19,
	"TestConformance/2026-07-28/http-header-validation":               issue19,
	"TestConformance/2026-07-28/http-custom-header-server-validation": issue19,
	"TestConformance/2026-07-28/dns-rebinding-protection":             issue19,
	"TestConformance/2026-07-28/sep-2164-resource-not-found":          issue19,
	"TestConformance/2026-07-28/tools-list":                           issue19,
	"TestConformance/2026-07-28/resources-list":                       issue19,
	"TestConformance/2026-07-28/prompts-list":                         issue19,
	"TestConformance/2026-07-28/completion-complete":                  issue19,
	"TestConformance/2026-07-28/server-sse-multiple-streams":          issue19,

	"TestSessionClient/logging":     issue18,
	"TestSessionClient/progress":    issue18, // the last progress notification is lost about one run in five
	"TestSessionClient/sampling":    issue18,
	"TestSessionClient/elicitation": issue18,
	"TestSessionClient/subscribe":   issue18,
	"TestSessionClient/completion":  issue18,

	"TestSharedChildSampling/sequential": issue18,

	"TestModernClient/discover":     issue19,
	"TestModernClient/lists":        issue19,
	"TestModernClient/call":         issue19,
	"TestModernClient/prompt":       issue19,
	"TestModernClient/resource":     issue19,
	"TestModernClient/elicitation":  issue19,
	"TestModernClient/auto":         issue19,
	"TestModernClient/continuation": issue19,
	"TestModernListen":              issue19,
}

// pending skips t if it is listed in pendingProtocol and E2E_PENDING is not
// 1. With E2E_PENDING=1 it runs, and says so in the log if it passes.
func pending(t *testing.T) {
	t.Helper()
	reason, ok := pendingProtocol[t.Name()]
	if !ok {
		return
	}
	if os.Getenv("E2E_PENDING") != "1" {
		t.Skip(reason)
	}
	t.Cleanup(func() {
		if !t.Failed() && !t.Skipped() {
			t.Logf("%s now passes: remove it from pendingProtocol", t.Name())
		}
	})
}
