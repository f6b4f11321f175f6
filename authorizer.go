package switchboard

import "context"

// Authorizer supplies the credentials that requests to a remote provider
// (one reached over HTTP rather than run as a child) carry: an OAuth bearer
// token of the gateway's, or of the user whose instance it is. The oauth
// package implements it; the remote package calls it before every HTTP
// request. Implementations are safe for concurrent use, and never log the
// values they return.
type Authorizer interface {
	// Authorization returns the value of the Authorization header of the
	// next request ("Bearer <token>"), or "" to send none. It may refresh a
	// token that is about to expire. An EUNAUTHORIZED error means that no
	// credential can be had without the user (the connection expired or was
	// never made).
	Authorization(ctx context.Context) (string, error)
	// Rejected is called when the server answered 401 to a request that
	// carried the header value sent. challenge is the response's
	// WWW-Authenticate header. Rejected returns nil when a retry may succeed
	// (a fresh token is ready), or an EUNAUTHORIZED error.
	Rejected(ctx context.Context, sent, challenge string) error
}
