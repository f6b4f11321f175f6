package supervisor

import (
	"context"
	"encoding/json"
	"slices"
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
const StatelessVersion = switchboard.StatelessProtocol

// Protocol choices for Spec.Protocol.
const (
	ProtocolAuto      = ""                          // probe with server/discover, fall back to initialize
	ProtocolSession   = switchboard.SessionProtocol // initialize only
	ProtocolStateless = StatelessVersion
)

// probeTimeout bounds the server/discover probe: a session-era child that
// ignores unknown requests instead of answering them costs this much at
// start.
const probeTimeout = 5 * time.Second

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
