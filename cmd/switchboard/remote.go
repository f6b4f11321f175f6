package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/remote"
	"github.com/switchboard-mcp/switchboard/supervisor"
)

// Remote providers (url:), wired: the remote package keeps their
// connections; instances routes the mux's calls to it or to the
// supervisor; the executor hands a plan's remote instances to it.

// instances is the mux's Instances: a url provider's instances live in the
// remote manager, every other one in the supervisor.
type instances struct{ m *Main }

var _ mux.Instances = instances{}

// remoteProvider returns the enabled url provider named name, or nil.
func (m *Main) remoteProvider(name string) *providers.Provider {
	st := m.rel.State()
	if st == nil {
		return nil
	}
	p := st.Config.Providers[name]
	if p == nil || !p.Remote() || !p.IsEnabled() {
		return nil
	}
	return p
}

// Upstream implements mux.Instances.
func (i instances) Upstream(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error) {
	if p := i.m.remoteProvider(key.Provider); p != nil {
		return i.m.remoteUpstream(ctx, p, key)
	}
	return i.m.sup.Upstream(ctx, key)
}

// UserScoped implements mux.Instances.
func (i instances) UserScoped(provider string) bool {
	if p := i.m.remoteProvider(provider); p != nil {
		return p.UserScoped()
	}
	return i.m.sup.UserScoped(provider)
}

// Ensure implements mux.Instances: the supervisor starts p's own child
// instances, this p's own remote ones, all at once.
func (i instances) Ensure(ctx context.Context, p *switchboard.Principal) {
	if p == nil || p.Kind != switchboard.PrincipalUser {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { i.m.sup.Ensure(ctx, p) })
	for _, name := range i.m.live.usable(p) {
		prov := i.m.remoteProvider(name)
		if prov == nil {
			continue
		}
		key := switchboard.InstanceKey{Provider: name, User: p.ID}
		wg.Go(func() {
			if _, err := i.m.remoteUpstream(ctx, prov, key); err != nil {
				i.m.Log.Debug().Str("provider", key.String()).Str("reason", switchboard.ErrorMessage(err)).Msg("per-user remote instance not started")
			}
		})
	}
	wg.Wait()
}

// usableChildren is the supervisor's Options.Usable: the user-scoped
// providers p may use that it runs (not url providers).
func (m *Main) usableChildren(p *switchboard.Principal) []string {
	var out []string
	for _, name := range m.live.usable(p) {
		if m.remoteProvider(name) == nil {
			out = append(out, name)
		}
	}
	return out
}

// remoteUpstream returns the upstream of a url provider's instance: the
// shared one while it is connected, or the user's own, connected now (with
// their OAuth connection) and waited for.
func (m *Main) remoteUpstream(ctx context.Context, p *providers.Provider, key switchboard.InstanceKey) (switchboard.Upstream, error) {
	if up, ok := m.rem.Upstream(key); ok {
		return up, nil
	}
	if key.User == "" || !p.UserScoped() {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not connected", key.Provider)
	}
	if p.OAuth != nil && !m.vault.Connected(key.User, key.Provider) {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "connect %s first: switchboard connect %s --user %s --oauth, or POST /api/connections/%s/oauth", key.Provider, key.Provider, key.User, key.Provider)
	}
	if !m.rem.Has(key) {
		if max := p.Connection.MaxUsers; max > 0 && m.remoteUsers(key.Provider) >= max {
			return nil, switchboard.Errorf(switchboard.EOVERLOADED, "provider %s has its %d users' instances running; try again later", key.Provider, max)
		}
		in, ok := m.rel.State().Users[key.Provider]
		if !ok || in.Blocked != "" {
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running: %s", key.Provider, in.Blocked)
		}
		spec := remoteSpec(in, key.User)
		if p.OAuth != nil {
			spec.Auth = m.oauth.Authorizer(key.User, key.Provider)
		}
		if err := m.rem.Start(spec); err != nil && switchboard.ErrorCode(err) != switchboard.ECONFLICT {
			return nil, err
		}
	}
	wait := p.Limits.InitTimeout.D()
	if wait <= 0 {
		wait = remote.DefaultInitTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, wait+time.Second)
	defer cancel()
	if err := m.rem.WaitReady(wctx, key); err != nil {
		return nil, err
	}
	if up, ok := m.rem.Upstream(key); ok {
		return up, nil
	}
	return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s for %s is not connected", key.Provider, key.User)
}

// remoteUsers counts the users' instances of a url provider.
func (m *Main) remoteUsers(provider string) int {
	n := 0
	for _, s := range m.rem.Status() {
		if s.Provider == provider && s.User != "" {
			n++
		}
	}
	return n
}

// remoteSpec is the remote spec of in's instance for user ("" for the
// shared one).
func remoteSpec(in providers.Instance, user string) remote.Spec {
	p := in.Provider
	l := p.Limits
	transport := p.Transport
	if transport == "auto" {
		transport = remote.TransportAuto
	}
	return remote.Spec{
		Key:             switchboard.InstanceKey{Provider: p.Name, User: user},
		URL:             p.URL,
		Transport:       transport,
		Protocol:        strings.TrimPrefix(p.Protocol, "auto"),
		Headers:         in.Headers,
		Roots:           user != "",
		InitTimeout:     l.InitTimeout.D(),
		Limits:          callLimits(l),
		MaxMessageBytes: l.MaxMessageMB << 20,
	}
}

// applyRemote carries out the remote part of a plan, after the
// supervisor's: shared connections start, are replaced (the old one drains
// first) or stop; a provider whose users' instances must restart has them
// stopped (they reconnect on next use).
func (m *Main) applyRemote(ctx context.Context, p *providers.Plan) {
	stop := func(key switchboard.InstanceKey) {
		if err := m.rem.Stop(ctx, key); err != nil {
			m.Log.Warn().Err(err).Str("provider", key.String()).Msg("stopping a remote instance")
		}
	}
	for _, in := range p.Stop {
		if in.Provider.Remote() {
			stop(in.Key())
		}
	}
	for _, in := range p.Replace {
		if in.Provider.Remote() {
			stop(in.Key())
			m.startRemote(in)
		}
	}
	for _, in := range p.Start {
		if in.Provider.Remote() {
			m.startRemote(in)
		}
	}
	stopUsers := map[string]bool{}
	for _, name := range p.StopUsers {
		stopUsers[name] = true
	}
	for _, name := range p.Removed {
		stopUsers[name] = true
	}
	for _, s := range m.rem.Status() {
		if stopUsers[s.Provider] {
			stop(switchboard.InstanceKey{Provider: s.Provider, User: s.User})
		}
	}
}

// startRemote starts the shared connection of a url provider.
func (m *Main) startRemote(in providers.Instance) {
	if err := m.rem.Start(remoteSpec(in, "")); err != nil {
		m.Log.Error().Err(err).Str("provider", in.Provider.Name).Msg("starting a remote provider")
	}
}

// reapRemote stops users' remote instances idle past their provider's
// connection.idle_timeout, until ctx ends.
func (m *Main) reapRemote(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range m.config().SortedProviders() {
			if p.Remote() && p.UserScoped() {
				m.rem.Reap(ctx, p.Name, p.Connection.IdleTimeout.D())
			}
		}
	}
}

// remoteEvent records a remote instance's lifecycle event as a child's is
// (audit, metrics, the status page's events).
func (o *ops) remoteEvent(ev remote.Event) {
	o.providerEvent(supervisor.Event{Time: ev.Time, Key: ev.Key, Kind: ev.Kind, Delay: ev.Delay, Err: ev.Err})
	name := ev.Key.String()
	switch ev.Kind {
	case remote.EventDisconnect, remote.EventUnhealthy:
		o.metrics.ProviderState(name, switchboard.StateBackoff)
		o.events.Add("provider", name+" lost its connection: "+o.redact(ev.Err))
	}
}
