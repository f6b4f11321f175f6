// Package mux serves the tools, prompts and resources of all providers as one
// streamable-HTTP MCP server, namespaced per provider and filtered per caller.
//
// The mux owns the wire protocol end to end: both protocol eras (the session
// era of 2025-11-25 and earlier, and the stateless 2026-07-28 era) on both
// endpoints, with one handler per method. JSON-RPC moves as raw bytes: a
// request is parsed once by internal/jsonrpc, the one scanner the supervisor
// reads children with too, and a child's result goes back to the client
// without being decoded. mcp-go supplies protocol types and constants only.
package mux

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// Filter decides, per request, what a principal may see. It is consulted on every
// call; a list's answer is cached per principal view (kind, endpoint, ID,
// method, roles) until SetFilter, PolicyChanged or a catalog change, so an
// implementation whose answers change for any other reason must call
// PolicyChanged. Implementations must be fast and fail closed.
type Filter interface {
	// ProviderVisible reports whether p may see anything of provider.
	ProviderVisible(ctx context.Context, p *switchboard.Principal, provider string) bool
	// ToolVisible reports whether p may see and call tool (the provider's own
	// name, exposed as exposed) of provider. readOnly is the tool's
	// readOnlyHint annotation.
	ToolVisible(ctx context.Context, p *switchboard.Principal, provider, tool, exposed string, readOnly bool) bool
}

// Instances gives the mux the upstream for a provider instance, starting a
// user's own instance on demand for scope: user providers.
type Instances interface {
	// Upstream returns the running upstream for key, starting it first when
	// the provider is user-scoped and allowed to start, and waiting for it
	// (bounded by the provider's init timeout or ctx). It returns an
	// EUNAVAILABLE error when the instance is not running and cannot be
	// started.
	Upstream(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error)
	// UserScoped reports whether provider runs one instance per user.
	UserScoped(provider string) bool
	// Ensure starts p's own instances of the user-scoped providers p may use
	// and waits until each is running or has failed (bounded by its init
	// timeout or ctx), so that a list answered next includes their tools.
	Ensure(ctx context.Context, p *switchboard.Principal)
}

// CallInfo describes one tools/call for observers (audit, metrics, logs).
type CallInfo struct {
	RequestID string
	SessionID string
	Principal *switchboard.Principal
	Endpoint  switchboard.Endpoint
	Client    string
	Provider  string
	Tool      string // the provider's own tool name
	Exposed   string
	Args      json.RawMessage
	Start     time.Time
	Latency   time.Duration
	Decision  string // "allow" or "deny"
	Outcome   string // "ok", "tool_error", "error", "timeout", "unavailable", "overloaded", "denied", "refused", "cancelled"
	Err       error
	// ReqBytes and RespBytes are the sizes of the call's arguments and of
	// its result as they crossed the gateway.
	ReqBytes, RespBytes int
}

// CallObserver sees every tools/call.
type CallObserver interface {
	// Admit runs before a call leaves the gateway. An error refuses the call
	// with that error's message (for example, the audit log cannot be written).
	Admit(ctx context.Context, c *CallInfo) error
	// Done runs exactly once per tools/call, whatever its outcome.
	Done(ctx context.Context, c *CallInfo)
}

// RecordFirst is implemented by a CallObserver that must finish Done before
// the caller gets its answer (an audit log configured to be written before
// the answer). By default the answer is sent first.
type RecordFirst interface {
	RecordBeforeAnswer() bool
}

// SessionObserver is optionally implemented by a CallObserver to count sessions.
type SessionObserver interface {
	SessionOpened(switchboard.Endpoint)
	SessionClosed(switchboard.Endpoint)
}

// Options configure a Server.
type Options struct {
	Logger zerolog.Logger
	// Filter decides visibility. Nil allows everything (only for tests and
	// a gateway whose authentication is disabled on loopback).
	Filter    Filter
	Instances Instances
	Observer  CallObserver
	// SessionIdleTTL ends sessions idle for longer (default 30 minutes).
	SessionIdleTTL time.Duration
	// MaxSessionsPerPrincipal caps the open sessions of one principal;
	// initialize past it answers 429 (default 100).
	MaxSessionsPerPrincipal int
	// MaxListensPerPrincipal caps the open subscriptions/listen streams of
	// one principal (default 8).
	MaxListensPerPrincipal int
	// SlowCall logs a warning for tools/calls slower than this (0: never).
	SlowCall time.Duration
	// Instructions returns the initialize instructions for a caller who can see
	// the given providers (for example, the skills index).
	Instructions func(ctx context.Context, providers []string) string
	// NotifyDelay coalesces bursts of catalog changes into one list_changed
	// per session (default 50 ms).
	NotifyDelay time.Duration
	// PageSize is how many items one page of a list holds (default 1000).
	PageSize int
	// ListTTL is the freshness hint (ttlMs) on stateless-era list results
	// (default 60 s); a change a client may see is also announced on its
	// subscriptions/listen stream.
	ListTTL time.Duration
	// Heartbeat is how often an idle SSE stream gets a comment line
	// (default 25 s).
	Heartbeat time.Duration
	// ContinuationTTL bounds how long a multi-round-trip request waits for
	// the client's retry (default 10 minutes).
	ContinuationTTL time.Duration
	// MaxContinuationsPerPrincipal bounds the multi-round-trip requests one
	// principal may leave waiting (default 16).
	MaxContinuationsPerPrincipal int
	// StateKey signs the requestState of multi-round-trip requests; at least
	// 32 bytes. Nil: a random key per process.
	StateKey []byte
	// Replica names this gateway process in continuations and logs.
	Replica string
	// Redact scrubs known secret values from a provider's error texts before
	// they reach a client. Nil: identity.
	Redact func(string) string
}

// Server is the MCP front end.
type Server struct {
	opts   Options
	log    zerolog.Logger
	filter atomic.Pointer[filterBox]

	mu     sync.Mutex // guards cats, latest, kept, ups and serializes rebuilds
	cats   map[switchboard.InstanceKey]*switchboard.Catalog
	ups    map[switchboard.InstanceKey]switchboard.Upstream
	latest map[string]switchboard.InstanceKey // provider → instance whose catalog is shown
	// kept holds the last catalog of a user-scoped provider whose instances are
	// all down (idle-reaped): its tools stay listed and a call starts the
	// caller's own instance.
	kept    map[string]*switchboard.Catalog
	tbl     atomic.Pointer[table]
	extras  atomic.Pointer[Extras]
	pending atomic.Bool
	// gen counts changes to anything a caller's view depends on: the filter,
	// the state behind it (PolicyChanged) and the table. Cached views of an
	// older generation are recomputed. It is bumped after the change is
	// stored, so a view computed from old state never carries the new number.
	gen   atomic.Uint64
	views viewCache

	sessions *sessionTable
	listens  *listenTable
	subs     *subscriptions
	conts    *continuations

	closing   chan struct{}
	closeOnce sync.Once
	bg        sync.WaitGroup
}

type filterBox struct{ f Filter }

// Extras are gateway-owned resources and prompts (such as usage skills) served
// next to the providers' own, each belonging to a provider for visibility.
// Their names are reserved: a provider's own item with the same name or URI
// is renamed.
type Extras struct {
	Resources []ExtraResource
	Prompts   []ExtraPrompt
}

// ExtraResource is a static text resource that belongs to provider.
type ExtraResource struct {
	Provider    string
	URI         string
	Name        string
	Description string
	MIMEType    string
	Text        string
}

// ExtraPrompt is a static prompt, without arguments, that belongs to provider.
type ExtraPrompt struct {
	Provider    string
	Name        string
	Description string
	Text        string
}

// New returns a Server with no providers. It starts a goroutine that ends
// idle sessions; Shutdown stops it.
func New(opts Options) *Server {
	if opts.SessionIdleTTL <= 0 {
		opts.SessionIdleTTL = 30 * time.Minute
	}
	if opts.NotifyDelay <= 0 {
		opts.NotifyDelay = 50 * time.Millisecond
	}
	if opts.MaxSessionsPerPrincipal <= 0 {
		opts.MaxSessionsPerPrincipal = 100
	}
	if opts.MaxListensPerPrincipal <= 0 {
		opts.MaxListensPerPrincipal = 8
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if opts.ListTTL <= 0 {
		opts.ListTTL = 60 * time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 25 * time.Second
	}
	if opts.ContinuationTTL <= 0 {
		opts.ContinuationTTL = 10 * time.Minute
	}
	if opts.MaxContinuationsPerPrincipal <= 0 {
		opts.MaxContinuationsPerPrincipal = 16
	}
	if len(opts.StateKey) < 32 {
		opts.StateKey = make([]byte, 32)
		if _, err := rand.Read(opts.StateKey); err != nil {
			panic("crypto/rand failed: " + err.Error())
		}
	}
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With().Str("component", "mux").Logger(),
		cats:     map[switchboard.InstanceKey]*switchboard.Catalog{},
		ups:      map[switchboard.InstanceKey]switchboard.Upstream{},
		latest:   map[string]switchboard.InstanceKey{},
		kept:     map[string]*switchboard.Catalog{},
		sessions: newSessionTable(),
		listens:  newListenTable(),
		subs:     newSubscriptions(),
		closing:  make(chan struct{}),
	}
	s.conts = newContinuations(opts.StateKey, opts.Replica)
	s.filter.Store(&filterBox{opts.Filter})
	s.tbl.Store(emptyTable())
	s.extras.Store(&Extras{})
	s.bg.Add(1)
	go s.sweep()
	return s
}

// SetFilter swaps the visibility filter; the next request uses it.
func (s *Server) SetFilter(f Filter) {
	s.filter.Store(&filterBox{f})
	s.gen.Add(1)
	s.scheduleNotify()
}

// SetExtras swaps the gateway-owned resources and prompts.
func (s *Server) SetExtras(e Extras) {
	s.extras.Store(&e)
	s.rebuild()
}

// PolicyChanged tells the mux that something visibility depends on changed
// (connections, preferences, roles) so sessions whose view changed are notified.
func (s *Server) PolicyChanged() {
	s.gen.Add(1)
	s.scheduleNotify()
}

// UpdateCatalog is a switchboard.CatalogFunc: the supervisor calls it when an
// instance comes up, changes its catalog, or goes down (up == nil).
func (s *Server) UpdateCatalog(key switchboard.InstanceKey, up switchboard.Upstream, cat *switchboard.Catalog) {
	s.mu.Lock()
	if up == nil || cat == nil {
		if key.User != "" && s.cats[key] != nil {
			s.kept[key.Provider] = s.cats[key]
		}
		delete(s.cats, key)
		delete(s.ups, key)
		if s.latest[key.Provider] == key {
			delete(s.latest, key.Provider)
			for k := range s.cats { // another user's instance can stand in
				if k.Provider == key.Provider {
					s.latest[key.Provider] = k
					break
				}
			}
		}
	} else {
		prev := s.ups[key]
		s.cats[key] = cat
		s.ups[key] = up
		s.latest[key.Provider] = key
		delete(s.kept, key.Provider)
		if prev != up {
			// A new process, after a crash or replacing a running one
			// (make-before-break: the key never went down): the
			// subscriptions its predecessor held are gone.
			defer s.subs.resubscribe(s, key, up)
		}
	}
	s.mu.Unlock()
	s.rebuild()
}

// RemoveProvider drops everything a provider exposes (for example when a reload
// removes it), without waiting for its instances to report down.
func (s *Server) RemoveProvider(provider string) {
	s.mu.Lock()
	for k := range s.cats {
		if k.Provider == provider {
			delete(s.cats, k)
			delete(s.ups, k)
		}
	}
	delete(s.latest, provider)
	delete(s.kept, provider)
	s.mu.Unlock()
	s.rebuild()
}

// CatalogProviders returns the providers currently exposing a catalog.
func (s *Server) CatalogProviders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.latest))
	for p := range s.latest {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// VisibleTools returns the exposed tool names p can see right now, sorted.
func (s *Server) VisibleTools(ctx context.Context, p *switchboard.Principal) []string {
	v := s.view(ctx, p)
	out := make([]string, 0, len(v.lists[kindTools]))
	for _, e := range v.lists[kindTools] {
		out = append(out, e.key)
	}
	return out
}

// ProviderTools returns the exposed tool names of provider, sorted.
func (s *Server) ProviderTools(provider string) []string {
	return s.tbl.Load().names(kindTools, provider)
}

// ProviderPrompts returns the exposed prompt names of provider, sorted,
// including the gateway's own prompts that belong to it.
func (s *Server) ProviderPrompts(provider string) []string {
	return s.tbl.Load().names(kindPrompts, provider)
}

// Problems returns what the last catalog build found wrong: invalid or
// colliding names, items renamed because the gateway reserves their names.
func (s *Server) Problems() []string {
	return append([]string(nil), s.tbl.Load().problems...)
}

// ToolCount returns how many tools provider exposes right now.
func (s *Server) ToolCount(provider string) int {
	return len(s.tbl.Load().names(kindTools, provider))
}

// rebuild compiles the table from the catalogs and swaps it in once.
func (s *Server) rebuild() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cats := make([]provCatalog, 0, len(s.latest)+len(s.kept))
	for p, k := range s.latest {
		cats = append(cats, provCatalog{Provider: p, Cat: s.cats[k]})
	}
	for p, cat := range s.kept {
		if _, live := s.latest[p]; !live {
			cats = append(cats, provCatalog{Provider: p, Cat: cat})
		}
	}
	old := s.tbl.Load()
	t := buildTable(old, cats, s.extras.Load())
	for _, p := range t.problems {
		if !old.hasProblem(p) {
			s.log.Warn().Str("problem", p).Msg("catalog problem")
		}
	}
	s.tbl.Store(t)
	s.gen.Add(1)
	s.scheduleNotify()
}

// principal returns the caller of ctx.
func principal(ctx context.Context) *switchboard.Principal {
	return switchboard.PrincipalFromContext(ctx)
}

// Visible reports whether p may see anything of provider under the filter in
// force.
func (s *Server) Visible(ctx context.Context, p *switchboard.Principal, provider string) bool {
	return s.providerVisible(ctx, p, provider)
}

func (s *Server) providerVisible(ctx context.Context, p *switchboard.Principal, provider string) bool {
	f := s.filter.Load().f
	if f == nil {
		return true
	}
	return f.ProviderVisible(ctx, p, provider)
}

func (s *Server) toolVisible(ctx context.Context, p *switchboard.Principal, e *entry) bool {
	f := s.filter.Load().f
	if f == nil {
		return true
	}
	return f.ProviderVisible(ctx, p, e.provider) && f.ToolVisible(ctx, p, e.provider, e.original, e.key, e.readOnly)
}

// Shutdown ends every session and subscriptions/listen stream (a listen
// stream gets its final response first) and stops the mux's goroutines. A
// request still being served finishes on its own.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.listens.closeAll()
	s.sessions.closeAll(s)
	for _, c := range s.conts.closeAll() {
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.abandon(c, "cancelled") }()
	}
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.Join(errors.New("mux: background work did not end in time"), ctx.Err())
	}
}

// sweep ends idle sessions and expired continuations until Shutdown.
func (s *Server) sweep() {
	defer s.bg.Done()
	every := min(s.opts.SessionIdleTTL/2, 30*time.Second)
	every = max(every, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.sessions.reapIdle(s, s.opts.SessionIdleTTL)
			for _, c := range s.conts.expire(time.Now()) {
				go s.abandon(c, "timeout")
			}
		}
	}
}
