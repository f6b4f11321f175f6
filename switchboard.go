// Package switchboard holds the domain vocabulary shared by the gateway's packages:
// errors and their codes, principals, provider states, the upstream contract between
// the supervisor and the multiplexer, and self-redacting secret values.
//
// Subpackages import this package and third-party libraries only; they never import
// each other. cmd/switchboard wires them together.
package switchboard

import (
	"context"
	"encoding/json"
	"iter"
	"time"
)

// Version is the gateway's version, set at build time by cmd/switchboard.
var Version = "dev"

// ToolSeparator joins a provider prefix and a tool name: "<prefix>__<tool>".
const ToolSeparator = "__"

// ProviderState is where one provider instance is in its lifecycle.
type ProviderState string

// Provider states. A provider exposes tools only while StateRunning.
const (
	StateQueued   ProviderState = "queued"   // waiting for its turn: too many instances are starting at once
	StateStarting ProviderState = "starting" // spawned, initialize not yet answered
	StateRunning  ProviderState = "running"  // initialized; catalog published
	StateBackoff  ProviderState = "backoff"  // exited; waiting before the next start
	StateFailed   ProviderState = "failed"   // gave up: too many quick failures, or cannot start
	StateStopping ProviderState = "stopping" // stop requested; draining
	StateStopped  ProviderState = "stopped"  // not running and not meant to run
)

// InstanceKey names one provider process: the shared instance (User == "") or a
// user's own instance of a scope: user provider.
type InstanceKey struct {
	Provider string `json:"provider"`
	User     string `json:"user,omitempty"`
}

func (k InstanceKey) String() string {
	if k.User == "" {
		return k.Provider
	}
	return k.Provider + "@" + k.User
}

// ProviderStatus is a point-in-time view of one provider instance, for health,
// status pages and metrics. It never contains secret values.
type ProviderStatus struct {
	Provider   string        `json:"provider"`
	User       string        `json:"user,omitempty"`
	State      ProviderState `json:"state"`
	PID        int           `json:"pid,omitempty"`
	Restarts   int           `json:"restarts"`
	StartedAt  time.Time     `json:"started_at,omitzero"`
	LastError  string        `json:"last_error,omitempty"`
	LastExit   string        `json:"last_exit,omitempty"`
	Tools      int           `json:"tools"`
	Limits     string        `json:"limits,omitempty"`
	StderrTail []string      `json:"stderr_tail,omitempty"`
	Garbage    int64         `json:"garbage_lines,omitempty"`
	InFlight   int64         `json:"in_flight"`
}

// Catalog is everything one provider instance exposes, as the raw JSON objects the
// child returned from tools/list, prompts/list, resources/list and
// resources/templates/list. Raw bytes keep schemas byte-exact.
type Catalog struct {
	Tools             []json.RawMessage
	Prompts           []json.RawMessage
	Resources         []json.RawMessage
	ResourceTemplates []json.RawMessage
	Instructions      string
	// Capabilities is the child's server capabilities object, raw.
	Capabilities json.RawMessage
}

// Upstream is a live, initialized MCP connection to one provider instance.
type Upstream interface {
	// Call sends one request to the child and returns the raw result. It
	// blocks until the child answers, ctx ends (the child then receives
	// notifications/cancelled), or the connection dies, in which case it
	// returns an EUNAVAILABLE error at once rather than at a timeout. A
	// JSON-RPC error from the child is returned as *RPCError. While the call
	// is in flight, the child's messages that belong to it (progress, log
	// messages, requests such as sampling) go to req.Caller. Safe for
	// concurrent use.
	Call(ctx context.Context, req *Request) (json.RawMessage, error)
}

// Request is one request forwarded to a provider.
type Request struct {
	Method string
	// Params is a JSON object without a "_meta" member, or nil.
	Params json.RawMessage
	// Meta holds extra members for params._meta as raw `"key":value` pairs
	// separated by commas (trace context, for example), or nil.
	Meta []byte
	// Progress is the client's progress token, or nil. The upstream gives
	// the child its own token and relays the child's progress to Caller
	// with this one.
	Progress json.RawMessage
	// LogLevel is the least severe log level the client wants messages of
	// during this request ("" for none); a child that speaks the stateless
	// protocol is told it, per request.
	LogLevel string
	// Caller receives the child's messages that belong to this request;
	// nil for the gateway's own requests.
	Caller Caller
}

// Caller is the client side of one request the gateway forwards to a
// provider. A child that speaks over stdio cannot say which request a
// message of its own belongs to; the upstream relays such messages to the
// caller of the calls in flight on the connection only when every one of
// them has the same Key, and refuses a child's request otherwise, so a
// request never reaches another client.
type Caller interface {
	// Key identifies the client: its session, or, for a stateless-era
	// client, the request.
	Key() string
	// Notify relays a notification that belongs to the request (progress,
	// with the client's own token, or a log message). It must not block.
	Notify(method string, params json.RawMessage)
	// Request relays a request of the child (sampling/createMessage,
	// elicitation/create, roots/list) to the client and returns the
	// client's result, or an error the child receives as its JSON-RPC error
	// (*RPCError for a specific code).
	Request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error)
}

// SoleCaller applies the relay rule for a message of a provider that no
// request ties to a call (a shared child's sampling request outside any
// call's stream, say): it may reach a client only when that client is the
// only one with calls in flight on the provider. It returns that client, or
// nil and why there is none. callers yields the callers of the calls in
// flight; nil entries (calls no client can be asked about) are skipped.
func SoleCaller(callers iter.Seq[Caller]) (Caller, string) {
	var sole Caller
	keys := 0
	for c := range callers {
		if c == nil {
			continue
		}
		if sole == nil {
			sole, keys = c, 1
		} else if c.Key() != sole.Key() {
			keys++
		}
	}
	switch {
	case sole == nil:
		return nil, "no client call is in flight on this provider"
	case keys > 1:
		return nil, "calls of several clients are in flight on this provider, so the request cannot be tied to one of them"
	}
	return sole, ""
}

// CatalogFunc is called by the supervisor whenever an instance's availability or
// catalog changes. up == nil means the instance is down and exposes nothing.
// Implementations must not block for long.
type CatalogFunc func(key InstanceKey, up Upstream, cat *Catalog)

// RPCError is a JSON-RPC error object returned by a child.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return e.Message }
