package providers

import (
	"slices"
	"testing"
)

func TestObservabilityConfig(t *testing.T) {
	base := "providers:\n  notes:\n    command: ./bin/notes\n"
	old, err := Parse([]byte(base), "/x/gateway.yaml", "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if old.Tracing.Enabled != nil || old.Metrics.PrincipalLabel || old.Metrics.MaxPrincipals != 0 {
		t.Errorf("defaults: tracing %+v metrics %+v, want both off", old.Tracing, old.Metrics)
	}
	next, err := Parse([]byte(`tracing:
  enabled: true
  protocol: grpc
  endpoint: https://collector:4317
  sample_ratio: 0.25
  headers: {x-api-key: "${secret:OTLP_KEY}", x-tenant: acme}
  resource_attributes: {deployment.environment.name: prod}
  timeout: 5s
  max_queue: 4096
  batch_delay: 1s
metrics:
  principal_label: true
`+base), "/x/gateway.yaml", "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tr := next.Tracing
	if tr.Enabled == nil || !*tr.Enabled || tr.Protocol != "grpc" || *tr.SampleRatio != 0.25 || tr.MaxQueue != 4096 ||
		tr.Headers["x-api-key"] != "${secret:OTLP_KEY}" || tr.Timeout.D().Seconds() != 5 {
		t.Errorf("tracing %+v", tr)
	}
	if !next.Metrics.PrincipalLabel || next.Metrics.MaxPrincipals != DefaultMaxPrincipals {
		t.Errorf("metrics %+v, want the default cap", next.Metrics)
	}
	// Both apply at restart: a reload lists them.
	got := restartOnly(old, next)
	if !slices.Contains(got, "tracing") || !slices.Contains(got, "metrics") {
		t.Errorf("restart-only changes %v, want tracing and metrics", got)
	}
	if k := next.keepRestartOnly(old); k.Tracing.Enabled != nil || k.Metrics.PrincipalLabel {
		t.Errorf("until a restart the old tracing and metrics stay in force: %+v %+v", k.Tracing, k.Metrics)
	}
}
