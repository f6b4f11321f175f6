package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// FloorArg, as the only argument of a binary that calls ServeFloor for it,
// turns that process into the HTTP floor server.
const FloorArg = "-serve-floor"

// ServeFloor runs the HTTP floor: a bare net/http server on a loopback port
// (printed as the first line of stdout) that answers every JSON-RPC POST with
// its params as the result, after splitting its envelope (jsonrpc.Envelope,
// which delimits but does not validate), and hands out session ids on
// initialize. It is what any HTTP gateway pays at least: no MCP, no
// authentication, no provider. It returns when stdin closes.
func ServeFloor() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("http://" + ln.Addr().String() + "/mcp")
	srv := &http.Server{Handler: http.HandlerFunc(floorHandler), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

func floorHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusOK)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var env jsonrpc.Message
	if jsonrpc.Parse(body, &env, jsonrpc.EdgeDepth) != nil || env.JSONRPC != "2.0" || env.Method == "" {
		http.Error(w, "not a JSON-RPC message", http.StatusBadRequest)
		return
	}
	method := env.Method
	if len(env.ID) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if method == "initialize" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		w.Header().Set("Mcp-Session-Id", hex.EncodeToString(b[:]))
	}
	result := env.Params
	if len(result) == 0 {
		result = json.RawMessage(`{"tools":[]}`)
	}
	out := make([]byte, 0, len(result)+64)
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, env.ID...)
	out = append(out, `,"result":`...)
	out = append(out, result...)
	out = append(out, '}')
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// Floor is a running floor server process.
type Floor struct {
	Cmd     *exec.Cmd
	URL     string
	stdin   io.WriteCloser
	done    chan struct{}
	once    sync.Once
	stopErr error
}

// StartFloor runs exe with FloorArg and waits for the URL it serves.
func StartFloor(ctx context.Context, exe string) (*Floor, error) {
	cmd, stdin, stdout, err := pipedChild(exe, FloorArg)
	if err != nil {
		return nil, err
	}
	if len(FloorEnv) > 0 {
		cmd.Env = append(os.Environ(), FloorEnv...)
	}
	f := &Floor{Cmd: cmd, stdin: stdin, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the floor server: %w", err)
	}
	go func() {
		_ = cmd.Wait()
		close(f.done)
	}()
	register(cmd.Process.Pid, f.Stop)
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- strings.TrimSpace(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case f.URL = <-line:
		return f, nil
	case <-f.done:
		return nil, fmt.Errorf("the floor server exited during startup")
	case <-ctx.Done():
		_ = f.Stop()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		_ = f.Stop()
		return nil, fmt.Errorf("the floor server did not start in 10s")
	}
}

// Pid returns the floor server's process id.
func (f *Floor) Pid() int { return f.Cmd.Process.Pid }

// Stop closes the server's stdin and waits for it to exit. It is idempotent.
func (f *Floor) Stop() error {
	f.once.Do(func() {
		defer unregister(f.Cmd.Process.Pid)
		_ = f.stdin.Close()
		select {
		case <-f.done:
		case <-time.After(2 * time.Second):
		}
		f.stopErr = stopProcess(f.Cmd, f.done, syscall.SIGTERM, 2*time.Second)
	})
	return f.stopErr
}
