package tracing

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard"
)

// Request is the trace of one HTTP request to an MCP endpoint. Its server
// span is started late, once the MCP message is parsed, because the
// client's trace context may be in the message's _meta rather than in the
// HTTP headers; the span still starts when the request arrived, and
// authentication, which ran before, is recorded as a child span with its
// own times. A request refused before the message is read (authentication,
// limits) gets its span, parented by the headers' trace context, when it
// ends.
//
// A Request belongs to the goroutine serving the HTTP request: Auth,
// Begin and End must not run concurrently. The spans it hands out are safe
// for concurrent use.
type Request struct {
	t        *Tracer
	start    time.Time
	method   string // HTTP method
	endpoint string
	header   trace.SpanContext
	span     trace.Span
	ctx      context.Context // the span's context, once begun

	mcpMethod string

	authed     bool
	authStart  time.Time
	authEnd    time.Time
	authResult string
	principal  *switchboard.Principal
}

type requestKey struct{}

// RequestFrom returns the Request in ctx, or nil.
func RequestFrom(ctx context.Context) *Request {
	q, _ := ctx.Value(requestKey{}).(*Request)
	return q
}

// StartRequest begins the trace of an HTTP request to endpoint and returns
// ctx carrying it. The caller must call End once the response is written.
// Off, it returns ctx and nil.
func (t *Tracer) StartRequest(ctx context.Context, r *http.Request, endpoint string) (context.Context, *Request) {
	if t == nil {
		return ctx, nil
	}
	q := &Request{t: t, start: time.Now(), method: r.Method, endpoint: endpoint, header: headerContext(r.Header)}
	return context.WithValue(ctx, requestKey{}, q), q
}

// Middleware traces every request through next as one server span of
// endpoint, with its status.
func (t *Tracer) Middleware(endpoint string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if t == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, q := t.StartRequest(r.Context(), r, endpoint)
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r.WithContext(ctx))
			q.End(sw.code())
		})
	}
}

// Authenticator is how the edge authenticates a request: a principal, or
// false for missing or wrong credentials, or an error for a technical
// failure.
type Authenticator = func(*http.Request) (*switchboard.Principal, bool, error)

// WrapAuth returns authn recording each authentication in the request's
// trace: when it ran, whom it found and how.
func (t *Tracer) WrapAuth(authn Authenticator) Authenticator {
	if t == nil {
		return authn
	}
	return func(r *http.Request) (*switchboard.Principal, bool, error) {
		q := RequestFrom(r.Context())
		if q == nil {
			return authn(r)
		}
		start := time.Now()
		p, ok, err := authn(r)
		q.authed, q.authStart, q.authEnd = true, start, time.Now()
		switch {
		case err != nil:
			q.authResult = "auth_error"
		case !ok || p == nil:
			q.authResult = "invalid_credentials"
			if len(r.Header.Values("Authorization")) == 0 {
				q.authResult = "missing_credentials"
			}
		default:
			q.authResult, q.principal = "ok", p
		}
		return p, ok, err
	}
}

// Begin starts the request's server span, parented by the client's trace
// context: the one in the message's _meta (traceparent, tracestate) when it
// is valid, else the one in the HTTP headers, else none (a new trace). It
// returns ctx carrying the span; a second call returns the same span.
// mcpMethod names the JSON-RPC method. A nil Request returns ctx.
func (q *Request) Begin(ctx context.Context, traceparent, tracestate, mcpMethod string) context.Context {
	if q == nil {
		return ctx
	}
	q.mcpMethod = mcpMethod
	if q.span == nil {
		q.begin(ParseTraceContext(traceparent, tracestate))
	}
	return trace.ContextWithSpan(ctx, q.span)
}

// TraceID returns the request's trace ID once its span has begun and when
// it is sampled, else "".
func (q *Request) TraceID() string {
	if q == nil || q.ctx == nil {
		return ""
	}
	return TraceID(q.ctx)
}

func (q *Request) begin(meta trace.SpanContext) {
	parent := q.header
	if meta.IsValid() {
		parent = meta
	}
	pctx := context.Background()
	if parent.IsValid() {
		pctx = trace.ContextWithRemoteSpanContext(pctx, parent)
	}
	// Each attribute costs about as much as a span of its own (the SDK
	// copies, deduplicates and converts every one), so the span's name
	// carries what it can: the HTTP method and the endpoint ("POST /mcp").
	var opts [3]trace.SpanStartOption
	o := append(opts[:0], kindServer, trace.WithTimestamp(q.start))
	if q.mcpMethod != "" {
		o = append(o, trace.WithAttributes(KeyMCPMethod.String(q.mcpMethod)))
	}
	q.ctx, q.span = q.t.t.Start(pctx, spanName(q.method, q.endpoint), o...)
	if q.authed && q.span.IsRecording() {
		a := KeyAuthResult.String(q.authResult)
		if p := q.principal; p != nil {
			a = KeyPrincipal.String(p.String()) // "user:alice", as the access log writes it
		}
		_, sp := q.t.t.Start(q.ctx, "authenticate", kindInternal, trace.WithTimestamp(q.authStart), trace.WithAttributes(a))
		if q.authResult != "ok" {
			sp.SetStatus(codes.Error, q.authResult)
		}
		sp.End(trace.WithTimestamp(q.authEnd))
	}
}

// End ends the request's server span with the HTTP status (0 means 200),
// beginning it first, parented by the headers' trace context, if nothing
// did. A nil Request does nothing.
func (q *Request) End(status int) {
	if q == nil {
		return
	}
	if q.span == nil {
		q.begin(trace.SpanContext{})
	}
	if !q.span.IsRecording() {
		q.span.End()
		return
	}
	if status == 0 {
		status = http.StatusOK
	}
	// Few attributes: each one is paid for on every call, in the span and
	// in its export. The principal is on the authentication span; the
	// request ID is in the access log line, which names the trace.
	q.span.SetAttributes(KeyHTTPStatus.Int(status))
	if status >= 500 {
		q.span.SetStatus(codes.Error, http.StatusText(status))
	}
	q.span.End()
}

// spanName is the HTTP server span's name, "{method} {route}".
func spanName(method, endpoint string) string {
	switch {
	case method == http.MethodPost && endpoint == string(switchboard.EndpointPublic):
		return "POST /mcp"
	case method == http.MethodPost && endpoint == string(switchboard.EndpointInternal):
		return "POST /mcp/internal"
	}
	return method + " " + endpoint
}

// statusWriter records the status a handler answers with. Unwrap lets
// http.ResponseController reach the connection (flushes, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher for handlers that assert it.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
