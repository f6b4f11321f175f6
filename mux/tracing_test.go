package mux

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
)

const (
	clientTrace  = "0af7651916cd43dd8448eb211c80319c"
	clientParent = "00-" + clientTrace + "-b7ad6b7169203331-01"
)

func spanNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestTracedCall: with a tracer, a call yields the request's span under
// the client's, a policy span and a provider call span under it; the
// provider is not handed the client's traceparent (the supervisor gives it
// the gateway's); a hidden tool's call has a denying policy span and no
// provider call; the call's trace ID reaches the observer; a list has its
// merge span.
func TestTracedCall(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	g := newTestGateway(t, Options{Tracer: tracing.New(tp)})
	up := g.provider("fs", `[{"name":"read","inputSchema":{"type":"object"}},{"name":"write","inputSchema":{"type":"object"}}]`, "", "", "", `{"tools":{}}`)
	up.call = func(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
		if strings.Contains(string(req.Params), `"write"`) {
			return nil, &switchboard.RPCError{Code: -32000, Message: "disk full"}
		}
		return json.RawMessage(`{"content":[]}`), nil
	}
	c := g.client(t, "alice:fs").open(`{}`)
	result(t, mustCall(c, "tools/call", `{"name":"fs__read","arguments":{"path":"/secret/x"}}`, `"traceparent":"`+clientParent+`","tracestate":"v=1"`))

	if m := up.requests()[0].Meta; len(m) != 0 {
		t.Errorf("with tracing on, the provider was handed %s: the supervisor adds the gateway's own context", m)
	}
	// The request's span ends once the handler returns, after the answer.
	var callSrv sdktrace.ReadOnlySpan
	waitFor(t, 5*time.Second, "the request span", func() bool {
		for _, s := range spanNamed(rec, "POST /mcp") {
			if s.SpanContext().TraceID().String() == clientTrace {
				callSrv = s
			}
		}
		return callSrv != nil
	})
	pol, call := spanNamed(rec, "policy"), spanNamed(rec, "tools/call fs__read")
	if len(pol) != 1 || len(call) != 1 {
		t.Fatalf("spans: %v", rec.Ended())
	}
	if callSrv.Parent().SpanID().String() != "b7ad6b7169203331" {
		t.Fatalf("the request span is under %v, not the client span", callSrv.Parent())
	}
	for _, s := range []sdktrace.ReadOnlySpan{pol[0], call[0]} {
		if s.Parent().SpanID() != callSrv.SpanContext().SpanID() {
			t.Errorf("%s is not under the request span", s.Name())
		}
	}
	if spanAttr(pol[0], "switchboard.policy.decision") != "allow" || spanAttr(call[0], "switchboard.provider") != "fs" ||
		call[0].Status().Code.String() != "Ok" {
		t.Errorf("attributes: policy %v, call %v %v", pol[0].Attributes(), call[0].Attributes(), call[0].Status())
	}
	if ts := call[0].SpanContext().TraceState().String(); ts != "v=1" {
		t.Errorf("tracestate %q, want the client's", ts)
	}
	// The call is recorded after its answer has left.
	waitFor(t, 5*time.Second, "the call's record", func() bool { return len(g.obs.all()) == 1 })
	calls := g.obs.all()
	if calls[0].TraceID != clientTrace {
		t.Errorf("CallInfo.TraceID = %q, want %s", calls[0].TraceID, clientTrace)
	}
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.Emit(), "/secret/x") {
				t.Errorf("span %s carries an argument value in %s", s.Name(), kv.Key)
			}
		}
	}

	// A failing provider: the call span is an error with its outcome.
	mustCall(c, "tools/call", `{"name":"fs__write"}`, "") // a JSON-RPC error from the provider
	if w := spanNamed(rec, "tools/call fs__write"); len(w) != 1 || w[0].Status().Code.String() != "Error" || spanAttr(w[0], "switchboard.outcome") != "error" {
		t.Errorf("failed call span: %v", w)
	}

	// A tool the caller cannot see: denied by policy, no provider call.
	bob := g.client(t, "bob:nobody").open(`{}`)
	_, msgs := bob.call("tools/call", `{"name":"fs__read"}`, "")
	if len(msgs) != 1 || msgs[0].Error == nil {
		t.Fatalf("hidden tool: %v", msgs)
	}
	pol = spanNamed(rec, "policy")
	if last := pol[len(pol)-1]; spanAttr(last, "switchboard.policy.decision") != "deny" || spanAttr(last, "gen_ai.tool.name") != "fs__read" {
		t.Errorf("denial's policy span: %v", last.Attributes())
	}
	if n := len(spanNamed(rec, "tools/call fs__read")); n != 1 {
		t.Errorf("%d provider call spans for fs__read, want only the allowed one", n)
	}

	// A list: its merge span.
	result(t, mustCall(c, "tools/list", `{}`, ""))
	if m := spanNamed(rec, "merge tools/list"); len(m) != 1 || spanAttr(m[0], "switchboard.list.items") != "2" {
		t.Errorf("merge span: %v", m)
	}
}

// TestUntracedCallPassesTheClientsContext: without a tracer, the client's
// traceparent and tracestate go to the provider as they came.
func TestUntracedCallPassesTheClientsContext(t *testing.T) {
	g := newTestGateway(t, Options{})
	up := g.provider("fs", `[{"name":"read","inputSchema":{"type":"object"}}]`, "", "", "", `{"tools":{}}`)
	c := g.client(t, "alice:fs").open(`{}`)
	result(t, mustCall(c, "tools/call", `{"name":"fs__read"}`, `"traceparent":"`+clientParent+`","tracestate":"v=1"`))
	if m := string(up.requests()[0].Meta); m != `"traceparent":"`+clientParent+`","tracestate":"v=1"` {
		t.Errorf("the provider got _meta members %s", m)
	}
	waitFor(t, 5*time.Second, "the call's record", func() bool { return len(g.obs.all()) == 1 })
	if id := g.obs.all()[0].TraceID; id != "" {
		t.Errorf("an untraced call has trace ID %q", id)
	}
}

func mustCall(c *client, method, params, meta string) []msg {
	c.tb.Helper()
	_, msgs := c.call(method, params, meta)
	return msgs
}
