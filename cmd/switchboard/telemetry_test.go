package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/internal/tracing/otlptest"
)

// TestTracingHeadersFromTheVault: a tracing header that names a vault
// secret is sent to the receiver with the secret's value, which never
// reaches the log; a missing secret stops startup with an error that names
// it.
func TestTracingHeadersFromTheVault(t *testing.T) {
	rcv, err := otlptest.StartHTTP()
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	cfg := `
listen: 127.0.0.1:0
data_dir: ./data
auth: {disabled: true}
tracing:
  enabled: true
  endpoint: ` + rcv.URL + `
  batch_delay: 50ms
  headers:
    x-api-key: "${secret:OTLP_KEY}"
    x-tenant: "${env:TENANT}"
    x-plain: literal
providers: {}
`
	const secret = "otlp-key-canary-91f3"
	g, _ := vaultGateway(t, cfg, map[string]string{"OTLP_KEY": secret}, map[string]string{"TENANT": "acme"})
	if err := g.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v\n%s", err, g.log.String())
	}
	if g.tracer() == nil {
		t.Fatal("tracing is off")
	}
	// A request on /mcp is traced and exported with the headers.
	g.get(t, "/mcp", nil)
	if _, ok := rcv.Wait(10*time.Second, func(s []otlptest.Span) bool { return len(s) > 0 }); !ok {
		t.Fatal("no span exported")
	}
	h := rcv.Header()
	if h.Get("X-Api-Key") != secret || h.Get("X-Tenant") != "acme" || h.Get("X-Plain") != "literal" {
		t.Errorf("export headers %v", h)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(g.log.String(), secret) {
		t.Error("the log shows the tracing header's secret")
	}

	missing, _ := vaultGateway(t, cfg, nil, nil)
	err = missing.Open(context.Background())
	_ = missing.Close()
	if err == nil || !strings.Contains(err.Error(), "tracing.headers.x-api-key: missing secret OTLP_KEY") {
		t.Errorf("Open with the secret missing: %v", err)
	}
}

// TestTracingFromTheEnvironment: without a tracing section,
// OTEL_TRACES_EXPORTER=otlp turns tracing on, and OTEL_SDK_DISABLED=true
// keeps it off even when gateway.yaml enables it.
func TestTracingFromTheEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		env       map[string]string
		on        bool
	}{
		{"off by default", "", nil, false},
		{"on by the exporter variable", "", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"sdk disabled wins", "tracing: {enabled: true}\n", map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := vaultGateway(t, "listen: 127.0.0.1:0\ndata_dir: ./data\nauth: {disabled: true}\n"+tc.cfg+"providers: {}\n", nil, tc.env)
			if err := g.Open(context.Background()); err != nil {
				t.Fatalf("Open: %v\n%s", err, g.log.String())
			}
			defer g.Close()
			if on := g.tracer() != nil; on != tc.on {
				t.Errorf("tracing on = %v, want %v", on, tc.on)
			}
		})
	}
}
