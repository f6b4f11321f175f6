package harness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// FloorArg, as the only argument of a binary that calls ServeFloor for it,
// turns that process into the HTTP floor server.
const FloorArg = "-serve-floor"

// RelayArg, followed by a provider's executable, turns a binary that calls
// ServeRelay for it into the relay floor server.
const RelayArg = "-serve-relay"

// ServeFloor runs the HTTP floor: a bare net/http server on a loopback port
// (printed as the first line of stdout) that answers every JSON-RPC POST with
// its params as the result, after splitting its envelope (jsonrpc.Envelope,
// which delimits but does not validate), and hands out session ids on
// initialize. It is what any HTTP gateway pays at least: no MCP, no
// authentication, no provider. It returns when stdin closes.
func ServeFloor() error {
	return serveFloor(floorAnswer)
}

// floorAnswer answers a request with its params.
func floorAnswer(_ context.Context, m *jsonrpc.Message) (json.RawMessage, error) {
	if len(m.Params) == 0 {
		return json.RawMessage(`{"tools":[]}`), nil
	}
	return m.Params, nil
}

// ServeRelay runs the relay floor: the HTTP floor with a provider behind it.
// It starts command as its one child, initializes it, and passes every
// request but initialize to it over stdio with supervisor.Conn (the client
// the gateway uses for its providers); the child's result is the answer. It
// is what an HTTP front end to a stdio provider pays at least (HTTP, the
// child's pipe and the envelopes on both) and nothing a gateway adds: no MCP
// sessions or names, no authentication, policy, audit, logs or metrics. It
// returns when stdin closes.
func ServeRelay(command string) error {
	// The child runs as the direct side's and the gateway's children do: the
	// GOMAXPROCS this server was given (the runtime has read it) is not its.
	_ = os.Unsetenv("GOMAXPROCS")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	d, err := StartDirect(ctx, command)
	cancel()
	if err != nil {
		return err
	}
	defer d.Stop()
	return serveFloor(relayAnswer(d))
}

// relayAnswer answers a request with d's answer to it.
func relayAnswer(d *Direct) func(context.Context, *jsonrpc.Message) (json.RawMessage, error) {
	return func(ctx context.Context, m *jsonrpc.Message) (json.RawMessage, error) {
		return d.Call(ctx, m.Method, m.Params)
	}
}

// serveFloor serves answer on a loopback port until stdin closes.
func serveFloor(answer func(context.Context, *jsonrpc.Message) (json.RawMessage, error)) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("http://" + ln.Addr().String() + "/mcp")
	srv := &http.Server{Handler: floorHandler(answer), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// floorHandler splits each POST's envelope, accepts notifications, answers
// initialize with a session id (and its own params) and every other request
// with answer's result (or its error, as a JSON-RPC error when it is one).
func floorHandler(answer func(context.Context, *jsonrpc.Message) (json.RawMessage, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
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
		if len(env.ID) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var result json.RawMessage
		if env.Method == "initialize" {
			var b [16]byte
			_, _ = rand.Read(b[:])
			w.Header().Set("Mcp-Session-Id", hex.EncodeToString(b[:]))
			if result = env.Params; len(result) == 0 { // what the floor always answered
				result = json.RawMessage(`{}`)
			}
		} else if result, err = answer(r.Context(), &env); err != nil {
			var re *switchboard.RPCError
			if !errors.As(err, &re) {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			out := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%q}}`, env.ID, re.Code, re.Message)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(out)
			return
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
}

// Floor is a running floor server process (the HTTP floor or the relay
// floor).
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
	return startFloor(ctx, "floor server", FloorEnv, exe, FloorArg)
}

// StartRelay runs exe with RelayArg and provider, and env (KEY=VALUE) added
// to its environment, and waits for the URL it serves.
func StartRelay(ctx context.Context, exe, provider string, env []string) (*Floor, error) {
	return startFloor(ctx, "relay floor server", env, exe, RelayArg, provider)
}

func startFloor(ctx context.Context, what string, env []string, exe string, args ...string) (*Floor, error) {
	cmd, stdin, stdout, err := pipedChild(exe, args...)
	if err != nil {
		return nil, err
	}
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	f := &Floor{Cmd: cmd, stdin: stdin, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the %s: %w", what, err)
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
		return nil, fmt.Errorf("the %s exited during startup", what)
	case <-ctx.Done():
		_ = f.Stop()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		_ = f.Stop()
		return nil, fmt.Errorf("the %s did not start in 10s", what)
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
