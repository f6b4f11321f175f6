package tracing

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard"
)

// MustTracer returns a Tracer that records every span into the returned
// recorder.
func MustTracer(tb testing.TB) (*Tracer, *tracetest.SpanRecorder) {
	tb.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return New(tp), rec
}

const (
	clientParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	headerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)

func ended(rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	for _, s := range rec.Ended() {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func TestNilTracerIsOff(t *testing.T) {
	var tr *Tracer
	ctx := context.Background()
	if got, sp := tr.Start(ctx, "x"); got != ctx || sp.IsRecording() {
		t.Error("a nil Tracer started a span")
	}
	if _, _, ok := tr.StartClient(ctx, "x"); ok {
		t.Error("a nil Tracer started a client span")
	}
	tr.Policy(ctx, time.Now(), true, "p__t")
	if ctx2, q := tr.StartRequest(ctx, httptest.NewRequest("POST", "/mcp", nil), "/mcp"); q != nil || ctx2 != ctx {
		t.Error("a nil Tracer began a request")
	}
	var q *Request
	if q.Begin(ctx, clientParent, "", "tools/call") != ctx || q.TraceID() != "" {
		t.Error("a nil Request did something")
	}
	q.End(200)
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := tr.Middleware("/mcp")(h); got == nil {
		t.Error("no handler")
	}
	authn := func(*http.Request) (*switchboard.Principal, bool, error) { return nil, false, nil }
	if tr.WrapAuth(authn) == nil {
		t.Error("no authenticator")
	}
}

func TestAppendMetaIsValidJSONAndParsesBack(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=a,other=b")
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{0xab, 1}, SpanID: [8]byte{0xcd, 2}, TraceFlags: trace.FlagsSampled, TraceState: ts})
	meta := AppendMeta(nil, trace.ContextWithSpanContext(context.Background(), sc))
	var m map[string]string
	if err := json.Unmarshal(append(append([]byte{'{'}, meta...), '}'), &m); err != nil {
		t.Fatalf("%s: %v", meta, err)
	}
	if m["traceparent"] != "00-ab010000000000000000000000000000-cd02000000000000-01" || m["tracestate"] != "vendor=a,other=b" {
		t.Errorf("meta %s", meta)
	}
	back := ParseTraceContext(m["traceparent"], m["tracestate"])
	if back.TraceID() != sc.TraceID() || back.SpanID() != sc.SpanID() || !back.IsSampled() || back.TraceState().String() != "vendor=a,other=b" {
		t.Errorf("parsed back %v", back)
	}
	if got := AppendMeta([]byte("x"), context.Background()); string(got) != "x" {
		t.Errorf("without a span: %q", got)
	}
}

func TestParseTraceContext(t *testing.T) {
	for _, tc := range []struct {
		name, parent, state string
		valid               bool
	}{
		{"valid", clientParent, "", true},
		{"empty", "", "", false},
		{"upper case hex", strings.ToUpper(clientParent), "", false},
		{"zero trace id", "00-00000000000000000000000000000000-b7ad6b7169203331-01", "", false},
		{"short", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71-01", "", false},
		{"bad tracestate is dropped, parent kept", clientParent, "not a tracestate!!", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseTraceContext(tc.parent, tc.state); got.IsValid() != tc.valid {
				t.Errorf("valid = %v, want %v", got.IsValid(), tc.valid)
			}
		})
	}
}

// TestRequestParentsAndAuth: the server span starts when the request
// arrived, is parented by _meta's trace context over the headers', and has
// authentication as a child with the times it ran.
func TestRequestParentsAndAuth(t *testing.T) {
	for _, tc := range []struct {
		name       string
		header     string
		meta       string
		wantParent string // span id
		wantTrace  string
	}{
		{"meta wins over header", headerParent, clientParent, "b7ad6b7169203331", "0af7651916cd43dd8448eb211c80319c"},
		{"header alone", headerParent, "", "00f067aa0ba902b7", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"meta alone", "", clientParent, "b7ad6b7169203331", "0af7651916cd43dd8448eb211c80319c"},
		{"bad meta falls back to header", headerParent, "garbage", "00f067aa0ba902b7", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"none: a new trace", "", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, rec := MustTracer(t)
			var traceID string
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// What the edge's authentication does.
				authn := tr.WrapAuth(func(*http.Request) (*switchboard.Principal, bool, error) {
					time.Sleep(2 * time.Millisecond)
					return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "alice", Method: "api_key"}, true, nil
				})
				if _, ok, _ := authn(r); !ok {
					t.Error("auth failed")
				}
				// What the mux does once it parsed the message.
				ctx := switchboard.NewContextWithRequestID(r.Context(), "req-1")
				ctx = RequestFrom(ctx).Begin(ctx, tc.meta, "", "tools/call")
				_, sp := tr.Start(ctx, "inner")
				sp.End()
				traceID = RequestFrom(ctx).TraceID()
				w.WriteHeader(http.StatusTeapot)
			})
			req := httptest.NewRequest("POST", "/mcp", strings.NewReader("{}"))
			if tc.header != "" {
				req.Header.Set("traceparent", tc.header)
			}
			before := time.Now()
			tr.Middleware("/mcp")(h).ServeHTTP(httptest.NewRecorder(), req)

			srv, auth, inner := ended(rec, "POST /mcp"), ended(rec, "authenticate"), ended(rec, "inner")
			if srv == nil || auth == nil || inner == nil {
				t.Fatalf("spans %v", rec.Ended())
			}
			if tc.wantTrace != "" {
				if srv.SpanContext().TraceID().String() != tc.wantTrace || srv.Parent().SpanID().String() != tc.wantParent || !srv.Parent().IsRemote() {
					t.Errorf("server span in trace %s under %s, want trace %s under %s", srv.SpanContext().TraceID(), srv.Parent().SpanID(), tc.wantTrace, tc.wantParent)
				}
			} else if srv.Parent().IsValid() {
				t.Errorf("server span has a parent %v, want a new trace", srv.Parent())
			}
			if traceID != srv.SpanContext().TraceID().String() {
				t.Errorf("TraceID() = %q, want %s", traceID, srv.SpanContext().TraceID())
			}
			for _, s := range []sdktrace.ReadOnlySpan{auth, inner} {
				if s.Parent().SpanID() != srv.SpanContext().SpanID() {
					t.Errorf("%s is not a child of the server span", s.Name())
				}
			}
			if srv.StartTime().Before(before) || auth.StartTime().Before(srv.StartTime()) || auth.EndTime().Sub(auth.StartTime()) < 2*time.Millisecond {
				t.Errorf("times: server %v, auth %v..%v", srv.StartTime(), auth.StartTime(), auth.EndTime())
			}
			if srv.SpanKind() != trace.SpanKindServer {
				t.Errorf("server span kind %v", srv.SpanKind())
			}
			for k, want := range map[string]string{"http.response.status_code": "418", "mcp.method.name": "tools/call"} {
				if got := attr(srv, k); got != want {
					t.Errorf("server span %s = %q, want %q", k, got, want)
				}
			}
			for k, want := range map[string]string{"switchboard.principal": "user:alice"} {
				if got := attr(auth, k); got != want {
					t.Errorf("auth span %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestRefusedRequestGetsItsSpan: a request the edge refuses before the
// message is read still gets a server span (under the headers' context),
// with the failed authentication and the status.
func TestRefusedRequestGetsItsSpan(t *testing.T) {
	tr, rec := MustTracer(t)
	authn := tr.WrapAuth(func(*http.Request) (*switchboard.Principal, bool, error) { return nil, false, nil })
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok, _ := authn(r); !ok {
			http.Error(w, "no", http.StatusUnauthorized)
		}
	})
	req := httptest.NewRequest("POST", "/mcp/internal", nil)
	req.Header.Set("traceparent", headerParent)
	req.Header.Set("Authorization", "Bearer wrong")
	tr.Middleware("/mcp/internal")(h).ServeHTTP(httptest.NewRecorder(), req)
	srv, auth := ended(rec, "POST /mcp/internal"), ended(rec, "authenticate")
	if srv == nil || auth == nil {
		t.Fatalf("spans %v", rec.Ended())
	}
	if srv.Parent().SpanID().String() != "00f067aa0ba902b7" || attr(srv, "http.response.status_code") != "401" {
		t.Errorf("server span parent %v status %s", srv.Parent(), attr(srv, "http.response.status_code"))
	}
	if attr(auth, "switchboard.auth.result") != "invalid_credentials" || auth.Status().Code.String() != "Error" || attr(auth, "switchboard.principal") != "" {
		t.Errorf("auth span %v %v", auth.Attributes(), auth.Status())
	}
}

func TestStatusWriterKeepsFlushAndController(t *testing.T) {
	rr := httptest.NewRecorder()
	sw := &statusWriter{ResponseWriter: rr}
	if err := http.NewResponseController(sw).Flush(); err != nil {
		t.Fatalf("flush through the wrapper: %v", err)
	}
	if !rr.Flushed || sw.code() != http.StatusOK {
		t.Errorf("flushed %v code %d", rr.Flushed, sw.code())
	}
}

func TestEndMarksOutcome(t *testing.T) {
	tr, rec := MustTracer(t)
	_, ok := tr.Start(context.Background(), "ok")
	End(ok, "ok")
	_, bad := tr.Start(context.Background(), "bad")
	End(bad, "timeout")
	if s := ended(rec, "ok"); s.Status().Code.String() != "Ok" || attr(s, "switchboard.outcome") != "" {
		t.Errorf("ok span: %v %v", s.Status(), s.Attributes())
	}
	if s := ended(rec, "bad"); s.Status().Code.String() != "Error" || attr(s, "error.type") != "timeout" || attr(s, "switchboard.outcome") != "timeout" {
		t.Errorf("failed span: %v %v", s.Status(), s.Attributes())
	}
}

func TestStartClientNeedsAParent(t *testing.T) {
	tr, rec := MustTracer(t)
	if _, _, ok := tr.StartClient(context.Background(), "tools/call"); ok {
		t.Error("a client span without a parent: the gateway's own requests must not be traced")
	}
	ctx, parent := tr.Start(context.Background(), "parent")
	ctx, sp, ok := tr.StartClient(ctx, "tools/call")
	if !ok {
		t.Fatal("no client span under a parent")
	}
	sp.End()
	parent.End()
	s := ended(rec, "tools/call")
	if s.SpanKind() != trace.SpanKindClient || s.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span %v under %v", s.SpanKind(), s.Parent())
	}
	if meta := string(AppendMeta(nil, ctx)); !strings.Contains(meta, sp.SpanContext().SpanID().String()) {
		t.Errorf("meta %s does not name the client span", meta)
	}
}
