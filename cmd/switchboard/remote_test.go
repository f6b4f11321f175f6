package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/switchboard-mcp/switchboard/audit"
)

// holdServer is a remote MCP server whose hold tool blocks until the test
// releases it (or the call is cancelled), counting the calls in flight.
type holdServer struct {
	URL      string
	release  chan struct{}
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	once     sync.Once
}

// MustStartHoldServer serves echo, hold and hidden over streamable HTTP on
// loopback until the test ends.
func MustStartHoldServer(tb testing.TB) *holdServer {
	tb.Helper()
	h := &holdServer{release: make(chan struct{})}
	s := server.NewMCPServer("far", "1.0.0", server.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("text", "")), nil
	})
	s.AddTool(mcp.NewTool("hold"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		n := h.inFlight.Add(1)
		defer h.inFlight.Add(-1)
		for {
			m := h.maxSeen.Load()
			if n <= m || h.maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-h.release:
			return mcp.NewToolResultText("released"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	s.AddTool(mcp.NewTool("hidden"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("hidden"), nil
	})
	srv := httptest.NewServer(server.NewStreamableHTTPServer(s))
	tb.Cleanup(func() {
		h.Release()
		srv.Close()
	})
	h.URL = srv.URL + "/mcp"
	return h
}

// Release lets every held call, now and later, return.
func (h *holdServer) Release() { h.once.Do(func() { close(h.release) }) }

// TestRemoteProviderPromises: a url provider gets what a child gets:
// namespacing, tools.deny, max_concurrent with max_queue (one call in
// flight, one waiting, the next refused as overloaded), call_timeout, an
// audit record of each call and the call metrics.
func TestRemoteProviderPromises(t *testing.T) {
	h, h2 := MustStartHoldServer(t), MustStartHoldServer(t)
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
default_role: dev
roles:
  dev: {providers: [far, slow]}
providers:
  far:
    url: `+h.URL+`
    tools: {deny: [hidden]}
    limits: {max_concurrent: 1, max_queue: 1, call_timeout: 60s}
  slow:
    url: `+h2.URL+`
    limits: {call_timeout: 1s, max_consecutive_timeouts: 0}
`)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.userKey(t, "ann", "dev"))

	// Namespacing and filtering.
	names := "," + strings.Join(toolNames(t, c), ",") + ","
	for _, want := range []string{",far__echo,", ",far__hold,", ",slow__echo,", ",slow__hidden,"} {
		if !strings.Contains(names, want) {
			t.Errorf("tools lack %s: %s", strings.Trim(want, ","), names)
		}
	}
	if strings.Contains(names, ",far__hidden,") {
		t.Errorf("tools.deny did not hide far__hidden: %s", names)
	}
	if got, isErr := callText(t, c, "far__echo", map[string]any{"text": "hi"}); isErr || got != "hi" {
		t.Fatalf("far__echo = %q (error %v)", got, isErr)
	}
	if res, err := tryCall(c, "far__hidden", nil); err == nil && !res.IsError {
		t.Error("a denied tool was called")
	}

	// Concurrency: one call in flight, one waiting, the third refused.
	type result struct {
		text string
		err  error
	}
	results := make(chan result, 3)
	hold := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := mcp.CallToolRequest{}
		req.Params.Name = "far__hold"
		res, err := c.CallTool(ctx, req)
		r := result{err: err}
		if err == nil && len(res.Content) > 0 {
			r.text = res.Content[0].(mcp.TextContent).Text
			if res.IsError {
				r.text = "error: " + r.text
			}
		}
		results <- r
	}
	go hold()
	waitFor(t, 10*time.Second, func() bool { return h.inFlight.Load() == 1 }, "the first hold call to reach the server")
	go hold()
	go hold()
	var first result // the refused one answers while the others wait
	select {
	case first = <-results:
	case <-time.After(15 * time.Second):
		h.Release()
		t.Fatal("no call was refused past max_concurrent + max_queue")
	}
	if first.err == nil && !strings.Contains(first.text, "overloaded") {
		t.Errorf("the third call past max_concurrent + max_queue: %q, want overloaded", first.text)
	}
	if first.err != nil && !strings.Contains(first.err.Error(), "overloaded") {
		t.Errorf("the third call past max_concurrent + max_queue: %v, want overloaded", first.err)
	}
	if n := h.inFlight.Load(); n != 1 {
		t.Errorf("%d calls in flight at the server, want 1", n)
	}
	h.Release()
	for range 2 {
		if r := <-results; r.err != nil || r.text != "released" {
			t.Errorf("a held call ended with %q, %v", r.text, r.err)
		}
	}
	if m := h.maxSeen.Load(); m != 1 {
		t.Errorf("the server saw %d calls at once, want at most 1", m)
	}

	// call_timeout: slow's server holds the call; the gateway gives up.
	res, err := tryCall(c, "slow__hold", nil)
	if err == nil && !res.IsError {
		t.Fatalf("slow__hold past call_timeout succeeded: %+v", res)
	}
	waitFor(t, 10*time.Second, func() bool { return h2.inFlight.Load() == 0 }, "the timed-out call to be cancelled at the server")

	// Audit and metrics name the remote provider and its tool.
	recs := g.waitRecords(t, "the remote calls' records", func(recs []audit.Record) bool {
		n := 0
		for _, r := range recs {
			if r.Type == audit.TypeToolCall && (r.Provider == "far" || r.Provider == "slow") {
				n++
			}
		}
		return n >= 6
	})
	got := map[string]int{}
	for _, r := range recs {
		if r.Type == audit.TypeToolCall {
			got[r.Provider+"/"+r.Tool+"/"+r.Outcome]++
		}
	}
	for _, want := range []string{"far/echo/ok", "far/hold/ok", "far/hold/overloaded", "slow/hold/timeout"} {
		if got[want] == 0 {
			t.Errorf("no audit record %s: %v", want, got)
		}
	}
	_, metrics := g.get(t, "/metrics", g.admin())
	for _, want := range []string{
		`switchboard_tool_calls_total{outcome="ok",provider="far",tool="echo"} 1`,
		`switchboard_tool_calls_total{outcome="ok",provider="far",tool="hold"} 2`,
		`switchboard_tool_calls_total{outcome="timeout",provider="slow",tool="hold"} 1`,
		`switchboard_provider_up{provider="far"} 1`,
		`switchboard_provider_up{provider="slow"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
