package mux

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// Sessions exist only in the session era (2025-11-25 and earlier): a client
// opens one with initialize and names it in every later request. A session is
// bound to the principal that opened it and to its endpoint; anyone else
// presenting its ID gets 404, as for an ID that never existed.

// session is one open session-era session.
type session struct {
	id      string
	owner   string // principal "kind:id" that created it; never changes
	ep      switchboard.Endpoint
	version string // the negotiated protocol version
	client  string // "name/version"
	caps    []byte // the client's capabilities, raw
	created time.Time

	p        atomic.Pointer[switchboard.Principal] // the latest credentials of the owner
	lastSeen atomic.Int64                          // unix nanoseconds
	logLevel atomic.Int32                          // from logging/setLevel; levelNone until then

	mu       sync.Mutex
	get      *stream  // the open GET stream, or nil
	queue    [][]byte // notifications waiting for a stream
	hashes   [numKinds]uint64
	inflight map[string]context.CancelFunc // requests being served, by raw id
	out      map[string]chan clientAnswer  // the gateway's requests to the client, by id
	nextOut  int64
	subs     map[string]bool // exposed URIs the client subscribed to
	busy     int             // requests being served
	closed   bool
}

// clientAnswer is the client's response to a request of the gateway.
type clientAnswer struct {
	result json.RawMessage
	err    *switchboard.RPCError
}

// maxQueued bounds the notifications a session without a GET stream keeps
// for its next response; older ones are dropped.
const maxQueued = 64

func (ss *session) principal() *switchboard.Principal { return ss.p.Load() }

func (ss *session) touch() { ss.lastSeen.Store(time.Now().UnixNano()) }

// deliver sends a notification of the session (not of one request): on the
// GET stream if one is open, else queued for the next response.
func (ss *session) deliver(frame []byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return
	}
	if ss.get != nil && ss.get.event(frame) {
		return
	}
	for _, q := range ss.queue { // list_changed and the like: once is enough
		if string(q) == string(frame) {
			return
		}
	}
	if len(ss.queue) >= maxQueued {
		ss.queue = ss.queue[1:]
	}
	ss.queue = append(ss.queue, frame)
}

// takeQueue returns and clears the queued notifications.
func (ss *session) takeQueue() [][]byte {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	q := ss.queue
	ss.queue = nil
	return q
}

// begin registers a request being served; end unregisters it.
func (ss *session) begin(id []byte, cancel context.CancelFunc) {
	ss.mu.Lock()
	ss.busy++
	if ss.inflight == nil {
		ss.inflight = map[string]context.CancelFunc{}
	}
	ss.inflight[string(id)] = cancel
	ss.mu.Unlock()
}

func (ss *session) end(id []byte) {
	ss.mu.Lock()
	ss.busy--
	delete(ss.inflight, string(id))
	ss.mu.Unlock()
	ss.touch()
}

// cancel cancels the request with raw id, if it is being served.
func (ss *session) cancel(id []byte) {
	ss.mu.Lock()
	c := ss.inflight[string(id)]
	ss.mu.Unlock()
	if c != nil {
		c()
	}
}

// request sends a request to the client on st (the response stream of the
// request it belongs to) and waits for the client's answer.
func (ss *session) request(ctx context.Context, st *stream, method string, params json.RawMessage) (json.RawMessage, error) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return nil, &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "the client's session has ended"}
	}
	ss.nextOut++
	id := `"sb-` + strconv.FormatInt(ss.nextOut, 10) + `"`
	ch := make(chan clientAnswer, 1)
	if ss.out == nil {
		ss.out = map[string]chan clientAnswer{}
	}
	ss.out[id] = ch
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		delete(ss.out, id)
		ss.mu.Unlock()
	}()
	if err := st.eventWait(ctx, jsonrpc.AppendRequest(nil, []byte(id), method, params)); err != nil {
		return nil, &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "the client's request has ended"}
	}
	select {
	case a, ok := <-ch:
		if !ok {
			return nil, &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "the client's session has ended"}
		}
		if a.err != nil {
			return nil, a.err
		}
		return a.result, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answer routes the client's response to a request of the gateway. It
// reports whether one was waiting.
func (ss *session) answer(m *jsonrpc.Message) bool {
	ss.mu.Lock()
	ch := ss.out[string(m.ID)]
	delete(ss.out, string(m.ID))
	ss.mu.Unlock()
	if ch == nil {
		return false
	}
	a := clientAnswer{result: jsonrpc.Clone(m.Result)}
	if jsonrpc.Has(m.Error) {
		a.err = new(switchboard.RPCError)
		if json.Unmarshal(m.Error, a.err) != nil {
			a.err = &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "the client sent a malformed error"}
		}
	}
	ch <- a
	return true
}

// sessionTable is every open session.
type sessionTable struct {
	mu      sync.Mutex
	m       map[string]*session
	byOwner map[string]int
}

func newSessionTable() *sessionTable {
	return &sessionTable{m: map[string]*session{}, byOwner: map[string]int{}}
}

// errTooManySessions refuses an initialize past the per-principal cap.
type errTooManySessions int

func (e errTooManySessions) Error() string {
	return "too many open sessions (" + strconv.Itoa(int(e)) + "): close one with DELETE first"
}

// open creates a session for p on ep from the fields of ss (version,
// client, caps, hashes) and adds it. IDs are minted from a CSPRNG.
func (st *sessionTable) open(ss *session, p *switchboard.Principal, ep switchboard.Endpoint, max int) (*session, error) {
	var buf [24]byte
	if _, err := rand.Read(buf[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	now := time.Now()
	ss.id, ss.owner, ss.ep, ss.created = "sb-"+base64.RawURLEncoding.EncodeToString(buf[:]), p.String(), ep, now
	ss.p.Store(p)
	ss.lastSeen.Store(now.UnixNano())
	ss.logLevel.Store(levelNone)
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := st.byOwner[ss.owner]; n >= max {
		return nil, errTooManySessions(n)
	}
	st.m[ss.id] = ss
	st.byOwner[ss.owner]++
	return ss, nil
}

// lookup returns the session id if p owns it on ep, and updates its
// credentials; else nil.
func (st *sessionTable) lookup(id string, p *switchboard.Principal, ep switchboard.Endpoint) *session {
	st.mu.Lock()
	ss := st.m[id]
	st.mu.Unlock()
	if ss == nil || ss.owner != p.String() || ss.ep != ep {
		return nil
	}
	ss.mu.Lock()
	closed := ss.closed
	ss.mu.Unlock()
	if closed {
		return nil
	}
	ss.p.Store(p)
	return ss
}

// remove takes ss out of the table; it reports whether it was there.
func (st *sessionTable) remove(ss *session) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.m[ss.id] != ss {
		return false
	}
	delete(st.m, ss.id)
	if st.byOwner[ss.owner]--; st.byOwner[ss.owner] <= 0 {
		delete(st.byOwner, ss.owner)
	}
	return true
}

// all returns the open sessions.
func (st *sessionTable) all() []*session {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]*session, 0, len(st.m))
	for _, ss := range st.m {
		out = append(out, ss)
	}
	return out
}

// closeSession ends ss: out of the table, its GET stream ended, its waiting
// requests to the client failed, its resource subscriptions dropped.
func (s *Server) closeSession(ss *session, why string) {
	if !s.sessions.remove(ss) {
		return
	}
	ss.mu.Lock()
	ss.closed = true
	get := ss.get
	ss.get = nil
	for _, ch := range ss.out {
		close(ch)
	}
	ss.out = nil
	for _, c := range ss.inflight {
		c()
	}
	subs := ss.subs
	ss.subs = nil
	ss.mu.Unlock()
	if get != nil {
		get.finish(http.StatusOK, nil)
	}
	for uri := range subs {
		s.subs.drop(s, uri, ss.id)
	}
	s.log.Debug().Str("session", shortID(ss.id)).Str("why", why).Msg("session closed")
	if so, ok := s.opts.Observer.(SessionObserver); ok {
		so.SessionClosed(ss.ep)
	}
}

// reapIdle ends sessions idle for longer than ttl: no request for that long,
// none being served, and no GET stream open.
func (st *sessionTable) reapIdle(s *Server, ttl time.Duration) {
	cutoff := time.Now().Add(-ttl).UnixNano()
	for _, ss := range st.all() {
		ss.mu.Lock()
		idle := ss.get == nil && ss.busy == 0 && ss.lastSeen.Load() < cutoff
		ss.mu.Unlock()
		if idle {
			s.closeSession(ss, "idle")
		}
	}
}

// closeAll ends every session (shutdown).
func (st *sessionTable) closeAll(s *Server) {
	for _, ss := range st.all() {
		s.closeSession(ss, "shutdown")
	}
}

// SessionInfo is a public, read-only view of a session for status pages.
type SessionInfo struct {
	ID        string               `json:"id"`
	Principal string               `json:"principal"`
	Endpoint  switchboard.Endpoint `json:"endpoint"`
	Client    string               `json:"client"`
	Version   string               `json:"protocol_version"`
	CreatedAt time.Time            `json:"created_at"`
}

// Sessions returns the open sessions, for status pages.
func (s *Server) Sessions() []SessionInfo {
	all := s.sessions.all()
	out := make([]SessionInfo, 0, len(all))
	for _, ss := range all {
		out = append(out, SessionInfo{ID: shortID(ss.id), Principal: ss.owner, Endpoint: ss.ep, Client: ss.client, Version: ss.version, CreatedAt: ss.created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// SessionCount returns the number of open sessions.
func (s *Server) SessionCount() int {
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	return len(s.sessions.m)
}

// shortID keeps log lines and status pages free of whole session IDs.
func shortID(id string) string {
	if len(id) > 11 {
		return id[:11] + "…"
	}
	return id
}
