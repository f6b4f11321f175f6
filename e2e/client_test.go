package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// protocolVersion is what the tests' clients speak.
const protocolVersion = "2025-11-25"

// connect opens an initialized mcp-go streamable-HTTP session as the admin
// user. Close (registered with t.Cleanup) sends DELETE.
func (g *gateway) connect(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.NewStreamableHttpClient(g.url+"/mcp",
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + g.key}),
		transport.WithHTTPTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Start's context must live as long as the client.
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = protocolVersion
	req.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1.0"}
	if _, err := c.Initialize(ctxT(t, 30*time.Second), req); err != nil {
		c.Close()
		t.Fatalf("initialize: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// call calls a tool and returns its text, whether it is a tool error, and a
// protocol error.
func call(ctx context.Context, c *client.Client, name string, args any) (string, bool, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return "", false, err
	}
	return resultText(res), res.IsError, nil
}

func resultText(res *mcp.CallToolResult) string {
	var sb strings.Builder
	for _, ct := range res.Content {
		if tc, ok := ct.(mcp.TextContent); ok {
			sb.WriteString(tc.Text)
		}
	}
	return sb.String()
}

// mustCall calls a tool that must succeed and returns its text.
func mustCall(t testing.TB, c *client.Client, name string, args any) string {
	t.Helper()
	text, isErr, err := call(ctxT(t, 60*time.Second), c, name, args)
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	if isErr {
		t.Fatalf("tools/call %s: tool error: %s", name, text)
	}
	return text
}

func toolNames(t testing.TB, c *client.Client) []string {
	t.Helper()
	res, err := c.ListTools(ctxT(t, 30*time.Second), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var out []string
	for _, tl := range res.Tools {
		out = append(out, tl.Name)
	}
	return out
}

// --- raw HTTP ---

// rawSession is an MCP session driven with plain HTTP, for exact bytes.
type rawSession struct {
	g   *gateway
	sid string
	hc  *http.Client
}

// rawInit opens a session with initialize + notifications/initialized.
func (g *gateway) rawInit(t testing.TB, hc *http.Client) *rawSession {
	t.Helper()
	s, err := g.tryInit(hc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tryInit is rawInit for goroutines: it returns the error.
func (g *gateway) tryInit(hc *http.Client) (*rawSession, error) {
	if hc == nil {
		hc = httpClient
	}
	s := &rawSession{g: g, hc: hc}
	resp, body, err := s.try(http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+protocolVersion+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	s.sid = resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || s.sid == "" {
		return nil, fmt.Errorf("initialize: %s (session %q): %s", resp.Status, s.sid, body)
	}
	resp, body, err = s.try(http.MethodPost, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	if err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized: %s: %s", resp.Status, body)
	}
	return s, nil
}

// do sends one request in the session (if any) with the standard headers,
// overridden by hdr (an empty value deletes a header), and returns the
// response with its body read.
func (s *rawSession) do(t testing.TB, method, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := s.try(method, body, hdr)
	if err != nil {
		t.Fatalf("%s /mcp: %v", method, err)
	}
	return resp, b
}

func (s *rawSession) try(method, body string, hdr map[string]string) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.g.url+"/mcp", rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.g.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.sid != "" {
		req.Header.Set("Mcp-Session-Id", s.sid)
		req.Header.Set("MCP-Protocol-Version", protocolVersion)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// rpcReply is a JSON-RPC response.
type rpcReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// parseReply finds the JSON-RPC response in a JSON or SSE body.
func parseReply(resp *http.Response, body []byte) (rpcReply, bool) {
	var r rpcReply
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		for _, line := range bytes.Split(body, []byte("\n")) {
			d, ok := bytes.CutPrefix(line, []byte("data:"))
			if !ok {
				continue
			}
			var x rpcReply
			if json.Unmarshal(bytes.TrimSpace(d), &x) == nil && (x.Result != nil || x.Error != nil) {
				return x, true
			}
		}
		return r, false
	}
	err := json.Unmarshal(body, &r)
	return r, err == nil && (r.Result != nil || r.Error != nil)
}

// callText extracts the text of a tools/call result.
func callText(raw json.RawMessage) (string, bool) {
	var res mcp.CallToolResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", false
	}
	return resultText(&res), res.IsError
}
