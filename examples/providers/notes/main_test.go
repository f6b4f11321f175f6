package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// buildBinary compiles this command into a temp dir and returns its path.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "notes")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinaryOverStdio runs the real binary as a child and talks MCP to it over stdio,
// once per protocol era (the 2026-07-28 stateless core and the legacy handshake).
func TestBinaryOverStdio(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := buildBinary(t)

	for _, era := range []struct {
		name string
		opts []client.ClientOption
	}{
		{"modern", nil},
		{"legacy", []client.ClientOption{client.WithLegacyProtocolOnly()}},
	} {
		t.Run(era.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "does", "not", "exist", "yet")
			tr := transport.NewStdio(bin, []string{"NOTES_DIR=" + dir})
			c := client.NewClient(tr, era.opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ir, err := c.Initialize(ctx, mcp.InitializeRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if ir.ServerInfo.Name != "notes" || !strings.Contains(ir.Instructions, "search_notes") {
				t.Fatalf("initialize = %+v", ir)
			}

			res := callTool(t, c, "write_note", map[string]any{"title": "Over stdio", "body": "hello from a real child", "tags": []string{"e2e"}})
			if res.IsError {
				t.Fatal(textOf(res))
			}
			data, err := os.ReadFile(filepath.Join(dir, "over-stdio.md"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), "---\ntitle: Over stdio\ntags: [e2e]\n") || !strings.HasSuffix(string(data), "\n---\n\nhello from a real child\n") {
				t.Fatalf("file = %q", data)
			}
			res = callTool(t, c, "search_notes", map[string]any{"query": "REAL child"})
			if res.IsError || !strings.Contains(textOf(res), "over-stdio") {
				t.Fatalf("search = %s", textOf(res))
			}
		})
	}
}

func TestBinaryRequiresNotesDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := buildBinary(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NOTES_DIR is not set") {
		t.Fatalf("err=%v out=%q", err, out)
	}
}
