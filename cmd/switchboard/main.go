// Command switchboard is an MCP gateway: it supervises stdio MCP servers and
// serves their tools, prompts and resources as one streamable-HTTP MCP server.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err))
}
