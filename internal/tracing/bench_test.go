package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/switchboard-mcp/switchboard"
)

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCallSpans is the tracing work of one tools/call at sample ratio
// 1, as the gateway does it (edge, authentication, policy, provider call,
// child round trip, the child's _meta, the trace ID for the audit record),
// exported over OTLP/HTTP to a loopback receiver that discards what it
// gets. cpu-ns/op is the process's CPU time per call, the exporter's
// goroutines (and the receiver's reads) included.
func BenchmarkCallSpans(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxQueueSize(1<<18), sdktrace.WithBatchTimeout(200*time.Millisecond)))
	tr := New(tp)
	p := &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "alice", Method: "api_key"}
	authn := tr.WrapAuth(func(*http.Request) (*switchboard.Principal, bool, error) { return p, true, nil })
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for range b.N {
		ctx, q := tr.StartRequest(context.Background(), req, "/mcp")
		_, _, _ = authn(req.WithContext(ctx))
		ctx = q.Begin(ctx, "", "", "tools/call")
		tr.Policy(ctx, time.Now(), true, "echo__echo")
		cctx, sp := tr.Start(ctx, "tools/call echo__echo", KeyProvider.String("echo"))
		_ = TraceID(cctx)
		kctx, ksp, _ := tr.StartClient(cctx, "tools/call")
		_ = AppendMeta(make([]byte, 0, 96), kctx)
		End(ksp, "ok")
		End(sp, "ok")
		q.End(http.StatusOK)
	}
	b.StopTimer()
	_ = tp.Shutdown(context.Background())
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}
