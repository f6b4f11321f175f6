package oauth

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// Token is one user's OAuth grant for one provider, as the Store keeps it.
// The two token values are secrets: they print as "<secret>" everywhere.
type Token struct {
	AccessToken  switchboard.Secret `json:"access_token"`
	RefreshToken switchboard.Secret `json:"refresh_token,omitempty"`
	TokenType    string             `json:"token_type,omitempty"`
	// Expiry is when the access token expires (zero: it does not say).
	Expiry time.Time `json:"expiry,omitzero"`
	// Obtained is when the access token was issued to the gateway.
	Obtained time.Time `json:"obtained"`
	Scopes   []string  `json:"scopes,omitempty"`

	// Where the grant came from, so that it is refreshed at the same place
	// with the same client, without discovery.
	Issuer     string `json:"issuer,omitempty"`
	TokenURL   string `json:"token_url"`
	ClientID   string `json:"client_id"`
	AuthMethod string `json:"auth_method,omitempty"`
	Resource   string `json:"resource,omitempty"`
	// RevocationURL is the authorization server's revocation endpoint, if
	// it has one.
	RevocationURL string `json:"revocation_url,omitempty"`

	// Expired is set when the grant can no longer be refreshed (the
	// authorization server refused the refresh token, or the access token
	// was refused and there is none): the user must connect again.
	Expired bool `json:"expired,omitempty"`
	// Error says why it expired, in words safe to show the user.
	Error string `json:"error,omitempty"`
}

// clone returns a copy of t.
func (t *Token) clone() *Token {
	c := *t
	c.Scopes = slices.Clone(t.Scopes)
	return &c
}

// Client is a client registration the gateway obtained from an
// authorization server (dynamic client registration, RFC 7591).
// Registrations are per authorization server: one is never used with
// another.
type Client struct {
	ClientID     string             `json:"client_id"`
	ClientSecret switchboard.Secret `json:"client_secret,omitempty"`
	AuthMethod   string             `json:"auth_method"`
	Registered   time.Time          `json:"registered"`
}

// Connection names one stored token.
type Connection struct {
	User, Provider string
}

// Store keeps OAuth grants and client registrations. The gateway's
// implementation seals every value under the user in the vault; the
// memory one is for tests. Implementations are safe for concurrent use.
type Store interface {
	// Token returns user's grant for provider, or an ENOTFOUND error.
	Token(ctx context.Context, user, provider string) (*Token, error)
	// SaveToken replaces user's grant for provider.
	SaveToken(ctx context.Context, user, provider string, t *Token) error
	// DeleteToken removes user's grant for provider; a missing one is not an
	// error.
	DeleteToken(ctx context.Context, user, provider string) error
	// Tokens lists every stored grant.
	Tokens(ctx context.Context) ([]Connection, error)
	// Client returns the registration the gateway holds at the
	// authorization server issuer for redirectURL, or an ENOTFOUND error.
	Client(ctx context.Context, issuer, redirectURL string) (*Client, error)
	// SaveClient records a registration.
	SaveClient(ctx context.Context, issuer, redirectURL string, c *Client) error
}

// MemoryStore is a Store in memory. The zero value is ready to use.
type MemoryStore struct {
	mu      sync.Mutex
	tokens  map[Connection]*Token
	clients map[string]*Client
}

var _ Store = (*MemoryStore)(nil)

// Token implements Store.
func (s *MemoryStore) Token(ctx context.Context, user, provider string) (*Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[Connection{user, provider}]
	if t == nil {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "no OAuth connection of %s to %s", user, provider)
	}
	return t.clone(), nil
}

// SaveToken implements Store.
func (s *MemoryStore) SaveToken(ctx context.Context, user, provider string, t *Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil {
		s.tokens = map[Connection]*Token{}
	}
	s.tokens[Connection{user, provider}] = t.clone()
	return nil
}

// DeleteToken implements Store.
func (s *MemoryStore) DeleteToken(ctx context.Context, user, provider string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, Connection{user, provider})
	return nil
}

// Tokens implements Store.
func (s *MemoryStore) Tokens(ctx context.Context) ([]Connection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Connection, 0, len(s.tokens))
	for c := range s.tokens {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Connection) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		return strings.Compare(a.Provider, b.Provider)
	})
	return out, nil
}

// Client implements Store.
func (s *MemoryStore) Client(ctx context.Context, issuer, redirectURL string) (*Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[issuer+" "+redirectURL]
	if c == nil {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "no client registration at %s", issuer)
	}
	cc := *c
	return &cc, nil
}

// SaveClient implements Store.
func (s *MemoryStore) SaveClient(ctx context.Context, issuer, redirectURL string, c *Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients == nil {
		s.clients = map[string]*Client{}
	}
	cc := *c
	s.clients[issuer+" "+redirectURL] = &cc
	return nil
}

// tokenWire is Token with its secrets in the clear, for EncodeToken.
type tokenWire struct {
	Token
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// EncodeToken returns t as JSON with the token values in the clear, for a
// Store that encrypts what it keeps (the vault seals it under the user).
// Never log or show the result.
func EncodeToken(t *Token) ([]byte, error) {
	return json.Marshal(tokenWire{Token: *t, AccessToken: t.AccessToken.Reveal(), RefreshToken: t.RefreshToken.Reveal()})
}

// DecodeToken reads what EncodeToken wrote.
func DecodeToken(b []byte) (*Token, error) {
	var w tokenWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decoding OAuth token: %w", err)
	}
	t := w.Token
	t.AccessToken, t.RefreshToken = switchboard.Secret(w.AccessToken), switchboard.Secret(w.RefreshToken)
	return &t, nil
}

// clientWire is Client with its secret in the clear, for EncodeClient.
type clientWire struct {
	Client
	ClientSecret string `json:"client_secret,omitempty"`
}

// EncodeClient returns c as JSON with the client secret in the clear, for a
// Store that encrypts what it keeps.
func EncodeClient(c *Client) ([]byte, error) {
	return json.Marshal(clientWire{Client: *c, ClientSecret: c.ClientSecret.Reveal()})
}

// DecodeClient reads what EncodeClient wrote.
func DecodeClient(b []byte) (*Client, error) {
	var w clientWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decoding OAuth client: %w", err)
	}
	c := w.Client
	c.ClientSecret = switchboard.Secret(w.ClientSecret)
	return &c, nil
}
