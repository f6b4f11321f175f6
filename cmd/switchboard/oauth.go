package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/oauth"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/supervisor"
	"github.com/switchboard-mcp/switchboard/vault"
)

// OAuth connections, wired: the grants live in the vault (oauthStore), a
// user starts the flow from a one-use connect link (tickets), the
// authorization server sends the browser back to /oauth/callback, and the
// connection's events restart, hide or show what depends on it.

// Paths the OAuth flow uses.
const (
	connectPath  = "/connect/"
	callbackPath = "/oauth/callback"
	clientPath   = "/oauth/client.json"
	// bindingCookie carries the browser's binding of a flow, to the callback
	// only.
	bindingCookie = "switchboard_oauth"
	ticketTTL     = 10 * time.Minute
	maxTickets    = 4096
)

// oauthStore is oauth.Store over the vault: a grant is one sealed value of
// the user's connection, a client registration one sealed value of its own.
type oauthStore struct{ v *vault.Vault }

var _ oauth.Store = oauthStore{}

func (s oauthStore) Token(ctx context.Context, user, provider string) (*oauth.Token, error) {
	sec, err := s.v.UserSecret(ctx, user, provider, vault.OAuthGrant)
	if err != nil {
		return nil, err
	}
	return oauth.DecodeToken([]byte(sec.Reveal()))
}

func (s oauthStore) SaveToken(ctx context.Context, user, provider string, t *oauth.Token) error {
	b, err := oauth.EncodeToken(t)
	if err != nil {
		return err
	}
	return s.v.SetOAuthConnection(user, provider, b, vault.OAuthInfo{Scopes: t.Scopes, ExpiresAt: t.Expiry, Expired: t.Expired, Error: t.Error})
}

func (s oauthStore) DeleteToken(ctx context.Context, user, provider string) error {
	if err := s.v.DeleteConnection(user, provider); err != nil && switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		return err
	}
	return nil
}

func (s oauthStore) Tokens(ctx context.Context) ([]oauth.Connection, error) {
	list, err := s.v.Connections("")
	if err != nil {
		return nil, err
	}
	var out []oauth.Connection
	for _, c := range list {
		if c.Kind == vault.ConnOAuth {
			out = append(out, oauth.Connection{User: c.User, Provider: c.Provider})
		}
	}
	return out, nil
}

func (s oauthStore) Client(ctx context.Context, issuer, redirectURL string) (*oauth.Client, error) {
	b, err := s.v.OAuthClient(ctx, issuer, redirectURL)
	if err != nil {
		return nil, err
	}
	return oauth.DecodeClient(b)
}

func (s oauthStore) SaveClient(ctx context.Context, issuer, redirectURL string, c *oauth.Client) error {
	b, err := oauth.EncodeClient(c)
	if err != nil {
		return err
	}
	return s.v.SetOAuthClient(issuer, redirectURL, b)
}

// gatewayBase is the gateway's public base URL: auth.resource_url without
// its /mcp, else the listen address.
func (m *Main) gatewayBase(cfg *providers.Config) string {
	return strings.TrimSuffix(strings.TrimSuffix(m.resourceURL(cfg), "/"), "/mcp")
}

// openOAuth makes the OAuth manager once the listener is bound (the
// callback URL may be the listen address).
func (m *Main) openOAuth(cfg *providers.Config) error {
	base := m.gatewayBase(cfg)
	opts := oauth.Options{
		Store:       oauthStore{m.vault},
		RedirectURL: base + callbackPath,
		ClientName:  "Switchboard",
		Redactor:    m.redactor,
		OnEvent:     func(e oauth.Event) { go m.oauthEvent(e) },
		// Replicas sharing the store refresh each grant under its lease;
		// the suffix keeps two processes given one replica name apart.
		Leases: m.store,
		Holder: cfg.Replica + "/" + rand.Text(),
	}
	if strings.HasPrefix(base, "https://") {
		opts.ClientMetadataURL = base + clientPath
	}
	var err error
	if m.oauth, err = oauth.New(m.Log.With().Str("component", "oauth").Logger(), opts); err != nil {
		return fmt.Errorf("setting up OAuth connections: %w", err)
	}
	m.tickets = &tickets{m: map[string]ticket{}}
	return nil
}

// oauthConfigs are the OAuth connections cfg declares, the client secrets
// resolved from the vault. A provider whose secret is missing is left out
// (and logged): its users cannot connect until it is set.
func (m *Main) oauthConfigs(ctx context.Context, cfg *providers.Config) []*oauth.Config {
	var out []*oauth.Config
	for _, p := range cfg.SortedProviders() {
		if p.OAuth == nil || !p.IsEnabled() {
			continue
		}
		o := p.OAuth
		c := &oauth.Config{Provider: p.Name, Resource: p.URL, Issuer: o.Issuer, AuthorizationURL: o.AuthorizationURL,
			TokenURL: o.TokenURL, RevocationURL: o.RevocationURL, ClientID: o.ClientID, Scopes: o.Scopes}
		if o.ClientSecret != "" {
			ref, err := providers.ParseEnvValue(o.ClientSecret)
			if err == nil && ref.Kind == providers.RefSecret {
				sec, err := m.vault.Secret(ctx, ref.Name)
				if err != nil {
					m.Log.Error().Str("provider", p.Name).Str("secret", ref.Name).Str("error", switchboard.ErrorMessage(err)).Msg("the oauth client secret is missing; users cannot connect this provider")
					continue
				}
				c.ClientSecret = sec
			}
		}
		out = append(out, c)
	}
	return out
}

// ticket is a one-use connect link: whoever opens it connects their account
// at the service as user's connection to provider.
type ticket struct {
	user, provider string
	expires        time.Time
}

// tickets are the connect links handed out and not yet used.
type tickets struct {
	mu sync.Mutex
	m  map[string]ticket // by SHA-256 of the link's token
}

func ticketKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// mint returns a new link token for user and provider.
func (t *tickets) mint(user, provider string) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range t.m {
		if now.After(v.expires) {
			delete(t.m, k)
		}
	}
	if len(t.m) >= maxTickets {
		return "", switchboard.Errorf(switchboard.EOVERLOADED, "too many connect links outstanding; try again in a few minutes")
	}
	t.m[ticketKey(tok)] = ticket{user: user, provider: provider, expires: now.Add(ticketTTL)}
	return tok, nil
}

// take uses a link token up; ok is false for one that is unknown, used,
// expired, or for another provider.
func (t *tickets) take(tok, provider string) (string, bool) {
	k := ticketKey(tok)
	t.mu.Lock()
	defer t.mu.Unlock()
	v, found := t.m[k]
	delete(t.m, k)
	if !found || time.Now().After(v.expires) || v.provider != provider {
		return "", false
	}
	return v.user, true
}

// connectLink returns a one-use link by which user connects provider with
// OAuth. The policy has said user may.
func (m *Main) connectLink(user, provider string) (string, error) {
	p := m.config().Providers[provider]
	if p == nil || p.OAuth == nil {
		return "", switchboard.Errorf(switchboard.EINVALID, "provider %s has no oauth connection: connect it with secrets", provider)
	}
	tok, err := m.tickets.mint(user, provider)
	if err != nil {
		return "", err
	}
	return m.gatewayBase(m.config()) + connectPath + provider + "?t=" + tok, nil
}

var oauthPage = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}} · Switchboard</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// page writes a small HTML page (no script, nothing loaded).
func page(w http.ResponseWriter, code int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	_ = oauthPage.Execute(w, struct{ Title, Message string }{title, msg})
}

// handleConnect starts the flow a connect link names: it sends the browser
// to the authorization server, bound to it by a cookie only the callback
// reads.
func (m *Main) handleConnect(w http.ResponseWriter, r *http.Request) {
	provider := r.PathValue("provider")
	user, ok := m.tickets.take(r.URL.Query().Get("t"), provider)
	if !ok {
		page(w, http.StatusNotFound, "Link expired", "This connect link is unknown, expired or already used. Ask for a new one: switchboard connect "+provider+" --user YOU --oauth, or POST /api/connections/"+provider+"/oauth.")
		return
	}
	f, err := m.oauth.Begin(r.Context(), user, provider)
	if err != nil {
		m.Log.Warn().Str("provider", provider).Str("user", user).Str("error", err.Error()).Msg("starting an oauth connection failed")
		page(w, http.StatusBadGateway, "Cannot connect", switchboard.ErrorMessage(err))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: f.Binding, Path: callbackPath, MaxAge: int(time.Until(f.Expires).Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(m.gatewayBase(m.config()), "https://"), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, f.URL, http.StatusFound)
}

// handleAdminConnect is the status page's connect link: it makes a one-use
// link for the admin viewing the page and follows it.
func (m *Main) handleAdminConnect(w http.ResponseWriter, r *http.Request) {
	who := switchboard.PrincipalFromContext(r.Context())
	if who == nil || who.Kind != switchboard.PrincipalUser {
		page(w, http.StatusForbidden, "Cannot connect", "Only a user connects a provider.")
		return
	}
	link, err := m.acc.connectLink(r.Context(), who, r.PathValue("provider"), true)
	if err != nil {
		page(w, http.StatusNotFound, "Cannot connect", switchboard.ErrorMessage(err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, link, http.StatusFound)
}

// handleCallback finishes a flow: the authorization server's answer, in the
// browser that started it.
func (m *Main) handleCallback(w http.ResponseWriter, r *http.Request) {
	binding := ""
	if c, err := r.Cookie(bindingCookie); err == nil {
		binding = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: "", Path: callbackPath, MaxAge: -1, HttpOnly: true})
	user, provider, err := m.oauth.Complete(r.Context(), r.URL.Query(), binding)
	if err != nil {
		m.Log.Warn().Str("provider", provider).Str("user", user).Str("error", err.Error()).Msg("an oauth callback was refused")
		page(w, http.StatusBadRequest, "Not connected", switchboard.ErrorMessage(err))
		return
	}
	page(w, http.StatusOK, "Connected", fmt.Sprintf("%s is connected to %s. You can close this window.", user, provider))
}

// handleClientMetadata serves the gateway's client ID metadata document.
func (m *Main) handleClientMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(m.oauth.ClientMetadata())
}

// oauthEvent applies a change of a user's OAuth connection: on connect,
// expiry or removal, the user's instance stops (it starts again with the
// new credentials on their next call, or not at all) and the sessions'
// views are recomputed, so the provider's tools appear or disappear for
// that user alone, with one list_changed; on refresh, a child that reads
// the token from its environment is replaced make-before-break, one that
// reads a file finds it rewritten. It runs on its own goroutine (the oauth manager
// may hold the grant's lock).
func (m *Main) oauthEvent(e oauth.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := m.config().Providers[e.Provider]
	key := switchboard.InstanceKey{Provider: e.Provider, User: e.User}
	switch e.Kind {
	case oauth.EventRefreshed:
		if p == nil || p.Remote() || p.OAuth == nil {
			return // a remote provider's requests take the new token as it comes
		}
		if p.OAuth.TokenFile != "" {
			if err := m.writeTokenFile(ctx, e.User, e.Provider); err != nil {
				m.Log.Error().Str("provider", e.Provider).Str("user", e.User).Err(err).Msg("rewriting the token file")
			}
			return
		}
		m.renewChild(ctx, key)
		return
	}
	action := map[string]string{oauth.EventConnected: "connect", oauth.EventExpired: "expired", oauth.EventDisconnected: "disconnect"}[e.Kind]
	rec := audit.Record{Type: audit.TypeConnection, PrincipalKind: string(switchboard.PrincipalUser), Principal: e.User, Provider: e.Provider,
		Detail: map[string]string{"action": action, "kind": "oauth"}}
	if e.Err != "" {
		rec.Error = m.redactor.String(e.Err)
	}
	m.ops.event(rec)
	m.stopUserInstance(ctx, key)
	if e.Kind != oauth.EventConnected {
		_ = os.RemoveAll(filepath.Dir(m.tokenFile(e.User, e.Provider)))
	}
	m.mux.PolicyChanged()
}

// renewChild replaces a running user's instance that reads its token from
// the environment with one started with the new token, make-before-break:
// the new process starts next to the old one, takes over once ready, and
// the old one drains, so no call fails for a refresh. One not running
// starts with the new token when next used.
func (m *Main) renewChild(ctx context.Context, key switchboard.InstanceKey) {
	if _, ok := m.sup.Running(key); !ok {
		return
	}
	spec, err := m.userSpec(m.resolver)(ctx, key)
	if err != nil {
		m.Log.Warn().Str("provider", key.String()).Str("error", switchboard.ErrorMessage(err)).Msg("renewing the instance's token")
		return
	}
	res := m.sup.Apply(ctx, supervisor.Changes{Replace: []supervisor.Spec{spec}}, nil)
	for _, f := range res.Failed {
		m.Log.Warn().Str("provider", f.Key.String()).Str("error", f.Err).Msg("renewing the instance's token: the new process failed; the old one keeps serving")
	}
}

// connectionChangedElsewhere applies a change another replica made to a
// user's connection. An OAuth connection that is still good was most
// likely refreshed there: the new token reaches the instance here as a
// refresh here would bring it (a new process for token_env, the file
// rewritten for token_file, nothing to do for a url provider, whose
// requests read the grant from the store), so a refresh by any replica
// interrupts no call. Any other change (secrets replaced, a connection
// removed or expired) stops the user's instance, remote or not; it starts
// again with the new credentials on the next call. Either way this
// replica's OAuth refresher learns the grant's new state.
func (m *Main) connectionChangedElsewhere(ctx context.Context, key switchboard.InstanceKey) {
	p := m.config().Providers[key.Provider]
	if p != nil && p.OAuth != nil && m.oauth != nil {
		m.oauth.Reload(ctx, key.User, key.Provider) // refreshed here too from now on
	}
	if p != nil && p.OAuth != nil && m.vault.Connected(key.User, key.Provider) {
		m.oauthEvent(oauth.Event{Kind: oauth.EventRefreshed, User: key.User, Provider: key.Provider})
		return
	}
	m.stopUserInstance(ctx, key)
}

// stopUserInstance stops user's own instance of a provider, remote or not.
func (m *Main) stopUserInstance(ctx context.Context, key switchboard.InstanceKey) {
	if m.rem.Has(key) {
		if err := m.rem.Stop(ctx, key); err != nil {
			m.Log.Warn().Err(err).Str("provider", key.String()).Msg("stopping the user's remote instance")
		}
		return
	}
	if err := m.sup.Drain(ctx, key); err != nil {
		m.Log.Warn().Err(err).Str("provider", key.String()).Msg("stopping the user's instance")
	}
}

// tokenFile is where user's instance of provider reads its token: a
// directory of that instance's own under the data dir.
func (m *Main) tokenFile(user, provider string) string {
	sum := sha256.Sum256([]byte(user))
	return filepath.Join(m.config().DataDir, "oauth", provider, hex.EncodeToString(sum[:12]), "token")
}

// writeTokenFile writes the current access token of user's connection to
// provider into its token file.
func (m *Main) writeTokenFile(ctx context.Context, user, provider string) error {
	tok, err := m.oauth.Token(ctx, user, provider)
	if err != nil {
		return err
	}
	path := m.tokenFile(user, provider)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating the token directory: %w", err)
	}
	return oauth.WriteTokenFile(path, tok)
}

// oauthEnv adds to a user's instance environment the token of their OAuth
// connection: as token_env, or the path of a token_file written now.
func (m *Main) oauthEnv(ctx context.Context, p *providers.Provider, user string, env map[string]string) error {
	if p.OAuth == nil {
		return nil
	}
	if p.OAuth.TokenFile != "" {
		if err := m.writeTokenFile(ctx, user, p.Name); err != nil {
			return err
		}
		env[p.OAuth.TokenFile] = m.tokenFile(user, p.Name)
		return nil
	}
	tok, err := m.oauth.Token(ctx, user, p.Name)
	if err != nil {
		return err
	}
	env[p.OAuth.TokenEnv] = tok.Reveal()
	return nil
}
