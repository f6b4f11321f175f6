package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// agentCmd runs an agent client's command with a throwaway HOME and no
// network chatter, and returns its standard output and error.
func agentCmd(t *testing.T, home string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = home
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "NO_COLOR=1", "CI=1",
		"DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
	}
	cmd.WaitDelay = 5 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestAgentClients checks that real agent clients connect to the gateway
// over HTTP with an API key and call a tool: Claude Code (`claude mcp
// list` reports Connected), the MCP Inspector's CLI (lists and calls), and
// Codex's app-server (lists and calls, no model needed). Each runs with a
// throwaway HOME. Claude Code and Codex are large optional npm packages:
// their subtests skip when `npm ci --omit=optional` left them out.
func TestAgentClients(t *testing.T) {
	needNPM(t)
	t.Parallel()
	g := startGateway(t, `
providers:
  everything:
    command: $NPM/mcp-server-everything
`)
	g.waitRunning("everything")
	url := g.url + "/mcp"

	t.Run("claude-code", func(t *testing.T) {
		dir := needPackage(t, "@anthropic-ai/claude-code")
		claude := filepath.Join(dir, "bin", "claude.exe")
		home := t.TempDir()
		for name, key := range map[string]string{"sb": g.key, "sbwrongkey": "sb_not_a_real_key"} {
			if out, errOut, err := agentCmd(t, home, claude, "mcp", "add", "--transport", "http", name, url, "--header", "Authorization: Bearer "+key); err != nil {
				t.Fatalf("claude mcp add %s: %v\n%s%s", name, err, out, errOut)
			}
		}
		out, errOut, err := agentCmd(t, home, claude, "mcp", "list")
		t.Logf("claude mcp list:\n%s%s", out, errOut)
		if err != nil {
			t.Fatalf("claude mcp list: %v", err)
		}
		lines := strings.Split(out, "\n")
		if !slices.Contains(lines, "sb: "+url+" (HTTP) - ✔ Connected") {
			t.Errorf("claude mcp list does not show sb Connected")
		}
		// The control: a wrong key must not show as Connected.
		if i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "sbwrongkey: ") }); i < 0 || strings.Contains(lines[i], "Connected") {
			t.Errorf("claude mcp list shows the wrong key as connected, or not at all")
		}
	})

	t.Run("inspector", func(t *testing.T) {
		launcher := filepath.Join(needPackage(t, "@modelcontextprotocol/inspector"), "clients", "launcher", "build", "index.js")
		node := node22(t)
		home := t.TempDir()
		inspect := func(args ...string) json.RawMessage {
			t.Helper()
			args = append([]string{launcher, "--cli", url, "--header", "Authorization: Bearer " + g.key}, args...)
			out, errOut, err := agentCmd(t, home, node, args...)
			if err != nil || !json.Valid([]byte(out)) {
				t.Fatalf("inspector --cli %s: %v\n%s%s", strings.Join(args[5:], " "), err, out, errOut)
			}
			return json.RawMessage(out)
		}
		var list struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		decode(t, inspect("--method", "tools/list"), &list)
		if !slices.ContainsFunc(list.Tools, func(tl struct {
			Name string `json:"name"`
		}) bool {
			return tl.Name == "everything__echo"
		}) {
			t.Errorf("inspector tools/list lacks everything__echo: %+v", list.Tools)
		}
		var res toolResult
		decode(t, inspect("--method", "tools/call", "--tool-name", "everything__echo", "--tool-arg", "message=inspected"), &res)
		if res.IsError || res.text() != "Echo: inspected" {
			t.Errorf("inspector tools/call everything__echo = %+v", res)
		}
	})

	t.Run("codex", func(t *testing.T) {
		needPackage(t, "@openai/codex")
		codex, err := filepath.Abs(filepath.Join(npmBin, "codex"))
		if err != nil {
			t.Fatal(err)
		}
		home := t.TempDir()
		if err := os.MkdirAll(filepath.Join(home, ".codex"), 0o700); err != nil {
			t.Fatal(err)
		}
		toml := "[mcp_servers.sb]\nurl = \"" + url + "\"\nbearer_token_env_var = \"SB_TOKEN\"\n"
		if err := os.WriteFile(filepath.Join(home, ".codex", "config.toml"), []byte(toml), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := agentCmd(t, home, "env", "SB_TOKEN="+g.key, "node", filepath.Join(mustAbs(t, "testdata"), "clients", "codex.mjs"), codex)
		out = strings.TrimSpace(out)
		last := out[strings.LastIndex(out, "\n")+1:]
		var o struct {
			Fatal      string `json:"fatal"`
			ServerInfo struct {
				Name string `json:"name"`
			} `json:"serverInfo"`
			Tools     []string        `json:"tools"`
			Call      *toolResult     `json:"call"`
			CallError json.RawMessage `json:"callError"`
		}
		if err != nil || json.Unmarshal([]byte(last), &o) != nil || o.Fatal != "" {
			t.Fatalf("codex app-server driver: %v %s\n%s\n%s", err, o.Fatal, out, errOut)
		}
		t.Logf("codex: %.1000s", last)
		if o.ServerInfo.Name != "switchboard" || !slices.Contains(o.Tools, "everything__echo") {
			t.Errorf("codex sees server %q with tools %q, want switchboard with everything__echo", o.ServerInfo.Name, o.Tools)
		}
		if o.Call == nil || o.Call.IsError || o.Call.text() != "Echo: from codex" {
			t.Errorf("codex mcpServer/tool/call everything__echo = %+v (error %s)", o.Call, o.CallError)
		}
	})
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
