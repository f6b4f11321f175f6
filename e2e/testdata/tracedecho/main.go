// Command tracedecho is a small stdio MCP server for the tracing tests: an
// instrumented provider. Its tool "trace" answers with the W3C trace context
// it found in the request's params._meta (traceparent and tracestate, as JSON
// text), and, when OTEL_EXPORTER_OTLP_ENDPOINT is set, records a span of its
// own ("provider work") under that context and exports it over OTLP/HTTP
// before answering, so the gateway's trace continues into the provider.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func main() {
	var tracer trace.Tracer
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			os.Stderr.WriteString("tracedecho: " + err.Error() + "\n")
			os.Exit(1)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		defer tp.Shutdown(context.Background())
		tracer = tp.Tracer("tracedecho")
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := json.NewEncoder(os.Stdout)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			handle(out, line, tracer)
		}
		if err != nil {
			return
		}
	}
}

func handle(out *json.Encoder, line []byte, tracer trace.Tracer) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			ProtocolVersion string `json:"protocolVersion"`
			Meta            struct {
				TraceParent string `json:"traceparent"`
				TraceState  string `json:"tracestate"`
			} `json:"_meta"`
		} `json:"params"`
	}
	if json.Unmarshal(line, &m) != nil || len(m.ID) == 0 {
		return // notifications and garbage
	}
	var result any
	switch m.Method {
	case "initialize":
		result = map[string]any{
			"protocolVersion": m.Params.ProtocolVersion,
			"capabilities":    map[string]any{"tools": map[string]any{}},
			"serverInfo":      map[string]any{"name": "tracedecho", "version": "1"},
		}
	case "tools/list":
		result = map[string]any{"tools": []any{map[string]any{
			"name": "trace", "description": "Returns the trace context the request carried in _meta.",
			"inputSchema": map[string]any{"type": "object"},
		}}}
	case "tools/call":
		got, _ := json.Marshal(map[string]string{"traceparent": m.Params.Meta.TraceParent, "tracestate": m.Params.Meta.TraceState})
		if tracer != nil {
			carrier := propagation.MapCarrier{"traceparent": m.Params.Meta.TraceParent, "tracestate": m.Params.Meta.TraceState}
			ctx := propagation.TraceContext{}.Extract(context.Background(), carrier)
			_, sp := tracer.Start(ctx, "provider work", trace.WithSpanKind(trace.SpanKindServer))
			sp.End() // exported before the answer (a syncer)
		}
		result = map[string]any{"content": []any{map[string]any{"type": "text", "text": string(got)}}}
	default:
		_ = out.Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32601, "message": "method not found"}})
		return
	}
	_ = out.Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
}
