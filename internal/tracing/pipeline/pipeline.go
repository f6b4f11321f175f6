// Package pipeline builds the gateway's OpenTelemetry trace pipeline: the
// resource (service name, version, replica), the sampler, an OTLP exporter
// over HTTP (protobuf) or gRPC, and a bounded batch processor, so that an
// exporter that fails, hangs or cannot keep up drops spans instead of
// slowing or failing a call.
//
// Settings come from the gateway's configuration where it gives them, and
// otherwise from the standard OTEL_* environment variables, which the
// OpenTelemetry SDK reads itself (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER, OTEL_BSP_*,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, …).
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Protocols of the OTLP exporter, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// DefaultServiceName is service.name when neither the configuration nor
// the environment gives one.
const DefaultServiceName = "switchboard"

// Config configures a Pipeline. Zero fields defer to the OTEL_* environment
// variables and then to the SDK's defaults.
type Config struct {
	// Protocol is ProtocolHTTP or ProtocolGRPC; "" reads
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL,
	// else ProtocolHTTP.
	Protocol string
	// Endpoint is the receiver's URL (http:// for plaintext, https:// for
	// TLS). Over HTTP, a URL without a path gets /v1/traces, as
	// OTEL_EXPORTER_OTLP_ENDPOINT does; over gRPC only the host and port
	// count. "" reads the environment, else the SDK's default
	// (localhost:4318 or localhost:4317).
	Endpoint string
	// Headers are sent with every export (already resolved: they may hold
	// credentials, which the caller keeps out of logs).
	Headers map[string]string
	// SampleRatio, when set, samples that fraction of new traces and
	// follows the client's decision for traces a client started
	// (parent-based). Nil reads OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG, else samples everything.
	SampleRatio *float64
	// ServiceName is service.name; "" reads OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES, else DefaultServiceName.
	ServiceName string
	// ServiceVersion is service.version.
	ServiceVersion string
	// Replica is service.instance.id when ResourceAttributes and the
	// environment give none (the host name when empty).
	Replica string
	// ResourceAttributes are added to the resource and win over the
	// environment's.
	ResourceAttributes map[string]string
	// Timeout bounds one export (and the batch processor's wait for it); 0
	// reads OTEL_EXPORTER_OTLP_TIMEOUT, else 10 s.
	Timeout time.Duration
	// MaxQueue bounds the spans waiting for export; past it new spans are
	// dropped. 0 reads OTEL_BSP_MAX_QUEUE_SIZE, else 2048.
	MaxQueue int
	// BatchDelay is the longest a finished span waits before export; 0
	// reads OTEL_BSP_SCHEDULE_DELAY, else 5 s.
	BatchDelay time.Duration
	// OnError receives the pipeline's failures (exports that failed,
	// dropped spans), at most one a minute after the first, with how many
	// were not reported since. Nil drops them.
	OnError func(err error, suppressed int)
}

// Pipeline is a running trace pipeline.
type Pipeline struct {
	tp       *sdktrace.TracerProvider
	protocol string
	endpoint string
}

// New builds the pipeline. It does not contact the receiver: an
// unreachable one costs spans, not startup.
func New(ctx context.Context, cfg Config) (*Pipeline, error) {
	protocol := cfg.Protocol
	if protocol == "" {
		protocol = firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol == "" {
		protocol = ProtocolHTTP
	}
	var exp *otlptrace.Exporter
	var err error
	endpoint := cfg.Endpoint
	switch protocol {
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if endpoint != "" {
			u, err := httpTracesURL(endpoint)
			if err != nil {
				return nil, err
			}
			endpoint = u
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
		}
		if cfg.Timeout > 0 {
			opts = append(opts, otlptracehttp.WithTimeout(cfg.Timeout))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			if _, err := parseURL(endpoint); err != nil {
				return nil, err
			}
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		if cfg.Timeout > 0 {
			opts = append(opts, otlptracegrpc.WithTimeout(cfg.Timeout))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("starting the trace exporter: unknown OTLP protocol %q (want %q or %q)", protocol, ProtocolHTTP, ProtocolGRPC)
	}
	if err != nil {
		return nil, fmt.Errorf("starting the %s trace exporter: %w", protocol, err)
	}
	res, err := buildResource(ctx, cfg)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	var bsp []sdktrace.BatchSpanProcessorOption
	if cfg.MaxQueue > 0 {
		bsp = append(bsp, sdktrace.WithMaxQueueSize(cfg.MaxQueue), sdktrace.WithMaxExportBatchSize(min(512, cfg.MaxQueue)))
	}
	if cfg.BatchDelay > 0 {
		bsp = append(bsp, sdktrace.WithBatchTimeout(cfg.BatchDelay))
	}
	if cfg.Timeout > 0 {
		bsp = append(bsp, sdktrace.WithExportTimeout(cfg.Timeout))
	}
	opts := []sdktrace.TracerProviderOption{
		// Not WithBlocking: a full queue drops spans, it never makes a
		// call wait.
		sdktrace.WithBatcher(exp, bsp...),
		sdktrace.WithResource(res),
	}
	if cfg.SampleRatio != nil {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*cfg.SampleRatio))))
	}
	if cfg.OnError != nil {
		otel.SetErrorHandler(newLimitedHandler(cfg.OnError, time.Minute))
	}
	return &Pipeline{tp: sdktrace.NewTracerProvider(opts...), protocol: protocol, endpoint: endpoint}, nil
}

// TracerProvider returns the provider the gateway's tracer comes from.
func (p *Pipeline) TracerProvider() trace.TracerProvider { return p.tp }

// Protocol returns the exporter's protocol.
func (p *Pipeline) Protocol() string { return p.protocol }

// Endpoint returns the configured receiver URL, or "" when it comes from
// the environment or the SDK's default.
func (p *Pipeline) Endpoint() string { return p.endpoint }

// Shutdown exports what is queued and stops the pipeline, giving up when ctx
// ends (a receiver that is down must not hold the gateway's shutdown).
func (p *Pipeline) Shutdown(ctx context.Context) error {
	return p.tp.Shutdown(ctx)
}

// Enabled reports whether tracing is on: configured (non-nil) wins;
// otherwise OTEL_TRACES_EXPORTER=otlp turns it on. OTEL_SDK_DISABLED=true
// turns it off whatever the configuration says. why says what decided.
func Enabled(configured *bool, getenv func(string) string) (on bool, why string) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, "OTEL_SDK_DISABLED=true"
	}
	if configured != nil {
		return *configured, "tracing.enabled"
	}
	switch v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); v {
	case "":
		return false, "default"
	case "otlp":
		return true, "OTEL_TRACES_EXPORTER=otlp"
	default:
		return false, "OTEL_TRACES_EXPORTER=" + v + " (only otlp is supported)"
	}
}

// httpTracesURL is the URL an HTTP exporter posts to: endpoint, with
// /v1/traces when it has no path.
func httpTracesURL(endpoint string) (string, error) {
	u, err := parseURL(endpoint)
	if err != nil {
		return "", err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// parseURL checks an endpoint URL: http or https, with a host.
func parseURL(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("parsing the tracing endpoint: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("parsing the tracing endpoint %q: want http://host:port or https://host:port", endpoint)
	}
	return u, nil
}

// buildResource is the resource spans are exported with: defaults
// (service.name, service.version, service.instance.id), then the
// environment's, then the configuration's, each winning over the last.
func buildResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	defaults := []attribute.KeyValue{attribute.String("service.name", DefaultServiceName)}
	if cfg.ServiceVersion != "" {
		defaults = append(defaults, attribute.String("service.version", cfg.ServiceVersion))
	}
	replica := cfg.Replica
	if replica == "" {
		replica, _ = os.Hostname()
	}
	if replica != "" {
		defaults = append(defaults, attribute.String("service.instance.id", replica))
	}
	var explicit []attribute.KeyValue
	for k, v := range cfg.ResourceAttributes {
		explicit = append(explicit, attribute.String(k, v))
	}
	if cfg.ServiceName != "" {
		explicit = append(explicit, attribute.String("service.name", cfg.ServiceName))
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(defaults...),
		resource.WithFromEnv(),
		resource.WithAttributes(explicit...),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("building the trace resource: %w", err)
	}
	return res, nil
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return ""
}

// limitedHandler passes OpenTelemetry's errors on, the first at once and
// then at most one per interval, with the count of those it held back: a
// receiver that is down fails every export.
type limitedHandler struct {
	fn       func(error, int)
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newLimitedHandler(fn func(error, int), interval time.Duration) *limitedHandler {
	return &limitedHandler{fn: fn, interval: interval}
}

// Handle implements otel.ErrorHandler.
func (h *limitedHandler) Handle(err error) {
	h.mu.Lock()
	now := time.Now()
	if !h.last.IsZero() && now.Sub(h.last) < h.interval {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	n := h.suppressed
	h.last, h.suppressed = now, 0
	h.mu.Unlock()
	h.fn(err, n)
}

// Describe says where spans go, for the startup log.
func (p *Pipeline) Describe() string {
	ep := p.endpoint
	if ep == "" {
		ep = "from the environment or the SDK default"
	}
	return p.protocol + " " + ep
}
