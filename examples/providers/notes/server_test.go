package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// mustClient starts an in-process MCP client against a notes server on dir.
func mustClient(tb testing.TB, dir string) *client.Client {
	tb.Helper()
	st, err := openStore(dir)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := client.NewInProcessClient(newServer(st))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		tb.Fatal(err)
	}
	return c
}

// callTool calls a tool and returns its result; transport errors fail the test.
func callTool(tb testing.TB, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	tb.Helper()
	res, err := tryCall(c, name, args)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return res
}

// tryCall calls a tool with a deadline; safe to use from any goroutine.
func tryCall(c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return c.CallTool(ctx, req)
}

// textOf joins the text blocks of a result.
func textOf(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func TestToolsAndAnnotations(t *testing.T) {
	c := mustClient(t, t.TempDir())
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	type hints struct{ readOnly, destructive bool }
	want := map[string]hints{
		"list_notes":   {true, false},
		"search_notes": {true, false},
		"read_note":    {true, false},
		"write_note":   {false, true},
		"append_note":  {false, false},
		"delete_note":  {false, true},
	}
	if len(res.Tools) != len(want) {
		t.Fatalf("got %d tools, want %d", len(res.Tools), len(want))
	}
	for _, tool := range res.Tools {
		w, ok := want[tool.Name]
		if !ok {
			t.Errorf("unexpected tool %q", tool.Name)
			continue
		}
		a := tool.Annotations
		if a.ReadOnlyHint == nil || *a.ReadOnlyHint != w.readOnly || a.DestructiveHint == nil || *a.DestructiveHint != w.destructive {
			t.Errorf("%s: readOnly=%v destructive=%v, want %+v", tool.Name, deref(a.ReadOnlyHint), deref(a.DestructiveHint), w)
		}
		if a.OpenWorldHint == nil || *a.OpenWorldHint {
			t.Errorf("%s: openWorldHint should be false", tool.Name)
		}
		if tool.Description == "" {
			t.Errorf("%s: no description", tool.Name)
		}
	}

	tmpl, err := c.ListResourceTemplates(context.Background(), mcp.ListResourceTemplatesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tmpl.ResourceTemplates) != 1 || tmpl.ResourceTemplates[0].URITemplate.Raw() != "notes://{slug}" {
		t.Fatalf("templates = %+v", tmpl.ResourceTemplates)
	}
	prompts, err := c.ListPrompts(context.Background(), mcp.ListPromptsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(prompts.Prompts) != 1 || prompts.Prompts[0].Name != "summarize_notes" {
		t.Fatalf("prompts = %+v", prompts.Prompts)
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func TestNotesWorkflow(t *testing.T) {
	dir := t.TempDir()
	c := mustClient(t, dir)

	res := callTool(t, c, "list_notes", nil)
	if res.IsError || !strings.Contains(textOf(res), "No notes yet") {
		t.Fatalf("empty list: %s", textOf(res))
	}

	res = callTool(t, c, "write_note", map[string]any{
		"title": "Alpha onboarding", "body": "Alpha's VPN is vpn.alpha.example.", "tags": []string{"client/alpha", "Onboarding"},
	})
	if res.IsError || !strings.Contains(textOf(res), "Created note alpha-onboarding") {
		t.Fatalf("write: %s", textOf(res))
	}
	res = callTool(t, c, "write_note", map[string]any{
		"title": "Beta onboarding", "body": "Beta uses SSO.", "tags": []string{"client/beta", "onboarding"}, "slug": "beta",
	})
	if res.IsError {
		t.Fatalf("write with slug: %s", textOf(res))
	}
	if _, err := os.Stat(filepath.Join(dir, "beta.md")); err != nil {
		t.Fatalf("explicit slug not used: %v", err)
	}

	res = callTool(t, c, "list_notes", map[string]any{"tag": "CLIENT/ALPHA"})
	var listed struct {
		Notes []summary `json:"notes"`
	}
	mustStructured(t, res, &listed)
	if len(listed.Notes) != 1 || listed.Notes[0].Slug != "alpha-onboarding" || strings.Join(listed.Notes[0].Tags, ",") != "client/alpha,onboarding" {
		t.Fatalf("list by tag: %+v", listed)
	}

	res = callTool(t, c, "search_notes", map[string]any{"query": "vpn ALPHA"})
	var found struct {
		Results []hit `json:"results"`
	}
	mustStructured(t, res, &found)
	if len(found.Results) != 1 || found.Results[0].Slug != "alpha-onboarding" || !strings.Contains(found.Results[0].Snippet, "vpn.alpha.example") {
		t.Fatalf("search: %+v", found)
	}
	if !strings.Contains(textOf(res), "alpha-onboarding") {
		t.Fatalf("search text: %s", textOf(res))
	}

	res = callTool(t, c, "append_note", map[string]any{"slug": "beta", "text": "Contact: ops@beta.example"})
	if res.IsError {
		t.Fatalf("append: %s", textOf(res))
	}
	res = callTool(t, c, "read_note", map[string]any{"slug": "beta"})
	text := textOf(res)
	if res.IsError || !strings.Contains(text, "title: Beta onboarding") || !strings.HasSuffix(text, "Beta uses SSO.\n\nContact: ops@beta.example\n") {
		t.Fatalf("read: %q", text)
	}

	rr, err := c.ReadResource(context.Background(), mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "notes://beta"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.Contents) != 1 {
		t.Fatalf("resource contents: %+v", rr.Contents)
	}
	tc, ok := rr.Contents[0].(mcp.TextResourceContents)
	if !ok || tc.Text != text || tc.MIMEType != "text/markdown" || tc.URI != "notes://beta" {
		t.Fatalf("resource = %+v", rr.Contents[0])
	}

	pr, err := c.GetPrompt(context.Background(), mcp.GetPromptRequest{Params: mcp.GetPromptParams{
		Name: "summarize_notes", Arguments: map[string]string{"tag": "onboarding"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	pt := pr.Messages[0].Content.(mcp.TextContent).Text
	if !strings.Contains(pt, "[alpha-onboarding]") || !strings.Contains(pt, "[beta]") || !strings.Contains(pt, `tagged "onboarding"`) {
		t.Fatalf("prompt = %q", pt)
	}
	pr, err = c.GetPrompt(context.Background(), mcp.GetPromptRequest{Params: mcp.GetPromptParams{
		Name: "summarize_notes", Arguments: map[string]string{"query": "sso"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	pt = pr.Messages[0].Content.(mcp.TextContent).Text
	if strings.Contains(pt, "[alpha-onboarding]") || !strings.Contains(pt, "[beta]") {
		t.Fatalf("prompt by query = %q", pt)
	}

	res = callTool(t, c, "delete_note", map[string]any{"slug": "beta"})
	if res.IsError {
		t.Fatalf("delete: %s", textOf(res))
	}
	res = callTool(t, c, "read_note", map[string]any{"slug": "beta"})
	if !res.IsError || !strings.Contains(textOf(res), "not found") {
		t.Fatalf("read deleted: %s", textOf(res))
	}
}

func mustStructured(tb testing.TB, res *mcp.CallToolResult, v any) {
	tb.Helper()
	if res.IsError {
		tb.Fatalf("tool error: %s", textOf(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatal(err)
	}
}

func TestToolErrors(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.md"), []byte("top secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "notes")
	c := mustClient(t, dir)
	rel, _ := filepath.Rel(dir, filepath.Join(outside, "secret"))

	tests := []struct {
		name string
		tool string
		args map[string]any
		want string
	}{
		{"read traversal", "read_note", map[string]any{"slug": rel}, "invalid argument"},
		{"read absolute", "read_note", map[string]any{"slug": filepath.Join(outside, "secret")}, "invalid argument"},
		{"read missing", "read_note", map[string]any{"slug": "nope"}, "not found"},
		{"read no slug", "read_note", map[string]any{}, "slug"},
		{"write traversal slug", "write_note", map[string]any{"title": "x", "body": "y", "slug": "../../x"}, "invalid argument"},
		{"write no title", "write_note", map[string]any{"body": "y"}, "title"},
		{"write bad tag", "write_note", map[string]any{"title": "x", "body": "y", "tags": []string{"no spaces"}}, "tag"},
		{"append missing", "append_note", map[string]any{"slug": "nope", "text": "x"}, "not found"},
		{"append empty", "append_note", map[string]any{"slug": "nope", "text": " "}, "text is empty"},
		{"delete traversal", "delete_note", map[string]any{"slug": ".."}, "invalid argument"},
		{"search empty", "search_notes", map[string]any{"query": "  "}, "query is empty"},
		{"list bad tag", "list_notes", map[string]any{"tag": "a b"}, "invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := callTool(t, c, tt.tool, tt.args)
			if !res.IsError || !strings.Contains(textOf(res), tt.want) {
				t.Fatalf("got isError=%v %q, want error containing %q", res.IsError, textOf(res), tt.want)
			}
			if strings.Contains(textOf(res), dir) {
				t.Fatalf("error leaks a path: %q", textOf(res))
			}
		})
	}
	if _, err := os.Stat(filepath.Join(outside, "secret.md")); err != nil {
		t.Fatalf("file outside the store was touched: %v", err)
	}
	if _, err := c.ReadResource(context.Background(), mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "notes://nope"}}); err == nil {
		t.Fatal("reading a missing note resource succeeded")
	}
}

func TestConcurrentWrites(t *testing.T) {
	c := mustClient(t, t.TempDir())
	const n = 16
	errs := make(chan string, n*2)
	done := make(chan struct{})
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			res, err := tryCall(c, "write_note", map[string]any{"title": "shared", "body": strings.Repeat("x", i+1)})
			if err != nil || res.IsError {
				errs <- fmt.Sprint("write: ", err, res)
				return
			}
			res, err = tryCall(c, "read_note", map[string]any{"slug": "shared"})
			if err != nil || res.IsError || !strings.Contains(textOf(res), "title: shared") {
				errs <- fmt.Sprint("read: ", err, res)
			}
		}()
	}
	for range n {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
