// Package listen is the gateway's side of a 2026-07-28 provider's
// subscriptions/listen stream, for a child on stdio (supervisor) and a remote
// server (remote) alike: the set of resources clients subscribed to, counted
// per subscriber, and the stream re-opened with the new set whenever it
// changes. The stateless era has no resources/subscribe: a Stream answers
// those requests itself. How a stream is carried (one call on a child's
// pipe, or an HTTP exchange retried with backoff) is the owner's.
package listen

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// Method is the request that opens the stream.
const Method = "subscriptions/listen"

// Stream keeps one provider's listen stream open. It is safe for concurrent
// use.
type Stream struct {
	parent context.Context
	open   func(ctx context.Context, params json.RawMessage)

	mu     sync.Mutex
	uris   map[string]int // subscribed resources, with how many subscribers
	cancel context.CancelFunc
	closed bool
}

// New returns a stream that is not open yet (see Start). open carries a
// Method request with params until ctx ends; it must not block: it starts
// its own goroutine. Ending parent ends the stream, as Close does.
func New(parent context.Context, open func(ctx context.Context, params json.RawMessage)) *Stream {
	return &Stream{parent: parent, open: open, uris: map[string]int{}}
}

// Start opens the stream, or opens it again with the current resources,
// ending the one that was open. It does nothing after Close.
func (s *Stream) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.cancel != nil {
		s.cancel()
	}
	ctx, cancel := context.WithCancel(s.parent)
	s.cancel = cancel
	s.open(ctx, listenParams(slices.Sorted(maps.Keys(s.uris))))
}

// listenParams returns the params of a Method request for every list change and
// the updates of uris.
func listenParams(uris []string) json.RawMessage {
	filter := map[string]any{"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true}
	if len(uris) > 0 {
		filter["resourceSubscriptions"] = uris
	}
	params, _ := json.Marshal(map[string]any{"notifications": filter})
	return params
}

// Close ends the stream for good.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
}

// Serves reports whether a Stream answers method in place of the provider:
// resources/subscribe and resources/unsubscribe.
func Serves(method string) bool {
	return method == "resources/subscribe" || method == "resources/unsubscribe"
}

// Serve answers a resources/subscribe or resources/unsubscribe request: it
// adds the resource to the stream (or drops one subscriber of it), and
// re-opens the stream when the set of resources changed.
func (s *Stream) Serve(req *switchboard.Request) (json.RawMessage, error) {
	var p struct {
		URI string `json:"uri"`
	}
	if json.Unmarshal(req.Params, &p) != nil || p.URI == "" {
		return nil, &switchboard.RPCError{Code: jsonrpc.CodeInvalidParams, Message: req.Method + " needs params.uri"}
	}
	if s.count(p.URI, req.Method == "resources/subscribe") {
		s.Start()
	}
	return json.RawMessage(`{}`), nil
}

// count adds a subscriber of uri (or drops one, with add false) and reports
// whether the set of resources changed.
func (s *Stream) count(uri string, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.uris[uri]
	if add {
		s.uris[uri]++
	} else if before > 0 {
		if s.uris[uri]--; s.uris[uri] == 0 {
			delete(s.uris, uri)
		}
	}
	return (before == 0) != (s.uris[uri] == 0)
}
