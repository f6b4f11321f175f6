package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the shared binary after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// mustBinary builds this command once per test run and returns its path.
func mustBinary(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and runs the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "echo-provider-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "echo")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// mustStdio runs the binary as a child with env added, and returns a started,
// initialized client plus a channel of the progress notifications it receives.
func mustStdio(tb testing.TB, env []string, opts ...client.ClientOption) (*client.Client, <-chan mcp.JSONRPCNotification) {
	tb.Helper()
	c := client.NewClient(transport.NewStdio(mustBinary(tb), env), opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	progress := make(chan mcp.JSONRPCNotification, 1024)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			progress <- n
		}
	})
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		tb.Fatal(err)
	}
	return c, progress
}

var eras = []struct {
	name string
	opts []client.ClientOption
}{
	{"modern", nil},
	{"legacy", []client.ClientOption{client.WithLegacyProtocolOnly()}},
}

func TestBinaryEchoAndEnv(t *testing.T) {
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			c, _ := mustStdio(t, []string{"ECHO_INJECTED=from-the-parent"}, era.opts...)
			for _, size := range []int{64 << 10, 1 << 20} {
				text := strings.Repeat("x", size-1) + "\n"
				if got := onlyText(t, mustCall(t, c, "echo", map[string]any{"text": text})); got != text {
					t.Fatalf("echo of %d bytes came back as %d bytes", size, len(got))
				}
			}
			if got := onlyText(t, mustCall(t, c, "env", map[string]any{"name": "ECHO_INJECTED"})); got != "from-the-parent" {
				t.Fatalf("env = %q", got)
			}
			if got := onlyText(t, mustCall(t, c, "add", map[string]any{"a": 1, "b": 2})); got != "3" {
				t.Fatalf("add = %q", got)
			}
		})
	}
}

// TestBinaryProgress checks that every progress notification arrives, in order, and
// before the result, for several concurrent calls.
func TestBinaryProgress(t *testing.T) {
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			c, progress := mustStdio(t, nil, era.opts...)
			const calls, steps = 8, 4
			var wg sync.WaitGroup
			errs := make(chan error, calls)
			for i := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					token := fmt.Sprintf("tok-%d", i)
					res, err := call(context.Background(), c, "sleep", map[string]any{"ms": 100, "steps": steps}, &mcp.Meta{ProgressToken: token})
					if err != nil || res.IsError {
						errs <- fmt.Errorf("%s: %v %v", token, err, res)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Notifications are delivered on the client's read loop before the response
			// that follows them, so all of them are in the channel by now.
			seen := map[string][]float64{}
			for len(progress) > 0 {
				n := <-progress
				tok, _ := n.Params.AdditionalFields["progressToken"].(string)
				p, _ := n.Params.AdditionalFields["progress"].(float64)
				seen[tok] = append(seen[tok], p)
			}
			for i := range calls {
				tok := fmt.Sprintf("tok-%d", i)
				if fmt.Sprint(seen[tok]) != "[1 2 3 4]" {
					t.Errorf("%s: progress = %v, want [1 2 3 4]", tok, seen[tok])
				}
			}
		})
	}
}

// TestBinaryConcurrency checks that 16 concurrent slow calls overlap (the default
// mcp-go stdio pool of 5 workers would need at least 4 rounds).
func TestBinaryConcurrency(t *testing.T) {
	c, _ := mustStdio(t, nil)
	const callers = 16
	const each = time.Second
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := call(context.Background(), c, "sleep", map[string]any{"ms": each.Milliseconds()}, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Serial rounds of 5 would take >= 4 s; parallel takes ~1 s. 3.5 s leaves room
	// for a loaded machine without letting a 5-worker pool pass.
	if elapsed := time.Since(start); elapsed > 3500*time.Millisecond {
		t.Fatalf("%d concurrent %v sleeps took %v", callers, each, elapsed)
	}
}

func TestBinaryCrashTool(t *testing.T) {
	c, _ := mustStdio(t, []string{"ECHO_CRASH_TOOL=1"})
	_, err := call(context.Background(), c, "crash", map[string]any{"code": 5}, nil)
	if err == nil {
		t.Fatal("crash returned a result")
	}
	if _, err := call(context.Background(), c, "echo", map[string]any{"text": "x"}, nil); err == nil {
		t.Fatal("the process still answers after crash")
	}
}

func TestBinaryExitsOnStdinEOF(t *testing.T) {
	cmd := exec.Command(mustBinary(t))
	cmd.Stdin = strings.NewReader("")
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit on EOF: %v", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("did not exit when stdin closed")
	}
}
