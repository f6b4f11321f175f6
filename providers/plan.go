package providers

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/switchboard-mcp/switchboard"
)

// This file is the gateway's one answer to "what changed?": NewPlan compares
// the state in force with the next config, secrets and connections
// resolved, and says which instances start, stop, are replaced, or only
// change policy. Startup, reloads, secret changes and the file watcher all
// ask it; everything else carries the plan out and reports it.

// Resolver resolves the references in providers' environments.
type Resolver struct {
	// Getenv reads the gateway's own environment, for ${env:NAME}.
	Getenv func(string) string
	// Secrets decrypts ${secret:NAME} and users' connection secrets.
	Secrets switchboard.SecretStore
	// Redactor learns every value taken from the gateway's environment (the
	// secret store registers its own values).
	Redactor switchboard.Redactor
}

// Env returns the environment of p's instance for user ("" for the shared
// instance, or the part of a user's instance that is the same for every
// user): literals as written, ${env:NAME} from the gateway's environment,
// ${secret:NAME} from the vault, and for a user their connection's secrets.
// A secret that cannot be had is an EUNAVAILABLE error naming it.
func (r *Resolver) Env(ctx context.Context, p *Provider, user string) (map[string]string, error) {
	env := make(map[string]string, len(p.Env)+len(p.Connection.Secrets))
	for k, v := range p.Env {
		val, err := r.value(ctx, v)
		if err != nil {
			return nil, err
		}
		env[k] = val
	}
	if user == "" {
		return env, nil
	}
	for _, name := range p.Connection.Secrets {
		sec, err := r.Secrets.UserSecret(ctx, user, p.Name, name)
		switch {
		case switchboard.ErrorCode(err) == switchboard.ENOTFOUND:
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "missing connection secret %s for %s", name, user)
		case err != nil:
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "connection secret %s of %s unreadable", name, user)
		}
		env[name] = sec.Reveal()
	}
	return env, nil
}

// Headers returns the headers of a url provider's requests, resolved as
// Env resolves values.
func (r *Resolver) Headers(ctx context.Context, p *Provider) (map[string]string, error) {
	if len(p.Headers) == 0 {
		return nil, nil
	}
	h := make(map[string]string, len(p.Headers))
	for k, v := range p.Headers {
		val, err := r.value(ctx, v)
		if err != nil {
			return nil, err
		}
		h[k] = val
	}
	return h, nil
}

// value resolves one env or header value: a literal as written,
// ${env:NAME} from the gateway's environment, ${secret:NAME} from the vault.
func (r *Resolver) value(ctx context.Context, v string) (string, error) {
	ref, err := ParseEnvValue(v)
	if err != nil {
		return "", err
	}
	switch ref.Kind {
	case RefEnv:
		val := ""
		if r.Getenv != nil {
			val = r.Getenv(ref.Name)
		}
		if r.Redactor != nil && val != "" {
			r.Redactor.Add(val)
		}
		return val, nil
	case RefSecret:
		sec, err := r.Secrets.Secret(ctx, ref.Name)
		switch {
		case switchboard.ErrorCode(err) == switchboard.ENOTFOUND:
			return "", switchboard.Errorf(switchboard.EUNAVAILABLE, "missing secret %s", ref.Name)
		case switchboard.ErrorCode(err) == switchboard.EINVALID: // validation refuses it first; never resolve one
			return "", err
		case err != nil:
			return "", switchboard.WrapError(switchboard.EUNAVAILABLE, err, "secret %s unreadable", ref.Name)
		}
		return sec.Reveal(), nil
	}
	return v, nil
}

// CheckConnection checks the values a user supplies to connect p: exactly
// the secrets its connection names. The error says what is missing and what
// is not expected.
func (p *Provider) CheckConnection(values map[string][]byte) error {
	var missing, unknown []string
	for _, name := range p.Connection.Secrets {
		if len(values[name]) == 0 {
			missing = append(missing, name)
		}
	}
	for name := range values {
		if !slices.Contains(p.Connection.Secrets, name) {
			unknown = append(unknown, name)
		}
	}
	if len(missing) == 0 && len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	msg := fmt.Sprintf("provider %s needs exactly %s", p.Name, strings.Join(p.Connection.Secrets, ", "))
	if len(missing) > 0 {
		msg += "; missing " + strings.Join(missing, ", ")
	}
	if len(unknown) > 0 {
		msg += "; not expected " + strings.Join(unknown, ", ")
	}
	return switchboard.Errorf(switchboard.EINVALID, "%s", msg)
}

// Instance is one provider process as a config asks for it: the shared
// instance of a provider, or the part every user's instance of a
// user-scoped provider has in common.
type Instance struct {
	Provider *Provider
	// Env is the resolved environment (as written, for a plan made without
	// a Resolver). For a user-scoped provider it lacks the user's own
	// connection secrets.
	Env map[string]string
	// Headers are a url provider's resolved headers (as written, without a
	// Resolver).
	Headers map[string]string
	// Blocked says why the instance cannot start (a missing secret); "" when
	// it can.
	Blocked string
}

// Key is the instance's key (the shared instance's).
func (i Instance) Key() switchboard.InstanceKey {
	return switchboard.InstanceKey{Provider: i.Provider.Name}
}

// SameProcess reports whether a and b run the same process (or, for a url
// provider, the same connection): command or url, args, transport, working
// directory, scope, protocol, connection, oauth, limits and every resolved
// environment and header value (so a secret's new value is a change).
func (i Instance) SameProcess(o Instance) bool {
	a, b := i.Provider, o.Provider
	return a.Command == b.Command &&
		slices.Equal(a.Args, b.Args) &&
		maps.Equal(i.Env, o.Env) &&
		a.Dir == b.Dir && a.Scope == b.Scope && a.Protocol == b.Protocol &&
		reflect.DeepEqual(a.Connection, b.Connection) &&
		a.Limits == b.Limits &&
		a.URL == b.URL && a.Transport == b.Transport &&
		maps.Equal(i.Headers, o.Headers) &&
		reflect.DeepEqual(a.OAuth, b.OAuth)
}

func samePolicy(a, b *Provider) bool {
	return a.Description == b.Description && a.InternalOnly == b.InternalOnly &&
		a.Public == b.Public && a.ReadOnly == b.ReadOnly &&
		reflect.DeepEqual(a.Tools, b.Tools) && a.Skill == b.Skill && a.SkillNote == b.SkillNote
}

// State is a config in force with its instances resolved: what runs.
type State struct {
	Config *Config
	// Shared holds the shared instance of every enabled shared provider,
	// by name; a blocked one is not running.
	Shared map[string]Instance
	// Users holds, for every enabled user-scoped provider, what its users'
	// instances have in common.
	Users map[string]Instance
}

// Plan is what going from one State to the next config changes.
type Plan struct {
	// Start are shared instances to start: new providers, and providers
	// that could not start before.
	Start []Instance
	// Replace are shared instances whose process changed: each new process
	// starts next to the old one, takes over once ready, and the old drains.
	Replace []Instance
	// Stop are shared instances to drain and stop: removed, disabled, now
	// per-user, or blocked now by a secret their running process had.
	Stop []Instance
	// Blocked are shared instances of the next config that cannot start. A
	// running instance whose environment is still what the secrets say
	// keeps serving; its provider is reported.
	Blocked []Instance
	// StopUsers names user-scoped providers whose users' instances stop,
	// because their process changed or the provider went away; users' next
	// calls start them again.
	StopUsers []string
	// Added and Removed name providers enabled by, and gone from, the next
	// config; PolicyOnly those whose visibility or write policy changed and
	// nothing else.
	Added, Removed, PolicyOnly []string
	// NeedsRestart names the settings that changed but apply only when the
	// gateway restarts; the next state keeps their old values.
	NeedsRestart []string
	// AccessChanged: roles, default_role, services or auth changed.
	AccessChanged bool

	next *State
}

// NewPlan plans going from cur (nil: nothing runs yet) to the config next,
// resolving environments with r (nil: as written, which is enough to tell
// whether a config change is disruptive). When next is cur's config, it
// finds what changing secrets changed.
func NewPlan(ctx context.Context, cur *State, next *Config, r *Resolver) *Plan {
	startup := cur == nil
	if startup {
		cur = &State{Config: &Config{}, Shared: map[string]Instance{}, Users: map[string]Instance{}}
	}
	old := cur.Config
	p := &Plan{next: &State{Shared: map[string]Instance{}, Users: map[string]Instance{}}}
	resolve := func(pr *Provider) Instance {
		if r == nil {
			return Instance{Provider: pr, Env: maps.Clone(pr.Env), Headers: maps.Clone(pr.Headers)}
		}
		env, err := r.Env(ctx, pr, "")
		if err != nil {
			return Instance{Provider: pr, Blocked: switchboard.ErrorMessage(err)}
		}
		headers, err := r.Headers(ctx, pr)
		if err != nil {
			return Instance{Provider: pr, Blocked: switchboard.ErrorMessage(err)}
		}
		return Instance{Provider: pr, Env: env, Headers: headers}
	}
	// still reports whether a running instance's environment is still what
	// the secrets and the gateway's environment say.
	still := func(in Instance) bool {
		return in.Blocked == "" && resolve(in.Provider).SameProcess(in)
	}
	names := map[string]bool{}
	for name := range old.Providers {
		names[name] = true
	}
	for name := range next.Providers {
		names[name] = true
	}
	for _, name := range sortedKeys(names) {
		o, n := old.Providers[name], next.Providers[name]
		wasOn, isOn := o != nil && o.IsEnabled(), n != nil && n.IsEnabled()
		switch {
		case isOn && !wasOn:
			p.Added = append(p.Added, name)
		case wasOn && !isOn:
			p.Removed = append(p.Removed, name)
		}
		var ni Instance
		if isOn {
			ni = resolve(n)
			if n.UserScoped() {
				p.next.Users[name] = ni
			}
		}
		restarted := false
		// The users' instances.
		if cu, ok := cur.Users[name]; ok {
			if nu, ok := p.next.Users[name]; !ok || !cu.SameProcess(nu) || cu.Blocked != nu.Blocked {
				p.StopUsers = append(p.StopUsers, name)
				restarted = true
			}
		}
		// The shared instance.
		co, running := cur.Shared[name]
		shared := isOn && !n.UserScoped()
		switch {
		case !shared && running:
			if co.Blocked == "" {
				p.Stop = append(p.Stop, co)
			}
			continue
		case !shared:
		case ni.Blocked != "":
			p.Blocked = append(p.Blocked, ni)
			if running && co.Blocked == "" {
				if still(co) {
					p.next.Shared[name] = co // keeps serving
					continue
				}
				p.Stop = append(p.Stop, co)
			}
			p.next.Shared[name] = ni
			continue
		case !running || co.Blocked != "":
			p.Start = append(p.Start, ni)
			restarted = true
		case !co.SameProcess(ni):
			p.Replace = append(p.Replace, ni)
			restarted = true
		}
		if shared {
			p.next.Shared[name] = ni
		}
		if wasOn && isOn && !restarted && !samePolicy(o, n) {
			p.PolicyOnly = append(p.PolicyOnly, name)
		}
	}
	p.next.Config = next
	if startup {
		return p
	}
	p.NeedsRestart = restartOnly(old, next)
	p.AccessChanged = !reflect.DeepEqual(old.Roles, next.Roles) ||
		old.DefaultRole != next.DefaultRole ||
		!reflect.DeepEqual(old.Services, next.Services) ||
		!reflect.DeepEqual(old.Auth, next.Auth)
	if len(p.NeedsRestart) > 0 {
		p.next.Config = next.keepRestartOnly(old)
	}
	return p
}

// Next returns the state in force once the plan is carried out.
func (p *Plan) Next() *State { return p.next }

// Keep records that the replacement of provider failed to start: the state
// in force keeps cur's instance, so that the next plan tries again.
func (p *Plan) Keep(cur *State, provider string) {
	if cur == nil {
		delete(p.next.Shared, provider)
		return
	}
	if in, ok := cur.Shared[provider]; ok {
		p.next.Shared[provider] = in
	}
}

// Restarted names the providers whose shared process is replaced.
func (p *Plan) Restarted() []string { return instanceNames(p.Replace) }

// Disruptive reports whether carrying out the plan stops or restarts a
// running provider, or changes what callers may see or do. A valid prefix of
// a file still being written looks like such a change (trailing providers,
// env entries, deny lists or roles missing), so the file watcher applies a
// disruptive change written in place only once the file has been stable.
func (p *Plan) Disruptive() bool {
	return len(p.Removed)+len(p.Replace)+len(p.PolicyOnly)+len(p.StopUsers) > 0 || p.AccessChanged
}

// Empty reports whether the plan changes nothing at all.
func (p *Plan) Empty() bool {
	return len(p.Start)+len(p.Replace)+len(p.Stop)+len(p.Blocked)+len(p.StopUsers)+len(p.Added)+
		len(p.Removed)+len(p.PolicyOnly)+len(p.NeedsRestart) == 0 && !p.AccessChanged
}

func instanceNames(in []Instance) []string {
	out := make([]string, 0, len(in))
	for _, i := range in {
		out = append(out, i.Provider.Name)
	}
	return out
}

// restartOnly names the settings that changed from old to next and take
// effect only when the gateway restarts. Every other setting applies live.
func restartOnly(old, next *Config) []string {
	var out []string
	add := func(changed bool, name string) {
		if changed {
			out = append(out, name)
		}
	}
	add(old.Listen != next.Listen, "listen")
	add(old.DataDir != next.DataDir, "data_dir")
	add(!reflect.DeepEqual(old.Store, next.Store), "store")
	add(old.Replica != next.Replica, "replica")
	add(old.Vault != next.Vault, "vault")
	add(!reflect.DeepEqual(old.Audit, next.Audit), "audit")
	add(!reflect.DeepEqual(old.Tracing, next.Tracing), "tracing")
	add(old.Metrics != next.Metrics, "metrics")
	add(old.Sessions != next.Sessions, "sessions")
	add(old.Log.SlowCall != next.Log.SlowCall, "log.slow_call")
	add(old.Auth.Disabled != next.Auth.Disabled, "auth.disabled")
	add(old.Server.ReadHeaderTimeout != next.Server.ReadHeaderTimeout, "server.read_header_timeout")
	add(old.Server.IdleTimeout != next.Server.IdleTimeout, "server.idle_timeout")
	add(old.Server.MaxConns != next.Server.MaxConns, "server.max_conns")
	add(old.Server.MaxConnsPerClient != next.Server.MaxConnsPerClient, "server.max_conns_per_client")
	return out
}

// keepRestartOnly returns a copy of c with the restart-only settings of old:
// what is actually in force until the gateway restarts.
func (c *Config) keepRestartOnly(old *Config) *Config {
	k := *c
	k.Listen, k.DataDir, k.Vault, k.Audit, k.Sessions = old.Listen, old.DataDir, old.Vault, old.Audit, old.Sessions
	k.Store, k.Replica = old.Store, old.Replica
	k.Tracing, k.Metrics = old.Tracing, old.Metrics
	k.Log.SlowCall = old.Log.SlowCall
	k.Auth.Disabled = old.Auth.Disabled
	k.Server.ReadHeaderTimeout, k.Server.IdleTimeout = old.Server.ReadHeaderTimeout, old.Server.IdleTimeout
	k.Server.MaxConns, k.Server.MaxConnsPerClient = old.Server.MaxConns, old.Server.MaxConnsPerClient
	return &k
}
