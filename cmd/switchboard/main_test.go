package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard/store/postgres/pgtest"
)

// binDir holds the example providers and the test provider, built once.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchboard-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for name, pkg := range map[string]string{
		"notes":        "./examples/providers/notes",
		"echo":         "./examples/providers/echo",
		"testprovider": "./internal/testprovider",
		"switchboard":  "./cmd/switchboard",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	pgtest.StopShared() // started by the replica tests, if any ran
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is a running Main for one test.
type gateway struct {
	*Main
	dir string
	log *syncBuffer
}

// syncBuffer collects the operational log for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// MustOpenGateway writes config (with BIN replaced by the binaries' folder) to a
// temp dir and serves it on a free loopback port.
func MustOpenGateway(tb testing.TB, config string) *gateway {
	tb.Helper()
	dir := tb.TempDir()
	config = strings.ReplaceAll(config, "BIN", binDir)
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		tb.Fatal(err)
	}
	g := &gateway{Main: NewMain(path), dir: dir, log: &syncBuffer{}}
	g.Stderr = g.log
	g.Getenv = func(string) string { return "" }
	g.DevKey = true
	if err := g.Open(context.Background()); err != nil {
		tb.Fatalf("Open: %v\n%s", err, g.log.String())
	}
	tb.Cleanup(func() {
		if err := g.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		if tb.Failed() {
			tb.Logf("gateway log:\n%s", g.log.String())
		}
	})
	return g
}

// admin returns the headers of the first admin user.
func (g *gateway) admin() map[string]string {
	return map[string]string{"Authorization": "Bearer " + g.FirstAdminKey}
}

// get does a GET of path on the gateway with hdr and returns the status and body.
func (g *gateway) get(tb testing.TB, path string, hdr map[string]string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, g.URL()+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitReady polls /healthz until every provider has settled.
func (g *gateway) waitReady(tb testing.TB) {
	tb.Helper()
	waitFor(tb, 20*time.Second, func() bool {
		h := g.health()
		if !h.Ready {
			return false
		}
		for _, p := range h.Providers {
			if p.State == "running" && p.Tools == 0 {
				return false // its catalog is not in the mux yet
			}
		}
		return true
	}, "providers to settle")
}

func waitFor(tb testing.TB, d time.Duration, cond func() bool, what string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MustConnect opens an initialized MCP client session to path ("/mcp").
func MustConnect(tb testing.TB, url string, headers map[string]string) *client.Client {
	tb.Helper()
	return mustConnect(tb, url, transport.WithHTTPHeaders(headers))
}

// MustConnectListening is MustConnect with the GET stream open, so the client
// receives server notifications such as list_changed.
func MustConnectListening(tb testing.TB, url string, headers map[string]string) *client.Client {
	tb.Helper()
	return mustConnect(tb, url, transport.WithHTTPHeaders(headers), transport.WithContinuousListening())
}

// MustConnectInit is MustConnect that hands the initialize result to check.
func MustConnectInit(tb testing.TB, url string, headers map[string]string, check func(*mcp.InitializeResult)) *client.Client {
	tb.Helper()
	return mustConnectCheck(tb, url, check, transport.WithHTTPHeaders(headers))
}

func mustConnect(tb testing.TB, url string, opts ...transport.StreamableHTTPCOption) *client.Client {
	tb.Helper()
	return mustConnectCheck(tb, url, nil, opts...)
}

func mustConnectCheck(tb testing.TB, url string, check func(*mcp.InitializeResult), opts ...transport.StreamableHTTPCOption) *client.Client {
	tb.Helper()
	c, err := client.NewStreamableHttpClient(url, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	// Start's context lives as long as the client: it runs the GET stream.
	if err := c.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = "2025-11-25"
	req.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1.0"}
	res, err := c.Initialize(ctx, req)
	if err != nil {
		tb.Fatalf("initialize: %v", err)
	}
	if check != nil {
		check(res)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func toolNames(tb testing.TB, c *client.Client) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		tb.Fatalf("tools/list: %v", err)
	}
	var out []string
	for _, t := range res.Tools {
		out = append(out, t.Name)
	}
	return out
}

func callText(tb testing.TB, c *client.Client, name string, args map[string]any) (string, bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		tb.Fatalf("tools/call %s: %v", name, err)
	}
	var sb strings.Builder
	for _, ct := range res.Content {
		if tc, ok := ct.(mcp.TextContent); ok {
			sb.WriteString(tc.Text)
		}
	}
	return sb.String(), res.IsError
}

const spineConfig = `
listen: 127.0.0.1:0
data_dir: ./data
log: {level: debug}
providers:
  notes:
    command: BIN/notes
    env: {NOTES_DIR: ./data/notes}
  echo:
    command: BIN/echo
`

func TestServesNamespacedToolsOfSeveralProviders(t *testing.T) {
	g := MustOpenGateway(t, spineConfig)
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	names := toolNames(t, c)
	joined := strings.Join(names, ",")
	for _, want := range []string{"notes__write_note", "notes__search_notes", "echo__echo", "echo__env"} {
		if !strings.Contains(joined, want) {
			t.Errorf("tools/list = %v, missing %s", names, want)
		}
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "notes__") && !strings.HasPrefix(n, "echo__") {
			t.Errorf("tool %q is not namespaced", n)
		}
	}
	if got, isErr := callText(t, c, "echo__echo", map[string]any{"text": "hello; $(rm -rf /) `x`\n"}); isErr || got != "hello; $(rm -rf /) `x`\n" {
		t.Errorf("echo__echo = %q (isError %v)", got, isErr)
	}
	if _, isErr := callText(t, c, "notes__write_note", map[string]any{"title": "Gateway test", "body": "the quick brown fox", "tags": []string{"e2e"}}); isErr {
		t.Fatal("write_note failed")
	}
	got, isErr := callText(t, c, "notes__search_notes", map[string]any{"query": "brown fox"})
	if isErr || !strings.Contains(got, "gateway-test") {
		t.Errorf("search_notes = %q (isError %v)", got, isErr)
	}
}

// TestSchemasPassThroughByteExact compares the gateway's tools/list with the
// child's own, byte for byte, for every inputSchema.
func TestSchemasPassThroughByteExact(t *testing.T) {
	g := MustOpenGateway(t, spineConfig)
	g.waitReady(t)
	direct := directToolsList(t, filepath.Join(binDir, "notes"), "NOTES_DIR="+t.TempDir())
	body := rawPost(t, g, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	var res struct {
		Result struct {
			Tools []struct {
				Name        string          `json:"name"`
				InputSchema json.RawMessage `json:"inputSchema"`
			} `json:"tools"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	seen := 0
	for _, tool := range res.Result.Tools {
		orig, ok := strings.CutPrefix(tool.Name, "notes__")
		if !ok {
			continue
		}
		want, ok := direct[orig]
		if !ok {
			t.Errorf("gateway exposes %s, child has no %s", tool.Name, orig)
			continue
		}
		var a, b bytes.Buffer
		_ = json.Compact(&a, tool.InputSchema)
		_ = json.Compact(&b, want)
		if a.String() != b.String() {
			t.Errorf("%s inputSchema changed:\n gateway %s\n child   %s", tool.Name, a.String(), b.String())
		}
		seen++
	}
	if seen == 0 || seen != len(direct) {
		t.Errorf("compared %d schemas, child has %d tools", seen, len(direct))
	}
}
