package supervisor

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// Children that speak the stateless protocol (2026-07-28). The supervisor
// speaks to each child in the newest era it supports: it probes with
// server/discover and falls back to initialize on any answer that is not a
// modern one. To a modern child every request carries the protocol version,
// the client capabilities and the client info in _meta; an input_required
// result is turned into requests to the Caller (the client whose call it is)
// and the call retried with the answers; list changes and resource updates
// arrive on a subscriptions/listen stream the supervisor keeps open, which
// also carries the resources clients subscribed to. Whatever era a child
// speaks, the mux sees one Upstream.

// StatelessVersion is the protocol version a modern child is spoken to in.
const StatelessVersion = "2026-07-28"

// Protocol choices for Spec.Protocol.
const (
	ProtocolAuto      = ""           // probe with server/discover, fall back to initialize
	ProtocolSession   = "2025-11-25" // initialize only
	ProtocolStateless = StatelessVersion
)

// probeTimeout bounds the server/discover probe: a session-era child that
// ignores unknown requests instead of answering them costs this much at
// start.
const probeTimeout = 5 * time.Second

// modernMeta is the _meta members every request to a modern child carries.
func modernMeta(roots bool) []byte {
	caps, _ := json.Marshal(clientCapabilities(roots))
	info, _ := json.Marshal(map[string]string{"name": "switchboard", "version": switchboard.Version})
	b := []byte(`"` + jsonrpc.MetaProtocolVersion + `":"` + StatelessVersion + `","` + jsonrpc.MetaClientCapabilities + `":`)
	b = append(b, caps...)
	b = append(b, `,"`+jsonrpc.MetaClientInfo+`":`...)
	return append(b, info...)
}

// discover probes the child with server/discover. It returns the result if
// the child speaks the stateless era, and ok false if it does not (any
// answer that is not a modern one, or none in time). err is set when the
// connection died meanwhile.
func discover(ctx context.Context, conn *Conn, meta []byte) (res json.RawMessage, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	raw, err := conn.Call(ctx, &switchboard.Request{Method: "server/discover", Meta: meta})
	switch {
	case err == nil:
		var d struct {
			Versions []string `json:"supportedVersions"`
		}
		if json.Unmarshal(raw, &d) == nil && slices.Contains(d.Versions, StatelessVersion) {
			return raw, true, nil
		}
		return nil, false, nil
	case conn.Err() != nil:
		return nil, false, conn.Err()
	}
	return nil, false, nil
}

// callModern is Call for a modern child: the protocol's _meta on every
// request, and input_required turned into requests to req.Caller, after
// which the call is retried with the answers.
func (c *Conn) callModern(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	r := *req
	meta := append([]byte(nil), c.modernMeta...)
	if req.LogLevel != "" {
		meta = append(meta, `,"`+jsonrpc.MetaLogLevel+`":`...)
		meta = jsonrpc.AppendString(meta, req.LogLevel)
	}
	if len(req.Meta) > 0 {
		meta = append(append(meta, ','), req.Meta...)
	}
	r.Meta = meta
	return switchboard.CallWithInput(ctx, &r, func(r *switchboard.Request) (json.RawMessage, error) { return c.call(ctx, r) })
}

// listener keeps a modern child's subscriptions/listen stream open: list
// changes, and updates of the resources clients subscribed to. A change to
// the set of resources re-opens it.
type listener struct {
	conn *Conn
	log  func(error)

	mu     sync.Mutex
	uris   map[string]int // subscribed resources, with how many subscribers
	cancel context.CancelFunc
	closed bool
}

func newListener(conn *Conn, log func(error)) *listener {
	return &listener{conn: conn, log: log, uris: map[string]int{}}
}

// restart (re-)opens the stream with the current resources.
func (l *listener) restart() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.cancel != nil {
		l.cancel()
	}
	uris := make([]string, 0, len(l.uris))
	for u := range l.uris {
		uris = append(uris, u)
	}
	sort.Strings(uris)
	filter := map[string]any{"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true}
	if len(uris) > 0 {
		filter["resourceSubscriptions"] = uris
	}
	params, _ := json.Marshal(map[string]any{"notifications": filter})
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		_, err := l.conn.Call(ctx, &switchboard.Request{Method: "subscriptions/listen", Params: params})
		if err != nil && ctx.Err() == nil && l.conn.Err() == nil {
			l.log(err)
		}
	}()
}

// subscribe adds (or, with add false, drops) a resource the stream carries.
func (l *listener) subscribe(uri string, add bool) {
	l.mu.Lock()
	before := l.uris[uri]
	if add {
		l.uris[uri]++
	} else if before > 0 {
		if l.uris[uri]--; l.uris[uri] == 0 {
			delete(l.uris, uri)
		}
	}
	changed := (before == 0) != (l.uris[uri] == 0)
	l.mu.Unlock()
	if changed {
		l.restart()
	}
}

// close ends the stream.
func (l *listener) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.cancel != nil {
		l.cancel()
	}
}

// resourceSubscription reads the uri of a resources/subscribe or
// unsubscribe request.
func resourceSubscription(req *switchboard.Request) (string, bool) {
	var p struct {
		URI string `json:"uri"`
	}
	if json.Unmarshal(req.Params, &p) != nil || p.URI == "" {
		return "", false
	}
	return p.URI, true
}
