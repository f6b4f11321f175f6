package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/backoff"
	"github.com/switchboard-mcp/switchboard/internal/gate"
	"github.com/switchboard-mcp/switchboard/internal/lifecycle"
)

// Timings that are not per-Spec.
const (
	listChangedDebounce = 100 * time.Millisecond
	// drainWait bounds how long Stop lets calls in flight finish before it
	// closes the connection under them.
	drainWait = 5 * time.Second
	// healthTimeout bounds one health check.
	healthTimeout = 10 * time.Second
)

// Event kinds, for the audit log. They match the supervisor's where the
// meaning is the same.
const (
	EventConnect    = "connect"    // a connection attempt started
	EventReady      = "ready"      // connected, catalog published
	EventDisconnect = "disconnect" // the connection was lost (Err says why)
	EventRestart    = "restart"    // a reconnect is scheduled after Delay
	EventFailed     = "failed"     // MaxFailures quick failures in a row; retrying every Backoff.Max
	EventStop       = "stop"       // supervision of the instance ended (Stop)
	EventUnhealthy  = "unhealthy"  // health check or call timeouts failed; reconnecting
)

// Event is a lifecycle event of one remote instance. It never contains
// secret values.
type Event struct {
	Time  time.Time               `json:"time"`
	Key   switchboard.InstanceKey `json:"key"`
	Kind  string                  `json:"kind"`
	Delay time.Duration           `json:"delay,omitempty"`
	Err   string                  `json:"error,omitempty"`
}

// Clock is the time source for reconnect backoff; tests inject their own.
type Clock = backoff.Clock

// Options configures a Manager. All fields are optional.
type Options struct {
	// OnCatalog is called, from the instance's own goroutine and in order,
	// when an instance becomes running (up != nil), changes its catalog, or
	// goes down (up == nil, cat == nil). It must not block for long.
	OnCatalog switchboard.CatalogFunc
	// OnEvent receives lifecycle events, synchronously; it must not block.
	OnEvent func(Event)
	// OnNotification receives the server notifications the manager does not
	// handle itself (resources/updated, log messages not tied to a call).
	OnNotification func(key switchboard.InstanceKey, method string, params json.RawMessage)
	// Redact scrubs secret values from errors and logged text. Default:
	// identity.
	Redact func(string) string
	// Clock drives reconnect delays. Default: the real clock.
	Clock Clock
	// Jitter returns a number in [0,1) used to jitter reconnect delays.
	// Default: math/rand/v2.Float64.
	Jitter func() float64
	// HTTPClient makes the requests. Default: a client with dial, TLS and
	// response-header timeouts, and none on the whole exchange (streams
	// are long).
	HTTPClient *http.Client
}

// Manager keeps connections to remote MCP servers (providers given by
// url: rather than command:): it connects, fetches and refreshes the
// catalog, checks health, reconnects with backoff, and hands out each
// instance's Upstream with the same limits the supervisor puts on a child
// (concurrency, queue, call timeout). Its methods are safe for concurrent
// use and mirror the supervisor's.
type Manager struct {
	log  zerolog.Logger
	opts Options

	mu    sync.Mutex
	insts map[switchboard.InstanceKey]*instance
}

// New returns a Manager with nothing connected.
func New(logger zerolog.Logger, opts Options) *Manager {
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	if opts.Clock == nil {
		opts.Clock = backoff.RealClock{}
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = DefaultHTTPClient()
	}
	return &Manager{log: logger, opts: opts, insts: map[switchboard.InstanceKey]*instance{}}
}

// DefaultHTTPClient returns the client a Manager uses unless told
// otherwise: bounded dialing, TLS handshake and wait for response headers,
// no bound on reading a body (an event stream lasts), no proxy from the
// environment, and redirects followed only within one origin.
func DefaultHTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
				return errors.New("redirect to another origin refused")
			}
			return nil
		},
	}
}

// validURL checks a Spec's URL: absolute http or https, no fragment.
func validURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url must be an absolute http:// or https:// URL")
	}
	if u.Fragment != "" {
		return nil, errors.New("url must not have a fragment")
	}
	if u.User != nil {
		return nil, errors.New("url must not carry credentials; use headers or an OAuth connection")
	}
	return u, nil
}

// Start begins keeping spec.Key connected: it connects in the background
// and returns at once. Starting a key already kept with an equal spec does
// nothing; with a different spec it is an ECONFLICT error (Stop first).
func (m *Manager) Start(spec Spec) error {
	if spec.Key.Provider == "" {
		return switchboard.Errorf(switchboard.EINVALID, "starting remote provider: empty provider name")
	}
	u, err := validURL(spec.URL)
	if err != nil {
		return switchboard.Errorf(switchboard.EINVALID, "starting remote provider %s: %s", spec.Key, err.Error())
	}
	switch spec.Transport {
	case TransportAuto, TransportStreamable, TransportSSE:
	default:
		return switchboard.Errorf(switchboard.EINVALID, "starting remote provider %s: unknown transport %q", spec.Key, spec.Transport)
	}
	switch spec.Protocol {
	case ProtocolAuto, ProtocolSession, ProtocolStateless:
	default:
		return switchboard.Errorf(switchboard.EINVALID, "starting remote provider %s: unknown protocol %q", spec.Key, spec.Protocol)
	}
	spec = spec.withDefaults()
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.insts[spec.Key]; old != nil {
		switch {
		case old.StopRequested():
			return switchboard.Errorf(switchboard.ECONFLICT, "starting remote provider %s: it is stopping", spec.Key)
		case old.spec.Equal(spec):
			return nil
		default:
			return switchboard.Errorf(switchboard.ECONFLICT, "starting remote provider %s: already running with a different spec", spec.Key)
		}
	}
	in := &instance{
		m:    m,
		spec: spec,
		url:  u,
		log:  m.log.With().Str("provider", spec.Key.String()).Logger(),
		kick: make(chan struct{}, 1),
	}
	in.Init(in.finalize)
	in.lastUsed.Store(time.Now().UnixNano())
	m.insts[spec.Key] = in
	go in.run()
	return nil
}

// Stop stops keeping key: calls in flight get a few seconds to finish, then
// the connection is closed (a session-era server is sent DELETE). It is
// idempotent: stopping an unknown key returns nil. If ctx ends first Stop
// returns ctx's error and the stop carries on in the background.
func (m *Manager) Stop(ctx context.Context, key switchboard.InstanceKey) error {
	m.mu.Lock()
	in := m.insts[key]
	m.mu.Unlock()
	if in == nil {
		return nil
	}
	if err := in.Stop(ctx); err != nil {
		return fmt.Errorf("stopping remote provider %s: %w", key, err)
	}
	return nil
}

// Restart stops key and starts it again with the same spec.
func (m *Manager) Restart(ctx context.Context, key switchboard.InstanceKey) error {
	m.mu.Lock()
	in := m.insts[key]
	m.mu.Unlock()
	if in == nil {
		return switchboard.Errorf(switchboard.ENOTFOUND, "restarting remote provider %s: not kept", key)
	}
	if err := m.Stop(ctx, key); err != nil {
		return fmt.Errorf("restarting remote provider %s: %w", key, err)
	}
	return m.Start(in.spec)
}

// Retry makes an instance waiting to reconnect (backoff or failed) try at
// once: after a user renewed the credentials, for one.
func (m *Manager) Retry(key switchboard.InstanceKey) {
	m.mu.Lock()
	in := m.insts[key]
	m.mu.Unlock()
	if in != nil {
		select {
		case in.kick <- struct{}{}:
		default:
		}
	}
}

// StopAll stops every instance in parallel and returns when all are gone or
// ctx ends.
func (m *Manager) StopAll(ctx context.Context) error {
	m.mu.Lock()
	keys := make([]switchboard.InstanceKey, 0, len(m.insts))
	for k := range m.insts {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { errs[i] = m.Stop(ctx, k) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Has reports whether key is kept (in any state).
func (m *Manager) Has(key switchboard.InstanceKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.insts[key] != nil
}

// Specs returns the specs of all kept instances, with defaults applied,
// sorted by key.
func (m *Manager) Specs() []Spec {
	m.mu.Lock()
	specs := make([]Spec, 0, len(m.insts))
	for _, in := range m.insts {
		specs = append(specs, in.spec)
	}
	m.mu.Unlock()
	slices.SortFunc(specs, func(a, b Spec) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	return specs
}

// Upstream returns the limited connection of key while it is running.
func (m *Manager) Upstream(key switchboard.InstanceKey) (switchboard.Upstream, bool) {
	m.mu.Lock()
	in := m.insts[key]
	m.mu.Unlock()
	if in == nil {
		return nil, false
	}
	in.Mu.Lock()
	defer in.Mu.Unlock()
	if in.State != switchboard.StateRunning || in.up == nil {
		return nil, false
	}
	return in.up, true
}

// WaitReady blocks until key is running (nil; its catalog has been handed
// to OnCatalog by then), has failed or is stopped (an EUNAVAILABLE error),
// is not kept (ENOTFOUND), or ctx ends.
func (m *Manager) WaitReady(ctx context.Context, key switchboard.InstanceKey) error {
	m.mu.Lock()
	in := m.insts[key]
	m.mu.Unlock()
	if in == nil {
		return switchboard.Errorf(switchboard.ENOTFOUND, "waiting for remote provider %s: not kept", key)
	}
	return in.AwaitReady(ctx, "remote provider "+key.String(), false, 0, m.opts.Redact)
}

// Reap stops the users' own instances (key.User set) that no call has
// reached for idle, and returns how many it stopped. The gateway calls it
// periodically with the provider's connection idle_timeout.
func (m *Manager) Reap(ctx context.Context, provider string, idle time.Duration) int {
	if idle <= 0 {
		return 0
	}
	cutoff := time.Now().Add(-idle).UnixNano()
	m.mu.Lock()
	var stale []switchboard.InstanceKey
	for k, in := range m.insts {
		if k.Provider == provider && k.User != "" && in.inFlight.Load() == 0 && in.lastUsed.Load() < cutoff {
			stale = append(stale, k)
		}
	}
	m.mu.Unlock()
	for _, k := range stale {
		_ = m.Stop(ctx, k)
	}
	return len(stale)
}

// Status returns a snapshot of every kept instance, sorted by key.
func (m *Manager) Status() []switchboard.ProviderStatus {
	m.mu.Lock()
	insts := make([]*instance, 0, len(m.insts))
	for _, in := range m.insts {
		insts = append(insts, in)
	}
	m.mu.Unlock()
	out := make([]switchboard.ProviderStatus, 0, len(insts))
	for _, in := range insts {
		out = append(out, in.status())
	}
	slices.SortFunc(out, func(a, b switchboard.ProviderStatus) int {
		return strings.Compare(a.Provider+"@"+a.User, b.Provider+"@"+b.User)
	})
	return out
}

// instance is one kept key: a goroutine connecting, serving and
// reconnecting, until Stop.
type instance struct {
	m    *Manager
	spec Spec
	url  *url.URL
	log  zerolog.Logger

	// Life is the state, the stop signal and the wait for readiness. Its
	// Mu also guards up.
	lifecycle.Life
	kick chan struct{}

	inFlight atomic.Int64
	garbage  atomic.Int64
	lastUsed atomic.Int64 // UnixNano of the last call's start (or of Start)

	up        *limited // Mu
	published bool     // run goroutine only
}

// finalize runs once the instance's goroutine has ended after a stop was
// requested: it removes the instance from the manager unless it was
// replaced meanwhile.
func (in *instance) finalize() {
	m := in.m
	m.mu.Lock()
	if m.insts[in.spec.Key] == in {
		delete(m.insts, in.spec.Key)
	}
	m.mu.Unlock()
	in.SetState(switchboard.StateStopped)
	in.emit(Event{Kind: EventStop})
	in.log.Info().Msg("remote provider stopped")
}

func (in *instance) emit(e Event) {
	if in.m.opts.OnEvent == nil {
		return
	}
	e.Time = time.Now()
	e.Key = in.spec.Key
	e.Err = in.m.opts.Redact(e.Err)
	in.m.opts.OnEvent(e)
}

func (in *instance) status() switchboard.ProviderStatus {
	redact := in.m.opts.Redact
	in.Mu.Lock()
	defer in.Mu.Unlock()
	st := switchboard.ProviderStatus{
		Provider:  in.spec.Key.Provider,
		User:      in.spec.Key.User,
		State:     in.State,
		Restarts:  in.Restarts,
		LastError: redact(in.LastErr),
		LastExit:  redact(in.LastExit),
		Tools:     in.Tools,
		Garbage:   in.garbage.Load(),
		InFlight:  in.inFlight.Load(),
	}
	if in.State == switchboard.StateRunning || in.State == switchboard.StateStopping {
		st.StartedAt = in.StartedAt
	}
	return st
}

func (in *instance) publish(up *limited, cat *switchboard.Catalog) {
	in.published = true
	if f := in.m.opts.OnCatalog; f != nil {
		f(in.spec.Key, up, cat)
	}
}

func (in *instance) unpublish() {
	in.Mu.Lock()
	in.up = nil
	in.Tools = 0
	in.Mu.Unlock()
	if !in.published {
		return
	}
	in.published = false
	if f := in.m.opts.OnCatalog; f != nil {
		f(in.spec.Key, nil, nil)
	}
}

// runResult is how one connection ended.
type runResult struct {
	ready  bool          // it connected and was published
	forced bool          // dropped as unhealthy: always a failure
	ran    time.Duration // how long it was up
	err    error
}

// run is the instance's goroutine: connect, serve, back off, repeat. A
// remote server is never given up on: after MaxFailures quick failures the
// instance shows failed and keeps trying every Backoff.Max.
func (in *instance) run() {
	defer in.End()
	clock := in.m.opts.Clock
	policy := in.spec.Backoff
	var runs backoff.Runs
	for {
		res := in.runOnce()
		if in.StopRequested() {
			return
		}
		failures, attempt := runs.Ended(policy, backoff.Run{Ready: res.ready, Forced: res.forced, Ran: res.ran})
		errText := ""
		if res.err != nil {
			errText = res.err.Error()
		}
		var delay time.Duration
		if failures >= policy.MaxFailures {
			delay = policy.Max
			in.Mu.Lock()
			wasFailed := in.State == switchboard.StateFailed
			in.LastErr = fmt.Sprintf("%d failures in a row, retrying every %s: %s", failures, policy.Max, errText)
			in.SetStateLocked(switchboard.StateFailed)
			in.Mu.Unlock()
			if !wasFailed {
				in.log.Error().Int("failures", failures).Str("error", in.m.opts.Redact(errText)).Dur("retry_every", delay).Msg("remote provider failed; retrying at the slowest pace")
				in.emit(Event{Kind: EventFailed, Err: errText})
			}
		} else {
			delay = policy.Delay(attempt, in.m.opts.Jitter())
			in.SetState(switchboard.StateBackoff)
			in.log.Info().Dur("delay", delay).Int("failures", failures).Str("error", in.m.opts.Redact(errText)).Msg("reconnecting to remote provider after delay")
			in.emit(Event{Kind: EventRestart, Delay: delay, Err: errText})
		}
		select {
		case <-in.Stopping():
			return
		case <-in.kick:
		case <-clock.After(delay):
		}
		in.Restarted()
	}
}

// runOnce connects, publishes the catalog, and serves until the connection
// dies, turns unhealthy, or a stop is requested.
func (in *instance) runOnce() (res runResult) {
	spec := in.spec
	redact := in.m.opts.Redact
	in.Mu.Lock()
	if in.State != switchboard.StateFailed {
		in.SetStateLocked(switchboard.StateStarting)
	}
	in.Mu.Unlock()
	in.emit(Event{Kind: EventConnect})

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	go func() {
		select {
		case <-in.Stopping():
			cancelRun()
		case <-runCtx.Done():
		}
	}()

	listChanged := make(chan struct{}, 1)
	initCtx, cancelInit := context.WithTimeout(runCtx, spec.InitTimeout)
	cl, h, err := dial(initCtx, clientConfig{
		url:       in.url,
		transport: spec.Transport,
		protocol:  spec.Protocol,
		headers:   spec.Headers,
		auth:      spec.Auth,
		roots:     spec.Roots,
		max:       spec.MaxMessageBytes,
		hc:        in.m.opts.HTTPClient,
		onNotification: func(method string, params json.RawMessage) {
			in.onNotification(method, params, listChanged)
		},
		log:    in.log,
		redact: redact,
	})
	if err != nil {
		cancelInit()
		if in.StopRequested() {
			return res
		}
		in.SetErr(err)
		in.log.Error().Str("error", redact(err.Error())).Msg("connecting to remote provider failed")
		res.err = err
		return res
	}
	cat, err := in.fetchCatalog(initCtx, cl, h)
	cancelInit()
	if err != nil {
		_ = cl.Close()
		if in.StopRequested() {
			return res
		}
		in.SetErr(err)
		in.log.Error().Str("error", redact(err.Error())).Msg("fetching the remote provider's catalog failed")
		res.err = err
		return res
	}
	start := in.m.opts.Clock.Now()
	defer func() { res.ran = in.m.opts.Clock.Now().Sub(start) }()

	up := newLimited(cl, spec, &in.inFlight)
	up.lastUsed = &in.lastUsed
	in.Mu.Lock()
	in.up = up
	in.Tools = len(cat.Tools)
	in.LastErr = ""
	in.StartedAt = time.Now()
	in.Mu.Unlock()
	res.ready = true
	in.publish(up, cat)
	in.SetState(switchboard.StateRunning)
	in.log.Info().Str("protocol", cl.era.String()).Int("tools", len(cat.Tools)).Int("prompts", len(cat.Prompts)).Int("resources", len(cat.Resources)).Msg("remote provider ready")
	in.emit(Event{Kind: EventReady})

	var health <-chan time.Time
	var ticker *time.Ticker
	if spec.HealthInterval > 0 {
		ticker = time.NewTicker(spec.HealthInterval)
		defer ticker.Stop()
		health = ticker.C
	}
	var debounce <-chan time.Time
	lost := func(kind string, err error, forced bool) runResult {
		in.unpublish()
		res.forced = forced
		res.err = err
		in.SetErr(err)
		in.Mu.Lock()
		in.LastExit = err.Error()
		in.Mu.Unlock()
		in.log.Warn().Str("error", redact(err.Error())).Msg("remote provider connection lost")
		in.emit(Event{Kind: kind, Err: err.Error()})
		_ = cl.Close()
		in.garbage.Add(cl.garbage.Load())
		return res
	}
	for {
		select {
		case <-runCtx.Done():
			in.SetState(switchboard.StateStopping)
			in.unpublish()
			in.drain()
			_ = cl.Close()
			in.garbage.Add(cl.garbage.Load())
			return res

		case <-cl.Done():
			err := cl.Err()
			if err == nil {
				err = errors.New("connection closed")
			}
			return lost(EventDisconnect, err, false)

		case <-up.gate.Tripped():
			return lost(EventUnhealthy, switchboard.Errorf(switchboard.EUNAVAILABLE, "remote provider timed out %d calls in a row (call_timeout %s)", up.gate.Timeouts(), spec.CallTimeout), true)

		case <-health:
			if in.inFlight.Load() > 0 {
				continue // busy and answering: no need to ask
			}
			ctx, cancel := context.WithTimeout(runCtx, min(healthTimeout, spec.CallTimeout))
			err := cl.ping(ctx)
			cancel()
			if err != nil && runCtx.Err() == nil {
				return lost(EventUnhealthy, fmt.Errorf("health check: %w", err), true)
			}

		case <-listChanged:
			debounce = time.After(listChangedDebounce)

		case <-debounce:
			debounce = nil
			ctx, cancel := context.WithTimeout(runCtx, spec.CallTimeout)
			next, err := in.fetchCatalog(ctx, cl, &hello{caps: cat.Capabilities, instructions: cat.Instructions})
			cancel()
			if err != nil {
				in.log.Warn().Str("error", redact(err.Error())).Msg("refreshing the remote provider's catalog failed; keeping the old one")
				continue
			}
			cat = next
			in.Mu.Lock()
			in.Tools = len(cat.Tools)
			in.Mu.Unlock()
			in.publish(up, cat)
			in.log.Info().Int("tools", len(cat.Tools)).Msg("remote provider catalog refreshed")
		}
	}
}

// drain waits (bounded) for the calls in flight to finish.
func (in *instance) drain() {
	deadline := time.Now().Add(drainWait)
	for in.inFlight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// onNotification handles a server notification no call took.
func (in *instance) onNotification(method string, params json.RawMessage, listChanged chan<- struct{}) {
	switch method {
	case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
		select {
		case listChanged <- struct{}{}:
		default:
		}
		return
	case "notifications/subscriptions/acknowledged":
		return
	case "notifications/message":
		in.log.Debug().Str("params", in.m.opts.Redact(string(params))).Msg("remote provider log message")
	}
	if f := in.m.opts.OnNotification; f != nil {
		f(in.spec.Key, method, params)
	}
}

// fetchCatalog lists everything the server's capabilities advertise
// (switchboard.FetchCatalog); a refused optional list is logged.
func (in *instance) fetchCatalog(ctx context.Context, cl *client, h *hello) (*switchboard.Catalog, error) {
	cat, err := switchboard.FetchCatalog(ctx, cl.Call, h.caps, h.instructions, func(method string, err *switchboard.RPCError) {
		in.log.Warn().Str("method", method).Str("error", in.m.opts.Redact(err.Message)).Msg("remote provider list failed; treating as empty")
	})
	if err != nil {
		return nil, err
	}
	if cat.Tools != nil {
		cat.Tools = cl.setTools(cat.Tools)
	}
	return cat, nil
}

// limited is the Upstream handed out for a running instance: the
// connection behind the gate every provider has (a concurrency limit, a
// bounded wait queue, a per-call timeout, the timeout streak).
type limited struct {
	cl       *client
	gate     *gate.Gate
	lastUsed *atomic.Int64
}

var _ switchboard.Upstream = (*limited)(nil)

func newLimited(cl *client, spec Spec, inFlight *atomic.Int64) *limited {
	return &limited{
		cl:   cl,
		gate: gate.New(spec.Limits, inFlight),
	}
}

// Call calls the server through the gate.
func (l *limited) Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	if l.lastUsed != nil {
		l.lastUsed.Store(time.Now().UnixNano())
	}
	return l.gate.Call(ctx, l.cl, req, nil)
}

// Notify sends the server a notification (roots/list_changed, for one). In
// the stateless era there are none to send; it does nothing.
func (l *limited) Notify(ctx context.Context, method string, params any) error {
	if l.cl.era == eraStateless {
		return nil
	}
	var raw []byte
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return switchboard.WrapError(switchboard.EINVALID, err, "notifying %s: encoding params", method)
		}
		raw = b
	}
	return l.cl.notify(ctx, method, raw)
}
