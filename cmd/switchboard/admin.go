package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/internal/admin"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/supervisor"
	"github.com/switchboard-mcp/switchboard/vault"
)

// The admin operations. While `switchboard serve` runs, CLI commands that
// change state send them over the admin socket (internal/admin); with no
// server running the CLI opens the data dir itself and runs the same table.

// opsEnv is what the operations act on: the stores, and the running
// gateway's parts (run is nil offline).
type opsEnv struct {
	cfg   func() *providers.Config
	vault *vault.Vault
	id    *identity
	acc   *access
	audit func(audit.Record)
	run   *running
}

// running is the part of a serving gateway operations reach.
type running struct {
	rel  *providers.Reloader
	mux  *mux.Server
	sup  *supervisor.Supervisor
	live *live
}

// errOnlineOnly is returned by operations that need a running gateway.
var errOnlineOnly = errors.New("no gateway is running for this config (start `switchboard serve`)")

// adminOps is the serving gateway's table of operations.
func (m *Main) adminOps() admin.Ops {
	return opsTable(&opsEnv{cfg: m.rel.Config, vault: m.vault, id: m.id, acc: m.acc, audit: m.ops.event,
		run: &running{rel: m.rel, mux: m.mux, sup: m.sup, live: m.live}})
}

// opsTable is every admin operation, built in this one place.
func opsTable(env *opsEnv) admin.Ops {
	online := func(f func(ctx context.Context, r *running, raw json.RawMessage) (any, error)) admin.Op {
		return func(ctx context.Context, raw json.RawMessage) (any, error) {
			if env.run == nil {
				return nil, errOnlineOnly
			}
			return f(ctx, env.run, raw)
		}
	}
	return admin.Ops{
		"reload": online(func(ctx context.Context, r *running, _ json.RawMessage) (any, error) {
			return r.rel.Reload(ctx, "admin")
		}),
		"tools": online(func(ctx context.Context, r *running, raw json.RawMessage) (any, error) {
			a, err := decode[toolsArgs](raw)
			if err != nil {
				return nil, err
			}
			return r.tools(ctx, env.id, a)
		}),
		"skills.stale": online(func(ctx context.Context, r *running, _ json.RawMessage) (any, error) { return r.live.stale(r.mux), nil }),

		"user.add":    env.userAdd,
		"user.list":   func(context.Context, json.RawMessage) (any, error) { return env.id.users.List() },
		"user.rm":     env.userRm,
		"user.rotate": env.userRotate,

		"service.token":  env.serviceToken,
		"service.revoke": env.serviceRevoke,
		"service.list":   func(context.Context, json.RawMessage) (any, error) { return env.id.tokLog.List() },

		"secret.set":   func(ctx context.Context, raw json.RawMessage) (any, error) { return env.secretChange(ctx, raw, true) },
		"secret.rm":    func(ctx context.Context, raw json.RawMessage) (any, error) { return env.secretChange(ctx, raw, false) },
		"secret.list":  func(context.Context, json.RawMessage) (any, error) { return env.vault.List() },
		"vault.rotate": env.vaultRotate,

		"connect": env.connect,
		"connect.oauth": online(func(ctx context.Context, r *running, raw json.RawMessage) (any, error) {
			a, err := decode[connArgs](raw)
			if err != nil {
				return nil, err
			}
			who, err := env.id.principal(a.User)
			if err != nil {
				return nil, err
			}
			link, err := env.acc.connectLink(ctx, who, a.Provider, true)
			if err != nil {
				return nil, err
			}
			return map[string]string{"url": link}, nil
		}),
		"disconnect":  env.disconnect,
		"connections": env.connections,
		"prefs":       env.prefs,

		"audit.digest": env.auditDigest,
		"audit.verify": func(_ context.Context, raw json.RawMessage) (any, error) {
			a, err := decode[auditVerifyArgs](raw)
			if err != nil {
				return nil, err
			}
			key, err := auditKey(env.vault)
			if err != nil {
				return nil, err
			}
			if a.Dir != "" {
				return audit.VerifyDir(a.Dir, key)
			}
			return audit.VerifyWithKey(env.cfg().Audit.File, key)
		},
	}
}

func decode[T any](raw json.RawMessage) (T, error) {
	var a T
	if len(raw) == 0 || string(raw) == "null" {
		return a, nil
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, switchboard.Errorf(switchboard.EINVALID, "decoding the arguments: %v", err)
	}
	return a, nil
}

func (env *opsEnv) connect(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[connArgs](raw)
	if err != nil {
		return nil, err
	}
	who, err := env.id.principal(a.User)
	if err != nil {
		return nil, err
	}
	return nil, env.acc.connect(ctx, who, a.Provider, a.Values, true)
}

func (env *opsEnv) disconnect(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[connArgs](raw)
	if err != nil {
		return nil, err
	}
	return nil, env.acc.Disconnect(ctx, &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: a.User}, a.Provider)
}

func (env *opsEnv) connections(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[connArgs](raw)
	if err != nil {
		return nil, err
	}
	return env.vault.Connections(a.User)
}

func (env *opsEnv) prefs(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[prefArgs](raw)
	if err != nil {
		return nil, err
	}
	who, err := env.id.principal(a.User)
	if err != nil {
		return nil, err
	}
	return nil, env.acc.setHidden(ctx, who, a.Provider, a.Hide, true)
}

// tools shows what a caller sees and why each hidden provider is hidden.
func (r *running) tools(ctx context.Context, id *identity, a toolsArgs) (toolsView, error) {
	var p *switchboard.Principal
	switch {
	case a.Service != "":
		p = &switchboard.Principal{Kind: switchboard.PrincipalService, ID: a.Service, Endpoint: switchboard.EndpointInternal}
	case a.User != "":
		u, err := id.users.Get(a.User)
		if err != nil {
			return toolsView{}, err
		}
		p = &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: u.Name, Roles: u.Roles, Endpoint: switchboard.EndpointPublic}
	default:
		return toolsView{}, switchboard.Errorf(switchboard.EINVALID, "name a --user or an --internal service")
	}
	pol := r.live.policy()
	v := toolsView{Principal: p.String(), Tools: r.mux.VisibleTools(ctx, p), Hidden: map[string]string{}}
	for _, prov := range r.rel.Config().SortedProviders() {
		if !prov.IsEnabled() {
			v.Hidden[prov.Name] = "disabled"
			continue
		}
		if why := pol.Why(p, prov.Name); why != auth.AxisNone {
			v.Hidden[prov.Name] = string(why)
			continue
		}
		if len(r.mux.ProviderTools(prov.Name)) == 0 && !prov.UserScoped() {
			v.Hidden[prov.Name] = "not running"
		}
	}
	return v, nil
}

// adminClient runs operations on the running gateway, or offline on the data dir.
type adminClient struct {
	cfg    *providers.Config
	cfgErr error // the config does not validate: only a running gateway can serve ops
	socket string
	env    *opsEnv // offline, opened lazily
	closer func() error
}

func newAdminClient(cmd *cobra.Command) (*adminClient, error) {
	cfg, err := providers.LoadFile(configPath(cmd))
	if err == nil {
		return &adminClient{cfg: cfg, socket: filepath.Join(cfg.DataDir, admin.SocketName)}, nil
	}
	// An invalid file may still name the data dir of a running gateway, which
	// keeps serving its last good config (and can report why this one fails).
	dir, derr := providers.DataDirOf(configPath(cmd))
	if derr != nil {
		return nil, err
	}
	return &adminClient{cfgErr: err, socket: filepath.Join(dir, admin.SocketName)}, nil
}

// Online reports whether a gateway answers on the admin socket.
func (c *adminClient) Online() bool { return admin.Dial(c.socket) != nil }

// call runs op with args and decodes the result into out (which may be nil).
func (c *adminClient) call(ctx context.Context, op string, args, out any) error {
	in, err := json.Marshal(args)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if cl := admin.Dial(c.socket); cl != nil {
		raw, err = cl.Call(ctx, op, in)
	} else {
		raw, err = c.local(ctx, op, in)
	}
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func (c *adminClient) local(ctx context.Context, op string, in []byte) (json.RawMessage, error) {
	if c.cfgErr != nil {
		return nil, c.cfgErr
	}
	if c.env == nil {
		env, closer, err := offlineEnv(c.cfg)
		if err != nil {
			return nil, err
		}
		c.env, c.closer = env, closer
	}
	res, err := opsTable(c.env).Run(ctx, op, in)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// Close releases what an offline operation opened.
func (c *adminClient) Close() error {
	if c.closer != nil {
		return c.closer()
	}
	return nil
}

// config returns the config, or why it does not validate.
func (c *adminClient) config() (*providers.Config, error) { return c.cfg, c.cfgErr }

// offlineEnv opens the data dir of cfg for operations with no gateway serving it.
func offlineEnv(cfg *providers.Config) (*opsEnv, func() error, error) {
	st, v, err := openVault(cfg, os.Getenv, false, vault.Options{}, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	closer := func() error { return errors.Join(v.Close(), st.Close()) }
	id, err := openIdentity(st, v, cfg, zerolog.Nop())
	if err != nil {
		_ = closer()
		return nil, nil, err
	}
	env := &opsEnv{cfg: func() *providers.Config { return cfg }, vault: v, id: id}
	env.audit = func(rec audit.Record) { offlineAudit(cfg, v, rec) }
	l := &live{}
	l.set(cfg, id)
	env.acc = &access{vault: v, id: id, live: l, audit: env.audit}
	return env, closer, nil
}

// offlineAudit writes rec to the audit log file, opened for this one record
// (nothing else writes it while no gateway runs).
func offlineAudit(cfg *providers.Config, v *vault.Vault, rec audit.Record) {
	if cfg.Audit.Disabled {
		return
	}
	key, err := auditKey(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard: audit record not written:", err)
		return
	}
	l, err := audit.Open(audit.Config{File: cfg.Audit.File, MaxSizeMB: cfg.Audit.MaxSizeMB,
		MaxBackups: cfg.Audit.MaxBackups, MaxAgeDays: cfg.Audit.MaxAgeDays, DigestKey: key, Fsync: cfg.Audit.Fsync,
		Replica: cfg.Replica}, zerolog.Nop())
	if err == nil {
		for _, a := range l.Anomalies() {
			fmt.Fprintln(os.Stderr, "switchboard: audit log integrity check failed:", a)
		}
		err = l.Write(rec)
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard: audit record not written:", err)
	}
}

// adminCall runs op through the running gateway or offline.
func adminCall(cmd *cobra.Command, op string, args, out any) error {
	c, err := newAdminClient(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.call(cmd.Context(), op, args, out)
}

// offlineConfig returns the valid config for a command that must run with no
// gateway serving this data dir; ifOnline is the error when one is.
func offlineConfig(cmd *cobra.Command, ifOnline string) (*providers.Config, error) {
	c, err := newAdminClient(cmd)
	if err != nil {
		return nil, err
	}
	if c.Online() {
		return nil, errors.New(ifOnline)
	}
	return c.config()
}

// openOffline opens cfg's store and vault for a command with no gateway
// serving the data dir; closing the vault closes the store.
func openOffline(cfg *providers.Config, allowGenerate bool) (*vault.Vault, switchboard.Store, error) {
	st, v, err := openVault(cfg, os.Getenv, allowGenerate, vault.Options{CloseStore: true}, zerolog.Nop())
	return v, st, err
}
