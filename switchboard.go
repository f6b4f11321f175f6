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
}

// Upstream is a live, initialized MCP connection to one provider instance.
type Upstream interface {
	// Call sends one JSON-RPC request to the child and returns the raw result.
	// It blocks until the child answers, ctx ends (the child then receives
	// notifications/cancelled), or the connection dies, in which case it returns
	// an EUNAVAILABLE error at once rather than at a timeout. A JSON-RPC error from
	// the child is returned as *RPCError. Safe for concurrent use.
	Call(ctx context.Context, method string, params any) (json.RawMessage, error)

	// ProgressToken registers fn to receive the params of the child's
	// notifications/progress carrying a fresh, connection-unique token, which the
	// caller puts in the request's _meta.progressToken. release unregisters it and
	// is safe to call more than once.
	ProgressToken(fn func(params json.RawMessage)) (token string, release func())
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
