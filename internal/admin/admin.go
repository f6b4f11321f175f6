// Package admin is the transport of the gateway's admin operations: while
// `switchboard serve` runs it owns the bbolt file (bbolt allows one opener),
// so CLI commands that change state send their operation over a unix socket
// in the data dir (mode 0600: only the gateway's own user can connect). The
// operations themselves are a table the caller builds (Ops).
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// SocketName is the admin socket's file name in the data dir.
const SocketName = "admin.sock"

// Op is one admin operation: it decodes its arguments from JSON and returns
// a JSON-able result.
type Op func(ctx context.Context, args json.RawMessage) (any, error)

// Ops is a table of operations by name.
type Ops map[string]Op

// Run runs the operation name; an unknown name is an ENOTFOUND error.
func (o Ops) Run(ctx context.Context, name string, args json.RawMessage) (any, error) {
	op, ok := o[name]
	if !ok {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "unknown admin operation %q", name)
	}
	return op(ctx, args)
}

// reply is the socket's answer to one operation.
type reply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
}

// Server serves operations on the socket.
type Server struct {
	srv  *http.Server
	path string
}

// Listen serves ops at path. It refuses to start when another gateway
// answers there, and replaces a stale socket left by a crashed one.
func Listen(path string, ops Ops, log zerolog.Logger) (*Server, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("another switchboard is serving this data dir (%s answers)", path)
	}
	_ = os.Remove(path) // a stale socket from a crashed run
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	h := http.NewServeMux()
	h.HandleFunc("POST /v1/{op}", func(w http.ResponseWriter, r *http.Request) {
		args, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			write(w, reply{Error: "cannot read request"})
			return
		}
		res, err := ops.Run(r.Context(), r.PathValue("op"), args)
		if err != nil {
			log.Warn().Str("op", r.PathValue("op")).Str("error", switchboard.ErrorMessage(err)).Msg("admin operation failed")
			write(w, reply{Error: switchboard.ErrorMessage(err), Code: switchboard.ErrorCode(err)})
			return
		}
		b, err := json.Marshal(res)
		if err != nil {
			write(w, reply{Error: "encoding the result: " + err.Error(), Code: switchboard.EINTERNAL})
			return
		}
		write(w, reply{Result: b})
	})
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, path: path}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func write(w http.ResponseWriter, r reply) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r)
}

// Close stops serving and removes the socket.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = os.Remove(s.path)
}

// Client calls a gateway's operations.
type Client struct {
	socket string
	hc     *http.Client
}

// Dial returns a client of the gateway serving socket, or nil when none answers.
func Dial(socket string) *Client {
	conn, err := net.DialTimeout("unix", socket, 500*time.Millisecond)
	if err != nil {
		return nil
	}
	conn.Close()
	return &Client{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}, Timeout: 2 * time.Minute}}
}

// Call runs op with the JSON arguments in and returns the JSON result. An
// operation's error comes back as a *switchboard.Error with its code.
func (c *Client) Call(ctx context.Context, op string, in []byte) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://switchboard/v1/"+op, bytes.NewReader(in))
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	var rep reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("admin socket: %s: %w", resp.Status, err)
	}
	if rep.Error != "" {
		return nil, &switchboard.Error{Code: rep.Code, Message: rep.Error}
	}
	return rep.Result, nil
}
