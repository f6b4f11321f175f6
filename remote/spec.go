package remote

import (
	"maps"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/backoff"
	"github.com/switchboard-mcp/switchboard/internal/gate"
)

// Transport choices for Spec.Transport.
const (
	// TransportAuto tries streamable HTTP, and falls back to the legacy
	// HTTP+SSE transport when the server answers as the specification says
	// an old server does.
	TransportAuto = ""
	// TransportStreamable is streamable HTTP only (2025-03-26 and later).
	TransportStreamable = "streamable-http"
	// TransportSSE is the HTTP+SSE transport of 2024-11-05 only: the URL is
	// the server's SSE endpoint.
	TransportSSE = "sse"
)

// Protocol choices for Spec.Protocol.
const (
	ProtocolAuto      = ""                            // probe with server/discover, fall back to initialize
	ProtocolSession   = switchboard.SessionProtocol   // initialize only
	ProtocolStateless = switchboard.StatelessProtocol // server/discover only
)

// Defaults applied to a zero Spec field.
const (
	DefaultInitTimeout     = 30 * time.Second
	DefaultMaxMessageBytes = 16 << 20
	DefaultHealthInterval  = 30 * time.Second
)

// Spec describes one remote provider instance: where it is, how to
// authenticate, and its limits. Zero fields take the documented defaults.
type Spec struct {
	// Key names the instance: a shared provider (User "") or a user's own.
	Key switchboard.InstanceKey
	// URL is the server's MCP endpoint (for TransportSSE: its SSE endpoint).
	URL string
	// Transport is TransportAuto, TransportStreamable or TransportSSE.
	Transport string
	// Protocol chooses the era on streamable HTTP: ProtocolAuto,
	// ProtocolSession or ProtocolStateless.
	Protocol string
	// Headers are sent with every request. Values may be secrets: they are
	// never logged.
	Headers map[string]string
	// Auth supplies the Authorization header (OAuth); nil sends none.
	Auth switchboard.Authorizer
	// Roots tells the server the client side answers roots/list. Set it only
	// for an instance that serves one user.
	Roots bool

	// InitTimeout bounds connecting, the handshake and the first catalog
	// fetch (default 30s).
	InitTimeout time.Duration
	// Limits bound the calls through the Upstream: the timeout, the calls
	// in flight and waiting, and the timeouts in a row after which the
	// connection is dropped and made again (see gate.Limits for the
	// defaults).
	Limits
	// MaxMessageBytes bounds one message from the server (default 16 MiB).
	MaxMessageBytes int
	// HealthInterval is how often an idle connection is checked (ping, or
	// server/discover in the stateless era; default 30s; negative disables).
	HealthInterval time.Duration
	// Backoff is the reconnect policy. A remote provider is never given up
	// on: after Backoff.MaxFailures quick failures in a row the instance is
	// in StateFailed and keeps trying every Backoff.Max, and comes back on its
	// own when the server does.
	Backoff BackoffPolicy
}

// BackoffPolicy is the reconnect policy of a Spec (see internal/backoff).
type BackoffPolicy = backoff.Policy

// Limits are a Spec's limits on calls (see internal/gate).
type Limits = gate.Limits

// withDefaults returns s with zero fields set to their defaults.
func (s Spec) withDefaults() Spec {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&s.InitTimeout, DefaultInitTimeout)
	def(&s.HealthInterval, DefaultHealthInterval)
	s.Backoff = s.Backoff.WithDefaults()
	s.Limits = s.Limits.WithDefaults()
	if s.MaxMessageBytes <= 0 {
		s.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return s
}

// Equal reports whether s and o describe the same instance with the same
// settings (the same Authorizer value included), i.e. whether a reload from
// o to s needs no reconnect.
func (s Spec) Equal(o Spec) bool {
	a, b := s.withDefaults(), o.withDefaults()
	return a.Key == b.Key &&
		a.URL == b.URL &&
		a.Transport == b.Transport &&
		a.Protocol == b.Protocol &&
		maps.Equal(a.Headers, b.Headers) &&
		a.Auth == b.Auth &&
		a.Roots == b.Roots &&
		a.InitTimeout == b.InitTimeout &&
		a.Limits == b.Limits &&
		a.MaxMessageBytes == b.MaxMessageBytes &&
		a.HealthInterval == b.HealthInterval &&
		a.Backoff == b.Backoff
}
