package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/switchboard-mcp/switchboard"
)

// maxMetadataBytes bounds a metadata document or token response.
const maxMetadataBytes = 1 << 20

// ServerMetadata is an authorization server's metadata (RFC 8414, or
// OpenID Connect Discovery), the members the gateway uses.
type ServerMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	RevocationEndpoint                string   `json:"revocation_endpoint,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported,omitempty"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	// IssParameterSupported: the server puts iss in authorization
	// responses (RFC 9207).
	IssParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`
	// ClientIDMetadataDocumentSupported: the server accepts an https URL
	// of a client metadata document as client_id.
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported,omitempty"`
}

// ResourceMetadata is a protected resource's metadata (RFC 9728).
type ResourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported,omitempty"`
}

// Challenge is the Bearer challenge of a WWW-Authenticate header (RFC 6750
// §3, RFC 9728 §5.1).
type Challenge struct {
	ResourceMetadata string
	Scope            string
	Error            string
}

// ParseChallenge reads the Bearer challenge of a WWW-Authenticate header
// value; ok is false when there is none.
func ParseChallenge(header string) (Challenge, bool) {
	var c Challenge
	rest := header
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		scheme, after, _ := strings.Cut(rest, " ")
		params, next := parseAuthParams(after)
		if strings.EqualFold(scheme, "Bearer") {
			c.ResourceMetadata = params["resource_metadata"]
			c.Scope = params["scope"]
			c.Error = params["error"]
			return c, true
		}
		if next == rest || next == "" {
			break
		}
		rest = next
	}
	return c, false
}

// parseAuthParams reads comma-separated name=value pairs (values quoted or
// tokens) from s, up to the start of the next challenge, which it returns.
func parseAuthParams(s string) (map[string]string, string) {
	params := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		eq := strings.IndexByte(s, '=')
		sp := strings.IndexAny(s, " ,")
		if eq < 0 || (sp >= 0 && sp < eq) {
			return params, s // a new scheme starts here (or the end)
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			val = b.String()
			s = s[min(i+1, len(s)):]
		} else {
			end := strings.IndexAny(s, " ,")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		params[name] = val
		if s == "" {
			return params, ""
		}
	}
}

// isLoopback reports whether host (no port) names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// checkURL requires an absolute https URL, or http on a loopback address
// (the authorization specification's communication-security rule; loopback
// for local servers and tests).
func checkURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, switchboard.Errorf(switchboard.EINVALID, "%s %q is not an absolute URL", what, clip(raw))
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, switchboard.Errorf(switchboard.EINVALID, "%s %q must use https (http only on a loopback address)", what, clip(raw))
	}
	if u.Fragment != "" || u.User != nil {
		return nil, switchboard.Errorf(switchboard.EINVALID, "%s %q must have no fragment and no credentials", what, clip(raw))
	}
	return u, nil
}

// clip shortens a value quoted in an error.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// getJSON fetches a JSON document. found is false for a 404 (or another
// 4xx), so that discovery can try the next place.
func getJSON(ctx context.Context, hc *http.Client, u string, dst any) (found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return false, safeNetError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s answered HTTP %d", clip(u), resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return false, safeNetError(err)
	}
	if len(b) > maxMetadataBytes {
		return false, fmt.Errorf("GET %s: document too large", clip(u))
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return false, fmt.Errorf("GET %s: not a JSON object: %w", clip(u), err)
	}
	return true, nil
}

// safeNetError drops the URL a *url.Error carries (it may hold a query).
func safeNetError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// DiscoverServer fetches an authorization server's metadata from its issuer
// identifier, trying the well-known places in the order the MCP
// authorization specification gives (RFC 8414 with path insertion, OpenID
// Connect with path insertion, OpenID Connect appended), and checks that
// the document names the same issuer and supports PKCE with S256.
func DiscoverServer(ctx context.Context, hc *http.Client, issuer string) (*ServerMetadata, error) {
	u, err := checkURL("issuer", issuer)
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" {
		return nil, switchboard.Errorf(switchboard.EINVALID, "issuer %q must have no query", clip(issuer))
	}
	origin := u.Scheme + "://" + u.Host
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	var candidates []string
	if path == "" {
		candidates = []string{origin + "/.well-known/oauth-authorization-server", origin + "/.well-known/openid-configuration"}
	} else {
		candidates = []string{
			origin + "/.well-known/oauth-authorization-server" + path,
			origin + "/.well-known/openid-configuration" + path,
			origin + path + "/.well-known/openid-configuration",
		}
	}
	for _, c := range candidates {
		var md ServerMetadata
		found, err := getJSON(ctx, hc, c, &md)
		if err != nil {
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "discovering the authorization server %s", clip(issuer))
		}
		if !found {
			continue
		}
		// RFC 8414 §3.3: the issuer must be the one the URL was made from.
		if md.Issuer != issuer {
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "discovering the authorization server %s: its metadata names issuer %q", clip(issuer), clip(md.Issuer))
		}
		if err := md.check(); err != nil {
			return nil, err
		}
		return &md, nil
	}
	return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "discovering the authorization server %s: no metadata at its well-known addresses", clip(issuer))
}

// check validates the endpoints and PKCE support of a metadata document.
func (md *ServerMetadata) check() error {
	if !slices.Contains(md.CodeChallengeMethodsSupported, "S256") {
		return switchboard.Errorf(switchboard.EUNAVAILABLE, "the authorization server %s does not announce PKCE with S256 (code_challenge_methods_supported); refusing to proceed", clip(md.Issuer))
	}
	for what, raw := range map[string]string{"authorization_endpoint": md.AuthorizationEndpoint, "token_endpoint": md.TokenEndpoint} {
		if _, err := checkURL("the authorization server's "+what, raw); err != nil {
			return err
		}
	}
	for what, raw := range map[string]string{"registration_endpoint": md.RegistrationEndpoint, "revocation_endpoint": md.RevocationEndpoint} {
		if raw == "" {
			continue
		}
		if _, err := checkURL("the authorization server's "+what, raw); err != nil {
			return err
		}
	}
	return nil
}

// DiscoverResource finds a remote MCP server's protected resource metadata
// (RFC 9728): it sends the server an unauthenticated request and follows
// the resource_metadata of its 401 challenge, or else tries the well-known
// addresses (at the endpoint's path, then at the root). It returns the
// metadata and the scope the challenge asked for, if any. The metadata
// must be for this server: a document advertised in a challenge must name
// exactly the server's URL as its resource, one found at a well-known
// address a prefix of it; a challenge may only point to the server's own
// origin.
func DiscoverResource(ctx context.Context, hc *http.Client, server string) (*ResourceMetadata, string, error) {
	su, err := checkURL("the MCP server URL", server)
	if err != nil {
		return nil, "", err
	}
	challenge, err := probe(ctx, hc, server)
	if err != nil {
		return nil, "", switchboard.WrapError(switchboard.EUNAVAILABLE, err, "discovering the MCP server's authorization")
	}
	var md ResourceMetadata
	if challenge.ResourceMetadata != "" {
		mu, err := checkURL("resource_metadata", challenge.ResourceMetadata)
		if err != nil {
			return nil, "", err
		}
		if !strings.EqualFold(mu.Scheme, su.Scheme) || !strings.EqualFold(mu.Host, su.Host) {
			return nil, "", switchboard.Errorf(switchboard.EUNAVAILABLE, "the MCP server's challenge points to metadata on another origin (%s)", clip(mu.Host))
		}
		found, err := getJSON(ctx, hc, mu.String(), &md)
		if err != nil || !found {
			return nil, "", switchboard.WrapError(switchboard.EUNAVAILABLE, err, "fetching the MCP server's resource metadata")
		}
		if md.Resource == "" || !sameResource(md.Resource, server) {
			return nil, "", switchboard.Errorf(switchboard.EUNAVAILABLE, "the MCP server's resource metadata is for %q, not %q", clip(md.Resource), clip(server))
		}
	} else {
		origin := su.Scheme + "://" + su.Host
		path := strings.TrimSuffix(su.EscapedPath(), "/")
		candidates := []string{origin + "/.well-known/oauth-protected-resource"}
		if path != "" {
			candidates = append([]string{origin + "/.well-known/oauth-protected-resource" + path}, candidates...)
		}
		found := false
		for _, c := range candidates {
			md = ResourceMetadata{}
			if found, err = getJSON(ctx, hc, c, &md); err != nil {
				return nil, "", switchboard.WrapError(switchboard.EUNAVAILABLE, err, "fetching the MCP server's resource metadata")
			}
			if found {
				break
			}
		}
		if !found {
			return nil, "", switchboard.Errorf(switchboard.EUNAVAILABLE, "the MCP server %s publishes no protected resource metadata", clip(server))
		}
		if md.Resource == "" {
			md.Resource = server
		}
		if !resourceBinds(md.Resource, server) {
			return nil, "", switchboard.Errorf(switchboard.EUNAVAILABLE, "the MCP server's resource metadata is for %q, not %q", clip(md.Resource), clip(server))
		}
	}
	if len(md.AuthorizationServers) == 0 {
		return nil, "", switchboard.Errorf(switchboard.EUNAVAILABLE, "the MCP server's resource metadata names no authorization server")
	}
	return &md, challenge.Scope, nil
}

// probe sends the MCP server an unauthenticated request and returns the
// challenge of its 401 (an empty one for any other answer).
func probe(ctx context.Context, hc *http.Client, server string) (Challenge, error) {
	body := strings.NewReader(`{"jsonrpc":"2.0","id":0,"method":"ping"}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server, body)
	if err != nil {
		return Challenge{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return Challenge{}, safeNetError(err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return Challenge{}, nil
	}
	c, _ := ParseChallenge(resp.Header.Get("WWW-Authenticate"))
	return c, nil
}

// sameResource reports whether two resource identifiers are the same
// (RFC 9728 §3.3): scheme and host compared without case, a trailing slash
// ignored, everything else exact.
func sameResource(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return sameOriginParts(ua, ub) && strings.TrimSuffix(ua.EscapedPath(), "/") == strings.TrimSuffix(ub.EscapedPath(), "/")
}

// resourceBinds reports whether a resource named in metadata found at a
// well-known address binds to the server's URL: the same origin, and a path
// that is the server's or a segment prefix of it (servers mounted at /mcp
// often name their origin).
func resourceBinds(resource, server string) bool {
	ur, errR := url.Parse(resource)
	us, errS := url.Parse(server)
	if errR != nil || errS != nil {
		return resource == server
	}
	if !sameOriginParts(ur, us) {
		return false
	}
	rp := strings.TrimSuffix(ur.EscapedPath(), "/")
	sp := strings.TrimSuffix(us.EscapedPath(), "/")
	return rp == sp || strings.HasPrefix(sp, rp+"/")
}

func sameOriginParts(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host) &&
		a.RawQuery == b.RawQuery && a.Fragment == b.Fragment && a.User.String() == b.User.String()
}
