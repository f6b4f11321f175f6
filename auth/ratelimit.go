package auth

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-mcp/switchboard"
)

// Limiter defaults.
const (
	DefaultIdleTTL         = 10 * time.Minute
	DefaultMaxKeys         = 100_000
	DefaultFailureBurst    = 10
	DefaultFailureInterval = 6 * time.Second
)

// LimitHook is called whenever a limiter refuses a request, with the limited
// key ("user:alice", "service:ci", "ip:192.0.2.1") and the Retry-After given.
type LimitHook func(r *http.Request, key string, retryAfter time.Duration)

// limiterSet is a map of token buckets by key with lazy eviction of idle ones.
// It starts no goroutine: idle entries are swept during calls.
type limiterSet struct {
	mu        sync.Mutex
	m         map[string]*limEntry
	lastSweep time.Time
}

type limEntry struct {
	lim  *rate.Limiter
	seen time.Time
	gen  uint64
}

// get returns the bucket for key, creating it with (limit, burst) or updating
// it if the settings changed (gen differs).
func (s *limiterSet) get(key string, now time.Time, limit rate.Limit, burst int, gen uint64,
	idle time.Duration, maxKeys int) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*limEntry{}
		s.lastSweep = now
	}
	if now.Sub(s.lastSweep) >= idle/2 || len(s.m) >= maxKeys {
		s.sweep(now, idle, maxKeys)
	}
	e, ok := s.m[key]
	if !ok {
		e = &limEntry{lim: rate.NewLimiter(limit, burst), gen: gen}
		s.m[key] = e
	} else if e.gen != gen {
		e.lim.SetLimitAt(now, limit)
		e.lim.SetBurstAt(now, burst)
		e.gen = gen
	}
	e.seen = now
	return e.lim
}

// peek returns the bucket for key without creating one.
func (s *limiterSet) peek(key string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		return e.lim
	}
	return nil
}

func (s *limiterSet) sweep(now time.Time, idle time.Duration, maxKeys int) {
	s.lastSweep = now
	for k, e := range s.m {
		if now.Sub(e.seen) >= idle {
			delete(s.m, k)
		}
	}
	// Still full: drop arbitrary entries. This only resets those keys' budgets.
	for k := range s.m {
		if len(s.m) < maxKeys {
			break
		}
		delete(s.m, k)
	}
}

func (s *limiterSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// RateLimitConfig configures a RateLimiter.
type RateLimitConfig struct {
	// RPS is each key's sustained rate in requests per second. RPS <= 0
	// disables the limiter (everything passes).
	RPS float64
	// Burst is how many requests a key may make at once; < 1 means
	// max(1, ceil(RPS)).
	Burst int
	// IdleTTL is how long an unused key's bucket is kept. Default 10 minutes.
	IdleTTL time.Duration
	// MaxKeys bounds the number of buckets kept. Default 100,000.
	MaxKeys int
	// OnLimit, if set, is called on every refusal (metrics, audit).
	OnLimit LimitHook
}

func (c RateLimitConfig) withDefaults() RateLimitConfig {
	if c.Burst < 1 {
		c.Burst = max(1, int(math.Ceil(c.RPS)))
	}
	if c.IdleTTL <= 0 {
		c.IdleTTL = DefaultIdleTTL
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	return c
}

// RateLimiter is a token bucket per principal (or any key). It is safe for
// concurrent use and its settings can be changed at runtime with SetConfig.
type RateLimiter struct {
	cfg atomic.Pointer[RateLimitConfig]
	gen atomic.Uint64
	set limiterSet
	now func() time.Time
}

// NewRateLimiter returns a RateLimiter with cfg.
func NewRateLimiter(cfg RateLimitConfig) *RateLimiter {
	l := &RateLimiter{now: time.Now}
	l.SetConfig(cfg)
	return l
}

// SetConfig replaces the limiter's settings. Existing buckets take the new rate
// and burst on their next use.
func (l *RateLimiter) SetConfig(cfg RateLimitConfig) {
	cfg = cfg.withDefaults()
	l.cfg.Store(&cfg)
	l.gen.Add(1)
}

// Allow takes one token from key's bucket. If none is left it reports false
// and how long until one is.
func (l *RateLimiter) Allow(key string) (bool, time.Duration) {
	cfg := l.cfg.Load()
	if cfg.RPS <= 0 {
		return true, 0
	}
	now := l.now()
	lim := l.set.get(key, now, rate.Limit(cfg.RPS), cfg.Burst, l.gen.Load(), cfg.IdleTTL, cfg.MaxKeys)
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len returns the number of buckets currently kept.
func (l *RateLimiter) Len() int { return l.set.len() }

// Middleware limits each principal in the request context (see RequireAuth,
// which must run first); a request without one is limited by source IP. Over
// the limit it answers 429 with an integer Retry-After and the JSON-RPC error
// {"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"rate limit exceeded"}}.
func (l *RateLimiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var key string
		if p := switchboard.PrincipalFromContext(r.Context()); p != nil {
			key = p.String()
		} else {
			key = "ip:" + SourceIP(r)
		}
		if ok, d := l.Allow(key); !ok {
			if hook := l.cfg.Load().OnLimit; hook != nil {
				hook(r, key, d)
			}
			writeRateLimited(w, d)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RateLimit returns the middleware of a new RateLimiter with cfg.
func RateLimit(cfg RateLimitConfig) func(http.Handler) http.Handler {
	return NewRateLimiter(cfg).Middleware
}

func writeRateLimited(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(d)))
	writeJSON(w, http.StatusTooManyRequests, bodyRateLimited)
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// FailureLimitConfig configures a FailureLimiter.
type FailureLimitConfig struct {
	// Burst is how many authentication failures a source may have before it
	// is refused. Default 10.
	Burst int
	// Interval is how often one failure is forgiven. Default 6 s (10 a minute).
	Interval time.Duration
	// IdleTTL and MaxKeys are as in RateLimitConfig.
	IdleTTL time.Duration
	MaxKeys int
	// OnLimit, if set, is called on every refusal.
	OnLimit LimitHook
}

// FailureLimiter refuses, with 429, every request from a source IP that has
// had more than Burst authentication failures recently. Wire Middleware before
// RequireAuth, and call Fail from RequireAuth's onFail for ReasonMissing and
// ReasonInvalid (an MCP client's first, credential-less request that discovers
// the authorization server is a ReasonMissing refusal, so Burst must leave
// room for it; a technical failure, ReasonError, is not the client's doing).
//
// Sources are keyed by the connection's remote IP (IPv6 by /64);
// X-Forwarded-For is not trusted. Behind a reverse proxy every caller shares
// the proxy's address, so size Burst accordingly.
type FailureLimiter struct {
	cfg atomic.Pointer[FailureLimitConfig]
	gen atomic.Uint64
	set limiterSet
	now func() time.Time
}

// NewFailureLimiter returns a FailureLimiter with cfg.
func NewFailureLimiter(cfg FailureLimitConfig) *FailureLimiter {
	f := &FailureLimiter{now: time.Now}
	f.SetConfig(cfg)
	return f
}

// SetConfig replaces the limiter's settings; existing sources take the new
// burst and interval on their next failure.
func (f *FailureLimiter) SetConfig(cfg FailureLimitConfig) {
	if cfg.Burst < 1 {
		cfg.Burst = DefaultFailureBurst
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultFailureInterval
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = DefaultIdleTTL
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	f.cfg.Store(&cfg)
	f.gen.Add(1)
}

// failCharge is the token a request from a source with failures on record
// took on its way in: kept if it fails authentication, given back otherwise.
// Taking it before authentication, rather than checking the balance and
// charging after, means concurrent requests cannot all pass on the same last
// token.
type failCharge struct {
	mu      sync.Mutex
	res     *rate.Reservation
	at      time.Time // when the token was taken
	settled bool
}

type failChargeKey struct{}

// settle keeps (keep) or gives back the token; only the first call counts. It
// reports whether there was a token to settle.
func (c *failCharge) settle(keep bool, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.settled {
		return true
	}
	c.settled = true
	if !keep {
		// Give the token back as of when it was taken: x/time/rate restores
		// nothing for a reservation whose time has passed, so cancelling
		// "now" would keep a token of every authenticated request.
		c.res.CancelAt(c.at)
	}
	return true
}

// Fail records one authentication failure from r's source: it keeps the token
// Middleware took, or, for a source with no failures on record, takes one.
func (f *FailureLimiter) Fail(r *http.Request) {
	cfg, now := f.cfg.Load(), f.now()
	if c, _ := r.Context().Value(failChargeKey{}).(*failCharge); c.settle(true, now) {
		return
	}
	f.set.get("ip:"+SourceIP(r), now, rate.Every(cfg.Interval), cfg.Burst, f.gen.Load(), cfg.IdleTTL, cfg.MaxKeys).
		AllowN(now, 1)
}

// Passed, placed right after RequireAuth, gives back the token an
// authenticated request took in Middleware at once, rather than when the
// request ends (an SSE stream may last hours).
func (f *FailureLimiter) Passed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(failChargeKey{}).(*failCharge)
		c.settle(false, f.now())
		next.ServeHTTP(w, r)
	})
}

// Blocked reports whether r's source is over its failure budget, and for how long.
func (f *FailureLimiter) Blocked(r *http.Request) (bool, time.Duration) {
	lim := f.set.peek("ip:" + SourceIP(r))
	if lim == nil {
		return false, 0
	}
	tokens := lim.TokensAt(f.now())
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) * float64(f.cfg.Load().Interval))
}

// Middleware answers 429 (as RateLimiter.Middleware does), before
// authentication runs, to a source over its failure budget, and closes the
// connection after the answer if the request may carry a body. A request from
// a source with failures on record takes a token on its way in; Fail keeps it,
// Passed gives it back, and so does the end of a request that did neither (a
// technical failure).
func (f *FailureLimiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lim := f.set.peek("ip:" + SourceIP(r))
		if lim == nil {
			next.ServeHTTP(w, r)
			return
		}
		now := f.now()
		res := lim.ReserveN(now, 1)
		if d := res.DelayFrom(now); !res.OK() || d > 0 {
			res.CancelAt(now)
			if !res.OK() {
				d = f.cfg.Load().Interval
			}
			if hook := f.cfg.Load().OnLimit; hook != nil {
				hook(r, "ip:"+SourceIP(r), d)
			}
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(d)))
			refuse(w, r, http.StatusTooManyRequests, bodyRateLimited)
			return
		}
		c := &failCharge{res: res, at: now}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), failChargeKey{}, c)))
		c.settle(false, f.now())
	})
}

// SourceIP returns the request's remote IP as a string, with IPv6 addresses
// truncated to their /64 (one host usually holds a whole /64). It never reads
// forwarding headers.
func SourceIP(r *http.Request) string { return clientKey(r.RemoteAddr) }

// clientKey is SourceIP for a "host:port" remote address.
func clientKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	switch {
	case err != nil || a.Zone() != "":
		return host
	case a.Is4():
		return host // ParseAddr takes only the canonical dotted form: no copy needed
	case a.Is4In6():
		return a.Unmap().String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
