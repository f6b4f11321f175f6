package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// newFixtureServer returns an mcp-go server with the tools the tests call:
// echo, progress (two progress notifications, then a result), ask (an
// elicitation: a server request in the session era, input_required in the
// stateless one), slow (waits until cancelled or for ms milliseconds), log
// (a log message, then a result), query (an x-mcp-header parameter).
func newFixtureServer() *server.MCPServer {
	s := server.NewMCPServer("fixture", "1.0.0",
		server.WithToolCapabilities(true),
		server.WithLogging(),
		server.WithResourceCapabilities(true, true),
		server.WithPromptCapabilities(true),
		server.WithElicitation(),
	)
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("echo: " + req.GetString("text", "")), nil
	})
	s.AddTool(mcp.NewTool("progress"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
			srv := server.ServerFromContext(ctx)
			for i := 1; i <= 2; i++ {
				_ = srv.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
					"progressToken": req.Params.Meta.ProgressToken, "progress": i, "total": 2,
				})
			}
			// mcp-go forwards notifications on a goroutine of its own and
			// may write the response first (its known progress race): give
			// the forwarder a moment, so the test checks the gateway.
			time.Sleep(100 * time.Millisecond)
		}
		return mcp.NewToolResultText("done"), nil
	})
	s.AddTool(mcp.NewTool("ask"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if ans := server.ElicitationResponse(req.Params.InputResponses, "who"); ans != nil {
			b, _ := json.Marshal(ans.Content)
			return mcp.NewToolResultText(string(ans.Action) + " " + string(b)), nil
		}
		return server.NewInputRequestBuilder("st-1").Elicit("who", mcp.ElicitationParams{
			Message:         "who are you?",
			RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}},
		}).ToolResult(), nil
	})
	s.AddTool(mcp.NewTool("slow", mcp.WithNumber("ms")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ms := req.GetFloat("ms", 60000)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(ms) * time.Millisecond):
		}
		return mcp.NewToolResultText("slept"), nil
	})
	s.AddTool(mcp.NewTool("log"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		_ = server.ServerFromContext(ctx).SendLogMessageToClient(ctx, mcp.NewLoggingMessageNotification(mcp.LoggingLevelWarning, "fixture", "careful"))
		time.Sleep(100 * time.Millisecond) // see progress: mcp-go's forwarder race
		return mcp.NewToolResultText("logged"), nil
	})
	s.AddTool(mcp.NewToolWithRawSchema("query", "runs a query", json.RawMessage(`{
		"type": "object",
		"properties": {"sql": {"type": "string"}, "region": {"type": "string", "x-mcp-header": "Region"}}
	}`)), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ran in " + req.GetString("region", "")), nil
	})
	s.AddTool(mcp.NewToolWithRawSchema("badheader", "an invalid x-mcp-header", json.RawMessage(`{
		"type": "object",
		"properties": {"xs": {"type": "array", "items": {"type": "string", "x-mcp-header": "X"}}}
	}`)), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("never"), nil
	})
	s.AddPrompt(mcp.NewPrompt("greet"), func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return mcp.NewGetPromptResult("greet", []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("hi"))}), nil
	})
	s.AddResource(mcp.NewResource("fixture://readme", "readme"), func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: "fixture://readme", Text: "read me"}}, nil
	})
	return s
}

// swapHandler is an http.Handler whose target can be replaced (a server
// that restarts and forgets its sessions).
type swapHandler struct {
	h atomic.Pointer[http.Handler]
}

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// MustServe serves h on a loopback httptest server for the test's life.
func MustServe(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}

// testCaller is a switchboard.Caller that records what it is sent and
// answers requests with answer.
type testCaller struct {
	key    string
	answer func(method string, params json.RawMessage) (json.RawMessage, error)

	mu       sync.Mutex
	notes    []string
	requests []string
}

func (c *testCaller) Key() string { return c.key }

func (c *testCaller) Notify(method string, params json.RawMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, method+" "+string(params))
}

func (c *testCaller) Request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	c.mu.Lock()
	c.requests = append(c.requests, method+" "+string(params))
	c.mu.Unlock()
	if c.answer == nil {
		return nil, &switchboard.RPCError{Code: -32601, Message: "not supported"}
	}
	return c.answer(method, params)
}

func (c *testCaller) snapshot() (notes, requests []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.notes...), append([]string(nil), c.requests...)
}

// catalogs records what a Manager publishes.
type catalogs struct {
	mu   sync.Mutex
	cats map[switchboard.InstanceKey]*switchboard.Catalog
	n    int
}

func (c *catalogs) on(key switchboard.InstanceKey, up switchboard.Upstream, cat *switchboard.Catalog) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cats == nil {
		c.cats = map[switchboard.InstanceKey]*switchboard.Catalog{}
	}
	c.cats[key] = cat
	c.n++
}

func (c *catalogs) get(key switchboard.InstanceKey) *switchboard.Catalog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cats[key]
}

// toolNames returns the names of a catalog's tools.
func toolNames(cat *switchboard.Catalog) []string {
	if cat == nil {
		return nil
	}
	var names []string
	for _, t := range cat.Tools {
		var v struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(t, &v)
		names = append(names, v.Name)
	}
	return names
}

// MustManager returns a Manager whose logs go to the test.
func MustManager(tb testing.TB, opts Options) *Manager {
	tb.Helper()
	m := New(zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.DebugLevel), opts)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.StopAll(ctx)
	})
	return m
}

// MustStart starts spec and waits until it is running.
func MustStart(tb testing.TB, m *Manager, spec Spec) switchboard.Upstream {
	tb.Helper()
	if err := m.Start(spec); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx, spec.Key); err != nil {
		tb.Fatal(err)
	}
	up, ok := m.Upstream(spec.Key)
	if !ok {
		tb.Fatal("running but no upstream")
	}
	return up
}

// callTool calls a tool through up and returns the result's text.
func callTool(tb testing.TB, up switchboard.Upstream, caller switchboard.Caller, progress json.RawMessage, name, args string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	params := fmt.Sprintf(`{"name":%q,"arguments":%s}`, name, args)
	res, err := up.Call(ctx, &switchboard.Request{Method: "tools/call", Params: json.RawMessage(params), Caller: caller, Progress: progress})
	if err != nil {
		return "", err
	}
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		tb.Fatalf("decoding %s: %v", res, err)
	}
	var texts []string
	for _, c := range r.Content {
		texts = append(texts, c.Text)
	}
	out := strings.Join(texts, "\n")
	if r.IsError {
		return "", fmt.Errorf("tool error: %s", out)
	}
	return out, nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// state returns key's state in m's status.
func state(m *Manager, key switchboard.InstanceKey) switchboard.ProviderState {
	for _, st := range m.Status() {
		if st.Provider == key.Provider && st.User == key.User {
			return st.State
		}
	}
	return ""
}

// freePort returns a loopback address nothing listens on right now.
func freePort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// fastBackoff is a reconnect policy for tests.
var fastBackoff = BackoffPolicy{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond, ResetAfter: time.Second, MaxFailures: 3}
