//go:build unix

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// DrainGrace bounds how long a replaced or removed instance's calls (in
// flight or queued) may run on before it is stopped.
const DrainGrace = 10 * time.Second

// readyMargin is added to a spec's InitTimeout when waiting for it to start
// (awaitReady).
const readyMargin = 5 * time.Second

// Changes are the process side of one reload, as computed by the reload's
// plan; Apply carries them out.
type Changes struct {
	// Start are new shared instances.
	Start []Spec
	// Replace are shared instances whose spec changed: each starts next to
	// the instance it replaces, which keeps serving until it is ready.
	Replace []Spec
	// Stop are shared instances to drain and stop.
	Stop []switchboard.InstanceKey
	// StopUsers names providers whose per-user instances drain and stop
	// (their process changed, or the provider went away); they start again,
	// as the providers table says, on their user's next call.
	StopUsers []string
	// Providers is the providers table after the reload (see SetProviders).
	Providers map[string]Provider
	// Background starts the new instances without waiting for them (the
	// gateway's startup: Status shows how they fare).
	Background bool
}

// Failure is an instance that did not start, or did not stop, as asked.
type Failure struct {
	Key switchboard.InstanceKey `json:"key"`
	Err string                  `json:"error"`
}

// Result is what Apply did.
type Result struct {
	Started  []switchboard.InstanceKey // new instances, running
	Replaced []switchboard.InstanceKey // replaced instances: the new process serves
	Stopped  []switchboard.InstanceKey // stopped instances, shared and per-user
	// Failed lists every instance that did not start (a replacement that
	// failed leaves the old process serving; a new instance that failed
	// keeps being retried with backoff, as at startup) or did not stop.
	Failed []Failure
}

// Apply carries out ch make-before-break, the way Caddy applies a config:
//
//  1. It starts every new instance, and every replacement next to the
//     instance it replaces (which keeps serving), and waits until each is
//     ready or has failed its first attempt (bounded by its InitTimeout,
//     from its turn to start: see Options.MaxStarting).
//     A replacement that fails is stopped; the old instance keeps serving.
//  2. It installs ch.Providers and calls commit with the failures so far, in
//     which the caller swaps its configuration (policy, settings).
//  3. It promotes the replacements: calls go to the new process from now on
//     and OnCatalog gets its catalog for the same key, so what the key
//     exposes never disappears in between.
//  4. It drains (up to DrainGrace) and stops the replaced instances, the
//     removed ones and the per-user instances of ch.StopUsers.
//
// It returns once all of that is done, with every failure reported.
func (s *Supervisor) Apply(ctx context.Context, ch Changes, commit func(failed []Failure)) Result {
	var res Result
	var mu sync.Mutex
	fail := func(key switchboard.InstanceKey, err error) {
		mu.Lock()
		res.Failed = append(res.Failed, Failure{Key: key, Err: s.opts.Redact(switchboard.ErrorMessage(err))})
		mu.Unlock()
	}

	// 1. Start new instances and standbys; wait for them.
	var wg sync.WaitGroup
	var promote []*instance
	for _, spec := range ch.Start {
		if err := s.Start(spec); err != nil {
			fail(spec.Key, err)
			continue
		}
		if ch.Background {
			continue
		}
		wg.Go(func() {
			if err := s.WaitReady(ctx, spec.Key); err != nil {
				fail(spec.Key, err)
				return
			}
			mu.Lock()
			res.Started = append(res.Started, spec.Key)
			mu.Unlock()
		})
	}
	for _, spec := range ch.Replace {
		wg.Go(func() {
			in, err := s.standby(ctx, spec)
			if err != nil {
				fail(spec.Key, err)
				return
			}
			if in != nil {
				mu.Lock()
				promote = append(promote, in)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	// 2. Commit.
	if ch.Providers != nil {
		s.SetProviders(ch.Providers)
	}
	if commit != nil {
		mu.Lock()
		failed := append([]Failure(nil), res.Failed...)
		mu.Unlock()
		commit(failed)
	}

	// 3. Promote.
	var retire []*instance
	for _, in := range promote {
		if old := s.promote(in); old != nil {
			retire = append(retire, old)
		}
		res.Replaced = append(res.Replaced, in.spec.Key)
	}

	// 4. Drain and stop what is no longer wanted.
	for _, old := range retire {
		wg.Go(func() {
			if err := old.drainAndStop(ctx); err != nil {
				fail(old.spec.Key, err)
			}
		})
	}
	stop := append([]switchboard.InstanceKey(nil), ch.Stop...)
	if len(ch.StopUsers) > 0 {
		gone := map[string]bool{}
		for _, p := range ch.StopUsers {
			gone[p] = true
		}
		s.mu.Lock()
		for k := range s.insts {
			if k.User != "" && gone[k.Provider] {
				stop = append(stop, k)
			}
		}
		s.mu.Unlock()
	}
	for _, key := range stop {
		wg.Go(func() {
			if err := s.Drain(ctx, key); err != nil {
				fail(key, err)
				return
			}
			mu.Lock()
			res.Stopped = append(res.Stopped, key)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, keys := range [][]switchboard.InstanceKey{res.Started, res.Replaced, res.Stopped} {
		sortKeys(keys)
	}
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Key.String() < res.Failed[j].Key.String() })
	return res
}

func sortKeys(keys []switchboard.InstanceKey) {
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
}

// standby starts a replacement for spec.Key next to the instance serving it
// and waits until it is ready; it returns the standby, to be promoted. If no
// instance of the key is running (none, or one that is starting, backing off
// or failed), there is nothing to keep serving: the old one is stopped and
// spec started in its place (then standby returns nil). If the replacement
// fails to start it is stopped, the serving instance is marked with the
// failure (Status shows it) and an error returned.
func (s *Supervisor) standby(ctx context.Context, spec Spec) (*instance, error) {
	spec, limits, err := s.prepare(spec)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	old := s.insts[spec.Key]
	s.mu.Unlock()
	if old == nil || !old.Is(switchboard.StateRunning) {
		if old != nil {
			if err := s.Stop(ctx, spec.Key); err != nil {
				return nil, err
			}
		}
		if err := s.Start(spec); err != nil {
			return nil, err
		}
		return nil, s.WaitReady(ctx, spec.Key)
	}
	in := s.newInstance(spec, limits, true)
	s.mu.Lock()
	s.retiring[in] = struct{}{} // stopped by StopAll until promoted
	s.mu.Unlock()
	go in.run()
	if err := in.awaitReady(ctx, true); err != nil {
		_ = in.stop(context.WithoutCancel(ctx))
		old.Mu.Lock()
		old.note = fmt.Sprintf("a reload's new process for this provider failed to start; this one keeps serving: %s", switchboard.ErrorMessage(err))
		old.Mu.Unlock()
		return nil, err
	}
	return in, nil
}

// promote makes the standby in the current instance of its key and returns
// the instance it replaces, now retired (nil if that one went away
// meanwhile). The old instance is retired first, so that nothing it does from
// now on (dying, say) can take the key's route or catalog from in.
func (s *Supervisor) promote(in *instance) *instance {
	key := in.spec.Key
	s.mu.Lock()
	old := s.insts[key]
	s.insts[key] = in
	delete(s.retiring, in)
	if old != nil {
		s.retiring[old] = struct{}{}
	}
	s.mu.Unlock()
	if old != nil {
		old.pubMu.Lock()
		old.retired = true
		old.pubMu.Unlock()
	}
	in.pubMu.Lock()
	in.standby = false
	if in.pendingUp != nil {
		in.publishLocked(in.pendingUp, in.pendingCat)
		in.pendingUp, in.pendingCat = nil, nil
	}
	in.pubMu.Unlock()
	in.log.Info().Msg("provider replaced: calls go to the new process")
	return old
}

// Drain stops key once its calls, in flight or queued, are done (at most
// DrainGrace), so that no caller loses an answer to a reload. New calls no
// longer reach it as soon as it stops being routed. Unknown keys are done.
func (s *Supervisor) Drain(ctx context.Context, key switchboard.InstanceKey) error {
	s.mu.Lock()
	in := s.insts[key]
	s.mu.Unlock()
	if in == nil {
		return nil
	}
	if err := in.drain(ctx); err != nil {
		in.log.Warn().Err(err).Msg("stopping provider with calls still in flight")
	}
	return s.Stop(ctx, key)
}

// drainAndStop drains a retired instance and stops it.
func (in *instance) drainAndStop(ctx context.Context) error {
	if err := in.drain(ctx); err != nil {
		in.log.Warn().Err(err).Msg("stopping the replaced process with calls still in flight")
	}
	return in.stop(ctx)
}

// drain waits until no call is in flight or queued at the instance, at most
// DrainGrace. A call handed the instance just before it stopped being routed
// may start a moment later, so an idle instance is checked again once.
func (in *instance) drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, DrainGrace)
	defer cancel()
	for range 2 {
		if err := in.flights.wait(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("draining provider %s: %d calls still running after %s", in.spec.Key, in.flights.pending.Load(), DrainGrace)
			}
			return fmt.Errorf("draining provider %s: %w", in.spec.Key, err)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// stop stops this instance, whether or not it is its key's current one.
func (in *instance) stop(ctx context.Context) error {
	if err := in.Stop(ctx); err != nil {
		return fmt.Errorf("stopping provider %s: %w", in.spec.Key, err)
	}
	return nil
}
