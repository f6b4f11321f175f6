package providers

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// ReloadResult is the outcome of one reload, shown in /status and printed by
// `switchboard reload`.
type ReloadResult struct {
	At        time.Time `json:"at"`
	OK        bool      `json:"ok"`
	Unchanged bool      `json:"unchanged,omitempty"`
	// Error says why the config was rejected (nothing changed), or which
	// providers failed (the rest applied).
	Error        string            `json:"error,omitempty"`
	Trigger      string            `json:"trigger"`
	OldHash      string            `json:"old_hash,omitempty"`
	NewHash      string            `json:"new_hash,omitempty"`
	Added        []string          `json:"added,omitempty"`
	Removed      []string          `json:"removed,omitempty"`
	Restarted    []string          `json:"restarted,omitempty"`
	PolicyOnly   []string          `json:"policy_only,omitempty"`
	NeedsRestart []string          `json:"needs_restart,omitempty"`
	Failed       []ProviderFailure `json:"failed,omitempty"`
	Skills       bool              `json:"skills_reloaded,omitempty"`

	superseded bool // a file reload whose bytes changed again before it ran; not recorded
}

// ProviderFailure is a provider instance a reload could not start (or stop)
// as planned.
type ProviderFailure struct {
	Provider string `json:"provider"`
	Error    string `json:"error"`
}

// Executor carries out the process side of a plan: the supervisor, in the
// gateway.
type Executor interface {
	// Execute starts, replaces and stops the plan's instances,
	// make-before-break. Once every new process is ready or has failed it
	// calls commit with the providers whose replacement failed (their old
	// process keeps serving); the configuration changes there. It returns
	// the providers it replaced and every instance that failed to start or
	// stop. With background (startup) it does not wait for new processes.
	Execute(ctx context.Context, p *Plan, background bool, commit func(failedReplacements []string)) (replaced []string, failed []ProviderFailure)
}

// ReloaderOptions configure a Reloader.
type ReloaderOptions struct {
	// Path is the config file.
	Path     string
	Logger   zerolog.Logger
	Resolver *Resolver
	Executor Executor
	// Check refuses a config before anything changes (nil: none).
	Check func(*Config) error
	// Commit makes a state the one in force everywhere but in the processes
	// (visibility, the edge, skills...); removed names the providers the
	// config no longer has.
	Commit func(st *State, removed []string)
	// Record is told every outcome (audit, metrics, status events).
	Record func(ReloadResult)
	// SkillsHash digests the skills in a skills.dir, so that a change to
	// them reloads as a change to the config does (nil: skills do not count).
	SkillsHash func(dir string) string
}

// Reloader keeps the config in force and changes it. One goroutine (Run)
// applies reloads, whatever triggered them (the file watcher, SIGHUP, a
// change to the skills, the admin socket), one at a time, each by one plan
// (NewPlan) that the Executor carries out. An invalid file changes nothing.
type Reloader struct {
	opts ReloaderOptions
	reqs chan reloadReq
	// secrets holds one queued SecretsChanged (RequestSecrets).
	secrets chan struct{}
	watch   *Watcher
	state   atomic.Pointer[State]
	last    atomic.Pointer[ReloadResult]
	// applied counts the plans carried out (reloads and secret changes).
	applied atomic.Int64

	mu     sync.Mutex // one plan at a time; guards skills and retry
	skills string     // hash of skills.dir in force
	retry  bool       // the last plan left providers failed or blocked: try them again
}

type reloadReq struct {
	trigger, hash string
	reply         chan ReloadResult
}

// NewReloader returns a reloader of the config at opts.Path; Start puts the
// first config in force.
func NewReloader(opts ReloaderOptions) *Reloader {
	if opts.SkillsHash == nil {
		opts.SkillsHash = func(string) string { return "" }
	}
	if opts.Check == nil {
		opts.Check = func(*Config) error { return nil }
	}
	r := &Reloader{opts: opts, reqs: make(chan reloadReq, 1), secrets: make(chan struct{}, 1)}
	r.watch = NewWatcher(opts.Path, WatchOptions{Logger: opts.Logger, Disruptive: r.disruptive,
		Changed: func(hash string) { r.request("file", hash) }})
	return r
}

// Start puts cfg in force at startup: its providers start in the background
// (their failures show per provider, in status).
func (r *Reloader) Start(ctx context.Context, cfg *Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skills = r.opts.SkillsHash(cfg.Skills.Dir)
	res := r.carryOut(ctx, nil, cfg, ReloadResult{At: time.Now().UTC(), Trigger: "startup", NewHash: cfg.Hash}, true)
	res.OK, res.Error, res.Failed = true, "", nil
	r.last.Store(&res)
}

// State returns the state in force.
func (r *Reloader) State() *State { return r.state.Load() }

// Config returns the config in force.
func (r *Reloader) Config() *Config { return r.state.Load().Config }

// Last returns the outcome of the last reload.
func (r *Reloader) Last() ReloadResult { return *r.last.Load() }

// Applied returns how many plans were carried out since Start.
func (r *Reloader) Applied() int64 { return r.applied.Load() }

// Blocked returns the shared instances that cannot start (a missing secret).
func (r *Reloader) Blocked() []Instance {
	var out []Instance
	for _, in := range r.state.Load().Shared {
		if in.Blocked != "" {
			out = append(out, in)
		}
	}
	return out
}

// Run applies reloads until ctx ends: those asked for (Reload, Request,
// RequestSecrets) and those of a change to the file, to the skills or a
// SIGHUP.
func (r *Reloader) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { r.watch.Run(ctx) })
	wg.Go(func() { r.watchSkills(ctx) })
	wg.Go(func() { r.watchSIGHUP(ctx) })
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.reqs:
			res := r.apply(ctx, req.trigger, req.hash)
			if !res.superseded {
				r.last.Store(&res)
			}
			if req.reply != nil {
				req.reply <- res
			}
		case <-r.secrets:
			r.SecretsChanged(ctx)
		}
	}
}

// RequestSecrets queues SecretsChanged on Run's goroutine without waiting,
// for a caller that must not wait for providers to restart (the consumer of
// other replicas' changes). Requests made while one is queued coalesce: the
// queued one reads the secrets as they are when it runs.
func (r *Reloader) RequestSecrets() {
	select {
	case r.secrets <- struct{}{}:
	default:
	}
}

// Reload asks Run to reload and waits for the outcome.
func (r *Reloader) Reload(ctx context.Context, trigger string) (ReloadResult, error) {
	reply := make(chan ReloadResult, 1)
	select {
	case r.reqs <- reloadReq{trigger: trigger, reply: reply}:
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
	select {
	case res := <-reply:
		return res, nil
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
}

// Request queues a reload without waiting; bursts coalesce because the
// channel holds one request and a full channel means one is already queued.
func (r *Reloader) Request(trigger string) { r.request(trigger, "") }

// request is Request; hash is the file's hash a file reload was asked for.
func (r *Reloader) request(trigger, hash string) {
	select {
	case r.reqs <- reloadReq{trigger: trigger, hash: hash}:
	default:
	}
}

// apply reads, checks and applies the config file, or keeps the old config
// untouched when the file is not valid.
func (r *Reloader) apply(ctx context.Context, trigger, hash string) ReloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.opts.Logger
	cur := r.state.Load()
	res := ReloadResult{At: time.Now().UTC(), Trigger: trigger, OldHash: cur.Config.Hash}
	next, err := LoadFile(r.opts.Path)
	if err != nil {
		res.Error = err.Error()
		var lines []string
		for _, p := range Problems(err) {
			lines = append(lines, p.String())
		}
		log.Error().Str("trigger", trigger).Strs("problems", lines).Msg("reload rejected; the previous config keeps serving")
		r.record(res)
		return res
	}
	res.NewHash = next.Hash
	if trigger == "file" && hash != next.Hash {
		// The file changed again after the watcher confirmed it: those bytes
		// were never checked for settling. The watcher sees the new change.
		r.watch.Superseded(hash)
		res.superseded = true
		return res
	}
	skills := r.opts.SkillsHash(next.Skills.Dir)
	if next.Hash == cur.Config.Hash && skills == r.skills && !r.retry {
		res.OK, res.Unchanged = true, true
		return res
	}
	if err := r.opts.Check(next); err != nil {
		res.Error = "auth: " + switchboard.ErrorMessage(err)
		log.Error().Str("trigger", trigger).Err(err).Msg("reload rejected; the previous config keeps serving")
		r.record(res)
		return res
	}
	res.Skills = skills != r.skills
	r.skills = skills
	return r.report(r.carryOut(ctx, cur, next, res, false))
}

// SecretsChanged re-plans the config in force with the secrets as they are
// now: the providers whose resolved environment changed are replaced. When
// nothing changed it does nothing and records nothing.
func (r *Reloader) SecretsChanged(ctx context.Context) ReloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.state.Load()
	res := ReloadResult{At: time.Now().UTC(), Trigger: "secret", OldHash: cur.Config.Hash, NewHash: cur.Config.Hash}
	if NewPlan(ctx, cur, cur.Config, r.opts.Resolver).Empty() {
		res.OK, res.Unchanged = true, true
		return res
	}
	res = r.report(r.carryOut(ctx, cur, cur.Config, res, false))
	r.last.Store(&res)
	return res
}

// carryOut plans going from cur to next and has the executor carry it out.
func (r *Reloader) carryOut(ctx context.Context, cur *State, next *Config, res ReloadResult, startup bool) ReloadResult {
	plan := NewPlan(ctx, cur, next, r.opts.Resolver)
	replaced, failed := r.opts.Executor.Execute(ctx, plan, startup, func(failedReplacements []string) {
		for _, name := range failedReplacements {
			plan.Keep(cur, name) // the old process keeps serving
		}
		r.state.Store(plan.Next())
		if r.opts.Commit != nil {
			r.opts.Commit(plan.Next(), plan.Removed)
		}
	})
	res.OK = true
	res.Added, res.Removed, res.PolicyOnly, res.NeedsRestart = plan.Added, plan.Removed, plan.PolicyOnly, plan.NeedsRestart
	res.Restarted = replaced
	for _, in := range plan.Blocked {
		res.Failed = append(res.Failed, ProviderFailure{Provider: in.Provider.Name, Error: "cannot start: " + in.Blocked})
	}
	res.Failed = append(res.Failed, failed...)
	r.retry = len(res.Failed) > 0
	if len(res.Failed) > 0 {
		res.OK = false
		var msgs []string
		for _, f := range res.Failed {
			msgs = append(msgs, "provider "+f.Provider+": "+f.Error)
		}
		res.Error = strings.Join(msgs, "; ")
	}
	return res
}

// report logs and records a plan carried out.
func (r *Reloader) report(res ReloadResult) ReloadResult {
	r.applied.Add(1)
	log := r.opts.Logger
	ev := log.Info()
	if !res.OK {
		ev = log.Error().Str("error", res.Error)
	}
	ev = ev.Str("trigger", res.Trigger).Str("old_hash", short(res.OldHash)).Str("new_hash", short(res.NewHash)).
		Strs("added", res.Added).Strs("removed", res.Removed).Strs("restarted", res.Restarted).Strs("policy_only", res.PolicyOnly)
	if len(res.NeedsRestart) > 0 {
		ev = ev.Strs("needs_gateway_restart", res.NeedsRestart)
	}
	if res.OK {
		ev.Msg("config reloaded")
	} else {
		ev.Msg("config reloaded, but providers failed; those that were running keep their previous process")
	}
	r.record(res)
	return res
}

func (r *Reloader) record(res ReloadResult) {
	if r.opts.Record != nil {
		r.opts.Record(res)
	}
}

// disruptive reports whether data, as the next config, would stop or restart
// a provider or change access. An invalid file is not: it is rejected whole.
func (r *Reloader) disruptive(data []byte) bool {
	next, err := Parse(data, r.opts.Path, r.opts.Path)
	if err != nil {
		return false
	}
	ctx := context.Background()
	cur := NewPlan(ctx, nil, r.Config(), nil).Next() // as written, like next
	return NewPlan(ctx, cur, next, nil).Disruptive()
}

// watchSkills reloads when a skill in skills.dir changes, as it does for the
// config file: operator skills are read from disk, not built in.
func (r *Reloader) watchSkills(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h := r.opts.SkillsHash(r.Config().Skills.Dir)
			r.mu.Lock()
			changed := h != r.skills
			r.mu.Unlock()
			if changed {
				r.request("skills", "")
			}
		}
	}
}

// watchSIGHUP reloads on SIGHUP.
func (r *Reloader) watchSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			r.request("sighup", "")
		}
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
