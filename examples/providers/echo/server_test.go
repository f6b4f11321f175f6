package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// mustInProcess starts an in-process client against newServer(o).
func mustInProcess(tb testing.TB, o options) *client.Client {
	tb.Helper()
	c, err := client.NewInProcessClient(newServer(o))
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

// call calls a tool with a deadline. It is safe to use from any goroutine.
func call(ctx context.Context, c *client.Client, name string, args map[string]any, meta *mcp.Meta) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	req.Params.Meta = meta
	return c.CallTool(ctx, req)
}

func mustCall(tb testing.TB, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	tb.Helper()
	res, err := call(context.Background(), c, name, args, nil)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return res
}

// onlyText returns the single text block of res, failing otherwise.
func onlyText(tb testing.TB, res *mcp.CallToolResult) string {
	tb.Helper()
	if len(res.Content) != 1 {
		tb.Fatalf("want 1 content block, got %d", len(res.Content))
	}
	tc, ok := res.Content[0].(mcp.TextContent)
	if !ok {
		tb.Fatalf("content is %T, not text", res.Content[0])
	}
	return tc.Text
}

func TestToolList(t *testing.T) {
	for _, crash := range []bool{false, true} {
		c := mustInProcess(t, options{crashTool: crash})
		res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		readOnly := map[string]bool{"echo": true, "env": true, "add": true, "sleep": false}
		if crash {
			readOnly["crash"] = false
		}
		if len(res.Tools) != len(readOnly) {
			t.Fatalf("crash=%v: %d tools, want %d", crash, len(res.Tools), len(readOnly))
		}
		for _, tool := range res.Tools {
			want, ok := readOnly[tool.Name]
			if !ok {
				t.Fatalf("unexpected tool %q", tool.Name)
			}
			if h := tool.Annotations.ReadOnlyHint; h == nil || *h != want {
				t.Errorf("%s: readOnlyHint = %v, want %v", tool.Name, h, want)
			}
			if h := tool.Annotations.OpenWorldHint; h == nil || *h {
				t.Errorf("%s: openWorldHint should be false", tool.Name)
			}
		}
	}
}

func TestTools(t *testing.T) {
	t.Setenv("ECHO_TEST_VALUE", "s3cr3t value with spaces")
	t.Setenv("ECHO_TEST_EMPTY", "")
	c := mustInProcess(t, options{})
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	tests := []struct {
		name    string
		tool    string
		args    map[string]any
		want    string
		wantErr bool
	}{
		{"echo", "echo", map[string]any{"text": "hello"}, "hello", false},
		{"echo verbatim", "echo", map[string]any{"text": "  tabs\tnewlines\n\"quotes\" {json} ünïcødé 🚀\n"}, "  tabs\tnewlines\n\"quotes\" {json} ünïcødé 🚀\n", false},
		{"echo empty", "echo", map[string]any{"text": ""}, "", false},
		{"echo 64KiB", "echo", map[string]any{"text": big}, big, false},
		{"echo not a string", "echo", map[string]any{"text": 42}, `"text" must be a string`, true},
		{"env set", "env", map[string]any{"name": "ECHO_TEST_VALUE"}, "s3cr3t value with spaces", false},
		{"env empty", "env", map[string]any{"name": "ECHO_TEST_EMPTY"}, "", false},
		{"env unset", "env", map[string]any{"name": "ECHO_TEST_NOT_SET_ANYWHERE"}, "environment variable ECHO_TEST_NOT_SET_ANYWHERE is not set", true},
		{"env no name", "env", map[string]any{}, `"name"`, true},
		{"add", "add", map[string]any{"a": 2, "b": 3}, "5", false},
		{"add floats", "add", map[string]any{"a": 0.5, "b": -2.25}, "-1.75", false},
		{"add missing", "add", map[string]any{"a": 1}, `"b"`, true},
		{"sleep", "sleep", map[string]any{"ms": 1}, "slept 1 ms", false},
		{"sleep negative", "sleep", map[string]any{"ms": -1}, "ms must be between", true},
		{"sleep too long", "sleep", map[string]any{"ms": 1e9}, "ms must be between", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustCall(t, c, tt.tool, tt.args)
			got := onlyText(t, res)
			if res.IsError != tt.wantErr {
				t.Fatalf("isError = %v (%q), want %v", res.IsError, got, tt.wantErr)
			}
			if tt.wantErr && !strings.Contains(got, tt.want) || !tt.wantErr && got != tt.want {
				if len(got) > 100 {
					got = got[:100] + "..."
				}
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAddStructured(t *testing.T) {
	c := mustInProcess(t, options{})
	res := mustCall(t, c, "add", map[string]any{"a": 40, "b": 2})
	m, ok := res.StructuredContent.(map[string]any)
	if !ok || m["sum"] != float64(42) {
		t.Fatalf("structured = %#v", res.StructuredContent)
	}
}

func TestSleepCancel(t *testing.T) {
	c := mustInProcess(t, options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		res, err := call(ctx, c, "sleep", map[string]any{"ms": 60_000}, nil)
		if err == nil && !res.IsError {
			err = fmt.Errorf("cancelled call succeeded: %v", res.Content)
		} else {
			err = nil // in-process the handler's error result arrives; over a transport the call fails
		}
		done <- err
	}()
	time.AfterFunc(50*time.Millisecond, cancel)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("cancel did not stop the call")
	}
	if time.Since(start) > 20*time.Second {
		t.Fatal("cancel was not prompt")
	}
}

func TestCrashToolUsesExit(t *testing.T) {
	var code atomic.Int64
	c := mustInProcess(t, options{crashTool: true, exit: func(c int) { code.Store(int64(c)) }})
	mustCall(t, c, "crash", map[string]any{"code": 7})
	if code.Load() != 7 {
		t.Fatalf("exit code = %d", code.Load())
	}
}

func TestProgressWriterWait(t *testing.T) {
	var sink strings.Builder
	pw := newProgressWriter(&sink)
	done := make(chan struct{})
	go func() {
		pw.wait(context.Background(), "tok", 2)
		close(done)
	}()
	pw.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1}}` + "\n"))
	pw.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"other","progress":2}}` + "\n"))
	select {
	case <-done:
		t.Fatal("wait returned before its progress was written")
	case <-time.After(20 * time.Millisecond):
	}
	pw.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":2}}` + "\n"))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return after its progress was written")
	}
	if strings.Count(sink.String(), "\n") != 3 {
		t.Fatalf("writes not forwarded: %q", sink.String())
	}
	// A numeric token, already written, returns at once; a context end unblocks.
	pw.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":3}}` + "\n"))
	pw.wait(context.Background(), float64(7), 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pw.wait(ctx, "never", 1)
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if len(pw.waiters) != 0 || len(pw.written) != 1 { // only "other" remains
		t.Fatalf("state not cleaned: waiters=%v written=%v", pw.waiters, pw.written)
	}
}
