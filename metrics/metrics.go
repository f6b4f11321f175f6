// Package metrics exposes the gateway's Prometheus metrics from a registry of its own.
//
// Label cardinality is bounded. provider and endpoint come from gateway.yaml
// and the two MCP endpoints. tool comes from providers' catalogs, and a caller
// may name any tool, so at most MaxToolSeries distinct provider/tool pairs get
// their own series; later pairs are counted under tool="_other". outcome is
// capped the same way at maxOutcomes values. Label values are forced to valid
// UTF-8 (client_golang panics otherwise) and cut to 128 bytes.
//
// Per-principal series are opt-in (EnablePrincipals): they carry the
// principal as the audit log names it (principal_kind, principal), and at
// most a configured number of distinct principals get their own series;
// the calls of the others are counted under principal="_other".
package metrics

import (
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchboard-mcp/switchboard"
)

// MaxToolSeries is how many distinct provider/tool pairs get their own tool
// label value; the rest share OtherLabel.
const MaxToolSeries = 1000

// OtherLabel is the label value for series over a cardinality cap.
const OtherLabel = "_other"

const (
	maxOutcomes = 32
	maxLabelLen = 128
)

// states are the ProviderState values exported by the provider_state gauge.
var states = []switchboard.ProviderState{
	switchboard.StateQueued, switchboard.StateStarting, switchboard.StateRunning, switchboard.StateBackoff,
	switchboard.StateFailed, switchboard.StateStopping, switchboard.StateStopped,
}

// Metrics holds the gateway's collectors. Its methods are safe for concurrent
// use and cheap enough for the request path.
type Metrics struct {
	reg *prometheus.Registry

	toolCalls    *prometheus.CounterVec
	toolLatency  *prometheus.HistogramVec
	state        *prometheus.GaugeVec
	up           *prometheus.GaugeVec
	restarts     *prometheus.CounterVec
	sessions     *prometheus.GaugeVec
	reloads      *prometheus.CounterVec
	reloadOK     prometheus.Gauge
	reloadOKTime prometheus.Gauge
	rateLimited  *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	connsRefused *prometheus.CounterVec

	tools    *labelSet
	outcomes *labelSet

	// Per-principal counters, nil until EnablePrincipals.
	principalCalls *prometheus.CounterVec
	principalBytes *prometheus.CounterVec
	principals     *labelSet
}

// New returns Metrics registered on a new registry, with the Go runtime and
// process collectors and a build_info gauge carrying switchboard.Version.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_tool_calls_total",
			Help: "Tool calls by provider, tool and outcome.",
		}, []string{"provider", "tool", "outcome"}),
		toolLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_tool_call_duration_seconds",
			Help:    "Tool call latency by provider, from routing to the child's answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"provider"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_provider_state",
			Help: "1 for the provider instance's current state, 0 for the others.",
		}, []string{"provider", "state"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_provider_up",
			Help: "1 while the provider instance is running and initialized.",
		}, []string{"provider"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_provider_restarts_total",
			Help: "Restarts of the provider instance's process.",
		}, []string{"provider"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_sessions_active",
			Help: "Open MCP sessions by endpoint.",
		}, []string{"endpoint"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_config_reloads_total",
			Help: "Configuration reloads by result (success or failure).",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_config_last_reload_successful",
			Help: "1 if the last configuration load or reload succeeded.",
		}),
		reloadOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load or reload.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_rate_limited_total",
			Help: "Requests refused by a rate limit, by endpoint.",
		}, []string{"endpoint"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_auth_failures_total",
			Help: "Failed authentications, by endpoint.",
		}, []string{"endpoint"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_connections_refused_total",
			Help: "Connections closed on arrival by a connection cap, by cap (per_client or total).",
		}, []string{"cap"}),
		tools:    newLabelSet(MaxToolSeries),
		outcomes: newLabelSet(maxOutcomes),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "switchboard_build_info",
		Help:        "Always 1; the version label is the gateway's version.",
		ConstLabels: prometheus.Labels{"version": label(switchboard.Version)},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(
		m.toolCalls, m.toolLatency, m.state, m.up, m.restarts, m.sessions,
		m.reloads, m.reloadOK, m.reloadOKTime, m.rateLimited, m.authFailures, m.connsRefused, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry, for registering more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Audit exports the audit log's state, read at scrape time:
// switchboard_audit_log_healthy is 1 while records are being written and 0
// while the sink is failing (calls are refused then, unless audit.fail_open),
// and switchboard_audit_records_dropped_total counts records that were never
// written (see audit.Log.Dropped). Call it once, and only with an audit log.
func (m *Metrics) Audit(healthy func() bool, dropped func() uint64) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_audit_log_healthy",
			Help: "1 while audit records are being written, 0 while the audit log's sink is failing.",
		}, func() float64 {
			if healthy() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_audit_records_dropped_total",
			Help: "Audit records that were never written (full queue past the write timeout, or unwritable at shutdown).",
		}, func() float64 { return float64(dropped()) }),
	)
}

// ToolCall counts one finished tools/call and observes its latency. outcome is
// one of the audit outcomes ("ok", "error", "timeout", "denied",
// "rate_limited", "unavailable").
func (m *Metrics) ToolCall(provider, tool, outcome string, d time.Duration) {
	provider = label(provider)
	tool = label(tool)
	if !m.tools.admit(provider, tool) {
		tool = OtherLabel
	}
	outcome = label(outcome)
	if !m.outcomes.admit(outcome, "") {
		outcome = OtherLabel
	}
	m.toolCalls.WithLabelValues(provider, tool, outcome).Inc()
	m.toolLatency.WithLabelValues(provider).Observe(d.Seconds())
}

// EnablePrincipals adds the per-principal call counters,
// switchboard_principal_tool_calls_total{principal_kind, principal,
// provider, outcome} and switchboard_principal_tool_call_bytes_total{
// principal_kind, principal, direction}, with at most max distinct
// principals (kind and ID) of their own; the others share OtherLabel. Call
// it once, before the first PrincipalCall.
func (m *Metrics) EnablePrincipals(max int) {
	m.principalCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_principal_tool_calls_total",
		Help: "Tool calls by principal (capped: the rest count as principal=\"_other\"), provider and outcome.",
	}, []string{"principal_kind", "principal", "provider", "outcome"})
	m.principalBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_principal_tool_call_bytes_total",
		Help: "Bytes of tool-call arguments (direction=request) and answers (direction=response) by principal (capped as the calls are).",
	}, []string{"principal_kind", "principal", "direction"})
	m.principals = newLabelSet(max)
	m.reg.MustRegister(m.principalCalls, m.principalBytes)
}

// PrincipalCall counts one finished tools/call of a principal (kind "user"
// or "service", and ID) with the sizes of its arguments and answer. It does
// nothing unless EnablePrincipals was called.
func (m *Metrics) PrincipalCall(kind, id, provider, outcome string, reqBytes, respBytes int) {
	if m.principalCalls == nil {
		return
	}
	kind, id = label(kind), label(id)
	if !m.principals.admit(kind, id) {
		id = OtherLabel
	}
	outcome = label(outcome)
	if !m.outcomes.admit(outcome, "") {
		outcome = OtherLabel
	}
	m.principalCalls.WithLabelValues(kind, id, label(provider), outcome).Inc()
	m.principalBytes.WithLabelValues(kind, id, "request").Add(float64(reqBytes))
	m.principalBytes.WithLabelValues(kind, id, "response").Add(float64(respBytes))
}

// ProviderState records a provider instance's state. Pass the instance key's
// String() ("fs", or "notes@alice" for a user's own instance) as provider.
func (m *Metrics) ProviderState(provider string, state switchboard.ProviderState) {
	provider = label(provider)
	for _, s := range states {
		v := 0.0
		if s == state {
			v = 1
		}
		m.state.WithLabelValues(provider, string(s)).Set(v)
	}
	up := 0.0
	if state == switchboard.StateRunning {
		up = 1
	}
	m.up.WithLabelValues(provider).Set(up)
}

// ProviderRestart counts one restart of a provider instance.
func (m *Metrics) ProviderRestart(provider string) {
	m.restarts.WithLabelValues(label(provider)).Inc()
}

// RemoveProvider deletes every series of a provider instance that left the
// configuration, so that it stops being reported.
func (m *Metrics) RemoveProvider(provider string) {
	provider = label(provider)
	match := prometheus.Labels{"provider": provider}
	m.toolCalls.DeletePartialMatch(match)
	m.toolLatency.DeletePartialMatch(match)
	m.state.DeletePartialMatch(match)
	m.up.DeletePartialMatch(match)
	m.restarts.DeletePartialMatch(match)
	if m.principalCalls != nil {
		m.principalCalls.DeletePartialMatch(match)
	}
	m.tools.forget(provider)
}

// SessionOpened counts a new MCP session on an endpoint.
func (m *Metrics) SessionOpened(endpoint string) {
	m.sessions.WithLabelValues(label(endpoint)).Inc()
}

// SessionClosed counts an ended MCP session on an endpoint.
func (m *Metrics) SessionClosed(endpoint string) {
	m.sessions.WithLabelValues(label(endpoint)).Dec()
}

// Reload records the result of a configuration load or reload.
func (m *Metrics) Reload(ok bool) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.reloadOK.Set(1)
	m.reloadOKTime.SetToCurrentTime()
}

// RateLimited counts a request refused by a rate limit.
func (m *Metrics) RateLimited(endpoint string) {
	m.rateLimited.WithLabelValues(label(endpoint)).Inc()
}

// AuthFailure counts a failed authentication.
func (m *Metrics) AuthFailure(endpoint string) {
	m.authFailures.WithLabelValues(label(endpoint)).Inc()
}

// ConnectionRefused counts a connection closed on arrival by cap
// ("per_client" or "total").
func (m *Metrics) ConnectionRefused(cap string) {
	m.connsRefused.WithLabelValues(label(cap)).Inc()
}

// label makes s a safe label value: valid UTF-8, at most maxLabelLen bytes.
func label(s string) string {
	if len(s) > maxLabelLen {
		s = s[:maxLabelLen]
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

// labelSet admits up to max distinct label pairs.
type labelSet struct {
	mu   sync.RWMutex
	max  int
	seen map[[2]string]struct{}
}

func newLabelSet(max int) *labelSet {
	return &labelSet{max: max, seen: make(map[[2]string]struct{})}
}

// admit reports whether the pair (a, b) has, or may now get, its own series.
func (s *labelSet) admit(a, b string) bool {
	k := [2]string{a, b}
	s.mu.RLock()
	_, ok := s.seen[k]
	full := len(s.seen) >= s.max
	s.mu.RUnlock()
	if ok || full {
		return ok
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) >= s.max {
		_, ok = s.seen[k]
		return ok
	}
	s.seen[k] = struct{}{}
	return true
}

// forget drops every pair whose first element is a.
func (s *labelSet) forget(a string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.seen {
		if k[0] == a {
			delete(s.seen, k)
		}
	}
}
