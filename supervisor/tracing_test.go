package supervisor

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
)

// TestTracedRoundTrip: a call whose context is traced gets a client span
// (the round trip, under the caller's span), and the child receives that
// span's traceparent and the caller's tracestate in params._meta, next to
// the request's own _meta members; a call without a traced context (the
// gateway's own) gets neither.
func TestTracedRoundTrip(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr := tracing.New(tp)

	conn, p := MustConn(t, ConnOptions{})
	l := newLimited(conn, Spec{Key: switchboard.InstanceKey{Provider: "notes", User: "alice"}, Limits: Limits{MaxConcurrent: 1, MaxQueue: 1, CallTimeout: 5 * time.Second}}, &flights{})
	l.tr = tr
	metas := make(chan map[string]any, 2)
	go func() {
		for range 2 {
			m := p.next(t)
			var params struct {
				Meta map[string]any `json:"_meta"`
			}
			_ = json.Unmarshal(m.Params, &params)
			metas <- params.Meta
			p.send(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{}}`)
		}
	}()

	parent := tracing.ParseTraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "v=1")
	ctx, call := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "tools/call notes__read")
	if _, err := l.Call(ctx, &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"read"}`), Progress: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	call.End()
	meta := <-metas
	var rt sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "tools/call" {
			rt = s
		}
	}
	if rt == nil || rt.Parent().SpanID() != call.SpanContext().SpanID() || rt.SpanKind().String() != "client" || rt.Status().Code.String() != "Ok" {
		t.Fatalf("round trip span %v", rt)
	}
	want := "00-0af7651916cd43dd8448eb211c80319c-" + rt.SpanContext().SpanID().String() + "-01"
	if meta["traceparent"] != want || meta["tracestate"] != "v=1" || !strings.HasPrefix(meta["progressToken"].(string), "sb-") {
		t.Errorf("the child got _meta %v, want traceparent %s, the caller's tracestate and its progress token", meta, want)
	}

	// The gateway's own request: no span, no trace context.
	if _, err := l.Call(context.Background(), &switchboard.Request{Method: "ping"}); err != nil {
		t.Fatal(err)
	}
	if meta := <-metas; meta["traceparent"] != nil {
		t.Errorf("an untraced request carried %v", meta)
	}
	if n := len(rec.Ended()); n != 2 {
		t.Errorf("%d spans, want the caller's and one round trip", n)
	}
}
