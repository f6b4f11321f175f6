package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
	"github.com/switchboard-mcp/switchboard/supervisor"
)

// Direct is a provider child driven straight over stdio with
// supervisor.Conn, the JSON-RPC client the gateway itself uses: the
// no-gateway baseline.
type Direct struct {
	Cmd  *exec.Cmd
	Conn *supervisor.Conn
	// Started is when the child was executed.
	Started time.Time
	done    chan struct{}
	once    sync.Once
	stopErr error
}

// StartDirect runs command with args, sends initialize and
// notifications/initialized, and returns the connected child.
func StartDirect(ctx context.Context, command string, args ...string) (*Direct, error) {
	cmd, stdin, stdout, err := pipedChild(command, args...)
	if err != nil {
		return nil, err
	}
	d := &Direct{Cmd: cmd, done: make(chan struct{})}
	d.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", command, err)
	}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	d.Conn = supervisor.NewConn(stdout, stdin, supervisor.ConnOptions{MaxMessageBytes: 64 << 20})
	register(cmd.Process.Pid, d.Stop)
	if _, err := d.Conn.CallParams(ctx, "initialize", json.RawMessage(mcpclient.InitializeParams)); err != nil {
		_ = d.Stop()
		return nil, fmt.Errorf("initializing %s: %w", command, err)
	}
	if err := d.Conn.Notify(ctx, "notifications/initialized", nil); err != nil {
		_ = d.Stop()
		return nil, fmt.Errorf("initializing %s: %w", command, err)
	}
	return d, nil
}

// Pid returns the child's process id.
func (d *Direct) Pid() int { return d.Cmd.Process.Pid }

// Call sends one request with raw params and returns the raw result.
func (d *Direct) Call(ctx context.Context, method string, params []byte) (json.RawMessage, error) {
	return d.Conn.Call(ctx, &switchboard.Request{Method: method, Params: params})
}

// Stop closes the child's stdin, then signals it if it does not exit. It is
// idempotent.
func (d *Direct) Stop() error {
	d.once.Do(func() {
		defer unregister(d.Cmd.Process.Pid)
		if d.Conn != nil {
			_ = d.Conn.CloseWrite()
		}
		select {
		case <-d.done:
		case <-time.After(2 * time.Second):
		}
		d.stopErr = stopProcess(d.Cmd, d.done, syscall.SIGTERM, 2*time.Second)
		if d.Conn != nil {
			_ = d.Conn.Close()
		}
	})
	return d.stopErr
}

// pipedChild prepares a child in its own process group, killed with us, with
// stdin and stdout piped and stderr shared.
func pipedChild(name string, args ...string) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	return cmd, stdin, stdout, nil
}
