package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/vault"
)

// serviceKeySecret names the vault's internal key that signs service tokens.
// It is generated on first start and never leaves the vault.
const serviceKeySecret = "SWITCHBOARD_SERVICE_SIGNING_KEY"

// identity is the authentication and visibility state of a running gateway.
type identity struct {
	users   *auth.Users
	prefs   *auth.Prefs
	tokens  *auth.ServiceTokens
	tokLog  *auth.TokenLog // issued and revoked service tokens
	authn   *auth.Authenticator
	limiter *auth.RateLimiter
	fails   *auth.FailureLimiter
	conns   *connState
}

// openIdentity builds users, service tokens and the authenticator on the vault.
func openIdentity(v *vault.Vault, cfg *providers.Config, m *Main) (*identity, error) {
	users, err := auth.NewUsers(v.DB())
	if err != nil {
		return nil, err
	}
	prefs, err := auth.NewPrefs(v.DB())
	if err != nil {
		return nil, err
	}
	key, err := serviceKey(v)
	if err != nil {
		return nil, err
	}
	tokens, tokLog, err := newServiceTokens(v, key)
	if err != nil {
		return nil, err
	}
	authn, err := auth.New(users, tokens, authConfig(cfg), m.Log)
	if err != nil {
		return nil, err
	}
	id := &identity{users: users, prefs: prefs, tokens: tokens, tokLog: tokLog, authn: authn, conns: &connState{}}
	if err := id.conns.reload(v); err != nil {
		return nil, err
	}
	id.limiter = auth.NewRateLimiter(rateConfig(cfg, m))
	id.fails = auth.NewFailureLimiter(failureConfig(cfg, m))
	return id, nil
}

// serviceKey returns the service-token signing key (an Ed25519 seed),
// generating it on first use.
func serviceKey(v *vault.Vault) ([]byte, error) {
	return internalKey(v, serviceKeySecret, "service signing key")
}

// newServiceTokens signs with key and refuses the tokens revoked in v's token log.
func newServiceTokens(v *vault.Vault, key []byte) (*auth.ServiceTokens, *auth.TokenLog, error) {
	tokens, err := auth.NewServiceTokens(key)
	if err != nil {
		return nil, nil, err
	}
	tokLog, err := auth.NewTokenLog(v.DB())
	if err != nil {
		return nil, nil, err
	}
	tokens.SetRevocationCheck(tokLog.IsRevoked)
	return tokens, tokLog, nil
}

// internalKey returns a 32-byte key the gateway keeps for itself in the
// vault's internal keys under name, generating and storing it on first use. It
// is the one way cmd fetches an internal key: these keys are out of reach of
// `secret` and ${secret:} (names starting with SWITCHBOARD_ are refused there),
// and never leave the vault except into the gateway's memory.
func internalKey(v *vault.Vault, name, what string) ([]byte, error) {
	key, err := v.InternalKey(name)
	if err != nil {
		return nil, fmt.Errorf("loading the %s: %w", what, err)
	}
	return key, nil
}

func authConfig(cfg *providers.Config) auth.Config {
	ac := auth.Config{}
	for _, o := range cfg.Auth.OIDC {
		ac.OIDC = append(ac.OIDC, auth.OIDCConfig{
			Issuer: o.Issuer, Audience: o.Audience, JWKSURL: o.JWKSURL,
			UserClaim: o.UserClaim, RolesClaim: o.RolesClaim, RoleMap: o.RoleMap,
		})
	}
	for name := range cfg.Services {
		ac.Services = append(ac.Services, name)
	}
	return ac
}

func rateConfig(cfg *providers.Config, m *Main) auth.RateLimitConfig {
	return auth.RateLimitConfig{RPS: cfg.Auth.RateLimit.RPS, Burst: cfg.Auth.RateLimit.Burst,
		OnLimit: func(r *http.Request, key string, retry time.Duration) { m.rateLimited(r, key, retry) }}
}

// policyFor compiles the visibility policy of cfg.
func policyFor(cfg *providers.Config, users mux.UserState) *mux.Policy {
	pol := &mux.Policy{
		Providers:   map[string]mux.ProviderPolicy{},
		Roles:       map[string]mux.RolePolicy{},
		DefaultRole: cfg.DefaultRole,
		Services:    map[string][]string{},
		Users:       users,
	}
	for name, p := range cfg.Providers {
		if !p.IsEnabled() {
			continue
		}
		pol.Providers[name] = mux.ProviderPolicy{
			InternalOnly: p.InternalOnly, Public: p.Public, UserScoped: p.UserScoped(),
			ReadOnly: p.ReadOnly, Allow: p.Tools.Allow, Deny: p.Tools.Deny,
		}
	}
	for name, r := range cfg.Roles {
		if r != nil {
			pol.Roles[name] = mux.RolePolicy{Providers: r.Providers, Tools: r.Tools}
		}
	}
	for name, s := range cfg.Services {
		if s != nil {
			pol.Services[name] = s.AllowedProviderPrefixes
		}
	}
	return pol
}

// userState answers per-user visibility questions from memory.
type userState struct {
	prefs *auth.Prefs
	conns *connState
}

func (u userState) Connected(user, provider string) bool { return u.conns.has(user, provider) }
func (u userState) Hidden(user, provider string) bool    { return u.prefs.Hidden(user, provider) }

// connState caches which users connected which providers (no values).
type connState struct {
	mu sync.RWMutex
	m  map[string]bool // "user\x00provider"
}

func (c *connState) has(user, provider string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[user+"\x00"+provider]
}

func (c *connState) reload(v *vault.Vault) error {
	list, err := v.Connections("")
	if err != nil {
		return err
	}
	m := make(map[string]bool, len(list))
	for _, cn := range list {
		m[cn.User+"\x00"+cn.Provider] = true
	}
	c.mu.Lock()
	c.m = m
	c.mu.Unlock()
	return nil
}

// localPrincipal is the caller when authentication is disabled (loopback only).
var localPrincipal = switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "local", Roles: []string{mux.RoleAdmin}, Method: "none"}

// edge wraps an MCP endpoint with the hardened edge, in order: body limit,
// Host/Origin check, internal headers stripped, auth-failure limiter,
// authentication, body read deadline, per-principal rate limit. The chain is
// rebuilt when a reload changes the config, so allowed_hosts, allowed_origins
// and max_body_mb apply live.
func (m *Main) edge(ep switchboard.Endpoint, next http.Handler) http.Handler {
	type built struct {
		cfg *providers.Config
		h   http.Handler
	}
	var cur atomic.Pointer[built]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := m.config()
		b := cur.Load()
		if b == nil || b.cfg != cfg {
			b = &built{cfg: cfg, h: m.buildEdge(ep, cfg, next)}
			cur.Store(b)
		}
		b.h.ServeHTTP(w, r)
	})
}

func (m *Main) buildEdge(ep switchboard.Endpoint, cfg *providers.Config, next http.Handler) http.Handler {
	var authn func(*http.Request) (*switchboard.Principal, bool, error)
	switch {
	case cfg.Auth.Disabled:
		authn = func(r *http.Request) (*switchboard.Principal, bool, error) {
			p := localPrincipal
			p.Endpoint = ep
			return &p, true, nil
		}
	case ep == switchboard.EndpointInternal:
		authn = m.id.authn.AuthenticateInternal
	default:
		authn = m.id.authn.AuthenticatePublic
	}
	authn = m.tracer().WrapAuth(authn)
	h := m.id.limiter.Middleware(next)
	h = auth.BodyDeadline(cfg.Server.BodyTimeout.D())(h)
	h = m.id.fails.Passed(h)
	h = auth.RequireAuth(authn, m.resourceMetadataURL(), func(r *http.Request, reason string) {
		m.authFailed(r, ep, reason)
	})(h)
	h = m.id.fails.Middleware(h)
	h = auth.StripInternalHeaders(h)
	h = auth.HostOriginGuard(cfg.Auth.AllowedHosts, cfg.Auth.AllowedOrigins)(h)
	return auth.BodyLimit(int64(cfg.Auth.MaxBodyMB) << 20)(h)
}

// requireAdmin protects operator routes (/status, /metrics): an admin user's
// API key or JWT, or anyone when authentication is disabled on loopback.
func (m *Main) requireAdmin(next http.Handler) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := switchboard.PrincipalFromContext(r.Context())
		if p == nil || p.Kind != switchboard.PrincipalUser || !hasRole(p, mux.RoleAdmin) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden"})
			return
		}
		next.ServeHTTP(w, r)
	})
	return m.edge(switchboard.EndpointPublic, inner)
}

func hasRole(p *switchboard.Principal, role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

func (m *Main) resourceMetadataURL() string {
	return strings.TrimSuffix(m.resourceURL(), "/mcp") + "/.well-known/oauth-protected-resource"
}

// resourceURL is this gateway's public MCP URL, for OAuth metadata.
func (m *Main) resourceURL() string {
	if u := m.config().Auth.ResourceURL; u != "" {
		return u
	}
	return m.URL() + "/mcp"
}

// ensureFirstAdmin creates an admin user on a fresh dev install and returns its
// key (shown once), or "".
func (m *Main) ensureFirstAdmin() (string, error) {
	list, err := m.id.users.List()
	if err != nil || len(list) > 0 {
		return "", err
	}
	return m.id.users.Add("admin", []string{mux.RoleAdmin})
}
