package auth

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// The server sets no ReadTimeout: a whole-request deadline would also end
// long answers (an SSE stream, a slow tool call), because net/http cancels a
// request's context when its background read of the connection times out.
// Instead each request gets a read deadline in two steps: a short one until it
// is authenticated (PreAuthDeadline), then, for an authenticated request with a
// body, one long enough for that body (BodyDeadline), cleared once the body
// has been read to its end.

// PreAuthDeadline sets the connection's read deadline to d from now for every
// request. Wrap the server's whole handler with it, so that public routes
// (/healthz, metadata, unknown paths) are bounded too. Nothing before
// RequireAuth reads the body, and a refusal cuts the deadline to RefusalDrain
// and closes the connection (see refuse), so an unauthenticated request waits
// for no body; this deadline bounds what net/http itself reads after a public
// route's answer (it drains an unread body of up to 256 KiB when a handler
// returns).
func PreAuthDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = setReadDeadline(w, time.Now().Add(d))
			next.ServeHTTP(w, r)
		})
	}
}

// BodyDeadline runs right after RequireAuth. An authenticated request without
// a body has the pre-authentication deadline lifted, so a long-lived stream is
// never cut by it. One with a body gets d from now to deliver it (size d for
// the largest body allowed at the slowest rate you accept); once the body has
// been read to its end the deadline is lifted too. A body that has not arrived
// by then fails the handler's read with a timeout, and the server closes the
// connection.
func BodyDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
				_ = setReadDeadline(w, time.Time{})
				next.ServeHTTP(w, r)
				return
			}
			if err := setReadDeadline(w, time.Now().Add(d)); errors.Is(err, http.ErrNotSupported) {
				next.ServeHTTP(w, r)
				return
			}
			r2 := new(http.Request)
			*r2 = *r
			r2.Body = &deadlineBody{ReadCloser: r.Body, w: w}
			next.ServeHTTP(w, r2)
		})
	}
}

// deadlineBody lifts the connection's read deadline when the body reaches its
// end. On any other error it leaves the deadline, so whatever the server reads
// afterwards fails at once and the connection is closed.
type deadlineBody struct {
	io.ReadCloser
	w    http.ResponseWriter
	once sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(func() { _ = setReadDeadline(b.w, time.Time{}) })
	}
	return n, err
}

// setReadDeadline sets the connection's read deadline through w: directly on
// net/http's own writer, which has the method (as http.ResponseController
// documents), or through a ResponseController for a wrapped one. Creating a
// ResponseController costs an allocation, and every request sets the
// deadline two or three times.
func setReadDeadline(w http.ResponseWriter, t time.Time) error {
	if d, ok := w.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return http.NewResponseController(w).SetReadDeadline(t)
}
