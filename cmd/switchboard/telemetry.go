package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchboard-mcp/switchboard"
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
// from the logs.
func (m *Main) openTracing(ctx context.Context) error {
	cfg := m.config().Tracing
	on, why := pipeline.Enabled(cfg.Enabled, m.Getenv)
	if !on {
		m.Log.Debug().Str("reason", why).Msg("tracing off")
		return nil
	}
	headers, err := m.tracingHeaders(cfg)
	if err != nil {
		return err
	}
	pc := pipeline.Config{
		Protocol:           cfg.Protocol,
		Endpoint:           cfg.Endpoint,
		Headers:            headers,
		SampleRatio:        cfg.SampleRatio,
		ServiceName:        cfg.ServiceName,
		ServiceVersion:     version,
		Replica:            m.config().Replica,
		ResourceAttributes: cfg.ResourceAttributes,
		Timeout:            cfg.Timeout.D(),
		MaxQueue:           cfg.MaxQueue,
		BatchDelay:         cfg.BatchDelay.D(),
		OnError: func(err error, suppressed int) {
			m.Log.Warn().Str("error", m.Redactor.String(err.Error())).Int("not_logged_since", suppressed).
				Msg("trace export failing; spans are dropped, calls are not affected")
		},
	}
	p, err := pipeline.New(ctx, pc)
	if err != nil {
		return fmt.Errorf("starting tracing: %w", err)
	}
	m.tel = telemetry{pipe: p, tracer: tracing.New(p.TracerProvider())}
	ev := m.Log.Info().Str("reason", why).Str("exporter", p.Describe())
	if cfg.SampleRatio != nil {
		ev = ev.Float64("sample_ratio", *cfg.SampleRatio)
	}
	ev.Msg("tracing on")
	return nil
}

// tracingHeaders resolves tracing.headers: literals as they are,
// ${secret:NAME} from the vault, ${env:NAME} from the environment.
func (m *Main) tracingHeaders(cfg providers.TracingConfig) (map[string]string, error) {
	if len(cfg.Headers) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		ref, err := providers.ParseEnvValue(v)
		if err != nil {
			return nil, fmt.Errorf("tracing.headers.%s: %w", k, err)
		}
		switch ref.Kind {
		case providers.RefLiteral:
			out[k] = v
		case providers.RefEnv:
			val := m.Getenv(ref.Name)
			m.Redactor.Add(val)
			out[k] = val
		case providers.RefSecret:
			sec, err := m.vault.Get(ref.Name)
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
func (m *Main) tracer() *tracing.Tracer { return m.tel.tracer }

// traced wraps an MCP endpoint's handler (the edge included) in its trace.
func (m *Main) traced(ep switchboard.Endpoint, h http.Handler) http.Handler {
	return m.tel.tracer.Middleware(string(ep))(h)
}

// closeTracing exports the spans still queued, for at most tracingShutdown.
func (m *Main) closeTracing() {
	if m.tel.pipe == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdown)
	defer cancel()
	if err := m.tel.pipe.Shutdown(ctx); err != nil {
		m.Log.Warn().Str("error", m.Redactor.String(err.Error())).Msg("spans not exported at shutdown")
	}
}
