// Command modernprovider is a test provider that speaks both protocol eras
// over stdio (mcp-go's server): the 2026-07-28 stateless era to a client
// that probes with server/discover, the session era to one that sends
// initialize. Its ask tool needs input from the client through a
// multi-round-trip request; add_tool changes its tool list.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func main() {
	s := server.NewMCPServer("modernprovider", "1.0.0",
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(true, true),
		server.WithLogging(),
	)
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("Returns text."), mcp.WithString("text", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("echo: " + req.GetString("text", "")), nil
		})
	s.AddTool(mcp.NewTool("ask", mcp.WithDescription("Asks the user for a name through elicitation, then greets them.")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if answer := server.ElicitationResponse(req.Params.InputResponses, "who"); answer != nil {
				if answer.Action != mcp.ElicitationResponseActionAccept {
					return mcp.NewToolResultText("no name: " + string(answer.Action)), nil
				}
				return mcp.NewToolResultText(fmt.Sprintf("hello %v", answer.Content)), nil
			}
			return server.NewInputRequestBuilder("asked-who").Elicit("who", mcp.ElicitationParams{
				Message:         "What is your name?",
				RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}},
			}).ToolResult(), nil
		})
	s.AddTool(mcp.NewTool("add_tool", mcp.WithDescription("Adds a tool named by the argument."), mcp.WithString("name", mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			name := req.GetString("name", "")
			s.AddTool(mcp.NewTool(name, mcp.WithDescription("Added at run time.")),
				func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return mcp.NewToolResultText(name), nil
				})
			return mcp.NewToolResultText("added " + name), nil
		})
	s.AddResource(mcp.NewResource("modern://status", "status", mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: "modern://status", MIMEType: "text/plain", Text: "ok"}}, nil
		})
	if err := server.ServeStdio(s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
