package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// directToolsList runs a provider binary over stdio without the gateway and
// returns its raw inputSchemas by tool name.
func directToolsList(tb testing.TB, bin string, env ...string) map[string]json.RawMessage {
	tb.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	r := bufio.NewReader(out)
	send := func(s string) { _, _ = io.WriteString(in, s+"\n") }
	read := func() []byte {
		line, err := r.ReadBytes('\n')
		if err != nil {
			tb.Fatalf("reading child: %v", err)
		}
		return line
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"direct","version":"1"}}}`)
	read()
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	var res struct {
		Result struct {
			Tools []struct {
				Name        string          `json:"name"`
				InputSchema json.RawMessage `json:"inputSchema"`
			} `json:"tools"`
		} `json:"result"`
	}
	if err := json.Unmarshal(read(), &res); err != nil {
		tb.Fatal(err)
	}
	m := map[string]json.RawMessage{}
	for _, t := range res.Result.Tools {
		m[t.Name] = t.InputSchema
	}
	return m
}

// rawSession opens an MCP session with plain HTTP and returns its ID.
func rawSession(tb testing.TB, url string, headers map[string]string) string {
	tb.Helper()
	resp := post(tb, url, "", headers, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if sid == "" {
		tb.Fatalf("initialize answered %s without a session id", resp.Status)
	}
	resp = post(tb, url, sid, headers, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	resp.Body.Close()
	return sid
}

// post sends one JSON-RPC body.
func post(tb testing.TB, url, sid string, headers map[string]string, body string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// rpcBody reads a JSON or SSE response and returns the JSON-RPC message in it.
func rpcBody(tb testing.TB, resp *http.Response) []byte {
	tb.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var last []byte
		for _, line := range bytes.Split(b, []byte("\n")) {
			if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok && bytes.Contains(d, []byte(`"id"`)) {
				last = d
			}
		}
		return last
	}
	return b
}

// rawPost runs body in a fresh session on /mcp and returns the JSON-RPC reply.
func rawPost(tb testing.TB, g *gateway, body string) []byte {
	tb.Helper()
	url := g.URL() + "/mcp"
	sid := rawSession(tb, url, g.admin())
	return rpcBody(tb, post(tb, url, sid, g.admin(), body))
}

// tryCall calls a tool and returns the result or the JSON-RPC error.
func tryCall(c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return c.CallTool(ctx, req)
}
