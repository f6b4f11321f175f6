package oauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/switchboard-mcp/switchboard"
)

// Defaults.
const (
	// DefaultFlowTTL is how long a started flow may take to come back.
	DefaultFlowTTL = 10 * time.Minute
	// DefaultRefreshBefore is how long before its expiry an access token is
	// refreshed (a third of its lifetime, for shorter-lived tokens).
	DefaultRefreshBefore = 2 * time.Minute
	// maxFlows bounds the flows waiting for their callback, in all and per
	// user.
	maxFlows        = 10000
	maxFlowsPerUser = 16
	// retryTransient is how soon a refresh that failed for a passing reason
	// (the network, a 5xx) is tried again.
	retryTransient = 15 * time.Second
	httpTimeout    = 30 * time.Second
	// leaseTTL is how long a replica's refresh lease on a grant lasts: a
	// bit over the token request's timeout, so that it outlives the
	// request and the save of its answer, and lapses when its holder died.
	leaseTTL = httpTimeout + 15*time.Second
	// leaseRetry is how soon Run looks again at a grant whose refresh lease
	// another replica held: by then that replica has usually saved the
	// rotated grant, and Run finds it not yet due.
	leaseRetry = time.Second
	// leasePoll is how often a call that needs a token while another
	// replica refreshes it reads the store again, for at most leaseWait.
	leasePoll = 100 * time.Millisecond
	leaseWait = 10 * time.Second
)

// errLeased means another replica holds the grant's refresh lease.
var errLeased = errors.New("another replica is refreshing the OAuth connection")

// Config is the OAuth connection a provider declares. Either Resource (a
// remote MCP server: everything is discovered from it, as the MCP
// authorization specification says), Issuer (discovery from the
// authorization server's metadata), or AuthorizationURL and TokenURL (no
// discovery) must be set.
type Config struct {
	// Provider is the provider's prefix.
	Provider string
	// Resource is the remote MCP server's URL: its protected resource
	// metadata names the authorization server, and tokens are bound to it
	// (the resource parameter, RFC 8707).
	Resource string
	// Issuer is the authorization server's issuer identifier. With
	// Resource, it picks one of the servers the metadata lists (and
	// pre-registered credentials are bound to it).
	Issuer string
	// AuthorizationURL and TokenURL give the endpoints directly (for an
	// authorization server without metadata); RevocationURL is optional.
	AuthorizationURL, TokenURL, RevocationURL string
	// ClientID and ClientSecret are a pre-registered client. Without them
	// the gateway uses its client ID metadata document where the server
	// supports it, else registers itself dynamically (RFC 7591).
	ClientID     string
	ClientSecret switchboard.Secret
	// Scopes to ask for. Empty: the scope of the server's challenge, else
	// the resource metadata's scopes_supported, else none.
	Scopes []string
}

// Options configures a Manager.
type Options struct {
	// Store keeps the grants and registrations. Required.
	Store Store
	// RedirectURL is the gateway's callback (https, or http on loopback).
	// Required.
	RedirectURL string
	// ClientMetadataURL, if set, is the https URL at which the gateway
	// serves its client ID metadata document (ClientMetadata); it is used as
	// the client_id at authorization servers that support such documents.
	ClientMetadataURL string
	// ClientName is the name shown to users at consent (default
	// "Switchboard").
	ClientName string
	// HTTPClient talks to authorization servers and resource metadata.
	HTTPClient *http.Client
	// Redactor, if set, learns every token value before it is used.
	Redactor switchboard.Redactor
	// Leases, if set, are shared by the replicas of one store: a Manager
	// refreshes a grant only while it holds the grant's lease
	// ("oauth-refresh:<user>/<provider>"), so that two replicas never spend
	// one refresh token (a server that rotates refresh tokens may revoke
	// the whole grant when one is used twice). Holder names this Manager
	// among them (default: random).
	Leases switchboard.Leases
	Holder string
	// OnEvent hears of connections made, refreshed, expired and removed.
	// It is called without locks held; it must not block for long.
	OnEvent func(Event)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// FlowTTL bounds a flow (default 10 minutes); RefreshBefore is how early
	// tokens are refreshed (default 2 minutes, or a third of a shorter
	// lifetime).
	FlowTTL, RefreshBefore time.Duration
}

// Event kinds.
const (
	EventConnected    = "connected"    // a flow completed: a new grant
	EventRefreshed    = "refreshed"    // the access token was refreshed
	EventExpired      = "expired"      // the grant can no longer be refreshed
	EventDisconnected = "disconnected" // the grant was removed
)

// Event is a change of one user's OAuth connection. It never carries a
// token.
type Event struct {
	Kind     string
	User     string
	Provider string
	// Expiry is the new access token's expiry (connected, refreshed).
	Expiry time.Time
	// Err says why it expired.
	Err string
}

// State is the state of one user's connection, for the API and status.
type State struct {
	Provider  string    `json:"provider"`
	Connected bool      `json:"connected"`
	Expired   bool      `json:"expired"`
	Expiry    time.Time `json:"expires_at,omitzero"`
	Scopes    []string  `json:"scopes,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Manager runs OAuth connections: the authorization-code flow with PKCE,
// discovery, client registration, and the tokens' refresh before expiry.
// Its methods are safe for concurrent use.
type Manager struct {
	log  zerolog.Logger
	opts Options
	hc   *http.Client

	mu      sync.Mutex
	configs map[string]*Config
	flows   map[string]*flow // by state
	locks   map[Connection]*sync.Mutex
	due     map[Connection]time.Time // when each grant is next refreshed
	wake    chan struct{}
}

// New returns a Manager. It refreshes tokens only while Run runs.
func New(logger zerolog.Logger, opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("oauth: a Store is required")
	}
	if _, err := checkURL("redirect URL", opts.RedirectURL); err != nil {
		return nil, err
	}
	if opts.ClientMetadataURL != "" {
		u, err := url.Parse(opts.ClientMetadataURL)
		if err != nil || u.Scheme != "https" || strings.Trim(u.Path, "/") == "" {
			return nil, switchboard.Errorf(switchboard.EINVALID, "client metadata URL %q must be an https URL with a path", clip(opts.ClientMetadataURL))
		}
	}
	if opts.ClientName == "" {
		opts.ClientName = "Switchboard"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: httpTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlowTTL <= 0 {
		opts.FlowTTL = DefaultFlowTTL
	}
	if opts.RefreshBefore <= 0 {
		opts.RefreshBefore = DefaultRefreshBefore
	}
	if opts.Leases != nil && opts.Holder == "" {
		opts.Holder = rand.Text()
	}
	return &Manager{
		log:     logger,
		opts:    opts,
		hc:      opts.HTTPClient,
		configs: map[string]*Config{},
		flows:   map[string]*flow{},
		locks:   map[Connection]*sync.Mutex{},
		due:     map[Connection]time.Time{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// SetConfigs replaces the providers' OAuth configurations (at start and on
// every reload).
func (m *Manager) SetConfigs(cfgs []*Config) error {
	next := map[string]*Config{}
	for _, c := range cfgs {
		if err := c.validate(); err != nil {
			return err
		}
		cc := *c
		next[c.Provider] = &cc
	}
	m.mu.Lock()
	m.configs = next
	m.mu.Unlock()
	return nil
}

func (c *Config) validate() error {
	if c.Provider == "" {
		return switchboard.Errorf(switchboard.EINVALID, "oauth: a configuration without a provider")
	}
	switch {
	case c.Resource != "":
		if _, err := checkURL("provider "+c.Provider+": oauth resource", c.Resource); err != nil {
			return err
		}
	case c.Issuer != "":
		if _, err := checkURL("provider "+c.Provider+": oauth issuer", c.Issuer); err != nil {
			return err
		}
	case c.AuthorizationURL != "" && c.TokenURL != "":
		for _, u := range []string{c.AuthorizationURL, c.TokenURL} {
			if _, err := checkURL("provider "+c.Provider+": oauth endpoint", u); err != nil {
				return err
			}
		}
		if c.ClientID == "" {
			return switchboard.Errorf(switchboard.EINVALID, "provider %s: oauth with explicit endpoints needs a client_id", c.Provider)
		}
	default:
		return switchboard.Errorf(switchboard.EINVALID, "provider %s: oauth needs a resource (remote url), an issuer, or authorization and token URLs", c.Provider)
	}
	return nil
}

func (m *Manager) config(provider string) (*Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.configs[provider]
	if c == nil {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "provider %s has no OAuth connection configured", provider)
	}
	return c, nil
}

// flow is an authorization request waiting for its callback.
type flow struct {
	user, provider string
	verifier       string
	binding        [32]byte // SHA-256 of the browser binding
	expires        time.Time
	oc             oauth2.Config
	authMethod     string
	issuer         string // recorded before redirecting (RFC 9207)
	issRequired    bool
	resource       string
	revocation     string
}

// Flow is a started authorization: send the user's browser to URL, with
// Binding set as a cookie that only the callback reads.
type Flow struct {
	URL     string
	State   string
	Binding string
	Expires time.Time
}

// endpoints is what a flow needs to know about the authorization server.
type endpoints struct {
	issuer      string
	auth, token string
	revocation  string
	register    string
	issRequired bool
	cimd        bool
	authMethods []string
	resource    string
	scopes      []string
}

// resolve finds the authorization server of cfg and its endpoints.
func (m *Manager) resolve(ctx context.Context, cfg *Config) (*endpoints, error) {
	if cfg.AuthorizationURL != "" && cfg.TokenURL != "" && cfg.Resource == "" && cfg.Issuer == "" {
		return &endpoints{auth: cfg.AuthorizationURL, token: cfg.TokenURL, revocation: cfg.RevocationURL, scopes: cfg.Scopes}, nil
	}
	ep := &endpoints{scopes: cfg.Scopes}
	issuer := cfg.Issuer
	if cfg.Resource != "" {
		rmd, challengeScope, err := DiscoverResource(ctx, m.hc, cfg.Resource)
		if err != nil {
			return nil, err
		}
		ep.resource = rmd.Resource
		switch {
		case issuer == "":
			issuer = rmd.AuthorizationServers[0]
		case !slices.Contains(rmd.AuthorizationServers, issuer):
			// Credentials are bound to the authorization server they
			// came from (client-registration, "Authorization Server
			// Binding").
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s: the MCP server no longer names the configured authorization server %s (it names %s)", cfg.Provider, issuer, strings.Join(rmd.AuthorizationServers, ", "))
		}
		if len(ep.scopes) == 0 {
			switch {
			case challengeScope != "":
				ep.scopes = strings.Fields(challengeScope)
			default:
				ep.scopes = rmd.ScopesSupported
			}
		}
	}
	md, err := DiscoverServer(ctx, m.hc, issuer)
	if err != nil {
		return nil, err
	}
	ep.issuer = md.Issuer
	ep.auth, ep.token, ep.revocation, ep.register = md.AuthorizationEndpoint, md.TokenEndpoint, md.RevocationEndpoint, md.RegistrationEndpoint
	ep.issRequired = md.IssParameterSupported
	ep.cimd = md.ClientIDMetadataDocumentSupported
	ep.authMethods = md.TokenEndpointAuthMethodsSupported
	if slices.Contains(md.ScopesSupported, "offline_access") && !slices.Contains(ep.scopes, "offline_access") && len(ep.scopes) > 0 {
		// Ask for a refresh token where the server knows the scope.
		ep.scopes = append(slices.Clone(ep.scopes), "offline_access")
	}
	return ep, nil
}

// client returns the client to use at ep: pre-registered, the client ID
// metadata document, or a dynamic registration (made now, and kept).
func (m *Manager) client(ctx context.Context, cfg *Config, ep *endpoints) (*Client, error) {
	switch {
	case cfg.ClientID != "":
		method := "client_secret_basic"
		if cfg.ClientSecret == "" {
			method = "none"
		} else if len(ep.authMethods) > 0 && !slices.Contains(ep.authMethods, method) && slices.Contains(ep.authMethods, "client_secret_post") {
			method = "client_secret_post"
		}
		return &Client{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, AuthMethod: method}, nil
	case ep.cimd && m.opts.ClientMetadataURL != "":
		return &Client{ClientID: m.opts.ClientMetadataURL, AuthMethod: "none"}, nil
	case ep.register != "":
		if c, err := m.opts.Store.Client(ctx, ep.issuer, m.opts.RedirectURL); err == nil {
			m.redact(c.ClientSecret.Reveal())
			return c, nil
		} else if switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
			return nil, fmt.Errorf("provider %s: reading the client registration: %w", cfg.Provider, err)
		}
		c, err := m.register(ctx, ep)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", cfg.Provider, err)
		}
		if err := m.opts.Store.SaveClient(ctx, ep.issuer, m.opts.RedirectURL, c); err != nil {
			return nil, fmt.Errorf("provider %s: saving the client registration: %w", cfg.Provider, err)
		}
		m.log.Info().Str("provider", cfg.Provider).Str("issuer", ep.issuer).Str("client_id", c.ClientID).Str("auth_method", c.AuthMethod).Msg("registered with the authorization server")
		return c, nil
	}
	return nil, switchboard.Errorf(switchboard.EINVALID, "provider %s: the authorization server %s offers no registration and no client_id is configured", cfg.Provider, ep.issuer)
}

// register makes a dynamic client registration (RFC 7591).
func (m *Manager) register(ctx context.Context, ep *endpoints) (*Client, error) {
	method := "none"
	switch {
	case len(ep.authMethods) == 0 || slices.Contains(ep.authMethods, "client_secret_basic"):
		method = "client_secret_basic"
	case slices.Contains(ep.authMethods, "client_secret_post"):
		method = "client_secret_post"
	}
	ru, _ := url.Parse(m.opts.RedirectURL)
	appType := "web"
	if isLoopback(ru.Hostname()) {
		appType = "native" // a locally hosted gateway (MCP client registration rules)
	}
	body, _ := json.Marshal(map[string]any{
		"client_name":                m.opts.ClientName,
		"redirect_uris":              []string{m.opts.RedirectURL},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": method,
		"application_type":           appType,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.register, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := m.hc.Do(req)
	if err != nil {
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, safeNetError(err), "registering with %s", ep.issuer)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "registering with %s: HTTP %d%s", ep.issuer, resp.StatusCode, oauthErrorText(b))
	}
	var r struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		AuthMethod   string `json:"token_endpoint_auth_method"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.ClientID == "" {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "registering with %s: the answer has no client_id", ep.issuer)
	}
	if r.AuthMethod == "" {
		r.AuthMethod = method
	}
	m.redact(r.ClientSecret)
	return &Client{ClientID: r.ClientID, ClientSecret: switchboard.Secret(r.ClientSecret), AuthMethod: r.AuthMethod, Registered: m.opts.Now()}, nil
}

// ClientMetadata is the gateway's client ID metadata document, to be served
// at Options.ClientMetadataURL.
func (m *Manager) ClientMetadata() []byte {
	b, _ := json.Marshal(map[string]any{
		"client_id":                  m.opts.ClientMetadataURL,
		"client_name":                m.opts.ClientName,
		"redirect_uris":              []string{m.opts.RedirectURL},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	})
	return b
}

// oauthErrorText returns ": <error>" for an OAuth error response body (RFC
// 6749 §5.2), its error code only: descriptions are the server's words and
// could carry anything.
func oauthErrorText(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" && len(e.Error) < 64 && !strings.ContainsAny(e.Error, "\r\n") {
		return ": " + e.Error
	}
	return ""
}

func authStyle(method string) oauth2.AuthStyle {
	switch method {
	case "client_secret_post", "none":
		return oauth2.AuthStyleInParams
	case "client_secret_basic":
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleAutoDetect
}

// randomString returns n random bytes, base64url encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Begin starts connecting user to provider: it finds the authorization
// server (discovering and registering as needed) and returns where to send
// the user's browser. The state is bound to user and to the browser (the
// binding, which the caller sets as a cookie), is single-use, and expires.
// PKCE with S256 is always used.
func (m *Manager) Begin(ctx context.Context, user, provider string) (*Flow, error) {
	cfg, err := m.config(provider)
	if err != nil {
		return nil, err
	}
	ep, err := m.resolve(ctx, cfg)
	if err != nil {
		return nil, err
	}
	cl, err := m.client(ctx, cfg, ep)
	if err != nil {
		return nil, err
	}
	now := m.opts.Now()
	f := &flow{
		user:     user,
		provider: provider,
		verifier: oauth2.GenerateVerifier(),
		expires:  now.Add(m.opts.FlowTTL),
		oc: oauth2.Config{
			ClientID:     cl.ClientID,
			ClientSecret: cl.ClientSecret.Reveal(),
			Endpoint:     oauth2.Endpoint{AuthURL: ep.auth, TokenURL: ep.token, AuthStyle: authStyle(cl.AuthMethod)},
			RedirectURL:  m.opts.RedirectURL,
			Scopes:       ep.scopes,
		},
		authMethod:  cl.AuthMethod,
		issuer:      ep.issuer,
		issRequired: ep.issRequired,
		resource:    ep.resource,
		revocation:  ep.revocation,
	}
	state := randomString(32)
	binding := randomString(32)
	f.binding = sha256.Sum256([]byte(binding))
	m.mu.Lock()
	m.pruneFlows(now)
	if len(m.flows) >= maxFlows {
		m.mu.Unlock()
		return nil, switchboard.Errorf(switchboard.EOVERLOADED, "too many OAuth flows in progress; try again later")
	}
	mine := 0
	for _, o := range m.flows {
		if o.user == user {
			mine++
		}
	}
	if mine >= maxFlowsPerUser {
		m.mu.Unlock()
		return nil, switchboard.Errorf(switchboard.EOVERLOADED, "too many OAuth flows in progress for you; finish or wait for one")
	}
	m.flows[state] = f
	m.mu.Unlock()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.verifier)}
	if f.resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", f.resource))
	}
	return &Flow{URL: f.oc.AuthCodeURL(state, opts...), State: state, Binding: binding, Expires: f.expires}, nil
}

// pruneFlows drops expired flows; m.mu is held.
func (m *Manager) pruneFlows(now time.Time) {
	for s, f := range m.flows {
		if now.After(f.expires) {
			delete(m.flows, s)
		}
	}
}

// ErrFlow is wrapped by every error Complete returns for a callback that is
// not a valid answer to a flow of this gateway.
var ErrFlow = errors.New("invalid OAuth callback")

// Complete finishes a flow from the callback's query parameters and the
// browser's binding cookie: it checks the state (known, unexpired, this
// browser's), the issuer (RFC 9207), exchanges the code with the PKCE
// verifier and the resource, and stores the grant under the flow's user. It
// returns that user and the provider.
func (m *Manager) Complete(ctx context.Context, q url.Values, binding string) (user, provider string, err error) {
	state := q.Get("state")
	m.mu.Lock()
	f := m.flows[state]
	delete(m.flows, state) // single use, whatever happens next
	m.mu.Unlock()
	if f == nil || state == "" {
		return "", "", switchboard.WrapError(switchboard.EINVALID, ErrFlow, "unknown or already used OAuth state")
	}
	if m.opts.Now().After(f.expires) {
		return "", "", switchboard.WrapError(switchboard.EINVALID, ErrFlow, "the OAuth flow expired; start again")
	}
	got := sha256.Sum256([]byte(binding))
	if subtle.ConstantTimeCompare(got[:], f.binding[:]) != 1 {
		return "", "", switchboard.WrapError(switchboard.EFORBIDDEN, ErrFlow, "the OAuth callback came to another browser than the one that started it")
	}
	// RFC 9207 §2.4, as the MCP authorization specification tabulates it.
	iss, hasIss := q["iss"]
	switch {
	case hasIss && f.issuer != "" && (len(iss) != 1 || iss[0] != f.issuer):
		return "", "", switchboard.WrapError(switchboard.EINVALID, ErrFlow, "the authorization response names another issuer")
	case !hasIss && f.issRequired:
		return "", "", switchboard.WrapError(switchboard.EINVALID, ErrFlow, "the authorization response lacks the issuer its server promised")
	}
	if e := q.Get("error"); e != "" {
		code := e
		if len(code) > 64 || strings.ContainsAny(code, "\r\n<>") {
			code = "error"
		}
		return f.user, f.provider, switchboard.Errorf(switchboard.EUNAUTHORIZED, "the authorization server did not authorize the connection (%s)", code)
	}
	code := q.Get("code")
	if code == "" {
		return "", "", switchboard.WrapError(switchboard.EINVALID, ErrFlow, "the authorization response has no code")
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(f.verifier)}
	if f.resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", f.resource))
	}
	tok, err := f.oc.Exchange(context.WithValue(ctx, oauth2.HTTPClient, m.hc), code, opts...)
	if err != nil {
		return f.user, f.provider, exchangeError(err)
	}
	t, err := m.fromOAuth2(tok, f.oc.Scopes)
	if err != nil {
		return f.user, f.provider, err
	}
	t.Issuer, t.TokenURL, t.ClientID, t.AuthMethod, t.Resource, t.RevocationURL = f.issuer, f.oc.Endpoint.TokenURL, f.oc.ClientID, f.authMethod, f.resource, f.revocation
	key := Connection{f.user, f.provider}
	lock := m.lock(key)
	lock.Lock()
	err = m.opts.Store.SaveToken(ctx, f.user, f.provider, t)
	lock.Unlock()
	if err != nil {
		return f.user, f.provider, fmt.Errorf("saving the OAuth connection: %w", err)
	}
	m.schedule(key, t)
	m.log.Info().Str("user", f.user).Str("provider", f.provider).Time("expires", t.Expiry).Bool("refreshable", t.RefreshToken != "").Msg("oauth connection made")
	m.emit(Event{Kind: EventConnected, User: f.user, Provider: f.provider, Expiry: t.Expiry})
	return f.user, f.provider, nil
}

// exchangeError turns x/oauth2's error into one that carries the OAuth
// error code and nothing of the response body.
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if code == "" && re.Response != nil {
			code = "HTTP " + strconv.Itoa(re.Response.StatusCode)
		}
		return switchboard.Errorf(switchboard.EUNAUTHORIZED, "the authorization server refused the code (%s)", clip(code))
	}
	return switchboard.WrapError(switchboard.EUNAVAILABLE, safeNetError(errors.Unwrap(err)), "exchanging the authorization code")
}

// fromOAuth2 checks an issued token and makes it a Token.
func (m *Manager) fromOAuth2(tok *oauth2.Token, asked []string) (*Token, error) {
	if tok.AccessToken == "" {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "the authorization server issued no access token")
	}
	if tt := tok.Type(); !strings.EqualFold(tt, "Bearer") {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "the authorization server issued a %q token; only Bearer is supported", clip(tt))
	}
	m.redact(tok.AccessToken)
	m.redact(tok.RefreshToken)
	scopes := asked
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		scopes = strings.Fields(s)
	}
	return &Token{
		AccessToken:  switchboard.Secret(tok.AccessToken),
		RefreshToken: switchboard.Secret(tok.RefreshToken),
		TokenType:    "Bearer",
		Expiry:       tok.Expiry,
		Obtained:     m.opts.Now(),
		Scopes:       slices.Clone(scopes),
	}, nil
}

func (m *Manager) redact(v string) {
	if v != "" && m.opts.Redactor != nil {
		m.opts.Redactor.Add(v)
	}
}

func (m *Manager) emit(e Event) {
	if m.opts.OnEvent != nil {
		m.opts.OnEvent(e)
	}
}

// lock returns the mutex that serializes refreshes of one grant.
func (m *Manager) lock(key Connection) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		m.locks[key] = l
	}
	return l
}

// refreshAt is when t should be refreshed: RefreshBefore before its expiry,
// or a third of its lifetime before it for short-lived tokens. Zero: never
// (no expiry, no refresh token, or expired).
func (m *Manager) refreshAt(t *Token) time.Time {
	if t.Expired || t.Expiry.IsZero() || t.RefreshToken == "" {
		return time.Time{}
	}
	early := m.opts.RefreshBefore
	if life := t.Expiry.Sub(t.Obtained); life > 0 && life/3 < early {
		early = life / 3
	}
	return t.Expiry.Add(-early)
}

// schedule records when key's grant is next refreshed and wakes Run.
func (m *Manager) schedule(key Connection, t *Token) {
	at := m.refreshAt(t)
	m.mu.Lock()
	if at.IsZero() {
		delete(m.due, key)
	} else {
		m.due[key] = at
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Token returns a valid access token of user's connection to provider,
// refreshing it first when it is due. It is an EUNAUTHORIZED error when
// there is no connection or it expired (the user must connect again), and
// EUNAVAILABLE when a refresh is needed and the authorization server cannot
// be reached.
func (m *Manager) Token(ctx context.Context, user, provider string) (switchboard.Secret, error) {
	key := Connection{user, provider}
	lock := m.lock(key)
	lock.Lock()
	defer lock.Unlock()
	t, err := m.load(ctx, key)
	if err != nil {
		return "", err
	}
	now := m.opts.Now()
	if at := m.refreshAt(t); !at.IsZero() && !now.Before(at) {
		next, err := m.refreshLocked(ctx, key, t)
		if errors.Is(err, errLeased) && !t.Expiry.IsZero() && !now.Before(t.Expiry) {
			// Another replica is refreshing it, and the old token is
			// spent: wait for the new one.
			next, err = m.awaitRefresh(ctx, key, t)
		}
		switch {
		case err == nil:
			t = next
		case switchboard.ErrorCode(err) == switchboard.EUNAUTHORIZED:
			return "", err
		case t.Expiry.IsZero() || now.Before(t.Expiry):
			// A passing failure, or another replica is refreshing it,
			// and the old token is still good.
		default:
			return "", err
		}
	}
	if !t.Expiry.IsZero() && !now.Before(t.Expiry) && t.RefreshToken == "" {
		m.expire(ctx, key, t, "the access token expired and the server gave no refresh token")
		return "", switchboard.Errorf(switchboard.EUNAUTHORIZED, "the OAuth connection to %s expired; connect again", provider)
	}
	return t.AccessToken, nil
}

// load reads key's grant; one that is expired or missing is EUNAUTHORIZED.
func (m *Manager) load(ctx context.Context, key Connection) (*Token, error) {
	t, err := m.opts.Store.Token(ctx, key.User, key.Provider)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil, switchboard.Errorf(switchboard.EUNAUTHORIZED, "no OAuth connection to %s; connect first", key.Provider)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the OAuth connection to %s: %w", key.Provider, err)
	}
	if t.Expired {
		return nil, switchboard.Errorf(switchboard.EUNAUTHORIZED, "the OAuth connection to %s expired; connect again", key.Provider)
	}
	m.redact(t.AccessToken.Reveal())
	m.redact(t.RefreshToken.Reveal())
	return t, nil
}

// Rejected handles a 401 from the resource to a request that carried
// sent: unless another caller already refreshed meanwhile, the grant is
// refreshed now. It returns nil when a retry may succeed, and an
// EUNAUTHORIZED error when the grant expired (no refresh token, or the
// server refused it) or the challenge asks for more scope than granted
// (the user must connect again, approving it).
func (m *Manager) Rejected(ctx context.Context, user, provider, sent, challenge string) error {
	key := Connection{user, provider}
	c, _ := ParseChallenge(challenge)
	lock := m.lock(key)
	lock.Lock()
	defer lock.Unlock()
	t, err := m.load(ctx, key)
	if err != nil {
		return err
	}
	if c.Error == "insufficient_scope" {
		return switchboard.Errorf(switchboard.EUNAUTHORIZED, "%s needs more permissions (%s); connect again to approve them", provider, clip(c.Scope))
	}
	if subtle.ConstantTimeCompare([]byte(t.AccessToken.Reveal()), []byte(sent)) != 1 {
		return nil // refreshed meanwhile: retry with the new one
	}
	if t.RefreshToken == "" {
		m.expire(ctx, key, t, "the server refused the access token and gave no refresh token")
		return switchboard.Errorf(switchboard.EUNAUTHORIZED, "the OAuth connection to %s expired; connect again", provider)
	}
	_, err = m.refreshLocked(ctx, key, t)
	if errors.Is(err, errLeased) {
		_, err = m.awaitRefresh(ctx, key, t)
	}
	return err
}

// leaseName is the name of key's refresh lease.
func leaseName(key Connection) string {
	return "oauth-refresh:" + key.User + "/" + key.Provider
}

// awaitRefresh waits, at most leaseWait, for the refresh of key's grant t
// that another replica is making (its lock is held): it returns the grant
// that replica saved, or refreshes it here if the lease comes free first
// (its holder gave up or died).
func (m *Manager) awaitRefresh(ctx context.Context, key Connection, t *Token) (*Token, error) {
	wait := time.NewTimer(leaseWait)
	defer wait.Stop()
	tick := time.NewTicker(leasePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for another replica's refresh of the OAuth connection to %s: %w", key.Provider, ctx.Err())
		case <-wait.C:
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, errLeased, "waiting %v for another replica's refresh of the OAuth connection to %s", leaseWait, key.Provider)
		case <-tick.C:
		}
		cur, err := m.load(ctx, key)
		if err != nil {
			return nil, err
		}
		if cur.AccessToken != t.AccessToken {
			m.schedule(key, cur)
			return cur, nil
		}
		next, err := m.refreshLocked(ctx, key, t)
		if !errors.Is(err, errLeased) {
			return next, err
		}
	}
}

// retryAt makes Run look at key's grant again after d.
func (m *Manager) retryAt(key Connection, d time.Duration) {
	m.mu.Lock()
	m.due[key] = m.opts.Now().Add(d)
	m.mu.Unlock()
}

// refreshLocked refreshes key's grant (its lock is held). A refusal by the
// authorization server expires the grant; a passing failure keeps it and
// is retried soon. With Options.Leases, it first takes the grant's refresh
// lease (errLeased when another replica holds it) and reads the grant again
// under it: a replica that refreshed it meanwhile saved the rotated one, which
// is returned as it is unless it too is due.
func (m *Manager) refreshLocked(ctx context.Context, key Connection, t *Token) (*Token, error) {
	if l := m.opts.Leases; l != nil {
		name := leaseName(key)
		got, err := l.TryLease(ctx, name, m.opts.Holder, leaseTTL)
		if err != nil {
			m.retryAt(key, retryTransient)
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "taking the refresh lease of the OAuth connection to %s", key.Provider)
		}
		if !got {
			return nil, errLeased
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := l.ReleaseLease(rctx, name, m.opts.Holder); err != nil {
				m.log.Warn().Err(err).Str("user", key.User).Str("provider", key.Provider).Msg("releasing an oauth refresh lease failed; it lapses by itself")
			}
		}()
		cur, err := m.load(ctx, key)
		if err != nil {
			if switchboard.ErrorCode(err) == switchboard.EUNAUTHORIZED {
				m.mu.Lock()
				delete(m.due, key)
				m.mu.Unlock()
				return nil, err
			}
			m.retryAt(key, retryTransient)
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "refreshing the OAuth connection to %s", key.Provider)
		}
		if cur.AccessToken != t.AccessToken || cur.RefreshToken != t.RefreshToken {
			m.schedule(key, cur)
			if at := m.refreshAt(cur); at.IsZero() || m.opts.Now().Before(at) {
				return cur, nil
			}
		}
		t = cur
	}
	// The request must end well within the lease.
	rctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	next, permanent, err := m.refresh(rctx, t)
	if err != nil {
		if permanent {
			// Another replica sharing the store may have refreshed (and
			// rotated) it first: then the refusal is of a spent token, and
			// the grant lives on.
			if cur, cerr := m.opts.Store.Token(ctx, key.User, key.Provider); cerr == nil && !cur.Expired && cur.RefreshToken != t.RefreshToken {
				m.redact(cur.AccessToken.Reveal())
				m.redact(cur.RefreshToken.Reveal())
				m.schedule(key, cur)
				return cur, nil
			}
			m.expire(ctx, key, t, err.Error())
			return nil, switchboard.WrapError(switchboard.EUNAUTHORIZED, err, "the OAuth connection to %s expired; connect again", key.Provider)
		}
		m.log.Warn().Str("user", key.User).Str("provider", key.Provider).Str("error", err.Error()).Msg("refreshing an oauth token failed; will retry")
		m.retryAt(key, retryTransient)
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "refreshing the OAuth connection to %s", key.Provider)
	}
	if err := m.opts.Store.SaveToken(ctx, key.User, key.Provider, next); err != nil {
		// The server may have rotated the refresh token: the old one is
		// dead, and the new one is lost with this failure.
		return nil, fmt.Errorf("saving the refreshed OAuth token: %w", err)
	}
	m.schedule(key, next)
	m.log.Info().Str("user", key.User).Str("provider", key.Provider).Time("expires", next.Expiry).Msg("oauth token refreshed")
	m.emit(Event{Kind: EventRefreshed, User: key.User, Provider: key.Provider, Expiry: next.Expiry})
	return next, nil
}

// expire marks key's grant expired (kept, so the user sees why).
func (m *Manager) expire(ctx context.Context, key Connection, t *Token, why string) {
	e := t.clone()
	e.Expired = true
	e.Error = why
	e.AccessToken, e.RefreshToken = "", ""
	if err := m.opts.Store.SaveToken(ctx, key.User, key.Provider, e); err != nil {
		m.log.Error().Err(err).Str("user", key.User).Str("provider", key.Provider).Msg("recording an expired oauth connection failed")
	}
	m.mu.Lock()
	delete(m.due, key)
	m.mu.Unlock()
	m.log.Warn().Str("user", key.User).Str("provider", key.Provider).Str("why", why).Msg("oauth connection expired")
	m.emit(Event{Kind: EventExpired, User: key.User, Provider: key.Provider, Err: why})
}

// refresh asks the token endpoint for a new access token (RFC 6749 §6,
// with the resource of RFC 8707). permanent is true when the server
// refused (the grant is dead), false for a passing failure. x/oauth2 cannot
// add the resource parameter to a refresh, hence this request of our own.
func (m *Manager) refresh(ctx context.Context, t *Token) (next *Token, permanent bool, err error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {t.RefreshToken.Reveal()}}
	if t.Resource != "" {
		form.Set("resource", t.Resource)
	}
	var secret string
	if t.AuthMethod != "none" {
		c, err := m.clientSecret(ctx, t)
		if err != nil {
			return nil, false, err
		}
		secret = c
	}
	if t.AuthMethod == "client_secret_post" || t.AuthMethod == "none" {
		form.Set("client_id", t.ClientID)
		if t.AuthMethod == "client_secret_post" {
			form.Set("client_secret", secret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, true, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if t.AuthMethod == "client_secret_basic" || t.AuthMethod == "" {
		req.SetBasicAuth(url.QueryEscape(t.ClientID), url.QueryEscape(secret))
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("reaching the token endpoint: %w", safeNetError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
	if err != nil {
		return nil, false, fmt.Errorf("reading the token response: %w", safeNetError(err))
	}
	if resp.StatusCode != http.StatusOK {
		// 400 and 401 are the server's verdict on the grant or the client
		// (invalid_grant, invalid_client, …); anything else may pass.
		perm := resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized
		return nil, perm, fmt.Errorf("the token endpoint answered HTTP %d%s", resp.StatusCode, oauthErrorText(b))
	}
	var r struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Scope        string          `json:"scope"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.AccessToken == "" {
		return nil, false, errors.New("the token response has no access token")
	}
	if !strings.EqualFold(r.TokenType, "Bearer") {
		return nil, true, fmt.Errorf("the token endpoint issued a %q token; only Bearer is supported", clip(r.TokenType))
	}
	now := m.opts.Now()
	next = t.clone()
	next.AccessToken = switchboard.Secret(r.AccessToken)
	if r.RefreshToken != "" { // rotated; otherwise the old one stays valid
		next.RefreshToken = switchboard.Secret(r.RefreshToken)
	}
	next.Obtained = now
	next.Expiry = time.Time{}
	if secs, err := strconv.ParseInt(strings.Trim(string(r.ExpiresIn), `"`), 10, 64); err == nil && secs > 0 {
		next.Expiry = now.Add(time.Duration(secs) * time.Second)
	}
	if r.Scope != "" {
		next.Scopes = strings.Fields(r.Scope)
	}
	m.redact(r.AccessToken)
	m.redact(r.RefreshToken)
	return next, false, nil
}

// clientSecret finds the secret of the client a grant was issued to: the
// configured one, or the dynamic registration's.
func (m *Manager) clientSecret(ctx context.Context, t *Token) (string, error) {
	m.mu.Lock()
	for _, c := range m.configs {
		if c.ClientID != "" && c.ClientID == t.ClientID {
			m.mu.Unlock()
			return c.ClientSecret.Reveal(), nil
		}
	}
	m.mu.Unlock()
	c, err := m.opts.Store.Client(ctx, t.Issuer, m.opts.RedirectURL)
	if err != nil || c.ClientID != t.ClientID {
		return "", fmt.Errorf("finding the secret of client %s: the registration is gone", t.ClientID)
	}
	return c.ClientSecret.Reveal(), nil
}

// Run refreshes every stored grant before its access token expires, until
// ctx ends. Grants that cannot be refreshed are marked expired (and an
// EventExpired is sent).
func (m *Manager) Run(ctx context.Context) error {
	conns, err := m.opts.Store.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("listing oauth connections: %w", err)
	}
	for _, c := range conns {
		t, err := m.opts.Store.Token(ctx, c.User, c.Provider)
		if err != nil {
			continue
		}
		m.redact(t.AccessToken.Reveal())
		m.redact(t.RefreshToken.Reveal())
		m.schedule(c, t)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := m.opts.Now()
		next := now.Add(time.Hour)
		var dueNow []Connection
		m.mu.Lock()
		for k, at := range m.due {
			if !now.Before(at) {
				dueNow = append(dueNow, k)
			} else if at.Before(next) {
				next = at
			}
		}
		m.mu.Unlock()
		for _, k := range dueNow {
			m.refreshDue(ctx, k)
		}
		if len(dueNow) > 0 {
			continue
		}
		timer.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// refreshDue refreshes key if it is still due (a call may have refreshed
// it meanwhile).
func (m *Manager) refreshDue(ctx context.Context, key Connection) {
	lock := m.lock(key)
	lock.Lock()
	defer lock.Unlock()
	t, err := m.opts.Store.Token(ctx, key.User, key.Provider)
	if err != nil || t.Expired {
		m.mu.Lock()
		delete(m.due, key)
		m.mu.Unlock()
		return
	}
	if at := m.refreshAt(t); at.IsZero() || m.opts.Now().Before(at) {
		m.schedule(key, t)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	if _, err := m.refreshLocked(rctx, key, t); errors.Is(err, errLeased) {
		// Another replica is refreshing it: look again soon, by when it
		// will have saved the rotated grant.
		m.retryAt(key, leaseRetry)
	}
}

// Reload reads user's grant for provider again, after another replica
// sharing the store made or changed it, and schedules its refresh here too:
// every replica keeps every grant fresh (one at a time, under its lease with
// Options.Leases), so that none depends on the replica that made it. A grant
// gone or expired is no longer refreshed.
func (m *Manager) Reload(ctx context.Context, user, provider string) {
	key := Connection{user, provider}
	t, err := m.opts.Store.Token(ctx, user, provider)
	switch {
	case switchboard.ErrorCode(err) == switchboard.ENOTFOUND || err == nil && t.Expired:
		m.mu.Lock()
		delete(m.due, key)
		m.mu.Unlock()
	case err == nil:
		m.redact(t.AccessToken.Reveal())
		m.redact(t.RefreshToken.Reveal())
		m.schedule(key, t)
	}
}

// Status returns the state of user's connection to provider.
func (m *Manager) Status(ctx context.Context, user, provider string) (State, error) {
	t, err := m.opts.Store.Token(ctx, user, provider)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return State{Provider: provider}, nil
	}
	if err != nil {
		return State{}, err
	}
	return State{Provider: provider, Connected: !t.Expired, Expired: t.Expired, Expiry: t.Expiry, Scopes: t.Scopes, Issuer: t.Issuer, Error: t.Error}, nil
}

// Disconnect removes user's grant for provider, revoking its tokens at the
// authorization server when it has a revocation endpoint (best effort).
func (m *Manager) Disconnect(ctx context.Context, user, provider string) error {
	key := Connection{user, provider}
	lock := m.lock(key)
	lock.Lock()
	t, err := m.opts.Store.Token(ctx, user, provider)
	if err == nil && !t.Expired && t.RevocationURL != "" {
		m.revoke(ctx, t)
	}
	err = m.opts.Store.DeleteToken(ctx, user, provider)
	lock.Unlock()
	if err != nil {
		return fmt.Errorf("removing the OAuth connection to %s: %w", provider, err)
	}
	m.mu.Lock()
	delete(m.due, key)
	m.mu.Unlock()
	m.emit(Event{Kind: EventDisconnected, User: user, Provider: provider})
	return nil
}

// revoke asks the authorization server to revoke a grant's refresh token
// (RFC 7009), which revokes its access tokens too.
func (m *Manager) revoke(ctx context.Context, t *Token) {
	tok, hint := t.RefreshToken.Reveal(), "refresh_token"
	if tok == "" {
		tok, hint = t.AccessToken.Reveal(), "access_token"
	}
	form := url.Values{"token": {tok}, "token_type_hint": {hint}}
	secret, _ := m.clientSecret(ctx, t)
	if t.AuthMethod != "client_secret_basic" {
		form.Set("client_id", t.ClientID)
		if t.AuthMethod == "client_secret_post" {
			form.Set("client_secret", secret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.RevocationURL, strings.NewReader(form.Encode()))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if t.AuthMethod == "client_secret_basic" {
		req.SetBasicAuth(url.QueryEscape(t.ClientID), url.QueryEscape(secret))
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		m.log.Warn().Str("error", safeNetError(err).Error()).Msg("revoking an oauth token failed")
		return
	}
	_ = resp.Body.Close()
}

// Authorizer returns the switchboard.Authorizer of user's connection to
// provider, for a remote provider's requests.
func (m *Manager) Authorizer(user, provider string) switchboard.Authorizer {
	return &authorizer{m: m, user: user, provider: provider}
}

type authorizer struct {
	m              *Manager
	user, provider string
}

func (a *authorizer) Authorization(ctx context.Context) (string, error) {
	tok, err := a.m.Token(ctx, a.user, a.provider)
	if err != nil {
		return "", err
	}
	return "Bearer " + tok.Reveal(), nil
}

func (a *authorizer) Rejected(ctx context.Context, sent, challenge string) error {
	tok, _ := strings.CutPrefix(sent, "Bearer ")
	return a.m.Rejected(ctx, a.user, a.provider, tok, challenge)
}
