package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/api"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/internal/admin"
	"github.com/switchboard-mcp/switchboard/internal/redact"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/oauth"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/remote"
	"github.com/switchboard-mcp/switchboard/skills"
	"github.com/switchboard-mcp/switchboard/supervisor"
	"github.com/switchboard-mcp/switchboard/vault"
)

// Main is the gateway daemon: everything `switchboard serve` runs. End-to-end
// tests build one with a ":0" listen address and a temp data dir.
type Main struct {
	// ConfigPath is the gateway.yaml to serve.
	ConfigPath string
	// Stderr receives the operational log (default os.Stderr).
	Stderr io.Writer
	// Getenv reads the gateway's environment (default os.Getenv); tests replace it.
	Getenv func(string) string
	// ShutdownGrace bounds draining in-flight HTTP requests on Close.
	ShutdownGrace time.Duration
	// OnServing, if set, runs once the gateway is listening and providers are starting.
	OnServing func()
	// DevKey allows generating a missing vault key into the data dir (make run).
	DevKey bool
	// Adjust, if set, changes the config Open loaded before anything opens
	// (validate --live runs the providers on a free port in a throwaway
	// data dir). Reloads read the file as it is.
	Adjust func(*providers.Config)
	// FirstAdminKey is the API key of the admin user created on a fresh dev
	// install (DevKey), shown once; "" otherwise.
	FirstAdminKey string
	Log           zerolog.Logger

	parts
	closeOnce sync.Once
	closeErr  error
}

// parts is everything Open opened; Close releases it in reverse order.
type parts struct {
	redactor *redact.Redactor
	logs     *levelFilter
	store    switchboard.Store
	vault    *vault.Vault
	id       *identity
	ops      *ops
	live     *live
	edge     *auth.Edge
	sup      *supervisor.Supervisor
	resolver *providers.Resolver
	rem      *remote.Manager
	oauth    *oauth.Manager
	tickets  *tickets
	mux      *mux.Server
	rel      *providers.Reloader
	acc      *access
	admin    *admin.Server
	web      *http.Server
	ln       net.Listener
	bg       background
}

// background is the goroutines Open starts; Close ends them.
type background struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewMain returns a Main for the config at path.
func NewMain(path string) *Main {
	return &Main{ConfigPath: path, Stderr: os.Stderr, Getenv: os.Getenv, ShutdownGrace: 10 * time.Second}
}

// Open loads the config, starts the providers and starts serving. The listener
// is bound synchronously, so a port in use fails here.
func (m *Main) Open(ctx context.Context) error {
	m.redactor = redact.New()
	cfg, err := providers.LoadFile(m.ConfigPath)
	if err != nil {
		return err
	}
	if m.Adjust != nil {
		m.Adjust(cfg)
	}
	m.logs = newLevelFilter(m.Stderr, m.redactor, cfg.Log.Level)
	m.Log = zerolog.New(m.logs).Level(zerolog.TraceLevel).With().Timestamp().Logger()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	if m.store, m.vault, err = openVault(cfg, m.Getenv, m.DevKey, vault.Options{Redactor: m.redactor, Logger: m.Log}, m.Log); err != nil {
		return err
	}
	if m.id, err = openIdentity(m.store, m.vault, cfg, m.Log); err != nil {
		return err
	}
	if m.DevKey && !cfg.Auth.Disabled {
		if m.FirstAdminKey, err = m.id.firstAdmin(); err != nil {
			return err
		}
	}
	if m.ops, err = openOps(cfg, m.vault, m.logs, m.redactor, m.Log); err != nil {
		return err
	}
	if m.ops.tel, err = openTracing(ctx, cfg, m.vault, m.Getenv, m.redactor, m.Log); err != nil {
		return err
	}
	m.live = &live{}
	m.live.set(cfg, m.id)
	m.edge = auth.NewEdge(m.id.authn, auth.EdgeConfig{}, m.ops.edgeHooks(), m.Log.With().Str("component", "edge").Logger())
	resolver := &providers.Resolver{Getenv: m.Getenv, Secrets: m.vault, Redactor: m.redactor}
	m.resolver = resolver
	m.sup = supervisor.New(m.Log, supervisor.Options{
		OnCatalog: func(k switchboard.InstanceKey, up switchboard.Upstream, cat *switchboard.Catalog) {
			m.mux.UpdateCatalog(k, up, cat)
		},
		OnNotification: func(k switchboard.InstanceKey, method string, p json.RawMessage) {
			m.mux.ProviderNotification(k, method, p)
		},
		OnEvent:  m.ops.providerEvent,
		Redact:   m.redactor.String,
		UserSpec: m.userSpec(resolver),
		Usable:   m.usableChildren,
		Tracer:   m.tracer(),
	})
	m.rem = remote.New(m.Log.With().Str("component", "remote").Logger(), remote.Options{
		OnCatalog: func(k switchboard.InstanceKey, up switchboard.Upstream, cat *switchboard.Catalog) {
			m.mux.UpdateCatalog(k, up, cat)
		},
		OnNotification: func(k switchboard.InstanceKey, method string, p json.RawMessage) {
			m.mux.ProviderNotification(k, method, p)
		},
		OnEvent: m.ops.remoteEvent,
		Redact:  m.redactor.String,
	})
	m.mux = mux.New(mux.Options{
		Logger:                  m.Log,
		Instances:               instances{m},
		Filter:                  m.live.policy(),
		SessionIdleTTL:          cfg.Sessions.IdleTimeout.D(),
		MaxSessionsPerPrincipal: cfg.Sessions.MaxPerPrincipal,
		MaxListensPerPrincipal:  cfg.Sessions.MaxListensPerPrincipal,
		SlowCall:                cfg.Log.SlowCall.D(),
		Instructions:            m.live.instructions,
		Observer:                callObserver{o: m.ops, redact: m.redactor.String},
		Redact:                  m.redactor.String,
		Tracer:                  m.tracer(),
	})
	m.acc = &access{vault: m.vault, id: m.id, live: m.live, audit: m.ops.event, changed: m.userChanged,
		link: m.connectLink, disconnectAuth: func(ctx context.Context, user, provider string) error { return m.oauth.Disconnect(ctx, user, provider) }}
	m.rel = providers.NewReloader(providers.ReloaderOptions{
		Path: m.ConfigPath, Logger: m.Log, Resolver: resolver, Executor: executor{sup: m.sup, m: m},
		Check:      func(next *providers.Config) error { return auth.ValidateConfig(authConfig(next)) },
		Commit:     m.commit,
		Record:     m.ops.reloaded,
		SkillsHash: skills.Hash,
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	m.ln = limitConns(ln, cfg.Server, m.edge)
	if err := m.openOAuth(cfg); err != nil {
		return err
	}
	m.rel.Start(ctx, cfg)
	m.web = httpServer(m.routes(), cfg.Server)
	go func() {
		if err := m.web.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Log.Error().Err(err).Msg("http server stopped")
		}
	}()
	if m.admin, err = admin.Listen(filepath.Join(cfg.DataDir, admin.SocketName), m.adminOps(), m.Log); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	m.bg.cancel = cancel
	for _, f := range []func(context.Context){m.rel.Run, m.edge.FlushRefusals, m.watchStore,
		func(ctx context.Context) { m.sup.Reap(ctx, time.Second) }, m.reapRemote, m.seedUsage,
		func(ctx context.Context) {
			if err := m.oauth.Run(ctx); err != nil {
				m.Log.Error().Err(err).Msg("the oauth refresher stopped")
			}
		}} {
		m.bg.wg.Go(func() { f(bg) })
	}
	m.Log.Info().Str("listen", m.Addr()).Int("providers", len(cfg.Providers)).Int("procs", runtime.GOMAXPROCS(0)).Str("version", version).Msg("switchboard serving")
	if m.OnServing != nil {
		m.OnServing()
	}
	return nil
}

// commit makes a config the one in force everywhere but in the processes
// (the reloader's plan takes care of those): visibility, the edge, skills,
// authentication settings, the log level.
func (m *Main) commit(st *providers.State, removed []string) {
	cfg := st.Config
	if err := m.id.authn.SetConfig(authConfig(cfg)); err != nil { // checked before the plan ran
		m.Log.Error().Err(err).Msg("applying the authentication settings")
	}
	m.live.set(cfg, m.id)
	if err := m.oauth.SetConfigs(m.oauthConfigs(context.Background(), cfg)); err != nil { // checked by validation
		m.Log.Error().Err(err).Msg("applying the oauth connections")
	}
	m.edge.SetConfig(edgeConfig(cfg, m.resourceURL(cfg)))
	m.mux.SetFilter(m.live.policy())
	m.mux.SetExtras(m.live.extras())
	for _, p := range removed {
		m.mux.RemoveProvider(p)
	}
	m.ops.level.set(cfg.Log.Level)
}

// userChanged applies a change to a user's connection or preferences: the
// cache of connections, their running instance, the sessions' views.
func (m *Main) userChanged(ctx context.Context, user, provider string, connection bool) {
	if connection {
		// New or no credentials: the user's instance restarts on next use.
		if err := m.sup.Drain(ctx, switchboard.InstanceKey{Provider: provider, User: user}); err != nil {
			m.Log.Warn().Err(err).Str("provider", provider).Str("user", user).Msg("stopping the user's instance")
		}
	}
	m.mux.PolicyChanged()
}

// Addr returns the address the gateway listens on.
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// URL returns the base URL of the gateway.
func (m *Main) URL() string { return "http://" + m.Addr() }

// resourceURL is this gateway's public MCP URL, for OAuth metadata.
func (m *Main) resourceURL(cfg *providers.Config) string {
	if cfg.Auth.ResourceURL != "" {
		return cfg.Auth.ResourceURL
	}
	return m.URL() + "/mcp"
}

// config returns the config in force.
func (m *Main) config() *providers.Config { return m.rel.Config() }

// Close drains HTTP, stops every provider group and releases everything. It
// is safe to call more than once.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	var errs []error
	if m.ops != nil {
		m.ops.closing.Store(true) // readiness answers false from now on
	}
	if m.web != nil {
		shutdown := m.config().Shutdown
		if d := shutdown.Delay.D(); d > 0 {
			m.Log.Info().Dur("delay", d).Msg("not ready; waiting before closing the listener")
			time.Sleep(d)
		}
		grace := m.ShutdownGrace
		if shutdown.Drain > 0 {
			grace = shutdown.Drain.D()
		}
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := m.web.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("draining http: %w", err))
			_ = m.web.Close()
		}
		cancel()
	}
	if m.mux != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = m.mux.Shutdown(ctx)
		cancel()
	}
	if m.admin != nil {
		m.admin.Close()
	}
	if m.bg.cancel != nil {
		m.bg.cancel()
		m.bg.wg.Wait()
	}
	if m.sup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := m.sup.StopAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping providers: %w", err))
		}
		cancel()
	}
	if m.rem != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.rem.StopAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping remote providers: %w", err))
		}
		cancel()
	}
	if m.ops != nil {
		m.ops.event(audit.Record{Type: audit.TypeStartup, Detail: map[string]string{"event": "shutdown"}})
		if err := m.ops.close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the audit log: %w", err))
		}
	}
	if m.vault != nil {
		if err := m.vault.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing vault: %w", err))
		}
	}
	if m.store != nil {
		if err := m.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the store: %w", err))
		}
	}
	err := errors.Join(errs...)
	if err == nil && m.web != nil { // a failed Open reports its own error, alone
		m.Log.Info().Msg("switchboard stopped")
	}
	if m.logs != nil {
		m.logs.close() // nothing held back when the process exits
	}
	return err
}

// Run opens the gateway, serves until ctx ends, then closes it.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Open(ctx); err != nil {
		_ = m.Close()
		return err
	}
	<-ctx.Done()
	m.Log.Info().Msg("shutting down")
	return m.Close()
}

// routes is the whole HTTP surface. Every route that reaches tools goes
// through the edge; operator routes need an admin; probes and OAuth metadata
// are public and reveal no tool names. No route can create or change a command.
func (m *Main) routes() http.Handler {
	h := http.NewServeMux()
	h.Handle("/mcp", m.traced(switchboard.EndpointPublic, m.edge.Wrap(switchboard.EndpointPublic, m.mux.Handler(switchboard.EndpointPublic))))
	h.Handle("/mcp/internal", m.traced(switchboard.EndpointInternal, m.edge.Wrap(switchboard.EndpointInternal, m.mux.Handler(switchboard.EndpointInternal))))
	meta := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.ProtectedResourceMetadataFunc(m.resourceURL(m.config()), m.id.authn.Issuers).ServeHTTP(w, r)
	})
	h.Handle("/.well-known/oauth-protected-resource", meta)
	h.Handle("/.well-known/oauth-protected-resource/mcp", meta)
	h.Handle("/api/", m.edge.Wrap(switchboard.EndpointPublic, api.Handler(m.acc)))
	// The OAuth flow's routes: a browser follows them, with no credential
	// but a one-use link and then the flow's own state and cookie.
	h.HandleFunc("GET "+connectPath+"{provider}", m.handleConnect)
	h.HandleFunc("GET "+callbackPath, m.handleCallback)
	h.HandleFunc("GET "+clientPath, m.handleClientMetadata)
	h.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, m.health().probe())
	})
	h.Handle("GET /status", m.edge.Admin(m.ops.statusHandler(m.status)))
	h.Handle("GET /status/connect/{provider}", m.edge.Admin(http.HandlerFunc(m.handleAdminConnect)))
	h.Handle("GET /metrics", m.edge.Admin(m.ops.metrics.Handler()))
	h.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	h.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		code, ready := http.StatusOK, m.health().Ready
		if !ready {
			code = http.StatusServiceUnavailable
		}
		api.WriteJSON(w, code, map[string]any{"ready": ready})
	})
	return h
}

// health is the body of /healthz.
type health struct {
	Status    string                       `json:"status"`
	Version   string                       `json:"version"`
	Uptime    string                       `json:"uptime"`
	Ready     bool                         `json:"ready"`
	Providers []switchboard.ProviderStatus `json:"providers"`
	Sessions  int                          `json:"sessions"`
	Reload    ReloadResult                 `json:"last_reload"`
}

func (m *Main) health() health {
	st := append(m.sup.Status(), m.rem.Status()...)
	for _, in := range m.rel.Blocked() {
		st = append(st, switchboard.ProviderStatus{Provider: in.Provider.Name, State: switchboard.StateFailed, LastError: in.Blocked})
	}
	sort.Slice(st, func(i, j int) bool { return st[i].Provider+"@"+st[i].User < st[j].Provider+"@"+st[j].User })
	ready := !m.ops.closing.Load() && m.storeReady()
	for i, s := range st {
		st[i].Tools = m.mux.ToolCount(s.Provider)
		if s.User == "" && s.State != switchboard.StateRunning && s.State != switchboard.StateFailed {
			ready = false // every shared provider must have settled
		}
	}
	return health{Status: "ok", Version: version, Uptime: time.Since(m.ops.started).Round(time.Second).String(),
		Ready: ready, Providers: st, Sessions: m.mux.SessionCount(), Reload: m.rel.Last()}
}

// storeReady reports whether the store answers (a shared store: and hears
// other replicas' changes); an embedded file always does.
func (m *Main) storeReady() bool {
	r, ok := m.store.(interface{ Ready(context.Context) error })
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return r.Ready(ctx) == nil
}

// probe is the public subset of health: no errors, paths or stderr.
func (h health) probe() map[string]any {
	provs := map[string]string{}
	for _, p := range h.Providers {
		if p.User == "" {
			provs[p.Provider] = string(p.State)
		}
	}
	return map[string]any{"status": h.Status, "ready": h.Ready, "version": h.Version, "providers": provs}
}

// limitConns wraps ln with the connection caps of cfg.
func limitConns(ln net.Listener, cfg providers.ServerConfig, edge *auth.Edge) *auth.ConnLimiter {
	max := cfg.MaxConns
	if max == 0 {
		max = defaultMaxConns()
	}
	return auth.LimitListener(ln, auth.ConnLimitConfig{PerClient: cfg.MaxConnsPerClient, Max: max, OnRefuse: edge.ConnRefused})
}

// httpServer is the gateway's HTTP server around handler. It has no
// ReadTimeout: each request's read deadline is set by the edge instead
// (auth.PreAuthDeadline here, auth.BodyDeadline once authenticated).
func httpServer(handler http.Handler, cfg providers.ServerConfig) *http.Server {
	return &http.Server{
		Handler:           auth.PreAuthDeadline(cfg.ReadHeaderTimeout.D())(handler),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
	}
}
