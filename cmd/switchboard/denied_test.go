package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/vault"
)

const deniedConfig = `
listen: 127.0.0.1:0
data_dir: ./data
roles:
  reader: {providers: [echo], tools: ["echo__echo"]}
providers:
  echo:
    command: BIN/echo
`

// TestDeniedCallsAreAuditedWithWhatHappened: a call of a tool that does not
// exist and one of a tool the caller's role hides are both answered "tool
// not found", but the audit log says which, never "internal error".
func TestDeniedCallsAreAuditedWithWhatHappened(t *testing.T) {
	g := MustOpenGateway(t, deniedConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.userKey(t, "rita", "reader"))
	if _, err := tryCall(c, "nope__x", nil); err == nil {
		t.Fatal("absent tool call succeeded")
	}
	if _, err := tryCall(c, "echo__add", map[string]any{"a": 1, "b": 2}); err == nil {
		t.Fatal("a tool the role does not grant was called")
	}
	recs := g.waitRecords(t, "the two denials", func(recs []audit.Record) bool { return toolCalls(recs)["denied"] >= 2 })
	errs := map[string]string{}
	for _, r := range recs {
		if r.Type == audit.TypeToolCall && r.Outcome == "denied" {
			errs[r.Tool] = r.Error
		}
	}
	if e := errs["nope__x"]; e != "no such tool: nope__x" {
		t.Errorf("absent tool audited as %q", e)
	}
	if e := errs["add"]; !strings.Contains(e, "hidden from this caller by policy") {
		t.Errorf("hidden tool audited as %q (all: %v)", e, errs)
	}
	for tool, e := range errs {
		if strings.Contains(e, "internal error") {
			t.Errorf("%s audited as %q", tool, e)
		}
	}
}

// TestUserAddPrintsTheConfiguredURL: `user add` prints the MCP URL the
// config's listen address gives (or its resource_url), not a placeholder.
func TestUserAddPrintsTheConfiguredURL(t *testing.T) {
	tests := []struct {
		name, extra, want string
	}{
		{"listen", "listen: 127.0.0.1:18473\n", "http://127.0.0.1:18473/mcp"},
		{"wildcard", "listen: 0.0.0.0:18474\nauth: {allowed_hosts: [gw.example]}\n", "http://127.0.0.1:18474/mcp"},
		{"resource_url", "listen: 127.0.0.1:18475\nauth: {resource_url: https://gw.example/mcp}\n", "https://gw.example/mcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "gateway.yaml")
			if err := os.WriteFile(cfg, []byte(tt.extra+"data_dir: ./data\nproviders:\n  a: {command: "+binDir+"/echo}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out, errOut, code := runBin(t, cfg, vault.GenerateKey().Encode(), "", "user", "add", "bob", "--role", "admin")
			if code != 0 || !strings.Contains(out, "claude mcp add --transport http switchboard "+tt.want+" ") {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant %s", code, out, errOut, tt.want)
			}
		})
	}
}
