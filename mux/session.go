package mux

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/switchboard-mcp/switchboard"
)

// sessionInfo is what the gateway knows about one MCP session.
type sessionInfo struct {
	id         string
	owner      string // principal "kind:id" that created it; never changes
	principal  *switchboard.Principal
	endpoint   switchboard.Endpoint
	client     string
	created    time.Time
	lastSeen   time.Time
	streams    int // open GET streams
	terminated bool
	registered bool
	viewHash   [32]byte
	// notify is mcp-go's outgoing notification queue for the session. Queued
	// notifications go out inside the next response mcp-go writes.
	notify chan<- mcp.JSONRPCNotification
}

// SessionInfo is a public, read-only view of a session for status pages.
type SessionInfo struct {
	ID        string               `json:"id"`
	Principal string               `json:"principal"`
	Endpoint  switchboard.Endpoint `json:"endpoint"`
	Client    string               `json:"client"`
	CreatedAt time.Time            `json:"created_at"`
}

type sessions struct {
	mu sync.Mutex
	m  map[string]*sessionInfo
}

func newSessions() *sessions { return &sessions{m: map[string]*sessionInfo{}} }

func (ss *sessions) get(id string) *sessionInfo {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.m[id]
}

// boundManager is mcp-go's SessionIdManager for one request: session IDs are
// minted from a CSPRNG and bound to the principal that created them, so another
// principal presenting the ID gets 404, never the session.
type boundManager struct {
	ss       *sessions
	owner    string
	p        *switchboard.Principal
	endpoint switchboard.Endpoint
}

func (b *boundManager) Generate() string {
	var buf [24]byte
	if _, err := rand.Read(buf[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	id := "sb-" + base64.RawURLEncoding.EncodeToString(buf[:])
	b.ss.mu.Lock()
	now := time.Now()
	b.ss.m[id] = &sessionInfo{id: id, owner: b.owner, principal: b.p, endpoint: b.endpoint, created: now, lastSeen: now}
	b.ss.mu.Unlock()
	return id
}

var errUnknownSession = errors.New("unknown session")

func (b *boundManager) Validate(id string) (bool, error) {
	b.ss.mu.Lock()
	defer b.ss.mu.Unlock()
	s := b.ss.m[id]
	if s == nil || s.owner != b.owner || s.endpoint != b.endpoint {
		return false, errUnknownSession
	}
	if s.terminated {
		return true, nil
	}
	s.principal = b.p // the latest credentials of the same principal
	return false, nil
}

func (b *boundManager) Terminate(id string) (bool, error) {
	b.ss.mu.Lock()
	defer b.ss.mu.Unlock()
	s := b.ss.m[id]
	if s == nil || (b.p != nil && s.owner != b.owner) { // p is nil only on shutdown
		return false, errUnknownSession
	}
	s.terminated = true
	return false, nil
}

type resolver struct {
	ss       *sessions
	endpoint switchboard.Endpoint
}

func (r resolver) ResolveSessionIdManager(req *http.Request) server.SessionIdManager {
	var p *switchboard.Principal
	if req != nil { // mcp-go passes nil when closing sessions on shutdown
		p = switchboard.PrincipalFromContext(req.Context())
	}
	return &boundManager{ss: r.ss, owner: p.String(), p: p, endpoint: r.endpoint}
}

func (s *Server) onRegisterSession(ctx context.Context, cs server.ClientSession) {
	s.sessions.mu.Lock()
	info := s.sessions.m[cs.SessionID()]
	if info != nil {
		info.registered = true
		info.notify = cs.NotificationChannel()
	}
	s.sessions.mu.Unlock()
	if info != nil {
		s.log.Debug().Str("session", shortID(cs.SessionID())).Str("principal", info.owner).Msg("session opened")
		if s.opts.Observer != nil {
			if so, ok := s.opts.Observer.(SessionObserver); ok {
				so.SessionOpened(info.endpoint)
			}
		}
	}
}

// fastSession returns sid's info when a fast path may answer on it: the session
// is registered, live, and was created by p on ep, and no notification waits in
// its queue. Without a GET stream, mcp-go delivers queued notifications (such
// as list_changed) inside the next response it writes, so such a request is
// left to mcp-go rather than answered past them.
func (s *Server) fastSession(sid string, p *switchboard.Principal, ep switchboard.Endpoint) *sessionInfo {
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	info := s.sessions.m[sid]
	if info == nil || !info.registered || info.terminated || info.owner != p.String() || info.endpoint != ep {
		return nil
	}
	if len(info.notify) > 0 {
		return nil
	}
	return info
}

func (s *Server) onUnregisterSession(ctx context.Context, cs server.ClientSession) {
	s.sessions.mu.Lock()
	info := s.sessions.m[cs.SessionID()]
	delete(s.sessions.m, cs.SessionID())
	s.sessions.mu.Unlock()
	if info != nil {
		s.log.Debug().Str("session", shortID(cs.SessionID())).Msg("session closed")
		if s.opts.Observer != nil {
			if so, ok := s.opts.Observer.(SessionObserver); ok && info.registered {
				so.SessionClosed(info.endpoint)
			}
		}
	}
}

// SessionObserver is optionally implemented by a CallObserver to count sessions.
type SessionObserver interface {
	SessionOpened(switchboard.Endpoint)
	SessionClosed(switchboard.Endpoint)
}

// afterInitialize records the client, advertises listChanged, and gives the
// caller instructions that index only what it can see.
func (s *Server) afterInitialize(ctx context.Context, _ any, req *mcp.InitializeRequest, res *mcp.InitializeResult) {
	res.Capabilities.Tools = &struct {
		ListChanged bool `json:"listChanged,omitempty"`
	}{ListChanged: true}
	res.Capabilities.Prompts = &struct {
		ListChanged bool `json:"listChanged,omitempty"`
	}{ListChanged: true}
	res.Capabilities.Resources = &struct {
		Subscribe   bool `json:"subscribe,omitempty"`
		ListChanged bool `json:"listChanged,omitempty"`
	}{ListChanged: true}
	if sess := server.ClientSessionFromContext(ctx); sess != nil {
		s.sessions.mu.Lock()
		if info := s.sessions.m[sess.SessionID()]; info != nil {
			info.client = req.Params.ClientInfo.Name + "/" + req.Params.ClientInfo.Version
			info.viewHash = s.viewHash(ctx, info.principal)
		}
		s.sessions.mu.Unlock()
	}
	if rs := requestStateFrom(ctx); rs != nil {
		rs.client = req.Params.ClientInfo.Name + "/" + req.Params.ClientInfo.Version
	}
	if s.opts.Instructions != nil {
		res.Instructions = s.opts.Instructions(ctx, s.VisibleProviders(ctx, principal(ctx)))
	}
}

// VisibleProviders returns the providers p can see anything of right now.
func (s *Server) VisibleProviders(ctx context.Context, p *switchboard.Principal) []string {
	t := s.tbl.Load()
	seen := map[string]bool{}
	for _, e := range t.tools {
		seen[e.Provider] = true
	}
	for _, e := range t.prompts {
		seen[e.Provider] = true
	}
	for _, e := range t.resources {
		seen[e.Provider] = true
	}
	var out []string
	for prov := range seen {
		if s.providerVisible(ctx, p, prov) {
			out = append(out, prov)
		}
	}
	sort.Strings(out)
	return out
}

// viewHash summarizes everything p can see: tool, prompt and resource names plus
// tool definitions, so a change to any of them changes the hash.
func (s *Server) viewHash(ctx context.Context, p *switchboard.Principal) [32]byte {
	t := s.tbl.Load()
	var names []string
	for name, e := range t.tools {
		if s.toolVisible(ctx, p, e) {
			names = append(names, "t:"+name+":"+defHash(e))
		}
	}
	for name, e := range t.prompts {
		if s.providerVisible(ctx, p, e.Provider) {
			names = append(names, "p:"+name)
		}
	}
	for uri, e := range t.resources {
		if s.providerVisible(ctx, p, e.Provider) {
			names = append(names, "r:"+uri)
		}
	}
	for _, e := range t.templates {
		if s.providerVisible(ctx, p, e.Provider) {
			names = append(names, "rt:"+e.Template.URITemplate.Raw())
		}
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func defHash(e *toolEntry) string {
	b := append([]byte(e.Tool.Description), e.Tool.RawInputSchema...)
	sum := sha256.Sum256(b)
	return base64.RawStdEncoding.EncodeToString(sum[:8])
}

// scheduleNotify coalesces bursts of changes into one pass after NotifyDelay.
func (s *Server) scheduleNotify() {
	if !s.pending.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(s.opts.NotifyDelay, func() {
		s.pending.Store(false)
		s.notifyChanged()
	})
}

// notifyChanged sends list_changed to exactly the sessions whose view changed.
// View hashes are computed outside the sessions lock (every request takes it)
// and once per principal, however many sessions it has open.
func (s *Server) notifyChanged() {
	ctx := context.Background()
	type snap struct {
		id, owner string
		p         *switchboard.Principal
		old       [32]byte
	}
	var open []snap
	s.sessions.mu.Lock()
	for id, info := range s.sessions.m {
		if info.registered && !info.terminated {
			open = append(open, snap{id, info.owner, info.principal, info.viewHash})
		}
	}
	s.sessions.mu.Unlock()

	views := map[string][32]byte{} // owner → view
	var targets []string
	for _, sn := range open {
		h, ok := views[sn.owner]
		if !ok {
			h = s.viewHash(ctx, sn.p)
			views[sn.owner] = h
		}
		if h == sn.old {
			continue
		}
		s.sessions.mu.Lock()
		if info := s.sessions.m[sn.id]; info != nil && info.viewHash == sn.old {
			info.viewHash = h
			targets = append(targets, sn.id)
		}
		s.sessions.mu.Unlock()
	}
	for _, id := range targets {
		for _, m := range []string{mcp.MethodNotificationToolsListChanged, mcp.MethodNotificationPromptsListChanged, mcp.MethodNotificationResourcesListChanged} {
			if err := s.mcp.SendNotificationToSpecificClient(id, m, nil); err != nil {
				s.log.Debug().Err(err).Str("session", shortID(id)).Msg("list_changed not delivered")
				break
			}
		}
	}
}

// Sessions returns the open sessions, for status pages.
func (s *Server) Sessions() []SessionInfo {
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions.m))
	for id, info := range s.sessions.m {
		if !info.registered || info.terminated {
			continue
		}
		out = append(out, SessionInfo{ID: shortID(id), Principal: info.owner, Endpoint: info.endpoint, Client: info.client, CreatedAt: info.created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// SessionCount returns the number of open sessions.
func (s *Server) SessionCount() int {
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	n := 0
	for _, info := range s.sessions.m {
		if info.registered && !info.terminated {
			n++
		}
	}
	return n
}

// shortID keeps log lines and status pages free of whole session IDs.
func shortID(id string) string {
	if len(id) > 11 {
		return id[:11] + "…"
	}
	return id
}
