package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conformanceCase is one server scenario of the official MCP conformance
// runner (@modelcontextprotocol/conformance).
type conformanceCase struct {
	scenario string
	// next runs it with 0.2.0-alpha.12 (npm alias conformance-next), which
	// has the 2026-07-28 scenarios, instead of 0.1.16.
	next bool
	// spec is passed as --spec-version when set.
	spec string
	// notTestable lists the checks that cannot pass through a gateway that
	// prefixes names, with why; they are logged, not failed.
	notTestable map[string]string
}

// bareDiagnostic says why a check cannot pass: it calls a diagnostic tool
// by a bare name that only a conformance test server has.
func bareDiagnostic(tool string) string {
	return "needs the conformance server's diagnostic tool " + tool + " by its bare name"
}

// The scenarios the gateway must pass with server-everything behind it.
// Scenarios left out call tools, prompts or resources by the bare names of
// the runner's own test server (tools-call-*, prompts-get-*,
// resources-read-*, resources-templates-read, json-schema-2020-12,
// elicitation-sep1034-defaults, elicitation-sep1330-enums,
// server-sse-polling, every input-required-result-*), or test extensions
// (tasks-*, sep-2640-skills-*): through a prefixing gateway those names do
// not exist. TestSessionClient covers the tools-call ones through prefixed
// names.
var conformanceCases = map[string][]conformanceCase{
	"2025-11-25": {
		{scenario: "server-initialize"},
		{scenario: "ping"},
		{scenario: "logging-set-level"},
		// Calls completion/complete on the runner's own prompt
		// test_prompt_with_arguments: it passes only if the gateway answers
		// an unknown prompt ref with a completion (e.g. empty values).
		{scenario: "completion-complete"},
		{scenario: "tools-list"},
		{scenario: "resources-list"},
		// Both subscribe to test://watched-resource, a URI no provider
		// owns: they pass only if the gateway accepts that.
		{scenario: "resources-subscribe"},
		{scenario: "resources-unsubscribe"},
		{scenario: "prompts-list"},
		{scenario: "server-sse-multiple-streams"},
		{scenario: "dns-rebinding-protection"},
		{scenario: "server-session-lifecycle", next: true},
	},
	"2026-07-28": {
		{scenario: "server-stateless", next: true, spec: "2026-07-28", notTestable: map[string]string{
			"sep-2575-server-rejects-undeclared-capability":              bareDiagnostic("test_missing_capability"),
			"sep-2575-missing-capability-http-400":                       bareDiagnostic("test_missing_capability"),
			"sep-2575-http-server-no-independent-requests-on-stream":     bareDiagnostic("test_streaming_elicitation"),
			"sep-2575-server-no-log-without-loglevel":                    bareDiagnostic("test_logging_tool"),
			"sep-2575-server-sends-tools-list-changed-on-subscription":   bareDiagnostic("test_trigger_tool_change"),
			"sep-2575-server-sends-prompts-list-changed-on-subscription": bareDiagnostic("test_trigger_prompt_change"),
		}},
		{scenario: "caching", next: true, spec: "2026-07-28"},
		{scenario: "http-header-validation", next: true, spec: "2026-07-28"},
		// Needs a tool with an x-mcp-header parameter: asker__region.
		{scenario: "http-custom-header-server-validation", next: true, spec: "2026-07-28"},
		{scenario: "dns-rebinding-protection", next: true, spec: "2026-07-28"},
		// Reads test://nonexistent-resource-for-conformance-testing: the
		// gateway must answer -32602 with data.uri itself (SHOULDs, held
		// as musts here).
		{scenario: "sep-2164-resource-not-found", next: true, spec: "2026-07-28"},
		{scenario: "tools-list", next: true, spec: "2026-07-28"},
		{scenario: "resources-list", next: true, spec: "2026-07-28"},
		{scenario: "prompts-list", next: true, spec: "2026-07-28"},
		{scenario: "completion-complete", next: true, spec: "2026-07-28"},
		{scenario: "server-sse-multiple-streams", next: true, spec: "2026-07-28"},
	},
}

// TestConformance runs the official conformance runner's server scenarios
// against the gateway with server-everything (and asker, for a tool with an
// x-mcp-header parameter) behind it. Authentication is off: the runner
// cannot send an Authorization header. Every check must succeed; a warning
// (a SHOULD the gateway misses) fails too, unless the check is listed as not
// testable through a prefix.
func TestConformance(t *testing.T) {
	needNPM(t)
	node := node22(t)
	runners := map[bool]string{
		false: filepath.Join(needPackage(t, "@modelcontextprotocol/conformance"), "dist", "index.js"),
		true:  filepath.Join(needPackage(t, "conformance-next"), "dist", "index.js"),
	}
	t.Parallel()
	g := startGatewayBase(t, `
listen: 127.0.0.1:0
data_dir: ./data
log: {level: debug}
auth:
  disabled: true
  rate_limit: {rps: 1000000, burst: 1000000}
`, `
providers:
  everything:
    command: $NPM/mcp-server-everything
  asker:
    command: $BIN/asker
`)
	g.waitRunning("everything", "asker")
	for _, era := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(era, func(t *testing.T) {
			for _, c := range conformanceCases[era] {
				t.Run(c.scenario, func(t *testing.T) {
					runConformance(t, node, runners[c.next], g.url+"/mcp", c)
				})
			}
		})
	}
}

// conformanceCheck is one entry of the runner's checks.json.
type conformanceCheck struct {
	ID           string `json:"id"`
	Description  string `json:"description"`
	Status       string `json:"status"`
	ErrorMessage string `json:"errorMessage"`
}

func runConformance(t *testing.T, node, runner, url string, c conformanceCase) {
	out := t.TempDir()
	args := []string{runner, "server", "--url", url, "--scenario", c.scenario, "-o", out}
	if c.spec != "" {
		args = append(args, "--spec-version", c.spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + out, "NO_COLOR=1"}
	cmd.WaitDelay = 5 * time.Second
	runOut, runErr := cmd.CombinedOutput()
	files, _ := filepath.Glob(filepath.Join(out, "server-"+c.scenario+"-*", "checks.json"))
	if len(files) != 1 {
		t.Fatalf("conformance %s wrote no checks.json (exit: %v):\n%s", c.scenario, runErr, runOut)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var checks []conformanceCheck
	if err := json.Unmarshal(b, &checks); err != nil {
		t.Fatalf("checks.json: %v", err)
	}
	if len(checks) == 0 {
		t.Fatalf("conformance %s ran no checks:\n%s", c.scenario, runOut)
	}
	var failed []string
	for _, ck := range checks {
		switch ck.Status {
		case "SUCCESS", "INFO", "SKIPPED":
			continue
		}
		if why, ok := c.notTestable[ck.ID]; ok {
			t.Logf("not testable through a prefix: %s %s (%s): %s", ck.ID, ck.Status, why, ck.ErrorMessage)
			continue
		}
		failed = append(failed, fmt.Sprintf("%s %s: %s: %s", ck.Status, ck.ID, ck.Description, ck.ErrorMessage))
	}
	if len(failed) > 0 {
		t.Errorf("conformance %s: %d of %d checks failed:\n  %s", c.scenario, len(failed), len(checks), strings.Join(failed, "\n  "))
	}
}
