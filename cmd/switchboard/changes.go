package main

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/vault"
)

// changeBatch bounds how many queued changes one pass applies together.
const changeBatch = 1024

// retryChanges is how long after a failed refresh everything is read again.
const retryChanges = time.Second

// watchStore applies what other replicas change in a shared store, as this
// replica applies its own writes:
//
//   - users, keys, preferences, service-token revocations and the index of
//     connections are read again (only those the changes touch), so a key
//     added elsewhere authenticates here and a revoked one is refused;
//   - a removed user's listen streams close and their own instances stop; a
//     user whose key or roles changed has their listen streams closed (the
//     client comes back with the new key);
//   - a user's connection made, replaced or removed stops that user's
//     instance of the provider here (it restarts with the new credentials on
//     their next call);
//   - a changed secret or keyring re-plans the providers through the
//     reloader, replacing only those whose environment changed.
//
// Changes queued together are applied in one pass; a change with an empty
// bucket reads everything. Stopping instances and re-planning run apart from
// this loop, so a slow provider never delays the next key revocation. When a
// refresh fails (the database is away), everything is read again a second
// later, until it succeeds.
func (m *Main) watchStore(ctx context.Context) {
	ch := m.store.Changes()
	if ch == nil {
		return
	}
	var stops sync.WaitGroup
	defer stops.Wait()
	var retry <-chan time.Time
	for {
		var batch []switchboard.StoreChange
		select {
		case <-ctx.Done():
			return
		case <-retry:
			batch = append(batch, switchboard.StoreChange{})
		case c, ok := <-ch:
			if !ok {
				return
			}
			batch = append(batch, c)
		}
	more:
		for len(batch) < changeBatch {
			select {
			case c, ok := <-ch:
				if !ok {
					break more
				}
				batch = append(batch, c)
			default:
				break more
			}
		}
		retry = nil
		if !m.applyChanges(ctx, batch, &stops) {
			retry = time.After(retryChanges)
		}
	}
}

// applyChanges applies one batch of other replicas' changes; it reports
// whether every cache could be read again.
func (m *Main) applyChanges(ctx context.Context, batch []switchboard.StoreChange, stops *sync.WaitGroup) bool {
	r, err := m.id.refresh(batch)
	if err != nil {
		m.Log.Error().Err(err).Msg("reading other replicas' changes; reading everything again in a second")
	}
	m.mux.PolicyChanged()
	for _, name := range append(r.users.Removed, r.users.Changed...) {
		m.mux.CloseListens(string(switchboard.PrincipalUser) + ":" + name)
	}
	for _, name := range r.users.Removed {
		stops.Go(func() {
			if err := m.sup.StopUser(ctx, name); err != nil {
				m.Log.Warn().Err(err).Str("user", name).Msg("stopping the instances of a user removed on another replica")
			}
		})
	}
	for _, c := range r.conns {
		stops.Go(func() { m.connectionChangedElsewhere(ctx, switchboard.InstanceKey{Provider: c.Provider, User: c.User}) })
	}
	if vault.SecretsTouched(batch) {
		m.rel.RequestSecrets()
	}
	return err == nil
}
