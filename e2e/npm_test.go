package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// needNPM skips the test when the pinned npm servers are not installed.
func needNPM(t *testing.T) {
	t.Helper()
	for _, s := range []string{"everything", "filesystem", "memory"} {
		if _, err := os.Stat(filepath.Join(npmBin, "mcp-server-"+s)); err != nil {
			t.Skipf("e2e/node_modules/.bin/mcp-server-%s is missing: run `make npm` (npm ci in e2e/) to run the tests against real npm MCP servers", s)
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the npm MCP servers need Node 20+")
	}
}

var validToolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// TestRealNPMServers serves three third-party MCP servers from npm through
// the gateway and checks their namespaced tool sets and one real call each,
// a prompt and a resource.
func TestRealNPMServers(t *testing.T) {
	needNPM(t)
	t.Parallel()
	files, mem := t.TempDir(), t.TempDir()
	g := startGateway(t, `
providers:
  everything:
    command: $NPM/mcp-server-everything
  fs:
    command: $NPM/mcp-server-filesystem
    args: [`+files+`]
  memory:
    command: $NPM/mcp-server-memory
    env: {MEMORY_FILE_PATH: `+filepath.Join(mem, "memory.jsonl")+`}
`)
	g.waitRunning("everything", "fs", "memory")
	c := g.connect(t)

	names := toolNames(t, c)
	for _, want := range []string{
		"everything__echo", "everything__get-sum", "everything__get-env",
		"fs__read_text_file", "fs__write_file", "fs__list_directory", "fs__list_allowed_directories",
		"memory__create_entities", "memory__read_graph", "memory__search_nodes",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list lacks %s; got %v", want, names)
		}
	}
	for _, n := range names {
		if !validToolName.MatchString(n) {
			t.Errorf("exposed tool name %q breaks ^[a-zA-Z0-9_-]{1,64}$", n)
		}
		prefix, _, ok := strings.Cut(n, "__")
		if !ok || !slices.Contains([]string{"everything", "fs", "memory"}, prefix) {
			t.Errorf("tool %q is not namespaced by a configured provider", n)
		}
	}

	// everything: echo and a sum.
	if got := mustCall(t, c, "everything__echo", map[string]any{"message": "héllo; $(x) `y`"}); !strings.Contains(got, "héllo; $(x) `y`") {
		t.Errorf("everything__echo = %q", got)
	}
	if got := mustCall(t, c, "everything__get-sum", map[string]any{"a": 40, "b": 2}); !strings.Contains(got, "42") {
		t.Errorf("everything__get-sum = %q, want 42", got)
	}

	// filesystem: write through the gateway, see it on disk, read it back.
	path := filepath.Join(files, "hello.txt")
	mustCall(t, c, "fs__write_file", map[string]any{"path": path, "content": "written through switchboard\n"})
	if b, err := os.ReadFile(path); err != nil || string(b) != "written through switchboard\n" {
		t.Errorf("file on disk = %q, %v", b, err)
	}
	if got := mustCall(t, c, "fs__read_text_file", map[string]any{"path": path}); !strings.Contains(got, "written through switchboard") {
		t.Errorf("fs__read_text_file = %q", got)
	}
	// Outside its allowed directory the server refuses; the gateway passes
	// the refusal on as a tool error, not a crash.
	if text, isErr, err := call(ctxT(t, 30*time.Second), c, "fs__read_text_file", map[string]any{"path": "/etc/passwd"}); err == nil && !isErr {
		t.Errorf("fs__read_text_file /etc/passwd succeeded: %.80q", text)
	}

	// memory: create an entity, then find it in the graph and on disk.
	mustCall(t, c, "memory__create_entities", map[string]any{"entities": []any{
		map[string]any{"name": "switchboard_e2e", "entityType": "test", "observations": []string{"created through the gateway"}},
	}})
	if got := mustCall(t, c, "memory__read_graph", map[string]any{}); !strings.Contains(got, "switchboard_e2e") {
		t.Errorf("memory__read_graph = %q, lacks the entity", got)
	}
	if b, err := os.ReadFile(filepath.Join(mem, "memory.jsonl")); err != nil || !strings.Contains(string(b), "switchboard_e2e") {
		t.Errorf("MEMORY_FILE_PATH = %q, %v", b, err)
	}

	// A prompt, namespaced like a tool.
	preq := mcp.GetPromptRequest{}
	preq.Params.Name = "everything__simple-prompt"
	if pres, err := c.GetPrompt(ctxT(t, 30*time.Second), preq); err != nil {
		t.Errorf("prompts/get everything__simple-prompt: %v", err)
	} else if len(pres.Messages) == 0 {
		t.Error("prompts/get everything__simple-prompt returned no messages")
	} else if tc, ok := pres.Messages[0].Content.(mcp.TextContent); !ok || !strings.Contains(tc.Text, "simple prompt") {
		t.Errorf("prompts/get everything__simple-prompt = %#v", pres.Messages[0])
	}

	// A resource, by the URI the server gave it.
	rl, err := c.ListResources(ctxT(t, 30*time.Second), mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatalf("resources/list: %v", err)
	}
	var uri string
	for _, r := range rl.Resources {
		if strings.HasPrefix(r.URI, "demo://resource/static/") {
			uri = r.URI
			break
		}
	}
	if uri == "" {
		t.Fatalf("resources/list has no demo://resource/static/ resource: %v", rl.Resources)
	}
	rreq := mcp.ReadResourceRequest{}
	rreq.Params.URI = uri
	rres, err := c.ReadResource(ctxT(t, 30*time.Second), rreq)
	if err != nil {
		t.Fatalf("resources/read %s: %v", uri, err)
	}
	if len(rres.Contents) == 0 {
		t.Errorf("resources/read %s returned nothing", uri)
	} else if tc, ok := rres.Contents[0].(mcp.TextResourceContents); !ok || tc.Text == "" {
		t.Errorf("resources/read %s = %#v, want text", uri, rres.Contents[0])
	}
}
