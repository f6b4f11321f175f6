package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

const originConfig = `
listen: 127.0.0.1:0
data_dir: ./data
providers:
  echo: {command: BIN/echo}
`

// TestOriginOnLoopback: a page on another port of the same machine (a dev
// server on localhost:5173) cannot call a gateway on loopback with a valid
// key, because that port is another origin; the gateway's own origin can;
// listing the page's origin in auth.allowed_origins lets it in, with CORS, as
// soon as the file is reloaded.
func TestOriginOnLoopback(t *testing.T) {
	g := MustOpenGateway(t, originConfig)
	g.waitReady(t)
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"page","version":"1"}}}`
	try := func(origin string) *http.Response {
		t.Helper()
		resp := post(t, g.URL()+"/mcp", "", map[string]string{"Authorization": g.admin()["Authorization"], "Origin": origin}, initialize)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	port := g.URL()[strings.LastIndexByte(g.URL(), ':'):]
	tests := []struct {
		name   string
		origin string
		want   int
	}{
		{"a page on another local port", "http://localhost:5173", http.StatusForbidden},
		{"a page on another local port, by ip", "http://127.0.0.1:5173", http.StatusForbidden},
		{"the MCP Inspector's page, unlisted", "http://localhost:6274", http.StatusForbidden},
		{"the gateway's own origin", "http://127.0.0.1" + port, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp := try(tt.origin); resp.StatusCode != tt.want {
				t.Fatalf("Origin %s: %d, want %d", tt.origin, resp.StatusCode, tt.want)
			}
		})
	}

	g.writeConfig(t, originConfig+"auth: {allowed_origins: [\"http://localhost:5173\"]}\n")
	if res := g.reload(t); !res.OK {
		t.Fatalf("reload: %+v", res)
	}
	resp := try("http://localhost:5173")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Fatalf("listed origin after reload: %d, Access-Control-Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if resp := try("http://localhost:6274"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another unlisted local port after reload: %d", resp.StatusCode)
	}
	// The browser's preflight, without credentials, is answered for the listed page.
	req, _ := http.NewRequest(http.MethodOptions, g.URL()+"/mcp", nil)
	req.Header.Set("Origin", "http://localhost:5173")
	req.Header.Set("Access-Control-Request-Method", "POST")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != http.StatusNoContent || !strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
}
