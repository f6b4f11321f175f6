package auth

import (
	"context"
	"path"
	"slices"
	"strings"

	"github.com/switchboard-mcp/switchboard"
)

// RoleAdmin is the built-in role that sees every provider on /mcp.
const RoleAdmin = "admin"

// Policy is the visibility policy from gateway.yaml, evaluated on every list and
// every call (it is the mux's filter). The zero Policy shows nothing to anyone.
type Policy struct {
	// Providers holds the enabled providers; Disabled the others, so that
	// an operator is told why.
	Providers   map[string]ProviderPolicy
	Disabled    map[string]bool
	Roles       map[string]RolePolicy
	DefaultRole string
	// Services maps a service principal to the provider prefixes it may use.
	Services map[string][]string
	// Users answers per-user state; nil means no user is connected to anything
	// and nothing is hidden.
	Users UserState
}

// ProviderPolicy is one provider's part of the policy.
type ProviderPolicy struct {
	InternalOnly bool     // only on /mcp/internal
	Public       bool     // visible to every user, whatever their roles
	UserScoped   bool     // visible to a user only once they connected it
	ReadOnly     bool     // only tools annotated readOnlyHint, plus Allow
	Allow, Deny  []string // glob patterns over the provider's own tool names
}

// RolePolicy is what one role grants.
type RolePolicy struct {
	Providers []string // prefixes, or "*"
	Tools     []string // optional glob patterns over exposed names
}

// UserState is per-user state that visibility depends on.
type UserState interface {
	// Connected reports whether user has connected provider (scope: user).
	Connected(user, provider string) bool
	// Hidden reports whether user hid provider from their own sessions.
	Hidden(user, provider string) bool
}

// Axis names a reason a provider is hidden, for `switchboard tools`.
type Axis string

// The axes, in the order they are checked.
const (
	AxisNone         Axis = ""
	AxisUnknown      Axis = "unknown principal or provider"
	AxisEndpoint     Axis = "endpoint"
	AxisServiceAllow Axis = "service allowlist"
	AxisInternalOnly Axis = "internal_only"
	AxisRole         Axis = "role"
	AxisConnection   Axis = "not connected"
	AxisPreference   Axis = "hidden by preference"
)

// ProviderVisible reports whether p may see anything of provider.
func (pol *Policy) ProviderVisible(ctx context.Context, p *switchboard.Principal, provider string) bool {
	return pol.Why(p, provider) == AxisNone
}

// Why returns the first axis that hides provider from p, or AxisNone.
func (pol *Policy) Why(p *switchboard.Principal, provider string) Axis {
	pp, ok := pol.Providers[provider]
	if p == nil || !ok {
		return AxisUnknown
	}
	switch p.Kind {
	case switchboard.PrincipalService:
		if p.Endpoint != switchboard.EndpointInternal {
			return AxisEndpoint
		}
		if !slices.Contains(pol.Services[p.ID], provider) {
			return AxisServiceAllow
		}
		return AxisNone
	case switchboard.PrincipalUser:
		if p.Endpoint != switchboard.EndpointPublic {
			return AxisEndpoint
		}
		if pp.InternalOnly {
			return AxisInternalOnly
		}
		if !pp.Public && !pol.roleGrants(p, provider) {
			return AxisRole
		}
		if pp.UserScoped && (pol.Users == nil || !pol.Users.Connected(p.ID, provider)) {
			return AxisConnection
		}
		if pol.Users != nil && pol.Users.Hidden(p.ID, provider) {
			return AxisPreference
		}
		return AxisNone
	}
	return AxisUnknown
}

// roles returns p's roles, or the default role when it has none.
func (pol *Policy) roles(p *switchboard.Principal) []string {
	if len(p.Roles) > 0 {
		return p.Roles
	}
	if pol.DefaultRole != "" {
		return []string{pol.DefaultRole}
	}
	return nil
}

func (pol *Policy) roleGrants(p *switchboard.Principal, provider string) bool {
	for _, r := range pol.roles(p) {
		if r == RoleAdmin {
			return true
		}
		if rp, ok := pol.Roles[r]; ok && grantsProvider(rp, provider) {
			return true
		}
	}
	return false
}

func grantsProvider(rp RolePolicy, provider string) bool {
	return slices.Contains(rp.Providers, provider) || slices.Contains(rp.Providers, "*")
}

// ToolVisible reports whether p may see and call tool (the provider's own
// name, exposed as exposed): the provider's write policy, then role tool
// patterns over the exposed name. It does not repeat the provider checks
// (the mux asks both).
func (pol *Policy) ToolVisible(ctx context.Context, p *switchboard.Principal, provider, tool, exposed string, readOnly bool) bool {
	pp, ok := pol.Providers[provider]
	if p == nil || !ok {
		return false
	}
	if matchAny(pp.Deny, tool) {
		return false
	}
	switch {
	case pp.ReadOnly:
		if !readOnly && !matchAny(pp.Allow, tool) {
			return false
		}
	case len(pp.Allow) > 0:
		if !matchAny(pp.Allow, tool) {
			return false
		}
	}
	if p.Kind != switchboard.PrincipalUser || pp.Public {
		return true
	}
	for _, r := range pol.roles(p) {
		if r == RoleAdmin {
			return true
		}
		rp, ok := pol.Roles[r]
		if !ok || !grantsProvider(rp, provider) {
			continue
		}
		if len(rp.Tools) == 0 {
			return true
		}
		if matchAny(rp.Tools, exposed) {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, name string) bool {
	for _, pat := range patterns {
		if !strings.ContainsAny(pat, `*?[\`) {
			// No metacharacters: path.Match is plain equality.
			if pat == name {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// Connections and preferences follow the visibility of tools: a user may
// connect, list, hide or show only a provider they could see once
// connected. To the user a provider they cannot see does not exist: the same
// error as a provider that does not. The operator is told why instead.

// ErrNoProvider is the user-facing answer for a provider that does not exist
// or that the user cannot see.
func ErrNoProvider(name string) error {
	return switchboard.Errorf(switchboard.ENOTFOUND, "no provider %q", name)
}

// SelfService returns nil if who may connect provider (userScoped: the
// provider must run per user) or set a preference for it. Otherwise a user
// (operator false) gets ErrNoProvider, and an operator acting for who an
// explanation. The two axes connecting and preferences are about, not
// connected and hidden by preference, do not count.
func (pol *Policy) SelfService(who *switchboard.Principal, provider string, userScoped, operator bool) error {
	bare := *pol
	bare.Users = nil
	why := bare.Why(who, provider)
	if why == AxisConnection {
		why = AxisNone
	}
	pp, known := pol.Providers[provider]
	if known && why == AxisNone && (!userScoped || pp.UserScoped) {
		return nil
	}
	if !operator {
		return ErrNoProvider(provider)
	}
	switch {
	case pol.Disabled[provider]:
		return switchboard.Errorf(switchboard.EINVALID, "provider %q is disabled", provider)
	case !known:
		return switchboard.Errorf(switchboard.ENOTFOUND, "no provider %q in the config", provider)
	case userScoped && !pp.UserScoped:
		return switchboard.Errorf(switchboard.EINVALID, "provider %q is shared (not scope: user): there is nothing to connect", provider)
	case why == AxisInternalOnly:
		return switchboard.Errorf(switchboard.EFORBIDDEN, "user %q cannot use provider %q: it is internal_only (only services on /mcp/internal see it)", who.ID, provider)
	case why == AxisRole:
		roles := "none, and default_role grants nothing here"
		if len(who.Roles) > 0 {
			roles = strings.Join(who.Roles, ", ")
		}
		return switchboard.Errorf(switchboard.EFORBIDDEN, "user %q cannot use provider %q: no role of theirs grants it (roles: %s); give them a role that lists %s first", who.ID, provider, roles, provider)
	default:
		return switchboard.Errorf(switchboard.EFORBIDDEN, "user %q cannot use provider %q (%s)", who.ID, provider, why)
	}
}

// HasRole reports whether p holds role.
func HasRole(p *switchboard.Principal, role string) bool {
	return p != nil && slices.Contains(p.Roles, role)
}
