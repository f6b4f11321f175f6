//go:build unix

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/backoff"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
	"github.com/switchboard-mcp/switchboard/internal/lifecycle"
	"github.com/switchboard-mcp/switchboard/internal/listen"
	"github.com/switchboard-mcp/switchboard/internal/tracing"
)

// ProtocolVersion is the MCP protocol version the supervisor asks children for.
const ProtocolVersion = switchboard.SessionProtocol

// supportedProtocols are the versions a child may answer initialize with.
var supportedProtocols = map[string]bool{
	"2024-11-05": true,
	"2025-03-26": true,
	"2025-06-18": true,
	"2025-11-25": true,
}

// DefaultBaseEnv names the variables copied from the gateway's environment into
// every child's when Options.BaseEnv is nil.
var DefaultBaseEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER"}

// Timings that are not per-Spec.
const (
	listChangedDebounce = 100 * time.Millisecond
	killWait            = 5 * time.Second // how long to wait for a SIGKILLed group
	garbageSampleBytes  = 256
)

// Event kinds, for the audit log.
const (
	EventQueued  = "queued"  // it waits for its turn to start (Options.MaxStarting)
	EventSpawn   = "spawn"   // a child process was started
	EventReady   = "ready"   // it answered initialize and its catalog is published
	EventExit    = "exit"    // it exited (ExitCode, Signal)
	EventRestart = "restart" // a restart is scheduled after Delay
	EventFailed  = "failed"  // too many quick failures; no more restarts
	EventStop    = "stop"    // supervision of the instance ended (Stop)
	// EventUnhealthy: the supervisor is killing a child that still runs but
	// fails its health rules (Err says which); an exit and a restart follow.
	EventUnhealthy = "unhealthy"
)

// Event is a lifecycle event of one instance. It never contains secret values.
type Event struct {
	Time     time.Time               `json:"time"`
	Key      switchboard.InstanceKey `json:"key"`
	Kind     string                  `json:"kind"`
	PID      int                     `json:"pid,omitempty"`
	ExitCode int                     `json:"exit_code,omitempty"` // -1 when killed by a signal
	Signal   string                  `json:"signal,omitempty"`
	Delay    time.Duration           `json:"delay,omitempty"` // for EventRestart
	Err      string                  `json:"error,omitempty"`
}

// Clock is the time source for restart backoff; tests inject their own.
type Clock = backoff.Clock

// Options configures a Supervisor. All fields are optional.
type Options struct {
	// OnCatalog is called, from the instance's own goroutine and in order, when
	// an instance becomes running (up != nil), changes its catalog, or goes down
	// (up == nil, cat == nil). It must not block for long.
	OnCatalog switchboard.CatalogFunc
	// OnEvent receives lifecycle events, synchronously; it must not block.
	OnEvent func(Event)
	// OnNotification receives the child notifications the supervisor does not
	// handle itself (for example notifications/resources/updated or
	// notifications/message). It must not block for long.
	OnNotification func(key switchboard.InstanceKey, method string, params json.RawMessage)
	// Redact scrubs secret values from child output (stderr tail, errors)
	// before it is logged or shown. Default: identity.
	Redact func(string) string
	// BaseEnv names the variables copied from the gateway's environment into
	// every child's. Nil means DefaultBaseEnv; an empty non-nil slice copies none.
	BaseEnv []string
	// Clock drives restart delays. Default: the real clock.
	Clock Clock
	// Jitter returns a number in [0,1) used to jitter restart delays. Default:
	// math/rand/v2.Float64.
	Jitter func() float64
	// UserSpec returns the spec of a user's own instance of a provider that
	// runs one instance per user (Provider.UserScoped): the provider's
	// template with that user's connection secrets. An error says why the
	// instance cannot start (the user is not connected, say); it reaches the
	// caller. Needed only for user-scoped providers.
	UserSpec func(ctx context.Context, key switchboard.InstanceKey) (Spec, error)
	// Usable returns the user-scoped providers p may use right now (which
	// Ensure starts). Nil: none.
	Usable func(p *switchboard.Principal) []string
	// Tracer traces the round trip of every traced call to a child (one
	// whose context carries a span) and gives the child that span's trace
	// context in _meta. Nil is off.
	Tracer *tracing.Tracer
	// MaxStarting caps the instances starting at once (spawned, initialize
	// and the first catalog fetch not yet done); the rest wait their turn in
	// StateQueued, in order. Node and Python servers spend a second or more
	// of CPU starting: a hundred users' first calls at once, or a restart
	// with many providers, would otherwise start them all together, each as
	// slow as all of them, and past their init timeout. 0: DefaultMaxStarting;
	// negative: no cap.
	MaxStarting int
}

// DefaultMaxStarting is the default Options.MaxStarting: four per CPU this
// process may run on (the children start on the machine's CPUs, not on the
// gateway's share of them), and at least 8. Fewer at once make each start
// quicker but, on a machine other work keeps busy, all of them slower (in
// the cluster test on 0.8 of a CPU, a killed replica's users were all served
// again by the others after 116 s with 4 per replica, 72 s with 8); more, and
// each start drifts toward its init timeout.
func DefaultMaxStarting() int { return max(8, 4*runtime.NumCPU()) }

// Supervisor runs provider instances as child processes. Its methods are safe
// for concurrent use.
type Supervisor struct {
	log  zerolog.Logger
	opts Options

	reaper *reaper
	limits *limiter

	// routes maps an InstanceKey to the *route of its current instance
	// while it runs: what calls go to. Read without a lock on every call.
	routes sync.Map
	// provs is the providers table of the last Apply (or SetProviders).
	provs atomic.Pointer[map[string]Provider]

	mu       sync.Mutex
	insts    map[switchboard.InstanceKey]*instance // the current instance of each key
	retiring map[*instance]struct{}                // replaced instances still draining or stopping
	starting map[switchboard.InstanceKey]chan struct{}

	// startSlots holds a token for each instance starting (Options.MaxStarting);
	// nil: no cap.
	startSlots chan struct{}
}

// route is where calls to one key go.
type route struct {
	up *limited
	in *instance
}

// New returns a Supervisor with nothing running.
func New(logger zerolog.Logger, opts Options) *Supervisor {
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	if opts.BaseEnv == nil {
		opts.BaseEnv = DefaultBaseEnv
	}
	if opts.Clock == nil {
		opts.Clock = backoff.RealClock{}
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	s := &Supervisor{
		log:      logger,
		opts:     opts,
		reaper:   newReaper(logger),
		limits:   newLimiter(logger),
		insts:    make(map[switchboard.InstanceKey]*instance),
		retiring: make(map[*instance]struct{}),
		starting: make(map[switchboard.InstanceKey]chan struct{}),
	}
	if opts.MaxStarting == 0 {
		opts.MaxStarting = DefaultMaxStarting()
	}
	if opts.MaxStarting > 0 {
		s.startSlots = make(chan struct{}, opts.MaxStarting)
	}
	s.provs.Store(&map[string]Provider{})
	return s
}

// Start begins supervising spec.Key: it spawns the child in the background and
// returns at once. Calling Start for a key that is already supervised with an
// equal spec does nothing; with a different spec it is an ECONFLICT error (Stop
// first, or use Restart). A failed instance is replaced and started afresh.
// The first Start of a Spec with resource limits chooses (and logs) how this
// Supervisor enforces them; see the package comment.
func (s *Supervisor) Start(spec Spec) error {
	spec, limits, err := s.prepare(spec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.insts[spec.Key]; old != nil {
		old.Mu.Lock()
		st := old.State
		old.Mu.Unlock()
		switch {
		case st == switchboard.StateFailed && !old.StopRequested():
			old.RequestStop() // its goroutine has already ended
		case st == switchboard.StateStopping || st == switchboard.StateStopped || old.StopRequested():
			return switchboard.Errorf(switchboard.ECONFLICT, "starting provider %s: it is stopping", spec.Key)
		case old.spec.Equal(spec):
			return nil
		default:
			return switchboard.Errorf(switchboard.ECONFLICT, "starting provider %s: already running with a different spec", spec.Key)
		}
	}
	in := s.newInstance(spec, limits, false)
	s.insts[spec.Key] = in
	go in.run()
	return nil
}

// prepare validates spec and applies its defaults.
func (s *Supervisor) prepare(spec Spec) (Spec, string, error) {
	if spec.Key.Provider == "" {
		return spec, "", switchboard.Errorf(switchboard.EINVALID, "starting provider: empty provider name")
	}
	if spec.Command == "" {
		return spec, "", switchboard.Errorf(switchboard.EINVALID, "starting provider %s: empty command", spec.Key)
	}
	if err := validateLimits(spec); err != nil {
		return spec, "", err
	}
	spec = spec.withDefaults()
	return spec, s.limits.describe(spec.resources()), nil
}

// newInstance returns an instance of spec, not yet running. A standby
// instance holds back its upstream and catalog until it is promoted.
func (s *Supervisor) newInstance(spec Spec, limits string, standby bool) *instance {
	in := &instance{
		s:       s,
		spec:    spec,
		log:     s.log.With().Str("provider", spec.Key.String()).Logger(),
		limits:  limits,
		standby: standby,
	}
	in.Init(in.finalize)
	in.lastUsed.Store(time.Now().UnixNano())
	return in
}

// Stop stops supervising key: it closes the child's stdin, waits StopGrace,
// sends SIGTERM to the group, waits KillGrace, sends SIGKILL, and returns once
// the child is reaped and the rest of its group killed. During backoff it
// returns at once. It is idempotent: stopping an unknown key returns nil. If ctx
// ends first Stop returns ctx's error and the stop carries on in the background.
func (s *Supervisor) Stop(ctx context.Context, key switchboard.InstanceKey) error {
	s.mu.Lock()
	in := s.insts[key]
	s.mu.Unlock()
	if in == nil {
		return nil
	}
	return in.stop(ctx)
}

// Restart stops key (as Stop) and starts it again with the same spec, resetting
// its failure count. It is an ENOTFOUND error if key is not supervised.
func (s *Supervisor) Restart(ctx context.Context, key switchboard.InstanceKey) error {
	s.mu.Lock()
	in := s.insts[key]
	s.mu.Unlock()
	if in == nil {
		return switchboard.Errorf(switchboard.ENOTFOUND, "restarting provider %s: not supervised", key)
	}
	if err := s.Stop(ctx, key); err != nil {
		return fmt.Errorf("restarting provider %s: %w", key, err)
	}
	return s.Start(in.spec)
}

// StopAll stops every instance, and every replaced one still draining, in
// parallel and returns when all are gone or ctx ends. When nothing is left
// supervised it also ends the reaper helper (a later Start starts a new one).
func (s *Supervisor) StopAll(ctx context.Context) error {
	s.mu.Lock()
	keys := make([]switchboard.InstanceKey, 0, len(s.insts))
	for k := range s.insts {
		keys = append(keys, k)
	}
	retiring := make([]*instance, 0, len(s.retiring))
	for in := range s.retiring {
		retiring = append(retiring, in)
	}
	s.mu.Unlock()
	errs := make([]error, len(keys)+len(retiring))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { errs[i] = s.Stop(ctx, k) })
	}
	for i, in := range retiring {
		wg.Go(func() { errs[len(keys)+i] = in.stop(ctx) })
	}
	wg.Wait()
	s.mu.Lock()
	empty := len(s.insts) == 0
	s.mu.Unlock()
	if empty {
		s.reaper.close()
	}
	return errors.Join(errs...)
}

// Has reports whether key is supervised (in any state, including failed).
func (s *Supervisor) Has(key switchboard.InstanceKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insts[key] != nil
}

// Specs returns the specs of all supervised instances, with defaults applied,
// sorted by key.
func (s *Supervisor) Specs() []Spec {
	s.mu.Lock()
	specs := make([]Spec, 0, len(s.insts))
	for _, in := range s.insts {
		specs = append(specs, in.spec)
	}
	s.mu.Unlock()
	slices.SortFunc(specs, func(a, b Spec) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	return specs
}

// Running returns the upstream of key's current instance while it runs. It
// takes no lock: calls read it.
func (s *Supervisor) Running(key switchboard.InstanceKey) (switchboard.Upstream, bool) {
	r, ok := s.routes.Load(key)
	if !ok {
		return nil, false
	}
	return r.(*route).up, true
}

// WaitReady blocks until key is running (nil; its catalog has been handed to
// OnCatalog by then), has failed or is stopped (an EUNAVAILABLE error), is not
// supervised (ENOTFOUND), or ctx ends; see awaitReady for its own bound.
func (s *Supervisor) WaitReady(ctx context.Context, key switchboard.InstanceKey) error {
	s.mu.Lock()
	in := s.insts[key]
	s.mu.Unlock()
	if in == nil {
		return switchboard.Errorf(switchboard.ENOTFOUND, "waiting for provider %s: not supervised", key)
	}
	return in.awaitReady(ctx, false)
}

// awaitReady blocks until the instance runs (nil), has failed or stopped, or
// ctx ends. With firstTry, a failed attempt (the instance backs off before
// trying again) is an error too. Beyond ctx, the wait is bounded by the
// spec's InitTimeout plus readyMargin, counted from when the instance's start
// left the queue (Options.MaxStarting): a wait for an instance to start must
// not fail because others were starting first.
func (in *instance) awaitReady(ctx context.Context, firstTry bool) error {
	return in.AwaitReady(ctx, "provider "+in.spec.Key.String(), firstTry, in.spec.InitTimeout+readyMargin, in.s.opts.Redact)
}

// startSlot waits for the instance's turn to start under Options.MaxStarting,
// in StateQueued if it has to wait, then sets StateStarting. It returns the
// function that gives the turn back (idempotent), or false if a stop was
// requested first.
func (in *instance) startSlot() (release func(), ok bool) {
	slots := in.s.startSlots
	if slots == nil {
		in.SetState(switchboard.StateStarting)
		return func() {}, true
	}
	select {
	case slots <- struct{}{}:
	default:
		in.SetState(switchboard.StateQueued)
		in.emit(Event{Kind: EventQueued})
		queued := time.Now()
		select {
		case slots <- struct{}{}:
			in.log.Debug().Dur("queued", time.Since(queued)).Msg("provider start waited for its turn")
		case <-in.Stopping():
			return nil, false
		}
	}
	in.SetState(switchboard.StateStarting)
	return sync.OnceFunc(func() { <-slots }), true
}

// Status returns a snapshot of every supervised instance, sorted by key.
func (s *Supervisor) Status() []switchboard.ProviderStatus {
	s.mu.Lock()
	insts := make([]*instance, 0, len(s.insts))
	for _, in := range s.insts {
		insts = append(insts, in)
	}
	s.mu.Unlock()
	out := make([]switchboard.ProviderStatus, 0, len(insts))
	for _, in := range insts {
		out = append(out, in.status())
	}
	slices.SortFunc(out, func(a, b switchboard.ProviderStatus) int {
		return strings.Compare(a.Provider+"@"+a.User, b.Provider+"@"+b.User)
	})
	return out
}

// instance is one supervised key: a goroutine running the child, restarting it
// with backoff, until Stop.
type instance struct {
	s      *Supervisor
	spec   Spec
	log    zerolog.Logger
	limits string // ProviderStatus.Limits

	// Life is the state, the stop signal and the wait for readiness. Its
	// Mu also guards note, pid, up and caps.
	lifecycle.Life

	flights  flights
	garbage  atomic.Int64
	lastUsed atomic.Int64 // unix nanoseconds of the last call routed here (per-user idle reaping)
	stderr   tail

	// pubMu serializes what the instance hands to OnCatalog and routes:
	// publish, unpublish, promote and retire.
	pubMu      sync.Mutex
	standby    bool // a replacement not yet promoted: holds back its upstream and catalog
	retired    bool // replaced: publishes nothing any more
	published  bool // OnCatalog last got a non-nil upstream from this instance
	pendingUp  *limited
	pendingCat *switchboard.Catalog
	note       string // shown as LastError while set: a replacement that failed to start (Mu)

	pid  int          // Mu
	up   *limited     // Mu
	caps capabilities // Mu
	// sessionOnly: the child died on the server/discover probe once, so
	// later starts skip it (run goroutine only).
	sessionOnly bool
}

// finalize runs once the instance's goroutine has ended after a stop was
// requested: it removes the instance from the supervisor unless it was
// replaced meanwhile (Start on a failed instance), even if the Stop that
// asked for it gave up waiting.
func (in *instance) finalize() {
	s := in.s
	s.mu.Lock()
	current := s.insts[in.spec.Key] == in
	if current {
		delete(s.insts, in.spec.Key)
	}
	delete(s.retiring, in)
	s.mu.Unlock()
	in.SetState(switchboard.StateStopped)
	if current {
		in.emit(Event{Kind: EventStop})
		in.log.Info().Msg("provider stopped")
	}
}

func (in *instance) emit(e Event) {
	if in.s.opts.OnEvent == nil {
		return
	}
	e.Time = time.Now()
	e.Key = in.spec.Key
	e.Err = in.s.opts.Redact(e.Err)
	in.s.opts.OnEvent(e)
}

func (in *instance) status() switchboard.ProviderStatus {
	redact := in.s.opts.Redact
	in.Mu.Lock()
	defer in.Mu.Unlock()
	st := switchboard.ProviderStatus{
		Provider:   in.spec.Key.Provider,
		User:       in.spec.Key.User,
		State:      in.State,
		Restarts:   in.Restarts,
		LastError:  redact(in.LastErr),
		LastExit:   in.LastExit,
		Tools:      in.Tools,
		Limits:     in.limits,
		StderrTail: in.stderr.snapshot(redact),
		Garbage:    in.garbage.Load(),
		InFlight:   in.flights.active.Load(),
	}
	if in.note != "" && st.LastError == "" {
		st.LastError = redact(in.note)
	}
	switch in.State {
	case switchboard.StateStarting, switchboard.StateRunning, switchboard.StateStopping:
		st.PID = in.pid
		st.StartedAt = in.StartedAt
	}
	return st
}

// publish routes calls to up and hands the catalog to OnCatalog; a standby
// instance keeps both until it is promoted, and a retired one publishes
// nothing.
func (in *instance) publish(up *limited, cat *switchboard.Catalog) {
	in.pubMu.Lock()
	defer in.pubMu.Unlock()
	switch {
	case in.retired:
	case in.standby:
		in.pendingUp, in.pendingCat = up, cat
	default:
		in.publishLocked(up, cat)
	}
}

func (in *instance) publishLocked(up *limited, cat *switchboard.Catalog) {
	in.published = true
	in.s.routes.Store(in.spec.Key, &route{up: up, in: in})
	if f := in.s.opts.OnCatalog; f != nil {
		f(in.spec.Key, up, cat)
	}
}

// unpublish stops routing calls to the instance and tells OnCatalog it is
// down, once per publication. A retired instance's key belongs to its
// replacement: nothing is touched.
func (in *instance) unpublish() {
	in.Mu.Lock()
	up := in.up
	in.up = nil
	in.Tools = 0
	in.Mu.Unlock()
	in.pubMu.Lock()
	defer in.pubMu.Unlock()
	in.pendingUp, in.pendingCat = nil, nil
	if !in.published || in.retired {
		return
	}
	in.published = false
	if up != nil {
		in.s.routes.CompareAndDelete(in.spec.Key, in.s.routeOf(in.spec.Key, up))
	}
	if f := in.s.opts.OnCatalog; f != nil {
		f(in.spec.Key, nil, nil)
	}
}

// routeOf returns the route stored for key if it goes to up, else nil.
func (s *Supervisor) routeOf(key switchboard.InstanceKey, up *limited) *route {
	if r, ok := s.routes.Load(key); ok && r.(*route).up == up {
		return r.(*route)
	}
	return nil
}

// runResult is how one run of the child ended.
type runResult struct {
	ready  bool          // it initialized and was published
	forced bool          // the supervisor killed it as unhealthy: always a failure
	ran    time.Duration // from spawn to reaping
	err    error         // why it ended, if known
}

// run is the instance's goroutine: start, watch, back off, repeat.
func (in *instance) run() {
	defer in.End()
	clock := in.s.opts.Clock
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
		if failures >= policy.MaxFailures {
			in.log.Error().Int("failures", failures).Str("error", in.s.opts.Redact(errText)).Msg("provider failed; not restarting")
			in.emit(Event{Kind: EventFailed, Err: errText})
			in.Mu.Lock()
			in.LastErr = fmt.Sprintf("gave up after %d quick failures: %s", failures, errText)
			in.SetStateLocked(switchboard.StateFailed)
			in.Mu.Unlock()
			return
		}
		delay := policy.Delay(attempt, in.s.opts.Jitter())
		in.SetState(switchboard.StateBackoff)
		in.log.Info().Dur("delay", delay).Int("failures", failures).Msg("restarting provider after delay")
		in.emit(Event{Kind: EventRestart, Delay: delay, Err: errText})
		select {
		case <-in.Stopping():
			return
		case <-clock.After(delay):
		}
		in.Restarted()
	}
}

// runOnce spawns the child, initializes it, publishes it, and serves it until
// it dies or a stop is requested. It returns only once the child is reaped (or
// could not be killed) and its pipes are closed.
func (in *instance) runOnce() (res runResult) {
	spec := in.spec
	redact := in.s.opts.Redact
	clock := in.s.opts.Clock

	env := childEnv(in.s.opts.BaseEnv, spec.Env)
	path, err := resolveCommand(spec.Command, spec.Dir, env)
	if err != nil {
		in.SetState(switchboard.StateStarting)
		in.SetErr(err)
		in.log.Error().Str("error", redact(err.Error())).Msg("provider command not runnable")
		return runResult{err: err}
	}
	release, ok := in.startSlot()
	if !ok {
		return runResult{}
	}
	defer release()
	argv := append([]string{spec.Command}, spec.Args...)
	lim, err := in.s.limits.prepare(spec.Key, spec.resources())
	if err != nil {
		in.SetErr(err)
		in.log.Error().Err(err).Msg("provider resource limits could not be set up")
		return runResult{err: err}
	}
	// A child subreaper is stopped, not killed, when the gateway dies, so that
	// the reaper finds its whole subtree (reaper.go); that needs a reaper.
	deathSig := syscall.SIGKILL
	if lim != nil && lim.subreaper && in.s.reaper.ensure() {
		deathSig = syscall.SIGSTOP
	}
	start := clock.Now()
	pl := lim.placement(deathSig)
	p, err := startProcess(path, argv, env, spec.Dir, pl)
	in.s.limits.started(lim, pl)
	if err != nil {
		lim.release(in.log)
		in.SetErr(err)
		in.log.Error().Str("error", redact(err.Error())).Msg("provider spawn failed")
		return runResult{err: err}
	}
	p.lim = lim
	if lim != nil && lim.placeErr != nil {
		in.log.Warn().Err(lim.placeErr).Msg("process tracking: placing the provider in its cgroup failed; descendants that leave its process group will not be found")
	}
	regs := lim.registrations(p.pid)
	in.s.reaper.add(regs...)
	if deathSig == syscall.SIGSTOP {
		// Should the gateway die, the provider must see no EOF or EPIPE on
		// its pipes before the reaper stopped its subtree (reaper.go).
		if err := in.s.reaper.hold(p.pid, p.stdin, p.stdout, p.stderr); err != nil {
			in.log.Warn().Err(err).Msg("process tracking: a killed gateway may leave this provider's descendants behind")
		}
	}
	in.Mu.Lock()
	in.pid = p.pid
	in.StartedAt = time.Now()
	in.Mu.Unlock()
	in.log.Info().Int("pid", p.pid).Str("command", path).Int("args", len(spec.Args)).Strs("env", envNames(env)).Msg("provider spawned")
	in.emit(Event{Kind: EventSpawn, PID: p.pid})

	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		drainStderr(p.stderr, in.log, &in.stderr, redact)
	}()

	listChanged := make(chan struct{}, 1)
	garbageTrip := make(chan struct{}, 1)
	var window rateWindow
	warn := rate.NewLimiter(rate.Every(time.Second), 3)
	conn := NewConn(p.stdout, p.stdin, ConnOptions{
		MaxMessageBytes: spec.MaxMessageBytes,
		OnNotification: func(method string, params json.RawMessage) {
			in.onNotification(method, params, listChanged)
		},
		OnGarbage: func(line []byte, total int64) {
			in.garbage.Add(1)
			if warn.Allow() {
				ev := in.log.Warn().Int("bytes", len(line)).Int64("total", total)
				if len(line) <= garbageSampleBytes {
					ev = ev.Str("line", redact(string(line)))
				}
				ev.Msg("dropped invalid line from provider stdout")
			}
			if spec.GarbageLimit > 0 && window.add(clock.Now()) > spec.GarbageLimit {
				select {
				case garbageTrip <- struct{}{}:
				default:
				}
			}
		},
	})

	runCtx, cancelRun := context.WithCancel(context.Background())
	go func() {
		select {
		case <-in.Stopping():
			cancelRun()
		case <-runCtx.Done():
		}
	}()
	defer func() {
		cancelRun()
		select {
		case <-p.exited:
			// Descendants that left the group die now: those in its cgroup, or
			// (subreaper mode) those of its subtree, now the gateway's.
			if n := lim.killRest(); n > 0 {
				in.log.Warn().Int("pid", p.pid).Int("killed", n).Msg("killed processes left behind by the provider")
			}
			// Let the Conn and the stderr drain read what the child wrote before
			// dying; both end at EOF or at the read deadlines set on exit.
			if waitFor(conn.Done(), killWait) && errors.Is(conn.Err(), os.ErrDeadlineExceeded) {
				in.log.Warn().Int("pid", p.pid).Msg("a process outside the provider's group still holds its stdout")
			}
			_ = conn.Close()
			<-stderrDone
			p.closePipes()
			in.s.reaper.release(p.pid)
			in.s.reaper.remove(regs...) // reaped, and the rest killed
		default: // could not kill it: do not wait on its pipes
			in.s.reaper.release(p.pid)
			_ = conn.Close()
			p.closePipes()
			<-stderrDone
		}
		lim.release(in.log)
		res.ran = clock.Now().Sub(start)
	}()

	initCtx, cancelInit := context.WithTimeout(runCtx, spec.InitTimeout)
	cat, err := in.initialize(initCtx, conn)
	cancelInit()
	if err != nil {
		if in.StopRequested() {
			in.shutdown(p, conn)
			return res
		}
		grace := time.Duration(0)
		if errors.Is(err, io.EOF) { // closed its stdout: most likely exiting
			grace = spec.KillGrace
		}
		if !waitFor(p.exited, grace) {
			in.killNow(p, "provider failed to initialize; killing its group")
		}
		select {
		case <-p.exited:
			err = fmt.Errorf("%w (%s)", err, p.state)
		default:
		}
		in.SetErr(err)
		in.log.Error().Str("error", redact(err.Error())).Msg("provider start failed")
		res.err = err
		if xerr := in.recordExit(p); errors.Is(xerr, errOverMemory) {
			res.err = xerr
		}
		return res
	}

	up := newLimited(conn, spec, &in.flights)
	up.tr = in.s.opts.Tracer
	if conn.Modern() {
		up.lis = listen.New(context.Background(), func(ctx context.Context, params json.RawMessage) {
			go func() {
				_, err := conn.Call(ctx, &switchboard.Request{Method: listen.Method, Params: params})
				if err != nil && ctx.Err() == nil && conn.Err() == nil {
					in.log.Warn().Str("error", redact(err.Error())).Msg("the provider's subscriptions/listen stream ended")
				}
			}()
		})
		up.lis.Start()
		defer up.lis.Close()
	}
	in.Mu.Lock()
	in.up = up
	in.Tools = len(cat.Tools)
	in.LastErr = ""
	in.note = ""
	in.Mu.Unlock()
	res.ready = true
	// Publish before the state turns Running, so that whoever waits for it
	// (WaitReady: a user's first tools/list starting their own instance) finds
	// the tools in the mux.
	in.publish(up, cat)
	in.SetState(switchboard.StateRunning)
	in.log.Info().Int("tools", len(cat.Tools)).Int("prompts", len(cat.Prompts)).Int("resources", len(cat.Resources)).Msg("provider ready")
	in.emit(Event{Kind: EventReady, PID: p.pid})
	release() // started: the next queued instance's turn

	var debounce <-chan time.Time
	for {
		select {
		case <-p.exited:
			in.unpublish()
			res.err = in.recordExit(p)
			return res

		case <-runCtx.Done():
			in.shutdown(p, conn)
			return res

		case <-conn.Done():
			in.unpublish()
			cerr := conn.Err()
			if errors.Is(cerr, io.EOF) { // closed its stdout: most likely exiting
				select {
				case <-p.exited:
				case <-time.After(spec.KillGrace):
					in.killNow(p, "provider closed its stdout but did not exit; killing its group")
				}
			} else {
				res.forced = true
				in.SetErr(cerr)
				in.killNow(p, "provider connection failed; killing its group")
			}
			if errors.Is(cerr, ErrMessageTooLong) {
				in.log.Error().Int("max_bytes", spec.MaxMessageBytes).Msg("provider sent a line over the message size limit")
			}
			exitErr := in.recordExit(p)
			if res.forced {
				res.err = cerr
			} else {
				res.err = exitErr
			}
			return res

		case <-garbageTrip:
			in.unpublish()
			res.forced = true
			res.err = switchboard.Errorf(switchboard.EUNAVAILABLE, "provider wrote more than %d invalid lines in a minute", spec.GarbageLimit)
			in.SetErr(res.err)
			in.killNow(p, "provider exceeded the invalid-output limit; killing its group")
			in.recordExit(p)
			return res

		case <-up.gate.Tripped():
			in.unpublish()
			res.forced = true
			res.err = switchboard.Errorf(switchboard.EUNAVAILABLE, "provider timed out %d calls in a row (call_timeout %s)", up.gate.Timeouts(), spec.CallTimeout)
			in.SetErr(res.err)
			in.emit(Event{Kind: EventUnhealthy, PID: p.pid, Err: res.err.Error()})
			in.killNow(p, "provider timed out too many calls in a row; killing its group")
			in.recordExit(p)
			return res

		case <-listChanged:
			debounce = time.After(listChangedDebounce)

		case <-debounce:
			debounce = nil
			ctx, cancel := context.WithTimeout(runCtx, spec.CallTimeout)
			cat, err := in.fetchCatalog(ctx, conn, cat.Instructions)
			cancel()
			if err != nil {
				in.log.Warn().Str("error", redact(err.Error())).Msg("refreshing provider catalog failed; keeping the old one")
				continue
			}
			in.Mu.Lock()
			in.Tools = len(cat.Tools)
			in.Mu.Unlock()
			in.publish(up, cat)
			in.log.Info().Int("tools", len(cat.Tools)).Msg("provider catalog refreshed")
		}
	}
}

// recordExit logs and records the exit of a reaped (or unkillable) child. A
// child the kernel killed for exceeding its memory limit gets an error
// wrapping errOverMemory, also recorded as the instance's last error.
func (in *instance) recordExit(p *proc) error {
	select {
	case <-p.exited:
	default:
		return errors.New("provider did not exit")
	}
	code, sig := exitDetails(p.state)
	var oom error
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() && p.lim.overMemory(ws.Signal()) {
		oom = p.lim.overMemoryError()
	}
	in.Mu.Lock()
	in.LastExit = p.state.String()
	if oom != nil {
		in.LastErr = oom.Error()
	}
	in.Mu.Unlock()
	ev := Event{Kind: EventExit, PID: p.pid, ExitCode: code, Signal: sig}
	if oom != nil {
		ev.Err = oom.Error()
		in.log.Warn().Int("pid", p.pid).Int("exit_code", code).Str("signal", sig).Str("error", oom.Error()).Msg("provider exited: killed over its memory limit")
	} else {
		in.log.Info().Int("pid", p.pid).Int("exit_code", code).Str("signal", sig).Msg("provider exited")
	}
	in.emit(ev)
	if oom != nil {
		return fmt.Errorf("provider %w", oom)
	}
	return fmt.Errorf("provider exited: %s", p.state)
}

// killNow SIGKILLs the child's group and waits (bounded) for it to be reaped.
func (in *instance) killNow(p *proc, msg string) {
	in.log.Warn().Int("pid", p.pid).Msg(msg)
	if err := killGroup(p.pid, syscall.SIGKILL); err != nil {
		in.log.Error().Err(err).Msg("killing provider group failed")
	}
	if !waitFor(p.exited, killWait) {
		in.log.Error().Int("pid", p.pid).Msg("provider did not exit after SIGKILL")
	}
}

// shutdown stops the child gracefully: close stdin, wait StopGrace, SIGTERM the
// group, wait KillGrace, SIGKILL the group, wait a bounded time.
func (in *instance) shutdown(p *proc, conn *Conn) {
	spec := in.spec
	in.SetState(switchboard.StateStopping)
	in.unpublish()
	in.s.reaper.release(p.pid) // else the reaper's copy keeps its stdin open
	_ = conn.CloseWrite()
	in.log.Info().Int("pid", p.pid).Msg("stopping provider: closed its stdin")
	if waitFor(p.exited, spec.StopGrace) {
		in.recordExit(p)
		return
	}
	in.log.Warn().Int("pid", p.pid).Dur("waited", spec.StopGrace).Msg("provider still running after stdin close; sending SIGTERM to its group")
	if err := killGroup(p.pid, syscall.SIGTERM); err != nil {
		in.log.Error().Err(err).Msg("sending SIGTERM failed")
	}
	if waitFor(p.exited, spec.KillGrace) {
		in.recordExit(p)
		return
	}
	in.log.Warn().Int("pid", p.pid).Dur("waited", spec.KillGrace).Msg("provider still running after SIGTERM; sending SIGKILL to its group")
	in.killNow(p, "killing provider group")
	in.recordExit(p)
}

// waitFor waits up to d for ch to close and reports whether it did.
func waitFor(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

func (in *instance) onNotification(method string, params json.RawMessage, listChanged chan<- struct{}) {
	switch method {
	case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
		select {
		case listChanged <- struct{}{}:
		default:
		}
		return
	case "notifications/message":
		in.log.Debug().Str("params", in.s.opts.Redact(string(params))).Msg("provider log message")
	}
	if f := in.s.opts.OnNotification; f != nil {
		f(in.spec.Key, method, params)
	}
}

// initializeResult is the part of the child's initialize result we use.
type initializeResult struct {
	ProtocolVersion string       `json:"protocolVersion"`
	Capabilities    capabilities `json:"capabilities"`
	Instructions    string       `json:"instructions"`
}

type capabilities struct {
	raw json.RawMessage // the object; FetchCatalog reads what it lists from it
}

// initialize runs the MCP handshake and fetches the first catalog. A child
// that answers server/discover as a stateless-era server is spoken to in
// that era; any other answer, or none within probeTimeout, means the
// session era's initialize.
func (in *instance) initialize(ctx context.Context, conn *Conn) (*switchboard.Catalog, error) {
	if in.spec.Protocol != ProtocolSession && !in.sessionOnly {
		meta := switchboard.StatelessMeta(in.spec.Roots)
		raw, ok, err := discover(ctx, conn, meta)
		switch {
		case err != nil:
			// It died on the probe: next time, go straight to initialize.
			in.sessionOnly = in.spec.Protocol == ProtocolAuto
			return nil, fmt.Errorf("probing with server/discover: %w", err)
		case ok:
			var d struct {
				Capabilities json.RawMessage `json:"capabilities"`
				Instructions string          `json:"instructions"`
			}
			if err := json.Unmarshal(raw, &d); err != nil {
				return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "initializing: decoding the server/discover result")
			}
			caps := capabilities{raw: d.Capabilities}
			conn.SetModern(meta)
			in.Mu.Lock()
			in.caps = caps
			in.Mu.Unlock()
			in.log.Info().Str("protocol", StatelessVersion).Msg("provider speaks the stateless protocol")
			return in.fetchCatalog(ctx, conn, d.Instructions)
		case in.spec.Protocol == ProtocolStateless:
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "initializing: the provider does not answer server/discover for %s", StatelessVersion)
		}
	}
	raw, err := conn.CallParams(ctx, "initialize", switchboard.InitializeParams(in.spec.Roots))
	if err != nil {
		return nil, fmt.Errorf("initializing: %w", err)
	}
	var ir initializeResult
	if err := json.Unmarshal(raw, &ir); err != nil {
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "initializing: decoding result")
	}
	if c, ok := jsonrpc.Member(raw, "capabilities"); ok && len(c) > 0 && c[0] == '{' {
		ir.Capabilities.raw = c
	}
	if !supportedProtocols[ir.ProtocolVersion] {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "initializing: unsupported protocol version %q", ir.ProtocolVersion)
	}
	if err := conn.Notify(ctx, "notifications/initialized", nil); err != nil {
		return nil, fmt.Errorf("initializing: %w", err)
	}
	in.Mu.Lock()
	in.caps = ir.Capabilities
	in.Mu.Unlock()
	return in.fetchCatalog(ctx, conn, ir.Instructions)
}

// fetchCatalog lists everything the child's capabilities advertise
// (switchboard.FetchCatalog); a refused optional list is logged.
func (in *instance) fetchCatalog(ctx context.Context, conn *Conn, instructions string) (*switchboard.Catalog, error) {
	in.Mu.Lock()
	caps := in.caps
	in.Mu.Unlock()
	return switchboard.FetchCatalog(ctx, conn.Call, caps.raw, instructions, func(method string, err *switchboard.RPCError) {
		in.log.Warn().Str("method", method).Str("error", in.s.opts.Redact(err.Message)).Msg("provider list failed; treating as empty")
	})
}

// envNames returns the variable names of env, for logging without values.
func envNames(env []string) []string {
	names := make([]string, len(env))
	for i, kv := range env {
		names[i], _, _ = strings.Cut(kv, "=")
	}
	return names
}
