//go:build unix

package supervisor

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// Provider is how the supervisor runs one provider's instances beyond what
// Start is told: whether the provider runs one instance per user, started on
// that user's first list or call, and the bounds on those instances.
type Provider struct {
	// UserScoped: one instance per user (key.User set), started on demand
	// with the spec Options.UserSpec returns.
	UserScoped bool
	// MaxUsers caps the provider's per-user instances (0: no cap).
	MaxUsers int
	// IdleTimeout stops a per-user instance no call reached for this long
	// (0: never).
	IdleTimeout time.Duration
	// InitTimeout bounds waiting for a per-user instance to start (0: the
	// default).
	InitTimeout time.Duration
}

// SetProviders replaces the providers table. Per-user instances of a
// provider that is no longer user-scoped are stopped by the idle reaper.
func (s *Supervisor) SetProviders(provs map[string]Provider) {
	m := maps.Clone(provs)
	s.provs.Store(&m)
}

// UserScoped reports whether provider runs one instance per user. It takes
// no lock.
func (s *Supervisor) UserScoped(provider string) bool {
	return (*s.provs.Load())[provider].UserScoped
}

// Upstream returns the upstream calls to key go to: its running instance,
// or, for a user's own instance of a user-scoped provider, one started now
// and waited for (bounded by the provider's init timeout and ctx). It
// returns an EUNAVAILABLE error when the instance is not running and cannot
// be started (EOVERLOADED past the provider's cap on per-user instances). A
// call to a running instance takes no lock.
func (s *Supervisor) Upstream(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error) {
	if r, ok := s.routes.Load(key); ok {
		rt := r.(*route)
		if key.User != "" {
			rt.in.lastUsed.Store(time.Now().UnixNano())
		}
		return rt.up, nil
	}
	if key.User == "" {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", key.Provider)
	}
	return s.startUser(ctx, key)
}

// Ensure starts p's own instances of the user-scoped providers p may use
// (Options.Usable) and waits until each runs or has failed, so that a list
// answered next holds their tools.
func (s *Supervisor) Ensure(ctx context.Context, p *switchboard.Principal) {
	if p == nil || p.Kind != switchboard.PrincipalUser || s.opts.Usable == nil {
		return
	}
	var wg sync.WaitGroup
	for _, provider := range s.opts.Usable(p) {
		key := switchboard.InstanceKey{Provider: provider, User: p.ID}
		wg.Go(func() {
			if _, err := s.Upstream(ctx, key); err != nil {
				s.log.Debug().Str("provider", key.String()).Str("reason", switchboard.ErrorMessage(err)).Msg("per-user instance not started")
			}
		})
	}
	wg.Wait()
}

// startUser starts user's own instance of a user-scoped provider, once, under
// the provider's cap, and waits for it.
func (s *Supervisor) startUser(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error) {
	prov, ok := (*s.provs.Load())[key.Provider]
	if !ok || !prov.UserScoped || s.opts.UserSpec == nil {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", key.Provider)
	}
	init := prov.InitTimeout
	if init <= 0 {
		init = DefaultInitTimeout
	}
	// The spec first: it says why a user cannot have an instance at all
	// (not connected) before the cap says there is no room.
	specCtx, cancel := context.WithTimeout(ctx, init)
	spec, err := s.opts.UserSpec(specCtx, key)
	cancel()
	if err != nil {
		return nil, err
	}
	spec.Key = key
	for {
		s.mu.Lock()
		if wait, busy := s.starting[key]; busy {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, ctx.Err(), "provider %s for %s did not start", key.Provider, key.User)
			}
		}
		cur := s.insts[key]
		if cur != nil && !cur.Is(switchboard.StateFailed) {
			s.mu.Unlock()
			break
		}
		n := 0
		for k := range s.insts {
			if k.Provider == key.Provider && k.User != "" && k != key {
				n++
			}
		}
		if prov.MaxUsers > 0 && n >= prov.MaxUsers {
			s.mu.Unlock()
			return nil, switchboard.Errorf(switchboard.EOVERLOADED, "provider %s already runs %d per-user instances (connection.max_instances)", key.Provider, n)
		}
		done := make(chan struct{})
		s.starting[key] = done
		s.mu.Unlock()
		err := s.Start(spec)
		s.mu.Lock()
		delete(s.starting, key)
		close(done)
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		break
	}
	if err := s.WaitReady(ctx, key); err != nil {
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "provider %s for %s did not start", key.Provider, key.User)
	}
	if up, ok := s.Running(key); ok {
		return up, nil
	}
	return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s for %s is not running", key.Provider, key.User)
}

// StopUser drains and stops every instance of user (they were removed). It
// returns the first failure, after trying all.
func (s *Supervisor) StopUser(ctx context.Context, user string) error {
	var first error
	for _, key := range s.keys(func(k switchboard.InstanceKey) bool { return k.User == user }) {
		if err := s.Drain(ctx, key); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// keys returns the current instances' keys that match.
func (s *Supervisor) keys(match func(switchboard.InstanceKey) bool) []switchboard.InstanceKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []switchboard.InstanceKey
	for k := range s.insts {
		if match(k) {
			out = append(out, k)
		}
	}
	return out
}

// Reap stops per-user instances idle for longer than their provider's
// IdleTimeout, and those of providers no longer user-scoped, every interval
// until ctx ends.
func (s *Supervisor) Reap(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		provs := *s.provs.Load()
		s.mu.Lock()
		var idle []*instance
		for k, in := range s.insts {
			if k.User != "" {
				idle = append(idle, in)
			}
		}
		s.mu.Unlock()
		for _, in := range idle {
			key := in.spec.Key
			p, ok := provs[key.Provider]
			last := time.Unix(0, in.lastUsed.Load())
			switch {
			case !ok || !p.UserScoped:
				in.log.Info().Msg("stopping per-user instance of a provider that no longer runs per user")
			case in.flights.pending.Load() > 0 || p.IdleTimeout <= 0 || time.Since(last) <= p.IdleTimeout:
				continue
			default:
				in.log.Info().Msg("stopping idle per-user instance")
			}
			if err := s.Stop(ctx, key); err != nil {
				in.log.Warn().Err(err).Msg("stopping per-user instance")
			}
		}
	}
}
