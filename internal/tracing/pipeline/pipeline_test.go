package pipeline

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-mcp/switchboard/internal/tracing/otlptest"
)

func ratio(r float64) *float64 { return &r }

// MustPipeline builds a pipeline and shuts it down at cleanup.
func MustPipeline(tb testing.TB, cfg Config) *Pipeline {
	tb.Helper()
	p, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

func emit(p *Pipeline, name string) trace.SpanContext {
	_, sp := p.TracerProvider().Tracer("test").Start(context.Background(), name)
	sp.End()
	return sp.SpanContext()
}

func TestExportsOverHTTPAndGRPC(t *testing.T) {
	for _, tc := range []struct {
		name     string
		protocol string
		start    func() (*otlptest.Receiver, error)
	}{
		{"http/protobuf", ProtocolHTTP, otlptest.StartHTTP},
		{"grpc", ProtocolGRPC, otlptest.StartGRPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv, err := tc.start()
			if err != nil {
				t.Fatal(err)
			}
			defer rcv.Close()
			p := MustPipeline(t, Config{
				Protocol: tc.protocol, Endpoint: rcv.URL, SampleRatio: ratio(1), BatchDelay: 20 * time.Millisecond,
				ServiceVersion: "1.2.3", Replica: "replica-a",
				ResourceAttributes: map[string]string{"deployment.environment.name": "test"},
				Headers:            map[string]string{"X-Tenant": "acme"},
			})
			sc := emit(p, "one")
			spans, ok := rcv.Wait(10*time.Second, func(s []otlptest.Span) bool { return len(s) >= 1 })
			if !ok {
				t.Fatalf("no span arrived at the %s receiver", tc.protocol)
			}
			s := spans[0]
			if s.Name != "one" || s.TraceID != sc.TraceID().String() || s.SpanID != sc.SpanID().String() {
				t.Errorf("received %+v, want span one of trace %s", s, sc.TraceID())
			}
			for k, want := range map[string]string{
				"service.name": DefaultServiceName, "service.version": "1.2.3", "service.instance.id": "replica-a",
				"deployment.environment.name": "test",
			} {
				if s.Resource[k] != want {
					t.Errorf("resource %s = %q, want %q (resource %v)", k, s.Resource[k], want, s.Resource)
				}
			}
			if tc.protocol == ProtocolHTTP && rcv.Header().Get("X-Tenant") != "acme" {
				t.Errorf("export headers %v lack X-Tenant: acme", rcv.Header())
			}
		})
	}
}

func TestEnvironmentFillsWhatTheConfigLeaves(t *testing.T) {
	rcv, err := otlptest.StartHTTP()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,service.instance.id=env-replica")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	p := MustPipeline(t, Config{ServiceVersion: "v", Replica: "host-default"})
	if p.Protocol() != ProtocolHTTP {
		t.Errorf("protocol %q, want the default %q", p.Protocol(), ProtocolHTTP)
	}
	emit(p, "env")
	spans, ok := rcv.Wait(10*time.Second, func(s []otlptest.Span) bool { return len(s) >= 1 })
	if !ok {
		t.Fatal("no span arrived at the receiver named by OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	res := spans[0].Resource
	if res["service.name"] != "from-env" || res["team"] != "payments" || res["service.instance.id"] != "env-replica" {
		t.Errorf("resource %v: the environment's service name and attributes should win over the defaults", res)
	}

	// The configuration wins over the environment.
	p2 := MustPipeline(t, Config{ServiceName: "from-config", Endpoint: rcv.URL, BatchDelay: 20 * time.Millisecond,
		ResourceAttributes: map[string]string{"team": "search"}})
	emit(p2, "config")
	spans, ok = rcv.Wait(10*time.Second, func(s []otlptest.Span) bool { return otlptest.Named(s, "config") != nil })
	if !ok {
		t.Fatal("no span from the second pipeline")
	}
	res = otlptest.Named(spans, "config").Resource
	if res["service.name"] != "from-config" || res["team"] != "search" {
		t.Errorf("resource %v: the configuration should win over the environment", res)
	}
}

func TestSampleRatioZeroExportsNothingNew(t *testing.T) {
	rcv, err := otlptest.StartHTTP()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	p := MustPipeline(t, Config{Endpoint: rcv.URL, SampleRatio: ratio(0), BatchDelay: 10 * time.Millisecond})
	for range 50 {
		if sc := emit(p, "unsampled"); sc.IsSampled() {
			t.Fatal("a new trace was sampled at ratio 0")
		}
	}
	// A trace the client sampled is followed (parent-based).
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{1}, SpanID: [8]byte{2}, TraceFlags: trace.FlagsSampled, Remote: true})
	_, sp := p.TracerProvider().Tracer("t").Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
	sp.End()
	spans, ok := rcv.Wait(10*time.Second, func(s []otlptest.Span) bool { return len(s) >= 1 })
	if !ok || len(spans) != 1 || spans[0].Name != "child" {
		t.Fatalf("want exactly the client-sampled span exported, got %+v", spans)
	}
}

// TestReceiverDownOrHangingNeverBlocksSpans: with the receiver refusing
// connections, or accepting them and never answering, ending spans never
// waits for the exporter; the queue drops what it cannot hold; failures are
// reported, rate-limited; shutdown gives up when its context ends.
func TestReceiverDownOrHangingNeverBlocksSpans(t *testing.T) {
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	var held sync.WaitGroup
	var conns []net.Conn
	var cmu sync.Mutex
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			cmu.Unlock()
		}
	}()
	defer func() {
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		held.Wait()
	}()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String()
	down.Close()

	for _, tc := range []struct{ name, protocol, url string }{
		{"http down", ProtocolHTTP, downURL},
		{"http hanging", ProtocolHTTP, "http://" + hang.Addr().String()},
		{"grpc down", ProtocolGRPC, downURL},
		{"grpc hanging", ProtocolGRPC, "http://" + hang.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reported atomic.Int64
			p, err := New(context.Background(), Config{Protocol: tc.protocol, Endpoint: tc.url, SampleRatio: ratio(1),
				MaxQueue: 64, BatchDelay: time.Millisecond, Timeout: 30 * time.Second,
				OnError: func(error, int) { reported.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 20_000 { // far more than the queue holds
					emit(p, "dropped")
				}
			}()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("ending spans blocked on an exporter that cannot export")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			err = p.Shutdown(ctx)
			cancel()
			if tc.name == "http hanging" || tc.name == "grpc hanging" {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Logf("shutdown: %v", err)
				}
			}
			if reported.Load() == 0 {
				// The down case fails its exports at once; a hanging
				// receiver may not have failed one before shutdown.
				if tc.name == "http down" {
					t.Error("export failures were not reported")
				}
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name       string
		configured *bool
		env        map[string]string
		want       bool
	}{
		{"off by default", nil, nil, false},
		{"configured on", &yes, nil, true},
		{"configured off wins over the exporter variable", &no, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, false},
		{"exporter variable turns it on", nil, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter none", nil, map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false},
		{"unsupported exporter", nil, map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false},
		{"sdk disabled wins over the config", &yes, map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Enabled(tc.configured, func(k string) string { return tc.env[k] })
			if got != tc.want || why == "" {
				t.Errorf("Enabled = %v (%q), want %v", got, why, tc.want)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"unknown protocol", Config{Protocol: "thrift"}},
		{"endpoint without scheme", Config{Endpoint: "collector:4318"}},
		{"grpc endpoint with a bad scheme", Config{Protocol: ProtocolGRPC, Endpoint: "ftp://collector:4317"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := New(context.Background(), tc.cfg); err == nil {
				_ = p.Shutdown(context.Background())
				t.Fatal("want an error")
			}
		})
	}
}

func TestHTTPTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://c:4318":              "http://c:4318/v1/traces",
		"http://c:4318/":             "http://c:4318/v1/traces",
		"https://c/otlp/v1/traces":   "https://c/otlp/v1/traces",
		"http://127.0.0.1:9/custom/": "http://127.0.0.1:9/custom/",
	} {
		if got, err := httpTracesURL(in); err != nil || got != want {
			t.Errorf("httpTracesURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
