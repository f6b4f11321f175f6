package auth

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// EdgeConfig is what the edge enforces; SetConfig changes it live.
type EdgeConfig struct {
	// Disabled turns authentication off (a loopback gateway for one
	// developer): every caller is the local admin.
	Disabled                     bool
	AllowedHosts, AllowedOrigins []string
	MaxBodyBytes                 int64
	// BodyTimeout bounds reading an authenticated request's body.
	BodyTimeout time.Duration
	// ResourceMetadataURL goes into the 401 challenge.
	ResourceMetadataURL string
	// RateRPS and RateBurst limit each principal.
	RateRPS   float64
	RateBurst int
	// FailureRPS and FailureBurst limit authentication failures per address.
	FailureRPS   float64
	FailureBurst int
}

// Refusal is one record of the edge's refusals, for the audit log: an
// authentication failure, a refusal over the failure budget, or a 429 of a
// principal over its rate; the first of a quiet source is recorded at once
// and the others summed (see Aggregator), so that a flood writes few.
type Refusal struct {
	Type      string // "auth_failure" or "rate_limited", the audit record types
	Principal string
	Endpoint  string
	Outcome   string // "denied" or "rate_limited"
	Error     string
	Detail    map[string]string
}

// EdgeHooks are the edge's observers. Each is optional and must not block.
type EdgeHooks struct {
	// Refused receives the records of refusals, aggregated.
	Refused func(Refusal)
	// Count is told of every refusal, for metrics: "auth_failure" (label:
	// the endpoint), "rate_limited" (label: the path) or
	// "connection_refused" (label: the cap).
	Count func(kind, label string)
}

// Edge is the hardened front of the gateway's endpoints, in order: body limit,
// Host/Origin check, internal headers stripped, authentication-failure
// limiter, authentication, body read deadline, per-principal rate limit. It
// owns the limiters and the aggregation of refusals. Its settings change live
// (SetConfig): the next request runs through the new chain, and a request
// takes no lock to find it.
type Edge struct {
	authn   *Authenticator
	limiter *RateLimiter
	fails   *FailureLimiter
	hooks   EdgeHooks
	log     zerolog.Logger
	flood   [3]*Aggregator // unauthenticated sources; limited principals; refused connections

	mu    sync.Mutex // serializes SetConfig and Wrap
	cfg   EdgeConfig
	wraps []*edgeWrap
}

type edgeWrap struct {
	ep    switchboard.Endpoint
	admin bool
	next  http.Handler
	h     atomic.Pointer[http.Handler]
}

// NewEdge returns an edge authenticating with authn.
func NewEdge(authn *Authenticator, cfg EdgeConfig, hooks EdgeHooks, log zerolog.Logger) *Edge {
	agg := AggregatorConfig{Interval: DefaultAggregateInterval, MaxKeys: DefaultAggregateKeys}
	e := &Edge{authn: authn, hooks: hooks, log: log,
		flood: [3]*Aggregator{NewAggregator(agg), NewAggregator(agg), NewAggregator(agg)}}
	e.limiter = NewRateLimiter(RateLimitConfig{})
	e.fails = NewFailureLimiter(FailureLimitConfig{})
	e.SetConfig(cfg)
	return e
}

// SetConfig swaps the edge's settings; the next request uses them.
func (e *Edge) SetConfig(cfg EdgeConfig) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg = cfg
	e.limiter.SetConfig(RateLimitConfig{RPS: cfg.RateRPS, Burst: cfg.RateBurst, OnLimit: e.rateLimited})
	interval := time.Duration(0)
	if cfg.FailureRPS > 0 {
		interval = time.Duration(float64(time.Second) / cfg.FailureRPS)
	}
	e.fails.SetConfig(FailureLimitConfig{Burst: cfg.FailureBurst, Interval: interval,
		OnLimit: func(r *http.Request, _ string, retry time.Duration) { e.failureLimited(r, retry) }})
	for _, w := range e.wraps {
		e.build(w)
	}
}

// Config returns the settings in force.
func (e *Edge) Config() EdgeConfig {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// Wrap returns next behind the edge of endpoint ep.
func (e *Edge) Wrap(ep switchboard.Endpoint, next http.Handler) http.Handler {
	return e.wrap(&edgeWrap{ep: ep, next: next})
}

// Admin returns next behind the public edge, for an admin user only (or
// anyone while authentication is disabled): the operator routes.
func (e *Edge) Admin(next http.Handler) http.Handler {
	return e.wrap(&edgeWrap{ep: switchboard.EndpointPublic, admin: true, next: next})
}

func (e *Edge) wrap(w *edgeWrap) http.Handler {
	e.mu.Lock()
	e.build(w)
	e.wraps = append(e.wraps, w)
	e.mu.Unlock()
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { (*w.h.Load()).ServeHTTP(rw, r) })
}

// localPrincipal is the caller when authentication is disabled (loopback only).
var localPrincipal = switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "local", Roles: []string{RoleAdmin}, Method: "none"}

// build compiles w's chain under the settings in force.
func (e *Edge) build(w *edgeWrap) {
	cfg := e.cfg
	var authn func(*http.Request) (*switchboard.Principal, bool, error)
	switch {
	case cfg.Disabled:
		authn = func(r *http.Request) (*switchboard.Principal, bool, error) {
			p := localPrincipal
			p.Endpoint = w.ep
			return &p, true, nil
		}
	case w.ep == switchboard.EndpointInternal:
		authn = e.authn.AuthenticateInternal
	default:
		authn = e.authn.AuthenticatePublic
	}
	h := w.next
	if w.admin {
		next := h
		h = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			p := switchboard.PrincipalFromContext(r.Context())
			if p == nil || p.Kind != switchboard.PrincipalUser || !HasRole(p, RoleAdmin) {
				writeJSON(rw, http.StatusForbidden, []byte(`{"error":"forbidden"}`))
				return
			}
			next.ServeHTTP(rw, r)
		})
	}
	h = e.limiter.Middleware(h)
	h = BodyDeadline(cfg.BodyTimeout)(h)
	h = e.fails.Passed(h)
	h = RequireAuth(authn, cfg.ResourceMetadataURL, func(r *http.Request, reason string) { e.authFailed(r, w.ep, reason) })(h)
	h = e.fails.Middleware(h)
	h = StripInternalHeaders(h)
	h = HostOriginGuard(cfg.AllowedHosts, cfg.AllowedOrigins)(h)
	h = BodyLimit(cfg.MaxBodyBytes)(h)
	w.h.Store(&h)
}

func (e *Edge) count(kind, label string) {
	if e.hooks.Count != nil {
		e.hooks.Count(kind, label)
	}
}

func (e *Edge) refused(r Refusal) {
	if e.hooks.Refused != nil {
		e.hooks.Refused(r)
	}
}

// authFailed runs for every refused credential: it counts the failure against
// the source's budget (not for a technical failure, which is not the client's
// doing) and records it, aggregated.
func (e *Edge) authFailed(r *http.Request, ep switchboard.Endpoint, reason string) {
	e.count("auth_failure", string(ep))
	if reason == ReasonMissing || reason == ReasonInvalid {
		e.fails.Fail(r)
	}
	src := SourceIP(r)
	if !e.flood[0].Observe(src, reason) {
		return
	}
	e.log.Info().Str("endpoint", string(ep)).Str("source", src).Str("reason", reason).Msg("authentication failed")
	e.refused(Refusal{Type: "auth_failure", Endpoint: string(ep), Outcome: "denied", Error: reason,
		Detail: map[string]string{"source": src, "count": "1"}})
}

// failureLimited runs for every request refused because its source failed
// authentication too often; aggregated with that source's failures.
func (e *Edge) failureLimited(r *http.Request, retry time.Duration) {
	e.count("rate_limited", r.URL.Path)
	src := SourceIP(r)
	if !e.flood[0].Observe(src, "rate_limited") {
		return
	}
	e.log.Warn().Str("source", src).Dur("retry_after", retry).Msg("source over its authentication failure budget")
	e.refused(Refusal{Type: "rate_limited", Principal: "ip:" + src, Endpoint: r.URL.Path, Outcome: "rate_limited",
		Detail: map[string]string{"source": src, "count": "1", "retry_after": retry.String(), "limit": "auth_failures"}})
}

// rateLimited runs for every request refused by the per-principal limit.
func (e *Edge) rateLimited(r *http.Request, key string, retry time.Duration) {
	ep := r.URL.Path
	e.count("rate_limited", ep)
	if !e.flood[1].Observe(key, ep) {
		return
	}
	e.log.Warn().Str("principal", key).Dur("retry_after", retry).Msg("rate limited")
	e.refused(Refusal{Type: "rate_limited", Principal: key, Endpoint: ep, Outcome: "rate_limited",
		Detail: map[string]string{"retry_after": retry.String(), "count": "1"}})
}

// ConnRefused is the ConnLimitConfig.OnRefuse of the gateway's listener.
func (e *Edge) ConnRefused(client, reason string) {
	e.count("connection_refused", reason)
	if e.flood[2].Observe(client, reason) {
		e.log.Warn().Str("source", client).Str("cap", reason).Msg("connection refused: over the connection cap")
	}
}

// FlushRefusals records the aggregated refusals of ended intervals every
// quarter interval until ctx ends, then all of them.
func (e *Edge) FlushRefusals(ctx context.Context) {
	t := time.NewTicker(e.flood[0].Interval() / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.flushRefusals(true)
			return
		case <-t.C:
			e.flushRefusals(false)
		}
	}
}

// flushRefusals records and logs the aggregated refusals: of intervals that
// ended, or all of them.
func (e *Edge) flushRefusals(all bool) {
	flush := (*Aggregator).Flush
	if all {
		flush = (*Aggregator).FlushAll
	}
	for _, s := range flush(e.flood[0]) {
		d := summaryDetail(s)
		if s.Key != OverflowKey {
			d["source"] = s.Key
		}
		e.log.Warn().Str("source", s.Key).Int("count", s.Count).Int("sources", max(s.Keys, 1)).
			Msg("authentication failures and refusals (aggregated)")
		e.refused(Refusal{Type: "auth_failure", Outcome: "denied", Error: "repeated", Detail: d})
	}
	for _, s := range flush(e.flood[1]) {
		e.log.Warn().Str("principal", s.Key).Int("count", s.Count).Msg("rate limited (aggregated)")
		e.refused(Refusal{Type: "rate_limited", Principal: s.Key, Outcome: "rate_limited", Detail: summaryDetail(s)})
	}
	for _, s := range flush(e.flood[2]) {
		e.log.Warn().Str("source", s.Key).Int("count", s.Count).Int("sources", max(s.Keys, 1)).
			Msg("connections refused: over the connection cap (aggregated)")
	}
}

// summaryDetail is the audit detail of an aggregated record: count, first,
// last, the count per reason, and for the overflow the number of sources.
func summaryDetail(s Summary) map[string]string {
	d := map[string]string{
		"aggregated": "true",
		"count":      strconv.Itoa(s.Count),
		"first":      s.First.UTC().Format(time.RFC3339Nano),
		"last":       s.Last.UTC().Format(time.RFC3339Nano),
	}
	if s.Key == OverflowKey {
		d["sources"] = strconv.Itoa(s.Keys)
	}
	for label, n := range s.Labels {
		d["n:"+strings.TrimSpace(label)] = strconv.Itoa(n)
	}
	return d
}
