package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/providers"
)

// What a flood can cost. Repeated refusals are aggregated for the audit log
// and the operational log: per interval, the first refusal of a quiet source
// (or principal) is recorded at once and the rest as one summary with a count;
// at most auth.DefaultAggregateKeys sources are tracked one by one, and the
// others share one summary. So unauthenticated traffic of any volume writes at
// most 2×32+1 records a minute.

// floodGuards are the aggregators of repeated refusals.
type floodGuards struct {
	unauth  *auth.Aggregator // failed or refused authentication, by source address
	limited *auth.Aggregator // 429s of authenticated principals, by principal
	conns   *auth.Aggregator // connections refused by a cap, by source address (log only)
}

func newFloodGuards() *floodGuards {
	cfg := auth.AggregatorConfig{Interval: auth.DefaultAggregateInterval, MaxKeys: auth.DefaultAggregateKeys}
	return &floodGuards{unauth: auth.NewAggregator(cfg), limited: auth.NewAggregator(cfg), conns: auth.NewAggregator(cfg)}
}

// failureConfig is the FailureLimiter's config from gateway.yaml.
func failureConfig(cfg *providers.Config, m *Main) auth.FailureLimitConfig {
	fl := cfg.Auth.FailureLimit
	return auth.FailureLimitConfig{
		Burst:    fl.Burst,
		Interval: time.Duration(float64(time.Second) / fl.RPS),
		OnLimit:  func(r *http.Request, key string, retry time.Duration) { m.failureLimited(r, retry) },
	}
}

// limitConns wraps ln with the connection caps of cfg.
func (m *Main) limitConns(ln net.Listener, cfg providers.ServerConfig) *auth.ConnLimiter {
	max := cfg.MaxConns
	if max == 0 {
		max = defaultMaxConns()
	}
	return auth.LimitListener(ln, auth.ConnLimitConfig{
		PerClient: cfg.MaxConnsPerClient,
		Max:       max,
		OnRefuse:  m.connRefused,
	})
}

// httpServer is the gateway's HTTP server around handler. It has no
// ReadTimeout: each request's read deadline is set by the edge instead
// (auth.PreAuthDeadline here, auth.BodyDeadline once authenticated).
func httpServer(handler http.Handler, cfg providers.ServerConfig) *http.Server {
	return &http.Server{
		Handler:           auth.PreAuthDeadline(cfg.ReadHeaderTimeout.D())(handler),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
	}
}

// authFailed runs for every refused credential: it counts the failure against
// the source's budget (not for a technical failure, which is not the client's
// doing) and audits it, aggregated.
func (m *Main) authFailed(r *http.Request, ep switchboard.Endpoint, reason string) {
	m.ops.metrics.AuthFailure(string(ep))
	if reason == auth.ReasonMissing || reason == auth.ReasonInvalid {
		m.id.fails.Fail(r)
	}
	src := auth.SourceIP(r)
	if !m.flood.unauth.Observe(src, reason) {
		return
	}
	m.Log.Info().Str("endpoint", string(ep)).Str("source", src).Str("reason", reason).Msg("authentication failed")
	m.auditEvent(audit.Record{Type: audit.TypeAuthFailure, Endpoint: string(ep), Decision: audit.DecisionDeny,
		Outcome: audit.OutcomeDenied, Error: reason, Detail: map[string]string{"source": src, "count": "1"}})
}

// failureLimited runs for every request refused because its source failed
// authentication too often; aggregated with that source's failures.
func (m *Main) failureLimited(r *http.Request, retry time.Duration) {
	m.ops.metrics.RateLimited(r.URL.Path)
	src := auth.SourceIP(r)
	if !m.flood.unauth.Observe(src, "rate_limited") {
		return
	}
	m.Log.Warn().Str("source", src).Dur("retry_after", retry).Msg("source over its authentication failure budget")
	m.auditEvent(audit.Record{Type: audit.TypeRateLimited, Principal: "ip:" + src, Endpoint: r.URL.Path,
		Decision: audit.DecisionDeny, Outcome: "rate_limited",
		Detail: map[string]string{"source": src, "count": "1", "retry_after": retry.String(), "limit": "auth_failures"}})
}

// rateLimited runs for every request refused by the per-principal limit.
func (m *Main) rateLimited(r *http.Request, key string, retry time.Duration) {
	ep := r.URL.Path
	m.ops.metrics.RateLimited(ep)
	if !m.flood.limited.Observe(key, ep) {
		return
	}
	m.Log.Warn().Str("principal", key).Dur("retry_after", retry).Msg("rate limited")
	m.auditEvent(audit.Record{Type: audit.TypeRateLimited, Principal: key, Endpoint: ep, Decision: audit.DecisionDeny,
		Outcome: "rate_limited", Detail: map[string]string{"retry_after": retry.String(), "count": "1"}})
}

// connRefused runs on the accept loop for every connection over a cap.
func (m *Main) connRefused(client, reason string) {
	m.ops.metrics.ConnectionRefused(reason)
	if m.flood.conns.Observe(client, reason) {
		m.Log.Warn().Str("source", client).Str("cap", reason).Msg("connection refused: over the connection cap")
	}
}

// flushFloods writes the summaries of the aggregators' ended intervals until
// ctx ends.
func (m *Main) flushFloods(ctx context.Context) {
	t := time.NewTicker(m.flood.unauth.Interval() / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.writeFloodSummaries(false)
		}
	}
}

// writeFloodSummaries audits and logs the aggregated refusals: of intervals
// that ended, or all of them (at shutdown).
func (m *Main) writeFloodSummaries(all bool) {
	flush := (*auth.Aggregator).Flush
	if all {
		flush = (*auth.Aggregator).FlushAll
	}
	for _, s := range flush(m.flood.unauth) {
		d := summaryDetail(s)
		if s.Key != auth.OverflowKey {
			d["source"] = s.Key
		}
		m.Log.Warn().Str("source", s.Key).Int("count", s.Count).Int("sources", max(s.Keys, 1)).
			Msg("authentication failures and refusals (aggregated)")
		m.auditEvent(audit.Record{Type: audit.TypeAuthFailure, Decision: audit.DecisionDeny,
			Outcome: audit.OutcomeDenied, Error: "repeated", Detail: d})
	}
	for _, s := range flush(m.flood.limited) {
		m.Log.Warn().Str("principal", s.Key).Int("count", s.Count).Msg("rate limited (aggregated)")
		m.auditEvent(audit.Record{Type: audit.TypeRateLimited, Principal: s.Key, Decision: audit.DecisionDeny,
			Outcome: "rate_limited", Detail: summaryDetail(s)})
	}
	for _, s := range flush(m.flood.conns) {
		m.Log.Warn().Str("source", s.Key).Int("count", s.Count).Int("sources", max(s.Keys, 1)).
			Msg("connections refused: over the connection cap (aggregated)")
	}
}

// summaryDetail is the audit detail of an aggregated record: count, first,
// last, the count per reason, and for the overflow the number of sources.
func summaryDetail(s auth.Summary) map[string]string {
	d := map[string]string{
		"aggregated": "true",
		"count":      strconv.Itoa(s.Count),
		"first":      s.First.UTC().Format(time.RFC3339Nano),
		"last":       s.Last.UTC().Format(time.RFC3339Nano),
	}
	if s.Key == auth.OverflowKey {
		d["sources"] = strconv.Itoa(s.Keys)
	}
	for label, n := range s.Labels {
		d["n:"+strings.TrimSpace(label)] = strconv.Itoa(n)
	}
	return d
}
