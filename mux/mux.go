// Package mux serves the tools, prompts and resources of all providers as one
// streamable-HTTP MCP server, namespaced per provider and filtered per caller.
package mux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
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
	// name) of provider. readOnly is the tool's readOnlyHint annotation.
	ToolVisible(ctx context.Context, p *switchboard.Principal, provider, tool string, readOnly bool) bool
}

// Instances gives the mux the upstream for a provider instance, starting a
// user's own instance on demand for scope: user providers.
type Instances interface {
	// Upstream returns the running upstream for key, starting it first when the
	// provider is user-scoped and allowed to start. It returns an EUNAVAILABLE
	// error quickly when the instance is not running and cannot be started.
	Upstream(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error)
	// UserScoped reports whether provider runs one instance per user.
	UserScoped(provider string) bool
	// Warm is called on every list by principal p; it may start p's own
	// instances in the background (their tools then arrive with list_changed).
	// It must not block.
	Warm(ctx context.Context, p *switchboard.Principal)
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
	Outcome   string // "ok", "tool_error", "error", "timeout", "unavailable", "overloaded", "denied", "refused"
	Err       error
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

// Options configure a Server.
type Options struct {
	Logger zerolog.Logger
	// Filter decides visibility. Nil allows everything (only for tests and
	// a gateway whose authentication is disabled on loopback).
	Filter    Filter
	Instances Instances
	Observer  CallObserver
	// SessionIdleTTL reaps sessions idle for longer (default 30 minutes).
	SessionIdleTTL time.Duration
	// SlowCall logs a warning for tools/calls slower than this (0: never).
	SlowCall time.Duration
	// Instructions returns the initialize instructions for a caller who can see
	// the given providers (for example, the skills index).
	Instructions func(ctx context.Context, providers []string) string
	// NotifyDelay coalesces bursts of catalog changes into one list_changed
	// per session (default 50 ms).
	NotifyDelay time.Duration
}

// Server is the MCP front end.
type Server struct {
	opts   Options
	log    zerolog.Logger
	mcp    *server.MCPServer
	filter atomic.Pointer[filterBox]

	mu     sync.Mutex // guards cats and serializes rebuilds
	cats   map[switchboard.InstanceKey]*switchboard.Catalog
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

	sessions  *sessions
	http      map[switchboard.Endpoint]*server.StreamableHTTPServer
	sweepOnce sync.Once
	stopSweep context.CancelFunc
}

type filterBox struct{ f Filter }

// Extras are gateway-owned resources and prompts (such as usage skills) served
// next to the providers' own, each belonging to a provider for visibility.
type Extras struct {
	Resources []ExtraResource
	Prompts   []ExtraPrompt
}

// ExtraResource is a static text resource that belongs to provider.
type ExtraResource struct {
	Provider string
	Resource mcp.Resource
	Text     string
}

// ExtraPrompt is a static prompt that belongs to provider.
type ExtraPrompt struct {
	Provider string
	Prompt   mcp.Prompt
	Text     string
}

// New returns a Server with no providers.
func New(opts Options) *Server {
	if opts.SessionIdleTTL == 0 {
		opts.SessionIdleTTL = 30 * time.Minute
	}
	if opts.NotifyDelay == 0 {
		opts.NotifyDelay = 50 * time.Millisecond
	}
	s := &Server{
		opts:   opts,
		log:    opts.Logger.With().Str("component", "mux").Logger(),
		cats:   map[switchboard.InstanceKey]*switchboard.Catalog{},
		latest: map[string]switchboard.InstanceKey{},
		kept:   map[string]*switchboard.Catalog{},
		http:   map[switchboard.Endpoint]*server.StreamableHTTPServer{},
	}
	s.filter.Store(&filterBox{opts.Filter})
	s.tbl.Store(emptyTable())
	s.extras.Store(&Extras{})
	s.sessions = newSessions()

	hooks := &server.Hooks{}
	hooks.AddOnRegisterSession(s.onRegisterSession)
	hooks.AddOnUnregisterSession(s.onUnregisterSession)
	hooks.AddAfterInitialize(s.afterInitialize)
	hooks.AddAfterListResources(s.afterListResources)
	hooks.AddAfterListResourceTemplates(s.afterListResourceTemplates)
	hooks.AddOnError(s.onError)
	hooks.AddBeforeListTools(func(ctx context.Context, _ any, _ *mcp.ListToolsRequest) {
		if s.opts.Instances != nil {
			s.opts.Instances.Warm(ctx, principal(ctx))
		}
	})

	// listChanged is false inside mcp-go so SetTools and friends never broadcast;
	// afterInitialize advertises it, and notify sends it only to sessions whose
	// view changed.
	s.mcp = server.NewMCPServer("switchboard", switchboard.Version,
		server.WithToolCapabilities(false),
		server.WithPromptCapabilities(false),
		server.WithResourceCapabilities(false, false),
		server.WithToolFilter(s.filterTools),
		server.WithPromptFilter(s.filterPrompts),
		server.WithResourceHandlerMiddleware(s.guardResource),
		server.WithHooks(hooks),
		server.WithRecovery(),
		server.WithResourceRecovery(),
	)
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

// MCPServer returns the underlying mcp-go server.
func (s *Server) MCPServer() *server.MCPServer { return s.mcp }

// UpdateCatalog is a switchboard.CatalogFunc: the supervisor calls it when an
// instance comes up, changes its catalog, or goes down (up == nil).
func (s *Server) UpdateCatalog(key switchboard.InstanceKey, up switchboard.Upstream, cat *switchboard.Catalog) {
	s.mu.Lock()
	if up == nil || cat == nil {
		if key.User != "" && s.cats[key] != nil {
			s.kept[key.Provider] = s.cats[key]
		}
		delete(s.cats, key)
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
		s.cats[key] = cat
		s.latest[key.Provider] = key
		delete(s.kept, key.Provider)
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
	var out []string
	for name, e := range s.tbl.Load().tools {
		if s.toolVisible(ctx, p, e) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ProviderTools returns the exposed tool names of provider, sorted.
func (s *Server) ProviderTools(provider string) []string {
	var out []string
	for name, e := range s.tbl.Load().tools {
		if e.Provider == provider {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ProviderPrompts returns the exposed prompt names of provider, sorted.
func (s *Server) ProviderPrompts(provider string) []string {
	var out []string
	for name, e := range s.tbl.Load().prompts {
		if e.Provider == provider {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ToolCount returns how many tools provider exposes right now.
func (s *Server) ToolCount(provider string) int {
	n := 0
	for _, e := range s.tbl.Load().tools {
		if e.Provider == provider {
			n++
		}
	}
	return n
}

// rebuild compiles the table and swaps it into mcp-go once.
func (s *Server) rebuild() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cats := make([]provCatalog, 0, len(s.latest))
	for p, k := range s.latest {
		cats = append(cats, provCatalog{Provider: p, Cat: s.cats[k]})
	}
	for p, cat := range s.kept {
		if _, live := s.latest[p]; !live {
			cats = append(cats, provCatalog{Provider: p, Cat: cat})
		}
	}
	t := rebuildTable(s.tbl.Load(), cats)
	for _, p := range t.problems {
		s.log.Warn().Str("problem", p).Msg("catalog problem")
	}
	tools := make([]server.ServerTool, 0, len(t.tools))
	for _, e := range t.tools {
		tools = append(tools, server.ServerTool{Tool: e.Tool, Handler: s.toolHandler(e)})
	}
	ex := s.extras.Load()
	prompts := make([]server.ServerPrompt, 0, len(t.prompts)+len(ex.Prompts))
	for _, e := range t.prompts {
		prompts = append(prompts, server.ServerPrompt{Prompt: e.Prompt, Handler: s.promptHandler(e)})
	}
	for _, xp := range ex.Prompts {
		if _, dup := t.prompts[xp.Prompt.Name]; dup {
			continue
		}
		t.prompts[xp.Prompt.Name] = &promptEntry{Exposed: xp.Prompt.Name, Provider: xp.Provider, Prompt: xp.Prompt}
		prompts = append(prompts, server.ServerPrompt{Prompt: xp.Prompt, Handler: staticPrompt(xp)})
	}
	resources := make([]server.ServerResource, 0, len(t.resources)+len(ex.Resources))
	for _, e := range t.resources {
		resources = append(resources, server.ServerResource{Resource: *e.Resource, Handler: s.resourceHandler(e.Provider, e.Original)})
	}
	for _, xr := range ex.Resources {
		if _, dup := t.resources[xr.Resource.URI]; dup {
			continue
		}
		rc := xr.Resource
		t.resources[rc.URI] = &resourceEntry{Provider: xr.Provider, Resource: &rc}
		resources = append(resources, server.ServerResource{Resource: rc, Handler: staticResource(xr)})
	}
	templates := make([]server.ServerResourceTemplate, 0, len(t.templates))
	for _, e := range t.templates {
		templates = append(templates, server.ServerResourceTemplate{Template: *e.Template, Handler: server.ResourceTemplateHandlerFunc(s.resourceHandler(e.Provider, ""))})
	}
	s.tbl.Store(t)
	s.gen.Add(1)
	s.setTools(tools)
	s.mcp.SetPrompts(prompts...)
	s.mcp.SetResources(resources...)
	s.mcp.SetResourceTemplates(templates...)
	s.scheduleNotify()
}

// setTools swaps the tool set. mcp-go panics on a few invalid tools; those were
// filtered in buildTable, and a panic here must not take the gateway down.
func (s *Server) setTools(tools []server.ServerTool) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Interface("panic", r).Msg("mcp-go refused the tool set")
		}
	}()
	s.mcp.SetTools(tools...)
}

func staticPrompt(xp ExtraPrompt) server.PromptHandlerFunc {
	return func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return mcp.NewGetPromptResult(xp.Prompt.Description, []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(xp.Text)),
		}), nil
	}
}

func staticResource(xr ExtraResource) server.ResourceHandlerFunc {
	return func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: xr.Resource.URI, MIMEType: xr.Resource.MIMEType, Text: xr.Text}}, nil
	}
}

// principal returns the caller of ctx.
func principal(ctx context.Context) *switchboard.Principal {
	return switchboard.PrincipalFromContext(ctx)
}

func (s *Server) providerVisible(ctx context.Context, p *switchboard.Principal, provider string) bool {
	f := s.filter.Load().f
	if f == nil {
		return true
	}
	return f.ProviderVisible(ctx, p, provider)
}

func (s *Server) toolVisible(ctx context.Context, p *switchboard.Principal, e *toolEntry) bool {
	f := s.filter.Load().f
	if f == nil {
		return true
	}
	return f.ProviderVisible(ctx, p, e.Provider) && f.ToolVisible(ctx, p, e.Provider, e.Original, e.ReadOnly)
}

// filterTools is mcp-go's WithToolFilter: it runs on tools/list and on every
// tools/call (with just the called tool), so a hidden tool and an absent tool
// give the same "not found" error. A list uses the cached view.
func (s *Server) filterTools(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
	p := principal(ctx)
	if len(tools) > 1 {
		return filterVisible(tools, s.visibleTools(ctx, p))
	}
	t := s.tbl.Load()
	out := tools[:0:0]
	for _, tool := range tools {
		e := t.tools[tool.Name]
		if e != nil && s.toolVisible(ctx, p, e) {
			out = append(out, tool)
		}
	}
	return out
}

func (s *Server) filterPrompts(ctx context.Context, prompts []mcp.Prompt) []mcp.Prompt {
	t := s.tbl.Load()
	p := principal(ctx)
	out := prompts[:0:0]
	for _, pr := range prompts {
		e := t.prompts[pr.Name]
		if e != nil && s.providerVisible(ctx, p, e.Provider) {
			out = append(out, pr)
		}
	}
	return out
}

func (s *Server) afterListResources(ctx context.Context, _ any, _ *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
	t := s.tbl.Load()
	p := principal(ctx)
	out := res.Resources[:0]
	for _, r := range res.Resources {
		if e := t.resources[r.URI]; e != nil && s.providerVisible(ctx, p, e.Provider) {
			out = append(out, r)
		}
	}
	res.Resources = out
}

func (s *Server) afterListResourceTemplates(ctx context.Context, _ any, _ *mcp.ListResourceTemplatesRequest, res *mcp.ListResourceTemplatesResult) {
	t := s.tbl.Load()
	p := principal(ctx)
	owner := map[string]string{}
	for _, e := range t.templates {
		owner[e.Template.URITemplate.Raw()] = e.Provider
	}
	out := res.ResourceTemplates[:0]
	for _, rt := range res.ResourceTemplates {
		if rt.URITemplate == nil {
			continue
		}
		if prov, ok := owner[rt.URITemplate.Raw()]; ok && s.providerVisible(ctx, p, prov) {
			out = append(out, rt)
		}
	}
	res.ResourceTemplates = out
}

// errNotFound is what a caller gets for a resource it may not see: the same as
// for one that does not exist.
func errResourceNotFound(uri string) error {
	return fmt.Errorf("resource %s: %w", uri, server.ErrResourceNotFound)
}

// guardResource denies reads of resources owned by providers the caller cannot see.
func (s *Server) guardResource(next server.ResourceHandlerFunc) server.ResourceHandlerFunc {
	return func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		t := s.tbl.Load()
		prov := ""
		if e := t.resources[req.Params.URI]; e != nil {
			prov = e.Provider
		} else {
			for _, e := range t.templates {
				if e.Template.URITemplate != nil && len(e.Template.URITemplate.Match(req.Params.URI)) > 0 {
					prov = e.Provider
					break
				}
			}
		}
		if prov == "" || !s.providerVisible(ctx, principal(ctx), prov) {
			return nil, errResourceNotFound(req.Params.URI)
		}
		return next(ctx, req)
	}
}

func (s *Server) onError(ctx context.Context, id any, method mcp.MCPMethod, message any, err error) {
	if method != mcp.MethodToolsCall || !errors.Is(err, server.ErrToolNotFound) {
		return
	}
	// A tools/call that never reached a handler: unknown or hidden. Audit it as a denial.
	name := ""
	if req, ok := message.(*mcp.CallToolRequest); ok {
		name = req.Params.Name
	}
	ci := s.newCallInfo(ctx, name)
	ci.Decision, ci.Outcome = "deny", "denied"
	ci.Err = errors.New("no such tool")
	if e := s.tbl.Load().tools[name]; e != nil {
		ci.Provider, ci.Tool = e.Provider, e.Original
	}
	s.finish(ctx, ci)
}
