package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/internal/tracing/otlptest"
)

// The client's span, in W3C traceparent form.
const (
	clientTraceID = "0af7651916cd43dd8448eb211c80319c"
	clientSpanID  = "b7ad6b7169203331"
	clientParent  = "00-" + clientTraceID + "-" + clientSpanID + "-01"
	// headerTraceID is the trace a second call carries in its HTTP header
	// only.
	headerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	headerParent  = "00-" + headerTraceID + "-00f067aa0ba902b7-01"
	// canary is an argument value that must appear in no span.
	canary = "canary-argument-value-7f3e"
)

// tracedConfig is a gateway tracing to endpoint over OTLP/HTTP, with the
// instrumented tracedecho provider exporting its own spans to
// providerEndpoint ("": the provider does not export).
func tracedConfig(endpoint, providerEndpoint string) string {
	env := ""
	if providerEndpoint != "" {
		env = fmt.Sprintf(`
    env:
      OTEL_EXPORTER_OTLP_ENDPOINT: %s
      OTEL_SERVICE_NAME: tracedecho`, providerEndpoint)
	}
	return fmt.Sprintf(`
tracing:
  enabled: true
  endpoint: %s
  sample_ratio: 1
  batch_delay: 100ms
  timeout: 10s
  resource_attributes:
    service.instance.id: e2e-replica
providers:
  traced:
    command: $BIN/tracedecho%s
`, endpoint, env)
}

// rawCall is a tools/call in a raw session; meta, when set, is the
// params._meta object.
func rawCall(t testing.TB, s *rawSession, id int, tool, args, meta string, hdr map[string]string) string {
	t.Helper()
	params := `{"name":"` + tool + `","arguments":` + args
	if meta != "" {
		params += `,"_meta":` + meta
	}
	params += "}"
	resp, body := s.do(t, http.MethodPost, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%s}`, id, params), hdr)
	r, ok := parseReply(resp, body)
	if !ok || r.Error != nil {
		t.Fatalf("tools/call %s: %s %s", tool, resp.Status, body)
	}
	text, isErr := callText(r.Result)
	if isErr {
		t.Fatalf("tools/call %s: tool error %s", tool, text)
	}
	return text
}

// TestTraceFollowsOneCallFromClientToProvider: one client call carrying a
// traceparent in _meta yields one trace, parented under the client's span,
// whose spans cover the edge (HTTP, authentication), the policy decision,
// the provider call, the child round trip and the provider's own span; the
// provider saw the same trace ID, under the round trip's span. A second
// call with the traceparent in the HTTP header alone is parented the same
// way. Span attributes carry no argument value; the audit record and the
// access log line of each call carry its trace ID.
func TestTraceFollowsOneCallFromClientToProvider(t *testing.T) {
	t.Parallel()
	rcv, err := otlptest.StartHTTP()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	g := startGateway(t, tracedConfig(rcv.URL, rcv.URL))
	g.waitRunning("traced")
	s := g.rawInit(t, nil)

	got := rawCall(t, s, 2, "traced__trace", `{"secret":"`+canary+`"}`,
		`{"traceparent":"`+clientParent+`","tracestate":"vendor=abc"}`, nil)
	var seen struct{ TraceParent, TraceState string }
	if err := json.Unmarshal([]byte(got), &seen); err != nil {
		t.Fatalf("provider answer %q: %v", got, err)
	}
	if !strings.HasPrefix(seen.TraceParent, "00-"+clientTraceID+"-") || strings.Contains(seen.TraceParent, clientSpanID) {
		t.Fatalf("the provider saw traceparent %q: want the client's trace %s under a span of the gateway's", seen.TraceParent, clientTraceID)
	}
	if seen.TraceState != "vendor=abc" {
		t.Errorf("the provider saw tracestate %q, want the client's vendor=abc", seen.TraceState)
	}
	providerParent := strings.Split(seen.TraceParent, "-")[2]

	want := []string{"POST /mcp", "authenticate", "policy", "tools/call traced__trace", "tools/call", "provider work"}
	spans, ok := rcv.Wait(30*time.Second, func(all []otlptest.Span) bool {
		tr := otlptest.Trace(all, clientTraceID)
		for _, name := range want {
			if otlptest.Named(tr, name) == nil {
				return false
			}
		}
		return true
	})
	tr := otlptest.Trace(spans, clientTraceID)
	if !ok {
		t.Fatalf("the trace lacks spans: want %v, got %v", want, names(tr))
	}
	if n := len(tr); n != len(want) {
		t.Errorf("trace %s has %d spans, want %d: %v", clientTraceID, n, len(want), names(tr))
	}
	srv, auth, pol, call, child, work := otlptest.Named(tr, want[0]), otlptest.Named(tr, want[1]), otlptest.Named(tr, want[2]),
		otlptest.Named(tr, want[3]), otlptest.Named(tr, want[4]), otlptest.Named(tr, want[5])
	for _, c := range []struct {
		span   *otlptest.Span
		parent string
		of     string
	}{
		{srv, clientSpanID, "the client's span"},
		{auth, srv.SpanID, "the HTTP request"},
		{pol, srv.SpanID, "the HTTP request"},
		{call, srv.SpanID, "the HTTP request"},
		{child, call.SpanID, "the provider call"},
		{work, child.SpanID, "the child round trip"},
	} {
		if c.span.ParentID != c.parent {
			t.Errorf("span %q has parent %s, want %s (%s)", c.span.Name, c.span.ParentID, c.parent, c.of)
		}
	}
	if providerParent != child.SpanID {
		t.Errorf("the provider was given parent span %s, want the child round trip's %s", providerParent, child.SpanID)
	}
	if srv.Kind != tracepb.Span_SPAN_KIND_SERVER || child.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("span kinds: HTTP %v, round trip %v", srv.Kind, child.Kind)
	}
	for _, c := range []struct {
		span *otlptest.Span
		key  string
		want string
	}{
		{srv, "http.response.status_code", "200"},
		{srv, "mcp.method.name", "tools/call"},
		{auth, "switchboard.principal", "user:e2e"},
		{pol, "switchboard.policy.decision", "allow"},
		{call, "switchboard.provider", "traced"},
	} {
		if got := c.span.Attrs[c.key]; got != c.want {
			t.Errorf("span %q: %s = %q, want %q", c.span.Name, c.key, got, c.want)
		}
	}
	// Success is the span status OK (an outcome attribute only on failure).
	for _, sp := range []*otlptest.Span{srv, pol, call, child} {
		if sp.Error || sp.Attrs["switchboard.outcome"] != "" {
			t.Errorf("span %q of a successful call: error %v, outcome %q", sp.Name, sp.Error, sp.Attrs["switchboard.outcome"])
		}
	}
	if !call.OK || !child.OK {
		t.Errorf("the provider call and round trip spans' status is not OK: %v %v", call.OK, child.OK)
	}
	for k, want := range map[string]string{"service.name": "switchboard", "service.instance.id": "e2e-replica"} {
		if srv.Resource[k] != want {
			t.Errorf("resource %s = %q, want %q", k, srv.Resource[k], want)
		}
	}
	if srv.Resource["service.version"] == "" || work.Resource["service.name"] != "tracedecho" {
		t.Errorf("resources: gateway %v, provider %v", srv.Resource, work.Resource)
	}
	// The spans nest in time too: authentication within the request, the
	// round trip within the provider call.
	if auth.Start.Before(srv.Start) || auth.End.After(srv.End) || child.Start.Before(call.Start) || child.End.After(call.End) {
		t.Errorf("spans do not nest in time: http %v-%v auth %v-%v call %v-%v child %v-%v",
			srv.Start, srv.End, auth.Start, auth.End, call.Start, call.End, child.Start, child.End)
	}

	// The traceparent in the HTTP header alone.
	rawCall(t, s, 3, "traced__trace", `{}`, "", map[string]string{"traceparent": headerParent})
	spans, ok = rcv.Wait(30*time.Second, func(all []otlptest.Span) bool {
		tr := otlptest.Trace(all, headerTraceID)
		return otlptest.Named(tr, "provider work") != nil && otlptest.Named(tr, "POST /mcp") != nil
	})
	if !ok {
		t.Fatalf("no trace %s from the header's traceparent: %v", headerTraceID, names(otlptest.Trace(spans, headerTraceID)))
	}
	if hs := otlptest.Named(otlptest.Trace(spans, headerTraceID), "POST /mcp"); hs == nil || hs.ParentID != "00f067aa0ba902b7" {
		t.Errorf("the header's call is not parented under the header's span: %+v", hs)
	}

	// No span anywhere carries the argument value.
	for _, sp := range rcv.Spans() {
		for k, v := range sp.Attrs {
			if strings.Contains(v, canary) {
				t.Errorf("span %q attribute %s carries the argument value", sp.Name, k)
			}
		}
	}

	// The audit records and the access log lines carry the trace IDs.
	byTrace := map[string]audit.Record{}
	for _, r := range readAuditDir(t, g.dir+"/data") {
		if r.Type == audit.TypeToolCall {
			byTrace[r.TraceID] = r
		}
	}
	for _, id := range []string{clientTraceID, headerTraceID} {
		r, ok := byTrace[id]
		if !ok {
			t.Errorf("no tool_call audit record with trace_id %s (records by trace: %v)", id, keys(byTrace))
			continue
		}
		if r.ReqBytes == 0 || r.RespBytes == 0 || r.LatencyUS == 0 {
			t.Errorf("audit record %+v lacks sizes or latency", r)
		}
		if g.log.count(func(l logLine) bool { return l.msg() == "mcp request" && l.field("trace_id") == id }) != 1 {
			t.Errorf("no access log line with trace_id %s", id)
		}
	}
}

// TestTracingReceiverDownLeavesCallsUnaffected: with the trace receiver
// refusing connections, or accepting them and never answering, calls
// succeed as fast as ever (far below the export timeout), the failure is
// logged, and the gateway still stops promptly.
func TestTracingReceiverDownLeavesCallsUnaffected(t *testing.T) {
	t.Parallel()
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never read, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String()
	down.Close()

	for _, tc := range []struct{ name, url string }{{"refused", downURL}, {"hanging", "http://" + hang.Addr().String()}} {
		t.Run(tc.name, func(t *testing.T) {
			// An export timeout of 20 s: a call that waited for the exporter
			// would take at least that long.
			// The provider does not export: only the gateway's exporter
			// faces the receiver.
			cfg := strings.Replace(tracedConfig(tc.url, ""), "timeout: 10s", "timeout: 20s\n  max_queue: 16", 1)
			g := startGateway(t, cfg)
			g.waitRunning("traced")
			s := g.rawInit(t, nil)
			const calls = 150
			var slowest time.Duration
			for i := range calls {
				start := time.Now()
				meta := fmt.Sprintf(`{"traceparent":"00-%032x-%016x-01"}`, i+1, i+1)
				rawCall(t, s, i+2, "traced__trace", `{}`, meta, nil)
				slowest = max(slowest, time.Since(start))
			}
			if slowest >= 10*time.Second {
				t.Errorf("the slowest of %d calls took %v with the trace receiver %s: calls waited for the exporter", calls, slowest, tc.name)
			}
			if tc.name == "refused" {
				waitFor(t, 30*time.Second, "an export failure in the log", func() bool {
					return g.log.count(func(l logLine) bool { return strings.HasPrefix(l.msg(), "trace export failing") }) > 0
				})
			}
			start := time.Now()
			if !g.stop(syscall.SIGTERM, 30*time.Second) {
				t.Fatal("the gateway did not stop")
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("stopping took %v with the trace receiver %s", d, tc.name)
			}
		})
	}
}

func names(spans []otlptest.Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name + " (" + s.SpanID + " < " + s.ParentID + ")"
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
