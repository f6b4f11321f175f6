package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

const (
	maxSleep     = 10 * time.Minute
	defaultSteps = 5
	maxSteps     = 100
)

// options configure newServer.
type options struct {
	// flush, if set, blocks until the progress notification (token, progress) has
	// been written to the client, or ctx ends. sleep calls it after its last progress
	// notification so that notification reaches the client before the result.
	flush func(ctx context.Context, token any, progress int)
	// crashTool adds the crash tool.
	crashTool bool
	// exit is called by the crash tool; os.Exit when nil.
	exit func(code int)
}

// newServer builds the echo MCP server.
func newServer(o options) *server.MCPServer {
	s := server.NewMCPServer("echo", version,
		server.WithToolCapabilities(false),
		server.WithRecovery(),
		server.WithInstructions("Test provider: echo returns text verbatim, env reads one environment variable, sleep waits (with progress), add sums two numbers."),
	)

	s.AddTool(mcp.NewTool("echo",
		mcp.WithDescription("Return `text` verbatim as one text content block."),
		mcp.WithString("text", mcp.Required(), mcp.Description("Text to return.")),
		readOnly(),
	), handleEcho)

	s.AddTool(mcp.NewTool("env",
		mcp.WithDescription("Return the value of the environment variable `name` in this provider's process. An error result if it is not set."),
		mcp.WithString("name", mcp.Required(), mcp.MinLength(1), mcp.Description("Variable name, e.g. GITHUB_TOKEN.")),
		readOnly(),
	), handleEnv)

	s.AddTool(mcp.NewTool("sleep",
		mcp.WithDescription("Wait `ms` milliseconds, then return. Sends `steps` progress notifications when the call carries a progressToken. Stops early when cancelled. Deliberately not marked read-only, so it can stand in for a write tool in policy tests."),
		mcp.WithNumber("ms", mcp.Required(), mcp.Min(0), mcp.Max(float64(maxSleep/time.Millisecond)), mcp.Description("Milliseconds to wait.")),
		mcp.WithNumber("steps", mcp.Min(1), mcp.Max(maxSteps), mcp.DefaultNumber(defaultSteps), mcp.Description("Number of progress notifications.")),
		mcp.WithReadOnlyHintAnnotation(false),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(false),
	), sleepHandler(o.flush))

	s.AddTool(mcp.NewTool("add",
		mcp.WithDescription("Return a + b."),
		mcp.WithNumber("a", mcp.Required()),
		mcp.WithNumber("b", mcp.Required()),
		readOnly(),
	), handleAdd)

	if o.crashTool {
		exit := o.exit
		if exit == nil {
			exit = os.Exit
		}
		s.AddTool(mcp.NewTool("crash",
			mcp.WithDescription("Exit this provider process immediately with `code` (default 3), without answering."),
			mcp.WithNumber("code", mcp.Min(0), mcp.Max(255), mcp.DefaultNumber(3)),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(true),
			mcp.WithIdempotentHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(false),
		), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			exit(req.GetInt("code", 3))
			return mcp.NewToolResultText("exited"), nil // reached only with a fake exit
		})
	}
	return s
}

func readOnly() mcp.ToolOption {
	return func(t *mcp.Tool) {
		mcp.WithReadOnlyHintAnnotation(true)(t)
		mcp.WithDestructiveHintAnnotation(false)(t)
		mcp.WithIdempotentHintAnnotation(true)(t)
		mcp.WithOpenWorldHintAnnotation(false)(t)
	}
}

func handleEcho(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	text, ok := req.GetArguments()["text"].(string)
	if !ok {
		return mcp.NewToolResultError(`argument "text" must be a string`), nil
	}
	return mcp.NewToolResultText(text), nil
}

func handleEnv(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	name, err := req.RequireString("name")
	if err != nil || name == "" {
		return mcp.NewToolResultError(`argument "name" must be a non-empty string`), nil
	}
	v, ok := os.LookupEnv(name)
	if !ok {
		return mcp.NewToolResultError(fmt.Sprintf("environment variable %s is not set", name)), nil
	}
	return mcp.NewToolResultText(v), nil
}

func handleAdd(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, err := req.RequireFloat("a")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	b, err := req.RequireFloat("b")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	sum := a + b
	return mcp.NewToolResultStructured(map[string]float64{"sum": sum}, strconv.FormatFloat(sum, 'g', -1, 64)), nil
}

func sleepHandler(flush func(context.Context, any, int)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ms, err := req.RequireFloat("ms")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		total := time.Duration(ms * float64(time.Millisecond))
		if total < 0 || total > maxSleep {
			return mcp.NewToolResultError(fmt.Sprintf("ms must be between 0 and %d", maxSleep/time.Millisecond)), nil
		}
		steps := max(1, min(req.GetInt("steps", defaultSteps), maxSteps))
		var token any
		if req.Params.Meta != nil {
			token = req.Params.Meta.ProgressToken
		}
		srv := server.ServerFromContext(ctx)

		start := time.Now()
		timer := time.NewTimer(0)
		defer timer.Stop()
		<-timer.C
		sent := 0
		for i := 1; i <= steps; i++ {
			timer.Reset(time.Until(start.Add(total * time.Duration(i) / time.Duration(steps))))
			select {
			case <-ctx.Done():
				return mcp.NewToolResultError(fmt.Sprintf("sleep cancelled after %d ms", time.Since(start).Milliseconds())), nil
			case <-timer.C:
			}
			if token == nil || srv == nil {
				continue
			}
			if notifyProgress(ctx, srv, token, i, steps) {
				sent = i
			}
		}
		if sent > 0 && flush != nil {
			fctx, cancel := context.WithTimeout(ctx, time.Second)
			flush(fctx, token, sent)
			cancel()
		}
		return mcp.NewToolResultText(fmt.Sprintf("slept %d ms", total.Milliseconds())), nil
	}
}

// notifyProgress sends one progress notification, retrying briefly while the session's
// notification queue is full. It reports whether the notification was queued.
func notifyProgress(ctx context.Context, srv *server.MCPServer, token any, progress, total int) bool {
	params := map[string]any{
		"progressToken": token,
		"progress":      progress,
		"total":         total,
		"message":       fmt.Sprintf("step %d of %d", progress, total),
	}
	deadline := time.Now().Add(250 * time.Millisecond)
	for {
		err := srv.SendNotificationToClient(ctx, "notifications/progress", params)
		if err == nil {
			return true
		}
		if !errors.Is(err, server.ErrNotificationChannelBlocked) || time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// progressWriter passes stdout through and remembers which progress notifications
// have been written, so a tool can wait for its last one before returning. mcp-go
// writes notifications from a separate goroutine; without this the last progress
// notification could reach the client after the result.
type progressWriter struct {
	w io.Writer

	mu      sync.Mutex
	written map[string]int             // token (JSON) -> highest progress written
	waiters map[string][]chan struct{} // token (JSON) -> waiters to wake on write
}

func newProgressWriter(w io.Writer) *progressWriter {
	return &progressWriter{w: w, written: map[string]int{}, waiters: map[string][]chan struct{}{}}
}

// Write forwards p. mcp-go writes one JSON-RPC message per call, under its own lock.
func (pw *progressWriter) Write(p []byte) (int, error) {
	n, err := pw.w.Write(p)
	if err == nil && bytes.Contains(p, []byte(`"notifications/progress"`)) {
		var m struct {
			Params struct {
				Token    json.RawMessage `json:"progressToken"`
				Progress float64         `json:"progress"`
			} `json:"params"`
		}
		if json.Unmarshal(p, &m) == nil && len(m.Params.Token) > 0 {
			key := string(m.Params.Token)
			pw.mu.Lock()
			if int(m.Params.Progress) > pw.written[key] {
				pw.written[key] = int(m.Params.Progress)
			}
			for _, ch := range pw.waiters[key] {
				close(ch)
			}
			delete(pw.waiters, key)
			pw.mu.Unlock()
		}
	}
	return n, err
}

// wait blocks until progress for token has been written or ctx ends, then forgets
// the token.
func (pw *progressWriter) wait(ctx context.Context, token any, progress int) {
	b, err := json.Marshal(token)
	if err != nil {
		return
	}
	key := string(b)
	defer func() {
		pw.mu.Lock()
		delete(pw.written, key)
		delete(pw.waiters, key)
		pw.mu.Unlock()
	}()
	for {
		pw.mu.Lock()
		if pw.written[key] >= progress {
			pw.mu.Unlock()
			return
		}
		ch := make(chan struct{})
		pw.waiters[key] = append(pw.waiters[key], ch)
		pw.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}
