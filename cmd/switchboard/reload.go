package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/skills"
	"github.com/switchboard-mcp/switchboard/supervisor"
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

// ProviderFailure is a provider a reload could not start (or stop) as asked.
type ProviderFailure struct {
	Provider string `json:"provider"`
	Error    string `json:"error"`
}

type reloadReq struct {
	trigger, hash string
	reply         chan ReloadResult
}

// reloadHooks is what a reload changes beyond the processes.
type reloadHooks struct {
	// check refuses a config before anything changes.
	check func(*providers.Config) error
	// commit makes a state the one in force (policy, edge, skills...); the
	// names are providers the config no longer has.
	commit func(st *providers.State, removed []string)
	// record is told every outcome (audit, metrics, status events).
	record func(ReloadResult)
}

// reloader keeps the config in force and changes it: one goroutine (loop)
// applies reloads, whatever triggered them (the file watcher, SIGHUP, the
// admin socket), one at a time, each by one plan (providers.NewPlan) that
// the supervisor carries out make-before-break.
type reloader struct {
	path    string
	log     zerolog.Logger
	env     *providers.Resolver
	sup     *supervisor.Supervisor
	hooks   reloadHooks
	reqs    chan reloadReq
	watch   *providers.Watcher
	state   atomic.Pointer[providers.State]
	last    atomic.Pointer[ReloadResult]
	applied atomic.Int64
	mu      sync.Mutex // one plan at a time; guards skills and retry
	skills  string     // hash of skills.dir in force
	retry   bool       // the last plan left providers failed or blocked: try them again
}

func newReloader(path string, env *providers.Resolver, sup *supervisor.Supervisor, log zerolog.Logger, hooks reloadHooks) *reloader {
	r := &reloader{path: path, env: env, sup: sup, hooks: hooks, log: log, reqs: make(chan reloadReq, 1)}
	r.watch = providers.NewWatcher(path, providers.WatchOptions{Logger: log, Disruptive: r.disruptive,
		Changed: func(hash string) { r.request("file", hash) }})
	return r
}

// start puts cfg in force at startup: its providers start in the background.
func (r *reloader) start(ctx context.Context, cfg *providers.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skills = skills.Hash(cfg.Skills.Dir)
	res := r.carryOut(ctx, nil, cfg, ReloadResult{At: time.Now().UTC(), Trigger: "startup", NewHash: cfg.Hash}, true)
	res.OK, res.Error, res.Failed = true, "", nil // startup: failures show per provider in /status
	r.last.Store(&res)
}

// config returns the config in force.
func (r *reloader) config() *providers.Config { return r.state.Load().Config }

func (r *reloader) lastResult() ReloadResult { return *r.last.Load() }

// blocked returns the shared instances that cannot start (a missing secret).
func (r *reloader) blocked() []providers.Instance {
	var out []providers.Instance
	for _, in := range r.state.Load().Shared {
		if in.Blocked != "" {
			out = append(out, in)
		}
	}
	return out
}

// loop applies reloads until ctx ends.
func (r *reloader) loop(ctx context.Context) {
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
		}
	}
}

// Reload asks the reloader to reload and waits for the outcome.
func (r *reloader) Reload(ctx context.Context, trigger string) (ReloadResult, error) {
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

// request queues a reload without waiting; bursts coalesce because the
// channel holds one request and a full channel means one is already queued.
// hash is the file's hash a file reload was asked for.
func (r *reloader) request(trigger, hash string) {
	select {
	case r.reqs <- reloadReq{trigger: trigger, hash: hash}:
	default:
	}
}

// apply reads, checks and applies the config file, or keeps the old config
// untouched when the file is not valid.
func (r *reloader) apply(ctx context.Context, trigger, hash string) ReloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.state.Load()
	res := ReloadResult{At: time.Now().UTC(), Trigger: trigger, OldHash: cur.Config.Hash}
	next, err := providers.LoadFile(r.path)
	if err != nil {
		res.Error = err.Error()
		var lines []string
		for _, p := range providers.Problems(err) {
			lines = append(lines, p.String())
		}
		r.log.Error().Str("trigger", trigger).Strs("problems", lines).Msg("reload rejected; the previous config keeps serving")
		r.hooks.record(res)
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
	skillsHash := skills.Hash(next.Skills.Dir)
	if next.Hash == cur.Config.Hash && skillsHash == r.skills && !r.retry {
		res.OK, res.Unchanged = true, true
		return res
	}
	if err := r.hooks.check(next); err != nil {
		res.Error = "auth: " + switchboard.ErrorMessage(err)
		r.log.Error().Str("trigger", trigger).Err(err).Msg("reload rejected; the previous config keeps serving")
		r.hooks.record(res)
		return res
	}
	res.Skills = skillsHash != r.skills
	r.skills = skillsHash
	return r.report(r.carryOut(ctx, cur, next, res, false))
}

// secretsChanged re-plans the config in force with the secrets as they are
// now: the providers whose resolved environment changed are replaced.
func (r *reloader) secretsChanged(ctx context.Context) ReloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.state.Load()
	res := ReloadResult{At: time.Now().UTC(), Trigger: "secret", OldHash: cur.Config.Hash, NewHash: cur.Config.Hash}
	res = r.report(r.carryOut(ctx, cur, cur.Config, res, false))
	r.last.Store(&res)
	return res
}

// carryOut plans going from cur to next and has the supervisor carry it out.
func (r *reloader) carryOut(ctx context.Context, cur *providers.State, next *providers.Config, res ReloadResult, startup bool) ReloadResult {
	plan := providers.NewPlan(ctx, cur, next, r.env)
	ch := supervisor.Changes{StopUsers: plan.StopUsers, Providers: map[string]supervisor.Provider{}, Background: startup}
	for _, in := range plan.Start {
		ch.Start = append(ch.Start, specOf(in.Provider, in.Env, ""))
	}
	for _, in := range plan.Replace {
		ch.Replace = append(ch.Replace, specOf(in.Provider, in.Env, ""))
	}
	for _, in := range plan.Stop {
		ch.Stop = append(ch.Stop, in.Key())
	}
	for name, in := range plan.Next().Users {
		p := in.Provider
		ch.Providers[name] = supervisor.Provider{UserScoped: true, MaxUsers: p.Connection.MaxUsers,
			IdleTimeout: p.Connection.IdleTimeout.D(), InitTimeout: p.Limits.InitTimeout.D()}
	}
	result := r.sup.Apply(ctx, ch, func(failed []supervisor.Failure) {
		for _, f := range failed {
			if f.Key.User == "" && contains(plan.Restarted(), f.Key.Provider) {
				plan.Keep(cur, f.Key.Provider) // the old process keeps serving
			}
		}
		r.state.Store(plan.Next())
		r.hooks.commit(plan.Next(), plan.Removed)
	})
	res.OK = true
	res.Added, res.Removed, res.PolicyOnly, res.NeedsRestart = plan.Added, plan.Removed, plan.PolicyOnly, plan.NeedsRestart
	for _, k := range result.Replaced {
		res.Restarted = append(res.Restarted, k.Provider)
	}
	for _, in := range plan.Blocked {
		res.Failed = append(res.Failed, ProviderFailure{Provider: in.Provider.Name, Error: "cannot start: " + in.Blocked})
	}
	for _, f := range result.Failed {
		res.Failed = append(res.Failed, ProviderFailure{Provider: f.Key.String(), Error: f.Err})
	}
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

// report logs and records an applied plan.
func (r *reloader) report(res ReloadResult) ReloadResult {
	r.applied.Add(1)
	ev := r.log.Info()
	if !res.OK {
		ev = r.log.Error().Str("error", res.Error)
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
	r.hooks.record(res)
	return res
}

// disruptive reports whether data, as the next config, would stop or restart
// a provider or change access. An invalid file is not: it is rejected whole.
func (r *reloader) disruptive(data []byte) bool {
	next, err := providers.Parse(data, r.path, r.path)
	if err != nil {
		return false
	}
	ctx := context.Background()
	cur := providers.NewPlan(ctx, nil, r.config(), nil).Next() // as written, like next
	return providers.NewPlan(ctx, cur, next, nil).Disruptive()
}

// watchConfig reloads when the config file's bytes change (see providers.Watcher).
func (r *reloader) watchConfig(ctx context.Context) { r.watch.Run(ctx) }

// watchSkills reloads when a skill in skills.dir changes, as it does for
// gateway.yaml: operator skills are read from disk, not built in.
func (r *reloader) watchSkills(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h := skills.Hash(r.config().Skills.Dir)
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
func (r *reloader) watchSIGHUP(ctx context.Context) {
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

// specOf is the supervisor spec of p's instance for user ("" for the shared
// one) with the resolved environment env.
func specOf(p *providers.Provider, env map[string]string, user string) supervisor.Spec {
	l := p.Limits
	maxTimeouts := l.MaxConsecutiveTimeouts.Value // unset: 0, the Spec's default
	if l.MaxConsecutiveTimeouts.Set && maxTimeouts == 0 {
		maxTimeouts = -1 // 0 turns the restart off; in a Spec, 0 means the default
	}
	return supervisor.Spec{
		Key:             switchboard.InstanceKey{Provider: p.Name, User: user},
		Command:         p.Command,
		Args:            p.Args,
		Env:             env,
		Dir:             p.Dir,
		InitTimeout:     l.InitTimeout.D(),
		CallTimeout:     l.CallTimeout.D(),
		MaxConcurrent:   l.MaxConcurrent,
		MaxQueue:        l.MaxQueue,
		MaxMessageBytes: l.MaxMessageMB << 20,
		MaxMemoryBytes:  int64(l.MaxMemoryMB) << 20,
		MaxCPU:          l.MaxCPU,
		// Only a user's own instance may ask its client for roots: a shared
		// child would apply one user's roots to every user.
		Roots:                  user != "",
		Protocol:               strings.TrimPrefix(p.Protocol, "auto"),
		MaxConsecutiveTimeouts: maxTimeouts,
	}
}

// userSpec gives the supervisor the spec of a user's own instance of a
// scope: user provider: the config's, with the user's connection secrets.
func (m *Main) userSpec(env *providers.Resolver) func(ctx context.Context, key switchboard.InstanceKey) (supervisor.Spec, error) {
	return func(ctx context.Context, key switchboard.InstanceKey) (supervisor.Spec, error) {
		in, ok := m.rel.state.Load().Users[key.Provider]
		if !ok {
			return supervisor.Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", key.Provider)
		}
		if !m.id.conns.has(key.User, key.Provider) {
			return supervisor.Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "connect %s first: switchboard connect %s --user %s, or POST /api/connections/%s", key.Provider, key.Provider, key.User, key.Provider)
		}
		vals, err := env.Env(ctx, in.Provider, key.User)
		if err != nil {
			return supervisor.Spec{}, err
		}
		return specOf(in.Provider, vals, key.User), nil
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func newReloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Reload gateway.yaml and the skills in the running gateway and print the outcome",
		Long: `Reload gateway.yaml (and the operator's skills) in the running gateway and
print what changed. Exit status 1 when the config is rejected (the previous
one keeps serving) or when a provider failed to start (the rest applied; a
changed provider that failed keeps its previous process).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			if !c.Online() {
				return errOnlineOnly
			}
			var res ReloadResult
			if err := c.call(cmd.Context(), "reload", nil, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.Unchanged {
				fmt.Fprintln(out, "reload: config and skills unchanged")
				return nil
			}
			if !res.OK && len(res.Failed) == 0 {
				fmt.Fprintf(out, "reload failed; the previous config keeps serving:\n%s\n", res.Error)
				return &exitError{code: 1}
			}
			fmt.Fprintf(out, "reloaded %s\n", short(res.NewHash))
			for _, part := range []struct {
				label string
				names []string
			}{{"added", res.Added}, {"removed", res.Removed}, {"restarted", res.Restarted}, {"policy only", res.PolicyOnly}, {"needs a gateway restart", res.NeedsRestart}} {
				if len(part.names) > 0 {
					fmt.Fprintf(out, "  %s: %s\n", part.label, strings.Join(part.names, ", "))
				}
			}
			if res.Skills {
				fmt.Fprintln(out, "  skills: reloaded from skills.dir")
			}
			if len(res.Failed) > 0 {
				fmt.Fprintln(out, "FAILED (a changed provider keeps its previous process; see switchboard status or /status):")
				for _, f := range res.Failed {
					fmt.Fprintf(out, "  %s: %s\n", f.Provider, f.Error)
				}
				return &exitError{code: 1}
			}
			return nil
		},
	}
}
