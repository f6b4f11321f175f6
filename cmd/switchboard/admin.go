package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

// The admin API. While `switchboard serve` runs it owns the bbolt file (bbolt
// allows one opener), so CLI commands that change state talk to it over a unix
// socket in the data dir (mode 0600: only the gateway's own user can connect).
// With no server running, the CLI opens the file itself and runs the same ops.

const adminSocketName = "admin.sock"

// adminOp is one admin operation: it decodes its arguments from JSON and returns
// a JSON-able result.
type adminOp func(ctx context.Context, env *adminEnv, args json.RawMessage) (any, error)

// adminEnv is what ops act on: the stores, and the running gateway if any.
type adminEnv struct {
	cfg   *providers.Config
	store switchboard.Store
	vault *vault.Vault
	main  *Main // nil when the CLI runs an op offline
}

var adminOps = map[string]adminOp{}

func registerOp(name string, op adminOp) { adminOps[name] = op }

// runOp dispatches one op.
func runOp(ctx context.Context, env *adminEnv, name string, args json.RawMessage) (any, error) {
	op, ok := adminOps[name]
	if !ok {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "unknown admin operation %q", name)
	}
	return op(ctx, env, args)
}

// adminServer serves ops on the unix socket.
type adminServer struct {
	srv  *http.Server
	ln   net.Listener
	path string
}

func startAdmin(m *Main, path string) (*adminServer, error) {
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
			writeJSON(w, http.StatusBadRequest, adminReply{Error: "cannot read request"})
			return
		}
		env := &adminEnv{cfg: m.config(), store: m.store, vault: m.vault, main: m}
		res, err := runOp(r.Context(), env, r.PathValue("op"), args)
		if err != nil {
			m.Log.Warn().Str("op", r.PathValue("op")).Str("error", switchboard.ErrorMessage(err)).Msg("admin operation failed")
			writeJSON(w, http.StatusOK, adminReply{Error: switchboard.ErrorMessage(err), Code: switchboard.ErrorCode(err)})
			return
		}
		b, _ := json.Marshal(res)
		writeJSON(w, http.StatusOK, adminReply{Result: b})
	})
	a := &adminServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, ln: ln, path: path}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

func (a *adminServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
	_ = os.Remove(a.path)
}

type adminReply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
}

// adminClient runs ops on the running gateway, or offline on the data dir.
type adminClient struct {
	cfg    *providers.Config
	cfgErr error // the config does not validate: only a running gateway can serve ops
	socket string
	// offline state, opened lazily
	store switchboard.Store
	vault *vault.Vault
}

func newAdminClient(cmd *cobra.Command) (*adminClient, error) {
	cfg, err := providers.LoadFile(configPath(cmd))
	if err == nil {
		return &adminClient{cfg: cfg, socket: filepath.Join(cfg.DataDir, adminSocketName)}, nil
	}
	// An invalid file may still name the data dir of a running gateway, which
	// keeps serving its last good config (and can report why this one fails).
	dir, derr := providers.DataDirOf(configPath(cmd))
	if derr != nil {
		return nil, err
	}
	return &adminClient{cfgErr: err, socket: filepath.Join(dir, adminSocketName)}, nil
}

// call runs op with args and decodes the result into out (which may be nil).
func (c *adminClient) call(ctx context.Context, op string, args, out any) error {
	in, err := json.Marshal(args)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if hc, ok := c.dial(); ok {
		raw, err = c.remote(ctx, hc, op, in)
	} else {
		raw, err = c.local(ctx, op, in)
	}
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// Online reports whether a gateway answers on the admin socket.
func (c *adminClient) Online() bool {
	_, ok := c.dial()
	return ok
}

func (c *adminClient) dial() (*http.Client, bool) {
	conn, err := net.DialTimeout("unix", c.socket, 500*time.Millisecond)
	if err != nil {
		return nil, false
	}
	conn.Close()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.socket)
		},
	}, Timeout: 60 * time.Second}, true
}

func (c *adminClient) remote(ctx context.Context, hc *http.Client, op string, in []byte) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://switchboard/v1/"+op, bytes.NewReader(in))
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	var rep adminReply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("admin socket: %s: %w", resp.Status, err)
	}
	if rep.Error != "" {
		return nil, &switchboard.Error{Code: rep.Code, Message: rep.Error}
	}
	return rep.Result, nil
}

func (c *adminClient) local(ctx context.Context, op string, in []byte) (json.RawMessage, error) {
	if c.cfgErr != nil {
		return nil, c.cfgErr
	}
	if c.vault == nil {
		v, st, err := openVaultOffline(c.cfg, false)
		if err != nil {
			return nil, err
		}
		c.vault, c.store = v, st
	}
	res, err := runOp(ctx, &adminEnv{cfg: c.cfg, store: c.store, vault: c.vault}, op, in)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// Close releases an offline vault.
func (c *adminClient) Close() error {
	if c.vault != nil {
		return c.vault.Close()
	}
	return nil
}

// config returns the config, or why it does not validate.
func (c *adminClient) config() (*providers.Config, error) { return c.cfg, c.cfgErr }

// openVaultOffline opens the store and vault of cfg without a running
// server. Closing the vault closes the store.
func openVaultOffline(cfg *providers.Config, allowGenerate bool) (*vault.Vault, *bolt.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating data dir: %w", err)
	}
	key, _, err := vault.LoadKey(vault.KeySource{
		EnvValue:      os.Getenv(vault.EnvKey),
		KeyFile:       cfg.Vault.KeyFile,
		DataDir:       cfg.DataDir,
		AllowGenerate: allowGenerate,
	})
	if err != nil {
		return nil, nil, err
	}
	defer key.Zero()
	st, err := bolt.Open(filepath.Join(cfg.DataDir, bolt.FileName), bolt.Options{})
	if err != nil {
		return nil, nil, err
	}
	v, err := vault.Open(context.Background(), st, key, vault.Options{CloseStore: true})
	if err != nil {
		return nil, nil, err
	}
	return v, st, nil
}

// errOnlineOnly is returned by ops that need a running gateway.
var errOnlineOnly = errors.New("no gateway is running for this config (start `switchboard serve`)")

// audit writes rec to the audit log: the running gateway's, or, when the CLI
// runs an op offline, the same file opened for this one record (nothing else
// writes it while no gateway runs).
func (env *adminEnv) audit(rec audit.Record) {
	if env.main != nil {
		env.main.auditEvent(rec)
		return
	}
	if env.cfg.Audit.Disabled {
		return
	}
	key, err := auditKey(env.vault)
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard: audit record not written:", err)
		return
	}
	l, err := audit.Open(audit.Config{File: env.cfg.Audit.File, MaxSizeMB: env.cfg.Audit.MaxSizeMB,
		MaxBackups: env.cfg.Audit.MaxBackups, MaxAgeDays: env.cfg.Audit.MaxAgeDays, DigestKey: key, Fsync: env.cfg.Audit.Fsync}, zerolog.Nop())
	if err == nil {
		for _, a := range l.Anomalies() {
			fmt.Fprintln(os.Stderr, "switchboard: audit log integrity check failed:", a)
		}
	}
	if err == nil {
		err = l.Write(rec)
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard: audit record not written:", err)
	}
}
