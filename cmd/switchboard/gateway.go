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
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/internal/redact"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/providers"
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
	// ListenOverride, if set, replaces the config's listen address.
	ListenOverride string

	Redactor *redact.Redactor
	Log      zerolog.Logger

	mu             sync.Mutex
	reconcileMu    sync.Mutex
	cfg            *providers.Config
	started        time.Time
	ln             net.Listener
	conns          *auth.ConnLimiter
	flood          *floodGuards
	httpSrv        *http.Server
	mux            *mux.Server
	sup            *supervisor.Supervisor
	ready          bool
	specs          map[string]supervisor.Spec
	blocked        map[string]string // provider → why it cannot start (missing secret...)
	vault          *vault.Vault
	id             *identity
	users          *userInstances
	ops            *ops
	admin          *adminServer
	reloadCh       chan reloadReq
	reloadsApplied atomic.Int64
	fileWant       atomicString // hash of gateway.yaml the watcher last confirmed (reload.go)
	lastReload     ReloadResult
	level          *levelFilter
	skills         skills.Set
	bgCancel       context.CancelFunc
	bgDone         sync.WaitGroup
	// FirstAdminKey is the API key of the admin user created on a fresh dev
	// install (DevKey), shown once; "" otherwise.
	FirstAdminKey string
	tel           telemetry // trace pipeline (telemetry.go)
	closed        bool
	closeErr      error
}

// NewMain returns a Main for the config at path.
func NewMain(path string) *Main {
	return &Main{ConfigPath: path, Stderr: os.Stderr, Getenv: os.Getenv, ShutdownGrace: 10 * time.Second}
}

// Open loads the config, starts the providers and starts serving. The listener
// is bound synchronously, so a port in use fails here.
func (m *Main) Open(ctx context.Context) error {
	m.Redactor = redact.New()
	cfg, err := providers.LoadFile(m.ConfigPath)
	if err != nil {
		return err
	}
	m.cfg = cfg
	m.level = newLevelFilter(m.Redactor.Writer(m.Stderr), cfg.Log.Level)
	m.Log = zerolog.New(m.level).Level(zerolog.TraceLevel).With().Timestamp().Logger()
	m.reloadCh = make(chan reloadReq, 1)
	m.lastReload = ReloadResult{At: time.Now().UTC(), OK: true, Trigger: "startup", NewHash: cfg.Hash}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	m.started = time.Now()
	m.users = newUserInstances(m)
	m.flood = newFloodGuards()
	if err := m.openVault(); err != nil {
		return err
	}
	id, err := openIdentity(m.vault, cfg, m)
	if err != nil {
		return err
	}
	m.id = id
	if err := m.openOps(); err != nil {
		return err
	}
	if m.DevKey && !cfg.Auth.Disabled {
		if m.FirstAdminKey, err = m.ensureFirstAdmin(); err != nil {
			return err
		}
	}

	if err := m.openTracing(ctx); err != nil {
		return err
	}
	m.mux = mux.New(mux.Options{
		Tracer:                  m.tracer(),
		Logger:                  m.Log,
		Instances:               instances{m},
		Filter:                  policyFor(cfg, userState{prefs: id.prefs, conns: id.conns}),
		SessionIdleTTL:          cfg.Sessions.IdleTimeout.D(),
		MaxSessionsPerPrincipal: cfg.Sessions.MaxPerPrincipal,
		MaxListensPerPrincipal:  cfg.Sessions.MaxListensPerPrincipal,
		SlowCall:                cfg.Log.SlowCall.D(),
		Instructions:            m.instructions,
		Observer:                callObserver{m},
		Redact:                  m.Redactor.String,
	})
	m.applySkills()
	m.sup = supervisor.New(m.Log, supervisor.Options{
		OnCatalog:      m.mux.UpdateCatalog,
		OnNotification: m.mux.ProviderNotification,
		OnEvent:        m.providerEvent,
		Redact:         m.Redactor.String,
		Tracer:         m.tracer(),
	})

	listen := cfg.Listen
	if m.ListenOverride != "" {
		listen = m.ListenOverride
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	m.ln = ln
	m.conns = m.limitConns(ln, cfg.Server)
	m.httpSrv = httpServer(m.routes(), cfg.Server)
	go func() {
		if err := m.httpSrv.Serve(m.conns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Log.Error().Err(err).Msg("http server stopped")
		}
	}()

	m.specs = map[string]supervisor.Spec{}
	m.blocked = map[string]string{}
	m.reconcile(ctx)
	admin, err := startAdmin(m, filepath.Join(cfg.DataDir, adminSocketName))
	if err != nil {
		return err
	}
	m.admin = admin
	bg, cancel := context.WithCancel(context.Background())
	m.bgCancel = cancel
	for _, f := range []func(context.Context){m.reloader, m.watchConfig, m.watchSIGHUP, m.users.reap, m.flushFloods, m.seedUsage} {
		m.bgDone.Add(1)
		go func() {
			defer m.bgDone.Done()
			f(bg)
		}()
	}
	m.Log.Info().Str("listen", m.Addr()).Int("providers", len(cfg.Providers)).Str("version", version).Msg("switchboard serving")
	if m.OnServing != nil {
		m.OnServing()
	}
	return nil
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

// Close drains HTTP, stops every provider group and releases everything. It
// is safe to call more than once.
func (m *Main) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.closeErr
	}
	m.closed = true // readiness answers false from now on
	m.ready = false
	m.mu.Unlock()
	var errs []error
	if m.httpSrv != nil {
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
		if err := m.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("draining http: %w", err))
			_ = m.httpSrv.Close()
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
	if m.bgCancel != nil {
		m.bgCancel()
		m.bgDone.Wait()
	}
	if m.flood != nil && m.ops != nil {
		m.writeFloodSummaries(true)
	}
	if m.sup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := m.sup.StopAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping providers: %w", err))
		}
		cancel()
	}
	m.closeTracing()
	m.auditEvent(audit.Record{Type: audit.TypeStartup, Detail: map[string]string{"event": "shutdown"}})
	if err := m.closeOps(); err != nil {
		errs = append(errs, fmt.Errorf("closing the audit log: %w", err))
	}
	if m.vault != nil {
		if err := m.vault.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing vault: %w", err))
		}
	}
	m.closeErr = errors.Join(errs...)
	if m.closeErr == nil && m.httpSrv != nil { // a failed Open reports its own error, alone
		m.Log.Info().Msg("switchboard stopped")
	}
	return m.closeErr
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

// specFor turns a provider into a supervisor spec, resolving env references.
func (m *Main) specFor(ctx context.Context, p *providers.Provider, user string) (supervisor.Spec, error) {
	env := make(map[string]string, len(p.Env))
	for k, v := range p.Env {
		ref, err := providers.ParseEnvValue(v)
		if err != nil {
			return supervisor.Spec{}, err
		}
		switch ref.Kind {
		case providers.RefLiteral:
			env[k] = v
		case providers.RefEnv:
			val := m.Getenv(ref.Name)
			m.Redactor.Add(val)
			env[k] = val
		case providers.RefSecret:
			sec, err := m.vault.Get(ref.Name)
			switch {
			case errors.Is(err, vault.ErrNotFound):
				return supervisor.Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "missing secret %s", ref.Name)
			case errors.Is(err, vault.ErrReserved): // validation refuses it first; never resolve one
				return supervisor.Spec{}, err
			case err != nil:
				return supervisor.Spec{}, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "secret %s unreadable", ref.Name)
			}
			env[k] = sec.Reveal()
		}
	}
	if user != "" {
		if err := m.userSecretsEnv(ctx, p, user, env); err != nil {
			return supervisor.Spec{}, err
		}
	}
	l := p.Limits
	maxTimeouts := l.MaxConsecutiveTimeouts.Value // unset: 0, the Spec's default
	if l.MaxConsecutiveTimeouts.Set && maxTimeouts == 0 {
		maxTimeouts = -1 // 0 turns the restart off; in a Spec, 0 means the default
	}
	return supervisor.Spec{
		Key:             switchboard.InstanceKey{Provider: p.Name, User: user},
		Command:         p.Command,
		Args:            p.Args,
		Env:             env,
		Dir:             p.Dir,
		InitTimeout:     l.InitTimeout.D(),
		CallTimeout:     l.CallTimeout.D(),
		MaxConcurrent:   l.MaxConcurrent,
		MaxQueue:        l.MaxQueue,
		MaxMessageBytes: l.MaxMessageMB << 20,
		MaxMemoryBytes:  int64(l.MaxMemoryMB) << 20,
		MaxCPU:          l.MaxCPU,
		// Only a user's own instance may ask its client for roots: a shared
		// child would apply one user's roots to every user.
		Roots:                  user != "",
		Protocol:               strings.TrimPrefix(p.Protocol, "auto"),
		MaxConsecutiveTimeouts: maxTimeouts,
	}, nil
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
	st := m.sup.Status()
	m.mu.Lock()
	for name, why := range m.blocked {
		st = append(st, switchboard.ProviderStatus{Provider: name, State: switchboard.StateFailed, LastError: why})
	}
	m.mu.Unlock()
	sort.Slice(st, func(i, j int) bool { return st[i].Provider+"@"+st[i].User < st[j].Provider+"@"+st[j].User })
	for i := range st {
		st[i].Tools = m.mux.ToolCount(st[i].Provider)
	}
	return health{
		Status:    "ok",
		Version:   version,
		Uptime:    time.Since(m.started).Round(time.Second).String(),
		Ready:     m.isReady(st),
		Providers: st,
		Sessions:  m.mux.SessionCount(),
		Reload:    m.lastReloadResult(),
	}
}

// isReady reports whether every shared provider has settled: running or failed.
func (m *Main) isReady(st []switchboard.ProviderStatus) bool {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return false
	}
	for _, s := range st {
		if s.User == "" && s.State != switchboard.StateRunning && s.State != switchboard.StateFailed {
			return false
		}
	}
	return true
}

// routes is the whole HTTP surface. Every route that reaches tools goes
// through m.edge; operator routes need an admin; probes and OAuth metadata are
// public and reveal no tool names. No route can create or change a command.
func (m *Main) routes() http.Handler {
	h := http.NewServeMux()
	h.Handle("/mcp", m.traced(switchboard.EndpointPublic, m.edge(switchboard.EndpointPublic, m.mux.Handler(switchboard.EndpointPublic))))
	h.Handle("/mcp/internal", m.traced(switchboard.EndpointInternal, m.edge(switchboard.EndpointInternal, m.mux.Handler(switchboard.EndpointInternal))))
	meta := auth.ProtectedResourceMetadataFunc(m.resourceURL(), m.id.authn.Issuers)
	h.Handle("/.well-known/oauth-protected-resource", meta)
	h.Handle("/.well-known/oauth-protected-resource/mcp", meta)
	h.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, m.health().probe())
	})
	h.Handle("GET /status", m.statusHandler())
	h.Handle("GET /metrics", m.metricsHandler())
	m.apiRoutes(h)
	h.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	h.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		hl := m.health()
		code := http.StatusOK
		if !hl.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": hl.Ready})
	})
	return h
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// levelFilter drops log lines below a level that a reload can change.
type levelFilter struct {
	w   io.Writer
	min atomic.Int32
}

func newLevelFilter(w io.Writer, level string) *levelFilter {
	f := &levelFilter{w: w}
	f.set(level)
	return f
}

func (f *levelFilter) set(level string) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	f.min.Store(int32(lvl))
}

func (f *levelFilter) Write(p []byte) (int, error) { return f.w.Write(p) }

// WriteLevel implements zerolog.LevelWriter.
func (f *levelFilter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if int32(l) < f.min.Load() {
		return len(p), nil
	}
	return f.w.Write(p)
}

func (m *Main) setLogLevel(level string) { m.level.set(level) }

// reloaded records a reload outcome for status, metrics and the audit log.
func (m *Main) reloaded(res ReloadResult) {
	if res.OK && !res.Unchanged {
		m.reloadsApplied.Add(1)
	}
	m.ops.metrics.Reload(res.OK)
	rec := audit.Record{Type: audit.TypeConfigReload, Outcome: "ok",
		Detail: map[string]string{"trigger": res.Trigger, "old_hash": res.OldHash, "new_hash": res.NewHash}}
	if !res.OK {
		rec.Outcome, rec.Error = "error", res.Error
		m.ops.events.Add("reload", "reload rejected: "+res.Error)
	} else {
		m.ops.events.Add("reload", "config reloaded ("+short(res.NewHash)+")")
	}
	m.auditEvent(rec)
}

// applySkills loads the built-in and operator skills and serves, for every
// configured provider that has one, a resource skill://<prefix>/SKILL.md and a
// prompt <prefix>__skill. They belong to their provider, so a caller who
// cannot see the provider cannot see its skill.
func (m *Main) applySkills() {
	cfg := m.config()
	set, errs := skills.Load(skills.Builtin(), cfg.Skills.Dir)
	for _, err := range errs {
		m.Log.Warn().Err(err).Msg("skill problem")
	}
	m.mu.Lock()
	m.skills = set
	m.mu.Unlock()
	var ex mux.Extras
	for _, p := range cfg.SortedProviders() {
		sk := set.Get(p.Name)
		if sk == nil || !p.IsEnabled() {
			continue
		}
		ex.Resources = append(ex.Resources, mux.ExtraResource{Provider: p.Name, Text: sk.Body, URI: skills.URI(p.Name),
			Name: p.Name + " usage skill", Description: sk.Description, MIMEType: "text/markdown"})
		ex.Prompts = append(ex.Prompts, mux.ExtraPrompt{Provider: p.Name, Text: sk.Content(),
			Name: skills.PromptName(p.Name), Description: "How to use " + p.Name + ": " + sk.Description})
	}
	m.mux.SetExtras(ex)
}

// instructions is the initialize instructions: an index of the skills of the
// providers the caller can see.
func (m *Main) instructions(ctx context.Context, visible []string) string {
	m.mu.Lock()
	set := m.skills
	m.mu.Unlock()
	return "Switchboard gateway: tools are named <provider>__<tool>.\n\n" + skills.Index(set.Visible(visible))
}

// openVault loads the master key and opens the vault in the data dir. A wrong
// key stops startup here, before any provider starts.
func (m *Main) openVault() error {
	key, origin, err := vault.LoadKey(vault.KeySource{
		EnvValue:      m.Getenv(vault.EnvKey),
		KeyFile:       m.cfg.Vault.KeyFile,
		DataDir:       m.cfg.DataDir,
		AllowGenerate: m.DevKey,
	})
	if err != nil {
		return err
	}
	if origin == vault.KeyGenerated {
		m.Log.Warn().Str("key_file", filepath.Join(m.cfg.DataDir, vault.KeyFileName)).
			Msg("GENERATED A NEW VAULT KEY for local development; back it up, and use SWITCHBOARD_VAULT_KEY or vault.key_file in production")
	}
	v, err := vault.Open(filepath.Join(m.cfg.DataDir, vault.DefaultFileName), key, vault.Options{Redactor: m.Redactor, Logger: m.Log})
	key.Zero()
	if err != nil {
		return err
	}
	m.vault = v
	return nil
}

// reconcile makes the running shared providers match the config: it starts
// new ones, restarts those whose resolved spec changed (command, args, env or a
// secret value), stops removed ones after draining their in-flight calls, and
// records why a provider cannot start. A provider whose resolved spec is
// unchanged is never touched. It returns the restarted providers.
func (m *Main) reconcile(ctx context.Context) []string {
	m.reconcileMu.Lock()
	defer m.reconcileMu.Unlock()
	cfg := m.config()
	want := map[string]supervisor.Spec{}
	blocked := map[string]string{}
	for _, p := range cfg.SortedProviders() {
		if !p.IsEnabled() || p.UserScoped() {
			continue
		}
		spec, err := m.specFor(ctx, p, "")
		if err != nil {
			blocked[p.Name] = switchboard.ErrorMessage(err)
			m.Log.Error().Str("provider", p.Name).Str("reason", switchboard.ErrorMessage(err)).Msg("provider cannot start")
			continue
		}
		want[p.Name] = spec
	}
	m.mu.Lock()
	running := m.specs
	m.specs = want
	m.blocked = blocked
	m.mu.Unlock()

	// Start new providers first, then drain and replace changed ones, then
	// drain and stop removed ones.
	for name, spec := range want {
		if _, ok := running[name]; !ok {
			if err := m.sup.Start(spec); err != nil {
				m.Log.Error().Str("provider", name).Err(err).Msg("starting provider")
			}
		}
	}
	var restarted []string
	var wg sync.WaitGroup
	var rmu sync.Mutex
	for name, old := range running {
		spec, keep := want[name]
		if keep && spec.Equal(old) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !keep {
				m.mux.RemoveProvider(name)
			}
			m.drain(ctx, old.Key)
			if err := m.sup.Stop(ctx, old.Key); err != nil {
				m.Log.Error().Str("provider", name).Err(err).Msg("stopping provider")
			}
			if keep {
				if err := m.sup.Start(spec); err != nil {
					m.Log.Error().Str("provider", name).Err(err).Msg("starting provider")
				}
				rmu.Lock()
				restarted = append(restarted, name)
				rmu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(restarted)
	return restarted
}

// drain waits, up to DrainGrace, for key's in-flight calls to finish.
func (m *Main) drain(ctx context.Context, key switchboard.InstanceKey) {
	deadline := time.Now().Add(DrainGrace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := false
		for _, st := range m.sup.Status() {
			if st.Provider == key.Provider && st.User == key.User && st.InFlight > 0 {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// config returns the config in force.
func (m *Main) config() *providers.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

func (m *Main) lastReloadResult() ReloadResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastReload
}

// userRemoved ends what a removed user had running: their per-user provider
// instances. Their sessions fail authentication on the next request.
func (m *Main) userRemoved(ctx context.Context, user string) {
	m.mux.CloseListens(string(switchboard.PrincipalUser) + ":" + user)
	for _, st := range m.sup.Status() {
		if st.User == user {
			_ = m.sup.Stop(ctx, switchboard.InstanceKey{Provider: st.Provider, User: user})
		}
	}
	m.mux.PolicyChanged()
}
