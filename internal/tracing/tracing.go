// Package tracing is the gateway's OpenTelemetry instrumentation: the spans
// of one request (HTTP, authentication, policy decision, provider call,
// child round trip, list merge), W3C trace context taken from clients (the
// traceparent and tracestate HTTP headers and MCP _meta members) and passed
// to providers in _meta.
//
// A nil *Tracer is off: every function and method returns at once, so a
// gateway without tracing pays one nil check per instrumented step and
// allocates nothing for it.
//
// Attributes carry names (endpoints, methods, providers, tools, principals
// as the audit log names them, outcomes), never argument values, results,
// session IDs or credentials.
package tracing

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard"
)

// ScopeName is the instrumentation scope of the gateway's spans.
const ScopeName = "github.com/switchboard-mcp/switchboard"

// Attribute keys. Those without a "switchboard." prefix follow the
// OpenTelemetry semantic conventions (HTTP, MCP, GenAI tools, errors).
const (
	KeyHTTPStatus    = attribute.Key("http.response.status_code")
	KeyMCPMethod     = attribute.Key("mcp.method.name")
	KeyToolName      = attribute.Key("gen_ai.tool.name")
	KeyErrorType     = attribute.Key("error.type")
	KeyPrincipal     = attribute.Key("switchboard.principal")   // "user:alice", "service:cron"
	KeyAuthResult    = attribute.Key("switchboard.auth.result") // on a failed authentication
	KeyDecision      = attribute.Key("switchboard.policy.decision")
	KeyProvider      = attribute.Key("switchboard.provider")
	KeyInstance      = attribute.Key("switchboard.instance")
	KeyOutcome       = attribute.Key("switchboard.outcome")
	KeyQueued        = attribute.Key("switchboard.queued")
	KeyListItems     = attribute.Key("switchboard.list.items")
	KeyListProviders = attribute.Key("switchboard.list.providers")
)

// KeyValue is an attribute of a span.
type KeyValue = attribute.KeyValue

// Tracer starts the gateway's spans. A nil *Tracer is off.
type Tracer struct {
	t trace.Tracer
}

// New returns a Tracer over tp, or nil (off) when tp is nil.
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{t: tp.Tracer(ScopeName, trace.WithInstrumentationVersion(switchboard.Version))}
}

var (
	allowAttrs   = trace.WithAttributes(KeyDecision.String("allow"))
	kindServer   = trace.WithSpanKind(trace.SpanKindServer)
	kindClient   = trace.WithSpanKind(trace.SpanKindClient)
	kindInternal = trace.WithSpanKind(trace.SpanKindInternal)
)

// Start starts an internal span named name under ctx's span. Off, it
// returns ctx and a span that does nothing.
func (t *Tracer) Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	return t.t.Start(ctx, name, kindInternal, trace.WithAttributes(attrs...))
}

// StartClient starts a client span (a request to a provider's process)
// under ctx's span, but only when ctx carries a span: the gateway's own
// requests to providers (initialize, catalog refreshes) are not traced.
func (t *Tracer) StartClient(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span, bool) {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, noSpan, false
	}
	ctx, sp := t.t.Start(ctx, name, kindClient, trace.WithAttributes(attrs...))
	return ctx, sp, true
}

// Policy records the policy decision on the exposed name of a tool,
// prompt or resource as a finished span from start to now.
func (t *Tracer) Policy(ctx context.Context, start time.Time, allowed bool, exposed string) {
	if t == nil {
		return
	}
	// An allowed call's tool is named by the provider call's span that
	// follows; a denied one has none.
	attrs := allowAttrs
	if !allowed {
		attrs = trace.WithAttributes(KeyDecision.String("deny"), KeyToolName.String(exposed))
	}
	_, sp := t.t.Start(ctx, "policy", kindInternal, trace.WithTimestamp(start), attrs)
	sp.End()
}

// noSpan is the span Start returns when tracing is off.
var noSpan = trace.SpanFromContext(context.Background())

// End ends sp with the gateway's outcome of the step: "ok" sets the span's
// status to OK; any other outcome sets it to Error and adds the outcome as
// switchboard.outcome and error.type. (An attribute added after a span
// starts costs a copy of all of them; success, the common case, adds none.)
func End(sp trace.Span, outcome string) {
	if !sp.IsRecording() {
		sp.End()
		return
	}
	if outcome == "ok" {
		sp.SetStatus(codes.Ok, "")
	} else {
		sp.SetAttributes(KeyOutcome.String(outcome), KeyErrorType.String(outcome))
		sp.SetStatus(codes.Error, outcome)
	}
	sp.End()
}

// TraceID returns the trace ID of ctx's span when it is sampled (the trace
// is being recorded), else "".
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}

// Carry returns dst with src's span, so that work detached from a request
// (a call that outlives it) stays in its trace.
func Carry(dst, src context.Context) context.Context {
	sp := trace.SpanFromContext(src)
	if !sp.SpanContext().IsValid() {
		return dst
	}
	return trace.ContextWithSpan(dst, sp)
}

// AppendMeta appends ctx's span context as the _meta members
// "traceparent":"…" and, when it has one, "tracestate":"…", so that a
// provider continues the trace under ctx's span. It appends nothing when
// ctx has no valid span context.
func AppendMeta(dst []byte, ctx context.Context) []byte {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return dst
	}
	dst = append(dst, `"traceparent":"00-`...)
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = appendHex(dst, tid[:])
	dst = append(dst, '-')
	dst = appendHex(dst, sid[:])
	dst = append(dst, '-')
	dst = appendHex(dst, []byte{byte(sc.TraceFlags())})
	dst = append(dst, '"')
	if ts := sc.TraceState().String(); ts != "" {
		// tracestate is restricted to printable ASCII without '"' or '\\'
		// by trace.ParseTraceState, so it needs no escaping.
		dst = append(dst, `,"tracestate":"`...)
		dst = append(dst, ts...)
		dst = append(dst, '"')
	}
	return dst
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// ParseTraceContext returns the span context in a W3C traceparent and
// tracestate pair, or an invalid one when traceparent is empty or
// malformed (a malformed tracestate is dropped, as the W3C specification
// asks).
func ParseTraceContext(traceparent, tracestate string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	return spanContextOf(metaCarrier{traceparent, tracestate})
}

func spanContextOf(c propagation.TextMapCarrier) trace.SpanContext {
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), c))
}

// metaCarrier holds the two trace context members of an MCP _meta.
type metaCarrier struct{ parent, state string }

func (c metaCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}
func (metaCarrier) Set(string, string) {}
func (metaCarrier) Keys() []string     { return []string{"traceparent", "tracestate"} }

// headerContext returns the trace context of an HTTP request's headers.
func headerContext(h http.Header) trace.SpanContext {
	if len(h["Traceparent"]) == 0 {
		return trace.SpanContext{}
	}
	return spanContextOf(propagation.HeaderCarrier(h))
}
