// Package auth authenticates callers by API key or JWT and resolves them to principals and scopes.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// Principal methods set by this package.
const (
	MethodAPIKey       = "api_key"
	MethodJWT          = "jwt"
	MethodServiceToken = "service_token"
)

// maxTokenLen bounds a bearer credential; longer ones are refused unread.
const maxTokenLen = 16 << 10

// Config is the part of gateway.yaml the authenticator reads. SetConfig swaps it
// atomically, so a reload applies to the very next request.
type Config struct {
	// OIDC lists the issuers whose JWTs /mcp accepts. Empty: no JWT is accepted.
	OIDC []OIDCConfig
	// Services names the services currently configured for /mcp/internal. A
	// service token naming any other service is refused.
	Services []string
	// DisableAPIKeys refuses user API keys on /mcp (OIDC only).
	DisableAPIKeys bool
}

type authState struct {
	cfg      Config
	issuers  map[string]*issuer // by issuer URL
	services map[string]bool
}

func (s *authState) knownService(name string) bool { return s.services[name] }

// Authenticator resolves the bearer credential of a request to a principal. It
// has two separate paths that never share a credential class:
//
//   - AuthenticatePublic (/mcp) accepts user API keys and OIDC JWTs only;
//   - AuthenticateInternal (/mcp/internal) accepts service tokens only.
//
// Both read the credential from "Authorization: Bearer <credential>" only:
// never from a query parameter, cookie or other header. Both return
// (principal, true, nil) on success, (nil, false, nil) for a missing, malformed,
// unknown, expired, revoked or wrong-class credential, and (nil, false, err)
// when a technical failure (an issuer's keys cannot be loaded) prevents a
// decision. Callers must deny in both failure cases: RequireAuth answers 401
// for the first and 503 for the second.
type Authenticator struct {
	users  *Users
	tokens *ServiceTokens
	log    zerolog.Logger
	client *http.Client
	now    func() time.Time

	mu    sync.Mutex // serializes SetConfig
	state atomic.Pointer[authState]
}

// New returns an Authenticator. users may be nil (no API keys), tokens may be
// nil (no service tokens: /mcp/internal refuses everyone).
func New(users *Users, tokens *ServiceTokens, cfg Config, log zerolog.Logger) (*Authenticator, error) {
	a := &Authenticator{
		users:  users,
		tokens: tokens,
		log:    log.With().Str("component", "auth").Logger(),
		client: &http.Client{Timeout: fetchTimeout, CheckRedirect: checkRedirect},
		now:    time.Now,
	}
	if err := a.SetConfig(cfg); err != nil {
		return nil, err
	}
	return a, nil
}

// ValidateConfig reports whether cfg would be accepted by SetConfig.
func ValidateConfig(cfg Config) error {
	_, err := validateConfig(cfg)
	return err
}

func validateConfig(cfg Config) (Config, error) {
	out := cfg
	out.OIDC = make([]OIDCConfig, 0, len(cfg.OIDC))
	seen := map[string]bool{}
	for i, c := range cfg.OIDC {
		v, err := c.validate()
		if err != nil {
			return cfg, switchboard.WrapError(switchboard.EINVALID, err, "auth config: oidc[%d]", i)
		}
		if seen[v.Issuer] {
			return cfg, switchboard.Errorf(switchboard.EINVALID, "auth config: oidc[%d]: duplicate issuer %q", i, v.Issuer)
		}
		seen[v.Issuer] = true
		out.OIDC = append(out.OIDC, v)
	}
	out.Services = slices.Clone(cfg.Services)
	for _, s := range cfg.Services {
		if err := ValidateUserName(s); err != nil {
			return cfg, switchboard.WrapError(switchboard.EINVALID, err, "auth config: service %q", s)
		}
	}
	return out, nil
}

// SetConfig validates cfg and makes it current. On error the previous config
// stays in force. Cached issuer keys survive a reload when the issuer's URL and
// JWKS URL are unchanged.
func (a *Authenticator) SetConfig(cfg Config) error {
	cfg, err := validateConfig(cfg)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := map[string]*keySet{}
	if prev := a.state.Load(); prev != nil {
		for _, is := range prev.issuers {
			old[keySetID(is.cfg)] = is.keys
		}
	}
	st := &authState{cfg: cfg, issuers: map[string]*issuer{}, services: map[string]bool{}}
	for _, c := range cfg.OIDC {
		ks := old[keySetID(c)]
		if ks == nil {
			ks = newKeySet(c, a.client, a.now)
		}
		st.issuers[c.Issuer] = newIssuer(c, ks, a.now)
	}
	for _, s := range cfg.Services {
		st.services[s] = true
	}
	a.state.Store(st)
	return nil
}

// AuthenticatePublic authenticates a request to /mcp with a user API key or an
// OIDC JWT. Service tokens are refused.
func (a *Authenticator) AuthenticatePublic(r *http.Request) (*switchboard.Principal, bool, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return nil, false, nil
	}
	st := a.state.Load()
	if strings.HasPrefix(tok, keyScheme) {
		if a.users == nil || st.cfg.DisableAPIKeys {
			return nil, false, nil
		}
		rec, ok := a.users.authenticate(tok)
		if !ok {
			a.log.Debug().Str("method", MethodAPIKey).Msg("api key refused")
			return nil, false, nil
		}
		return rec.principal, true, nil
	}
	iss, ok := unverifiedIssuer(tok)
	if !ok {
		return nil, false, nil
	}
	is := st.issuers[iss]
	if is == nil {
		a.log.Debug().Str("method", MethodJWT).Msg("jwt from unknown issuer refused")
		return nil, false, nil
	}
	p, err := is.verify(r.Context(), tok)
	if err != nil {
		var ue *unavailableError
		if errors.As(err, &ue) {
			return nil, false, ue.err
		}
		a.log.Debug().Str("method", MethodJWT).Str("issuer", iss).Err(err).Msg("jwt refused")
		return nil, false, nil
	}
	return p, true, nil
}

// AuthenticateInternal authenticates a request to /mcp/internal with a service
// token for a currently configured service. User credentials are refused.
func (a *Authenticator) AuthenticateInternal(r *http.Request) (*switchboard.Principal, bool, error) {
	tok, ok := BearerToken(r)
	if !ok || a.tokens == nil {
		return nil, false, nil
	}
	st := a.state.Load()
	svc, err := a.tokens.Verify(tok, st.knownService)
	if err != nil {
		a.log.Debug().Str("method", MethodServiceToken).Err(err).Msg("service token refused")
		return nil, false, nil
	}
	return switchboard.NewPrincipal(switchboard.PrincipalService, svc, nil, MethodServiceToken, switchboard.EndpointInternal), true, nil
}

// BearerToken returns the credential of the request's single
// "Authorization: Bearer <token>" header (scheme case-insensitive). It reports
// false when there is no such header, more than one Authorization header, or
// a token that is empty, longer than 16 KiB, or not an RFC 6750 b64token.
func BearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, found := strings.Cut(vals[0], " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.Trim(tok, " ")
	if tok == "" || len(tok) > maxTokenLen || !isB64Token(tok) {
		return "", false
	}
	return tok, true
}

// isB64Token reports whether s matches RFC 6750's 1*( ALPHA / DIGIT /
// "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// checkRedirect bounds redirects of discovery and JWKS fetches and refuses a
// downgrade from https to http.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing redirect from https to %s", req.URL.Scheme)
	}
	return nil
}

// errNoDecision is what RequireAuth reports when an authenticator returns
// ok with a nil principal: a bug, treated as a technical failure.
var errNoDecision = errors.New("authenticator returned ok without a principal")

// Issuers returns the issuer URLs currently trusted, for
// ProtectedResourceMetadata.
func (a *Authenticator) Issuers() []string {
	st := a.state.Load()
	out := make([]string, 0, len(st.cfg.OIDC))
	for _, c := range st.cfg.OIDC {
		out = append(out, c.Issuer)
	}
	return out
}

// String describes the authenticator's current configuration without secrets.
func (a *Authenticator) String() string {
	st := a.state.Load()
	return fmt.Sprintf("auth(api_keys=%t, issuers=%d, services=%d)",
		a.users != nil && !st.cfg.DisableAPIKeys, len(st.issuers), len(st.services))
}
