// Package oauth connects users' accounts at other services to the gateway
// with OAuth 2.1: the authorization-code flow with PKCE (S256, always), a
// state that is single-use, expires, and is bound to the user and to the
// browser that started the flow, and tokens kept through a Store (the vault
// seals them under the user) and refreshed before they expire.
//
// For a remote MCP server it follows the MCP authorization specification:
// the server's protected resource metadata (RFC 9728) names its
// authorization server, whose metadata is discovered (RFC 8414, then OpenID
// Connect Discovery) and checked (same issuer, PKCE announced); the client
// is pre-registered, or the gateway's client ID metadata document where the
// server supports it, or a dynamic registration (RFC 7591) kept per
// authorization server; every authorization and token request carries the
// server's URL as its resource (RFC 8707); the issuer of the authorization
// response is checked (RFC 9207). For a provider whose child needs a token
// for some API, the authorization server's issuer or its endpoints can be
// given instead.
//
// A refresh the authorization server refuses (a revoked or expired refresh
// token) marks the connection expired: OnEvent hears of it, Token returns
// an EUNAUTHORIZED error, and the user must connect again. A refresh that
// fails for a passing reason is retried, and the old token is used while it
// lasts. Token values never reach a log or an error; each one is given to
// the Redactor before it is used.
//
// golang.org/x/oauth2 builds the authorization URL, the PKCE verifier and
// challenge, and exchanges the code (its client-authentication styles and
// error parsing are well tested); refresh is a request of this package's
// own, because x/oauth2 cannot add the resource parameter to it.
package oauth
