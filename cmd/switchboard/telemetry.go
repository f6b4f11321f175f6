package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/redact"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
	"github.com/switchboard-mcp/switchboard/internal/tracing/pipeline"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/vault"
)

// telemetry is the gateway's trace pipeline; the zero value is off.
type telemetry struct {
	pipe   *pipeline.Pipeline
	tracer *tracing.Tracer // nil: off
}

// tracingShutdown bounds exporting the last spans at shutdown: a receiver
// that is down must not hold the gateway.
const tracingShutdown = 5 * time.Second

// openTracing starts the trace pipeline when tracing is on (tracing in
// gateway.yaml, else the OTEL_* environment). Header references to the
// vault or the environment are resolved here, and their values redacted
// from the logs. Off, it returns the zero telemetry.
func openTracing(ctx context.Context, cfg *providers.Config, v *vault.Vault, getenv func(string) string, r *redact.Redactor, log zerolog.Logger) (telemetry, error) {
	tc := cfg.Tracing
	on, why := pipeline.Enabled(tc.Enabled, getenv)
	if !on {
		log.Debug().Str("reason", why).Msg("tracing off")
		return telemetry{}, nil
	}
	headers, err := tracingHeaders(tc, v, getenv, r)
	if err != nil {
		return telemetry{}, err
	}
	p, err := pipeline.New(ctx, pipeline.Config{
		Protocol:           tc.Protocol,
		Endpoint:           tc.Endpoint,
		Headers:            headers,
		SampleRatio:        tc.SampleRatio,
		ServiceName:        tc.ServiceName,
		ServiceVersion:     version,
		Replica:            cfg.Replica,
		ResourceAttributes: tc.ResourceAttributes,
		Timeout:            tc.Timeout.D(),
		MaxQueue:           tc.MaxQueue,
		BatchDelay:         tc.BatchDelay.D(),
		OnError: func(err error, suppressed int) {
			log.Warn().Str("error", r.String(err.Error())).Int("not_logged_since", suppressed).
				Msg("trace export failing; spans are dropped, calls are not affected")
		},
	})
	if err != nil {
		return telemetry{}, fmt.Errorf("starting tracing: %w", err)
	}
	ev := log.Info().Str("reason", why).Str("exporter", p.Describe())
	if tc.SampleRatio != nil {
		ev = ev.Float64("sample_ratio", *tc.SampleRatio)
	}
	ev.Msg("tracing on")
	return telemetry{pipe: p, tracer: tracing.New(p.TracerProvider())}, nil
}

// tracingHeaders resolves tracing.headers: literals as they are,
// ${secret:NAME} from the vault, ${env:NAME} from the environment.
func tracingHeaders(tc providers.TracingConfig, v *vault.Vault, getenv func(string) string, r *redact.Redactor) (map[string]string, error) {
	if len(tc.Headers) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(tc.Headers))
	for k, val := range tc.Headers {
		ref, err := providers.ParseEnvValue(val)
		if err != nil {
			return nil, fmt.Errorf("tracing.headers.%s: %w", k, err)
		}
		switch ref.Kind {
		case providers.RefLiteral:
			out[k] = val
		case providers.RefEnv:
			env := getenv(ref.Name)
			r.Add(env)
			out[k] = env
		case providers.RefSecret:
			sec, err := v.Get(ref.Name)
			switch {
			case errors.Is(err, vault.ErrNotFound):
				return nil, fmt.Errorf("tracing.headers.%s: missing secret %s (add it with `switchboard secret set %s`)", k, ref.Name, ref.Name)
			case err != nil:
				return nil, fmt.Errorf("tracing.headers.%s: reading secret %s: %w", k, ref.Name, err)
			}
			out[k] = sec.Reveal()
		}
	}
	return out, nil
}

// tracer is the gateway's tracer, or nil when tracing is off.
func (m *Main) tracer() *tracing.Tracer {
	if m.ops == nil {
		return nil
	}
	return m.ops.tel.tracer
}

// traced wraps an MCP endpoint's handler (the edge included) in its trace.
func (m *Main) traced(ep switchboard.Endpoint, h http.Handler) http.Handler {
	return m.tracer().Middleware(string(ep))(h)
}

// close exports the spans still queued, for at most tracingShutdown.
func (t telemetry) close(log zerolog.Logger) {
	if t.pipe == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdown)
	defer cancel()
	if err := t.pipe.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("spans not exported at shutdown")
	}
}
