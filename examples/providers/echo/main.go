// Command echo is a tiny, fast stdio MCP server for Switchboard's tests and benchmarks.
//
// Tools: echo (returns text verbatim), env (returns one environment variable; proves
// what a child was given), sleep (waits, with progress notifications), add (sums two
// numbers). With ECHO_CRASH_TOOL=1 it also offers crash (exits the process), for
// restart tests. It serves up to 64 tool calls at once, so it is never the bottleneck
// of a gateway benchmark.
//
// The env tool reveals the child's environment to whoever may call it: never mount
// this provider where its environment holds a secret the caller must not read.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/mark3labs/mcp-go/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	workers   = 64   // concurrent tool calls
	queueSize = 1024 // tool calls waiting for a worker
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	out := newProgressWriter(os.Stdout)
	s := server.NewStdioServer(newServer(options{
		flush:     out.wait,
		crashTool: os.Getenv("ECHO_CRASH_TOOL") == "1",
	}))
	for _, o := range []server.StdioOption{
		server.WithErrorLogger(log.New(os.Stderr, "echo: ", log.LstdFlags)),
		server.WithWorkerPoolSize(workers),
		server.WithQueueSize(queueSize),
	} {
		o(s)
	}
	return s.Listen(ctx, os.Stdin, out)
}
