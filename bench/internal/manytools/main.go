// Command manytools is a bench-only stdio MCP server that exposes -tools N
// tools, tool_0 … tool_N-1 (zero-padded), each returning its "text" argument
// verbatim. Even-numbered tools are annotated read-only, so visibility policies
// that depend on readOnlyHint have something to filter. sbbench builds it into a
// temp dir; it is not an example provider.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func main() {
	n := flag.Int("tools", 20, "number of tools to expose")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "manytools: -tools must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	s := server.NewMCPServer("manytools", "1", server.WithToolCapabilities(false))
	width := len(fmt.Sprint(*n - 1))
	tools := make([]server.ServerTool, 0, *n)
	for i := range *n {
		tools = append(tools, server.ServerTool{
			Tool: mcp.NewTool(fmt.Sprintf("tool_%0*d", width, i),
				mcp.WithDescription(fmt.Sprintf("Benchmark tool number %d: returns `text` verbatim as one text content block.", i)),
				mcp.WithString("text", mcp.Required(), mcp.Description("Text to return.")),
				mcp.WithReadOnlyHintAnnotation(i%2 == 0),
			),
			Handler: echo,
		})
	}
	s.AddTools(tools...)

	std := server.NewStdioServer(s)
	for _, o := range []server.StdioOption{
		server.WithErrorLogger(log.New(os.Stderr, "manytools: ", log.LstdFlags)),
		server.WithWorkerPoolSize(64),
		server.WithQueueSize(1024),
	} {
		o(std)
	}
	if err := std.Listen(ctx, os.Stdin, os.Stdout); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "manytools:", err)
		os.Exit(1)
	}
}

func echo(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	text, ok := req.GetArguments()["text"].(string)
	if !ok {
		return mcp.NewToolResultError(`argument "text" must be a string`), nil
	}
	return mcp.NewToolResultText(text), nil
}
