package auth

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// The edge middleware below is plain net/http and composes in this order, each
// step refusing before the next one runs (research/reliability-security.md):
//
//	(PreAuthDeadline, server-wide) → BodyLimit → HostOriginGuard → StripInternalHeaders
//	  → FailureLimiter.Middleware → RequireAuth → FailureLimiter.Passed → BodyDeadline
//	  → RateLimiter.Middleware → MCP handler
//
// No step before BodyDeadline reads the request body, so nothing waits for the
// body of a request that is not authenticated. Every refusal before
// authentication of a request that may carry a body closes the connection
// after the answer (see refuse) instead of draining the body.

// Reasons passed to RequireAuth's onFail hook. A technical failure is reported
// as ReasonError + ": " + the error text (which never contains credentials).
const (
	ReasonMissing = "missing_credentials"
	ReasonInvalid = "invalid_credentials"
	ReasonError   = "auth_error"
)

// Fixed response bodies. They never vary with the cause of the refusal.
var (
	bodyUnauthorized = []byte(`{"error":"unauthorized"}` + "\n")
	bodyUnavailable  = []byte(`{"error":"temporarily_unavailable"}` + "\n")
	bodyForbidden    = []byte(`{"error":"forbidden"}` + "\n")
	bodyTooLarge     = []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"request body too large"}}` + "\n")
	bodyRateLimited  = []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"rate limit exceeded"}}` + "\n")
)

// RefusalDrain is how long the server may still read the body of a request
// refused before authentication (see refuse).
const RefusalDrain = time.Second

// refuse writes an early answer. If the request may still have body bytes on
// the wire (a Content-Length above 0, or chunked), the connection is closed
// after the answer and the connection's read deadline is cut to RefusalDrain:
// net/http drains up to 256 KiB of an unread body when a handler returns, even
// on a connection it is about to close, and would otherwise wait for a client
// that sends that body one byte at a time. RefusalDrain lets a body already on
// its way arrive, so the client reads the answer instead of a reset.
func refuse(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
		_ = setReadDeadline(w, time.Now().Add(RefusalDrain))
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// BodyLimit refuses a request whose declared Content-Length exceeds n bytes
// with 413 before any later handler runs, and caps every body at n bytes with
// http.MaxBytesReader, so a chunked body that grows past n fails the read with
// *http.MaxBytesError (the reader should answer 413 then; the server closes the
// connection).
func BodyLimit(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				refuse(w, r, http.StatusRequestEntityTooLarge, bodyTooLarge)
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r2 := new(http.Request)
				*r2 = *r
				r2.Body = http.MaxBytesReader(w, r.Body, n)
				r = r2
			}
			next.ServeHTTP(w, r)
		})
	}
}

// IsBodyTooLarge reports whether err came from a body cut off by BodyLimit.
func IsBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// HostOriginGuard answers 403, before authentication, to requests that may come
// from a DNS-rebinding or cross-site browser attack.
//
// Host: when the connection arrived on a loopback address, the Host must be
// "localhost", a loopback IP ("127.0.0.1", "[::1]"), or one of allowedHosts,
// with any port. On any other address, if allowedHosts is non-empty the Host
// must be one of them (or a loopback name); if it is empty any Host passes. An
// allowedHosts entry without a port matches any port; with a port
// ("gw.example.com:8443") it matches exactly.
//
// Origin: a request without an Origin header passes (non-browser clients).
// Otherwise the Origin must be the gateway's own ("http://" + Host, what a page
// the gateway served itself sends) or one of allowedOrigins
// ("https://app.example.com", default ports may be omitted). A page on another
// port of the same machine is another origin: "http://localhost:5173" calling a
// gateway on localhost:8080 is refused unless it is listed, because any local
// dev server or tool page could otherwise drive the gateway from the browser.
// "null", several Origin headers, or an unparsable Origin are refused.
//
// CORS: a request from a listed origin gets Access-Control-Allow-Origin (that
// origin, never "*"), Vary: Origin and the MCP response headers exposed, and a
// preflight (OPTIONS with Access-Control-Request-Method) from a listed origin is
// answered 204 here, before authentication, since browsers send preflights
// without credentials. No cookies are used, so credentials are never allowed.
func HostOriginGuard(allowedHosts []string, allowedOrigins []string) func(http.Handler) http.Handler {
	hosts := map[string]bool{}
	for _, h := range allowedHosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h != "" {
			hosts[h] = true
		}
	}
	origins := map[string]bool{}
	for _, o := range allowedOrigins {
		if n, _, ok := normalizeOrigin(o); ok {
			origins[n] = true
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			vetted, hostOK := hostAllowed(r, hosts)
			origin, listed, originOK := originAllowed(r, origins, vetted)
			if !hostOK || !originOK {
				refuse(w, r, http.StatusForbidden, bodyForbidden)
				return
			}
			if listed {
				h := w.Header()
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
				h.Set("Access-Control-Expose-Headers", corsExposed)
				if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
					h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
					h.Set("Access-Control-Allow-Headers", corsAllowed)
					h.Set("Access-Control-Max-Age", "600")
					w.WriteHeader(http.StatusNoContent)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// hostAllowed checks r.Host. vetted reports that the Host is a loopback name
// or listed, not merely let through because the listener is not on loopback
// and no allowlist is set.
func hostAllowed(r *http.Request, hosts map[string]bool) (vetted, ok bool) {
	host := strings.ToLower(r.Host)
	hostname, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		hostname, port = h, p
	}
	hostname = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(hostname, "["), "]"), ".")
	if hostname == "" {
		return false, false
	}
	if isLoopbackHostname(hostname) {
		return true, true
	}
	if hosts[hostname] || (port != "" && hosts[joinHostPort(hostname, port)]) {
		return true, true
	}
	if !onLoopback(r) && len(hosts) == 0 {
		return false, true
	}
	return false, false
}

func joinHostPort(h, p string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}

// onLoopback reports whether the connection arrived on a loopback address. A
// request with no local address (not from net/http's server) counts as
// loopback, the stricter case.
func onLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true
	}
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	return ip == nil || ip.IsLoopback()
}

// CORS header values for listed origins.
const (
	corsExposed = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, Retry-After"
	corsAllowed = "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-Id"
)

// originAllowed checks r's Origin header. It returns the Origin as sent,
// whether it is one of the listed origins, and whether it may pass: no Origin,
// a listed one, or the gateway's own origin (same scheme, host and port as the
// request) when the Host is vetted — with an unvetted Host a rebound name
// would be "its own origin" too.
func originAllowed(r *http.Request, origins map[string]bool, vetted bool) (origin string, listed, ok bool) {
	vals := r.Header.Values("Origin")
	switch len(vals) {
	case 0:
		return "", false, true
	case 1:
	default:
		return "", false, false
	}
	n, _, valid := normalizeOrigin(vals[0])
	if !valid {
		return "", false, false
	}
	if origins[n] {
		return vals[0], true, true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	self, _, valid := normalizeOrigin(scheme + "://" + r.Host)
	return "", false, vetted && valid && n == self
}

// normalizeOrigin returns scheme://host[:port] in lowercase without a default
// port, and the hostname.
func normalizeOrigin(o string) (string, string, bool) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", false
	}
	scheme := strings.ToLower(u.Scheme)
	hostname := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	h := hostname
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if port != "" {
		h += ":" + port
	}
	return scheme + "://" + h, hostname, true
}

// internalHeaders are request headers that only the gateway itself may set, or
// that upstream proxies use to assert identity. Clients' copies are dropped.
var internalHeaders = []string{
	"X-Forwarded-User",
	"X-Forwarded-Email",
	"X-Forwarded-Groups",
	"X-Forwarded-Preferred-Username",
	"X-Gateway-Principal",
	"X-Mcp-Virtualserver",
	"X-Remote-User",
	"X-Remote-Group",
	"Remote-User",
	"X-Principal",
	"X-User",
	"X-User-Id",
	"X-Authenticated-User",
	"X-Service-Name",
}

// internalHeaderPrefixes are header-name prefixes dropped likewise.
var internalHeaderPrefixes = []string{"X-Switchboard-", "X-Auth-Request-", "X-Gateway-"}

// StripInternalHeaders removes from the request, before anything else sees it,
// every header the gateway treats as internal: any "X-Switchboard-*",
// "X-Gateway-*" or "X-Auth-Request-*" header, and X-Forwarded-User,
// X-Forwarded-Email, X-Forwarded-Groups, X-Forwarded-Preferred-Username,
// X-Gateway-Principal, X-Mcp-Virtualserver, X-Remote-User, X-Remote-Group,
// Remote-User, X-Principal, X-User, X-User-Id, X-Authenticated-User and
// X-Service-Name. Nothing in the gateway may read identity from headers other
// than Authorization; this only makes sure a spoofed copy cannot reach a
// provider or a later handler.
func StripInternalHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h http.Header
		for k := range r.Header {
			if isInternalHeader(k) {
				if h == nil {
					h = r.Header.Clone()
				}
				delete(h, k)
			}
		}
		if h != nil {
			r2 := new(http.Request)
			*r2 = *r
			r2.Header = h
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

func isInternalHeader(k string) bool {
	k = http.CanonicalHeaderKey(k)
	for _, p := range internalHeaderPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	for _, n := range internalHeaders {
		if k == n {
			return true
		}
	}
	return false
}

// RequireAuth runs authn on every request and passes only authenticated ones
// on, with the principal in the context (switchboard.NewContextWithPrincipal).
//
// Missing or bad credentials get 401 with
// `WWW-Authenticate: Bearer resource_metadata="<resourceMetadataURL>"` (just
// `Bearer` if the URL is empty) and the body {"error":"unauthorized"}, identical
// whatever the cause. A technical failure (authn returned an error, or ok with
// a nil principal) gets 503 with {"error":"temporarily_unavailable"} and
// Retry-After: 5. Nothing is ever let through on an error.
//
// onFail, if not nil, is called for every refusal with ReasonMissing,
// ReasonInvalid or ReasonError + ": " + error text, for audit, metrics and
// FailureLimiter.Fail.
func RequireAuth(authn func(*http.Request) (*switchboard.Principal, bool, error), resourceMetadataURL string,
	onFail func(r *http.Request, reason string)) func(http.Handler) http.Handler {
	challenge := "Bearer"
	if resourceMetadataURL != "" {
		challenge += ` resource_metadata=` + strconv.Quote(resourceMetadataURL)
	}
	fail := func(r *http.Request, reason string) {
		if onFail != nil {
			onFail(r, reason)
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok, err := authn(r)
			if err == nil && ok && p == nil {
				err = errNoDecision
			}
			if err != nil {
				fail(r, ReasonError+": "+err.Error())
				w.Header().Set("Retry-After", "5")
				refuse(w, r, http.StatusServiceUnavailable, bodyUnavailable)
				return
			}
			if !ok {
				reason := ReasonInvalid
				if len(r.Header.Values("Authorization")) == 0 {
					reason = ReasonMissing
				}
				fail(r, reason)
				w.Header().Set("WWW-Authenticate", challenge)
				refuse(w, r, http.StatusUnauthorized, bodyUnauthorized)
				return
			}
			next.ServeHTTP(w, r.WithContext(switchboard.NewContextWithPrincipal(r.Context(), p)))
		})
	}
}

// protectedResource is the RFC 9728 protected resource metadata document.
type protectedResource struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// ProtectedResourceMetadata serves the RFC 9728 document for
// /.well-known/oauth-protected-resource: resource, authorization_servers
// (the trusted issuers) and bearer_methods_supported ["header"]. It answers
// GET and HEAD (405 otherwise) and allows any origin to read it, since it is
// public metadata MCP clients fetch before they hold a token.
func ProtectedResourceMetadata(resource string, issuers []string) http.Handler {
	return ProtectedResourceMetadataFunc(resource, func() []string { return issuers })
}

// ProtectedResourceMetadataFunc is ProtectedResourceMetadata with the issuer
// list read on each request (for example Authenticator.Issuers), so a config
// reload shows at once.
func ProtectedResourceMetadataFunc(resource string, issuers func() []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, []byte(`{"error":"method_not_allowed"}`+"\n"))
			return
		}
		body, err := json.Marshal(protectedResource{
			Resource:               resource,
			AuthorizationServers:   issuers(),
			BearerMethodsSupported: []string{"header"},
		})
		if err != nil { // not reachable with strings only
			writeJSON(w, http.StatusInternalServerError, []byte(`{"error":"internal"}`+"\n"))
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "max-age=300")
		h.Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(append(body, '\n'))
		}
	})
}
