package switchboard

import "context"

// PrincipalKind says which identity machinery authenticated a caller.
type PrincipalKind string

// Principal kinds. Users call /mcp; services call /mcp/internal. Never both.
const (
	PrincipalUser    PrincipalKind = "user"
	PrincipalService PrincipalKind = "service"
)

// Endpoint is one of the two MCP front ends.
type Endpoint string

// The two MCP endpoints.
const (
	EndpointPublic   Endpoint = "/mcp"
	EndpointInternal Endpoint = "/mcp/internal"
)

// Principal is an authenticated caller. It is resolved per request and never
// cached from session creation. The authenticator may hand the same
// Principal to every request of one caller (the API-key path keeps one per
// user, rebuilt when the user changes): treat it as read-only.
type Principal struct {
	Kind     PrincipalKind `json:"kind"`
	ID       string        `json:"id"`
	Roles    []string      `json:"roles,omitempty"`
	Method   string        `json:"method,omitempty"` // "api_key", "jwt", "service_token", "none"
	Endpoint Endpoint      `json:"endpoint"`

	name string // String's answer, when built by NewPrincipal
}

// NewPrincipal returns a Principal whose String is computed once (a request
// asks for it several times: rate limit, session check, access log).
func NewPrincipal(kind PrincipalKind, id string, roles []string, method string, ep Endpoint) *Principal {
	return &Principal{Kind: kind, ID: id, Roles: roles, Method: method, Endpoint: ep, name: string(kind) + ":" + id}
}

// String returns "kind:id".
func (p *Principal) String() string {
	switch {
	case p == nil:
		return "anonymous"
	case p.name != "":
		return p.name
	}
	return string(p.Kind) + ":" + p.ID
}

type principalKey struct{}

// NewContextWithPrincipal returns a copy of ctx carrying p.
func NewContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the principal in ctx, or nil.
func PrincipalFromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

type requestIDKey struct{}

// NewContextWithRequestID returns a copy of ctx carrying a request id.
func NewContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFromContext returns the request id in ctx, or "".
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
