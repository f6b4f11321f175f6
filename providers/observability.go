package providers

import (
	"math"
	"net/url"
	"sort"
	"strings"

	"github.com/switchboard-mcp/switchboard"
)

// TracingConfig configures OpenTelemetry tracing (off by default). Unset
// fields fall back to the standard OTEL_* environment variables, then to
// the OpenTelemetry SDK's defaults. It takes effect at restart.
type TracingConfig struct {
	// Enabled turns tracing on or off. Unset, OTEL_TRACES_EXPORTER=otlp
	// turns it on; OTEL_SDK_DISABLED=true turns it off whatever this says.
	Enabled *bool `yaml:"enabled"`
	// Protocol is the OTLP transport: http/protobuf or grpc.
	Protocol string `yaml:"protocol"`
	// Endpoint is the receiver's URL: http:// (plaintext) or https://
	// (TLS). Over http/protobuf a URL without a path gets /v1/traces.
	Endpoint string `yaml:"endpoint"`
	// Headers go with every export. A value may be a ${secret:NAME} or
	// ${env:NAME} reference (for credentials), or a literal.
	Headers map[string]string `yaml:"headers"`
	// SampleRatio is the fraction of new traces recorded, from 0 to 1;
	// a trace the client sampled, or not, is followed either way.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name resource attribute (default
	// switchboard).
	ServiceName string `yaml:"service_name"`
	// ResourceAttributes are added to every span's resource (for example
	// service.instance.id, which defaults to the host name, or
	// deployment.environment.name).
	ResourceAttributes map[string]string `yaml:"resource_attributes"`
	// Timeout bounds one export.
	Timeout Duration `yaml:"timeout"`
	// MaxQueue bounds the finished spans waiting for export; more are
	// dropped, never waited for.
	MaxQueue int `yaml:"max_queue"`
	// BatchDelay is the longest a finished span waits to be exported.
	BatchDelay Duration `yaml:"batch_delay"`
}

// MetricsConfig configures the Prometheus metrics.
type MetricsConfig struct {
	// PrincipalLabel adds per-principal call counters
	// (switchboard_principal_tool_calls_total and the bytes counter).
	PrincipalLabel bool `yaml:"principal_label"`
	// MaxPrincipals caps the distinct principals that get their own
	// series; calls of the others are counted under "_other".
	MaxPrincipals int `yaml:"max_principals"`
}

// DefaultMaxPrincipals is metrics.max_principals when unset.
const DefaultMaxPrincipals = 100

// MaxPrincipalsLimit is the largest metrics.max_principals accepted.
const MaxPrincipalsLimit = 10000

func (c *Config) applyObservabilityDefaults() {
	if c.Metrics.PrincipalLabel && c.Metrics.MaxPrincipals == 0 {
		c.Metrics.MaxPrincipals = DefaultMaxPrincipals
	}
}

// validateObservability checks the tracing and metrics sections.
func (c *Config) validateObservability(add func(path, format string, args ...any)) {
	t := c.Tracing
	switch t.Protocol {
	case "", "http/protobuf", "grpc":
	default:
		add("tracing.protocol", "tracing.protocol %q must be http/protobuf or grpc", t.Protocol)
	}
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			add("tracing.endpoint", "tracing.endpoint %q must be a URL like http://collector:4318 or https://collector:4317 (credentials go in tracing.headers)", t.Endpoint)
		}
	}
	if r := t.SampleRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		add("tracing.sample_ratio", "tracing.sample_ratio must be a number from 0 to 1")
	}
	if t.Timeout < 0 || t.BatchDelay < 0 || t.MaxQueue < 0 {
		add("tracing", "tracing: timeout, batch_delay and max_queue must not be negative")
	}
	names := make([]string, 0, len(t.Headers))
	for k := range t.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		path := "tracing.headers." + k
		if !headerNameRe.MatchString(k) {
			add(path, "tracing.headers: %q is not a valid header name", k)
		}
		ref, err := ParseEnvValue(t.Headers[k])
		if err != nil {
			add(path, "tracing.headers.%s: %v", k, err)
			continue
		}
		if ref.Kind == RefSecret && !secretNameRe.MatchString(ref.Name) {
			add(path, "tracing.headers.%s: secret name %q must match [A-Za-z_][A-Za-z0-9_]*", k, ref.Name)
		} else if ref.Kind == RefSecret && switchboard.ReservedSecretName(ref.Name) {
			add(path, "tracing.headers.%s: secret name %q is reserved: names starting with %s belong to the gateway's internal keys", k, ref.Name, switchboard.ReservedSecretPrefix)
		}
		if ref.Kind == RefLiteral && strings.ContainsAny(t.Headers[k], "\r\n") {
			add(path, "tracing.headers.%s: a header value cannot hold a line break", k)
		}
	}
	for k, v := range t.ResourceAttributes {
		if strings.TrimSpace(k) == "" || v == "" {
			add("tracing.resource_attributes", "tracing.resource_attributes: names and values must not be empty")
			break
		}
	}
	m := c.Metrics
	if m.MaxPrincipals < 0 || m.MaxPrincipals > MaxPrincipalsLimit {
		add("metrics.max_principals", "metrics.max_principals must be from 1 to %d", MaxPrincipalsLimit)
	}
	if !m.PrincipalLabel && m.MaxPrincipals != 0 {
		add("metrics.max_principals", "metrics.max_principals needs metrics.principal_label: true")
	}
}
