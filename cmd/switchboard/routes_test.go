package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRoutesRequireWhatTheyShould enumerates the whole HTTP surface: every
// route that reaches tools or state needs credentials; only probes and OAuth
// metadata are public, and they name no tool; anything else is 404.
func TestRoutesRequireWhatTheyShould(t *testing.T) {
	g := MustOpenGateway(t, spineConfig)
	g.waitReady(t)
	routes := []struct {
		method, path string
		public       bool
	}{
		{"POST", "/mcp", false},
		{"GET", "/mcp", false},
		{"DELETE", "/mcp", false},
		{"POST", "/mcp/internal", false},
		{"GET", "/mcp/internal", false},
		{"GET", "/status", false},
		{"GET", "/metrics", false},
		{"GET", "/api/connections", false},
		{"POST", "/api/connections/notes", false},
		{"DELETE", "/api/connections/notes", false},
		{"GET", "/api/prefs", false},
		{"POST", "/api/prefs/notes/hide", false},
		{"GET", "/healthz", true},
		{"GET", "/readyz", true},
		{"GET", "/.well-known/oauth-protected-resource", true},
		{"GET", "/.well-known/oauth-protected-resource/mcp", true},
	}
	for _, rt := range routes {
		req, _ := http.NewRequest(rt.method, g.URL()+rt.path, strings.NewReader(`{}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case rt.public && resp.StatusCode != http.StatusOK:
			t.Errorf("%s %s: %d, want 200", rt.method, rt.path, resp.StatusCode)
		case !rt.public && resp.StatusCode != http.StatusUnauthorized:
			t.Errorf("%s %s without credentials: %d, want 401", rt.method, rt.path, resp.StatusCode)
		}
		if strings.Contains(string(body), "__") {
			t.Errorf("%s %s leaks a tool name: %s", rt.method, rt.path, body)
		}
	}
	// No route creates or changes a provider's command: nothing else exists.
	for _, path := range []string{"/api/providers", "/api/servers", "/admin/reload", "/debug/pprof/", "/api/config"} {
		for _, method := range []string{"GET", "POST", "PUT"} {
			req, _ := http.NewRequest(method, g.URL()+path, strings.NewReader(`{"command":"sh"}`))
			req.Header.Set("Authorization", g.admin()["Authorization"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusFound {
				t.Errorf("%s %s: %d, want 404", method, path, resp.StatusCode)
			}
		}
	}
}
