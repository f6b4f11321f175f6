package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard/mux"
)

// Two providers serving the same resource URI (the agency case: one memory
// server per client) both stay readable, and each caller sees only its own.
func TestCollidingResourceURIsStayReadable(t *testing.T) {
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
roles:
  alpha: {providers: [alpha]}
  beta: {providers: [beta]}
providers:
  alpha: {command: BIN/testprovider}
  beta: {command: BIN/testprovider}
`)
	g.waitReady(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin := MustConnect(t, g.URL()+"/mcp", g.admin())
	uris := listResourceURIs(t, admin)
	qualified := mux.QualifiedURI("beta", "test://hello")
	if !strings.Contains(uris, "test://hello") || !strings.Contains(uris, qualified) {
		t.Fatalf("resources = %s, want test://hello and %s", uris, qualified)
	}
	for _, uri := range []string{"test://hello", qualified} {
		res, err := admin.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: uri}})
		if err != nil {
			t.Fatalf("reading %s: %v", uri, err)
		}
		if got := res.Contents[0].(mcp.TextResourceContents).URI; got != uri {
			t.Errorf("reading %s answered for %s", uri, got)
		}
	}
	beta := MustConnect(t, g.URL()+"/mcp", g.userKey(t, "bea", "beta"))
	if got := listResourceURIs(t, beta); got != qualified+",skill://beta/SKILL.md" && got != qualified {
		t.Errorf("beta user sees %s", got)
	}
	if _, err := beta.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "test://hello"}}); err == nil {
		t.Error("beta user read alpha's resource")
	}
}

func TestProviderPromptsForwarded(t *testing.T) {
	g := MustOpenGateway(t, "listen: 127.0.0.1:0\ndata_dir: ./data\nproviders:\n  tp: {command: BIN/testprovider}\n")
	g.waitReady(t)
	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
	if err != nil || len(list.Prompts) == 0 {
		t.Fatalf("prompts/list: %v %v", list, err)
	}
	var name string
	for _, p := range list.Prompts {
		if strings.HasPrefix(p.Name, "tp__") && p.Name != "tp__skill" {
			name = p.Name
		}
	}
	res, err := c.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{Name: name}})
	if err != nil || len(res.Messages) == 0 {
		t.Fatalf("prompts/get %s: %v", name, err)
	}
}
