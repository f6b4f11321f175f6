package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

const prefsBucket = "prefs"

// Prefs stores per-user preferences (which providers a user hid from their own
// sessions) in a switchboard.Store, cached in memory so the per-request filter
// never reads the store.
type Prefs struct {
	st switchboard.Store
	mu sync.Mutex                           // serializes writes and reloads
	m  atomic.Pointer[map[string]UserPrefs] // replaced whole; read without a lock
}

// UserPrefs is one user's preferences.
type UserPrefs struct {
	Hidden    []string  `json:"hidden,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// NewPrefs loads the preferences kept in st.
func NewPrefs(st switchboard.Store) (*Prefs, error) {
	p := &Prefs{st: st}
	p.m.Store(&map[string]UserPrefs{})
	return p, p.Reload()
}

// Refresh re-reads the preferences when one of changes (another writer's,
// see switchboard.Store.Changes) may have touched them.
func (p *Prefs) Refresh(changes []switchboard.StoreChange) error {
	if !switchboard.ChangesTouch(changes, prefsBucket) {
		return nil
	}
	return p.Reload()
}

// Reload refreshes the cache from the store. It waits for a write in
// progress, so that it cannot put back what the write replaced.
func (p *Prefs) Reload() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]UserPrefs{}
	es, err := p.st.List(context.Background(), prefsBucket, "")
	if err != nil {
		return fmt.Errorf("loading prefs: %w", err)
	}
	for _, e := range es {
		var up UserPrefs
		if err := json.Unmarshal(e.Value, &up); err != nil {
			return fmt.Errorf("loading prefs: prefs of %q: %w", e.Key, err)
		}
		m[e.Key] = up
	}
	p.m.Store(&m)
	return nil
}

// Hidden reports whether user hid provider. It takes no lock.
func (p *Prefs) Hidden(user, provider string) bool {
	return slices.Contains((*p.m.Load())[user].Hidden, provider)
}

// Get returns user's preferences.
func (p *Prefs) Get(user string) UserPrefs {
	up := (*p.m.Load())[user]
	up.Hidden = slices.Clone(up.Hidden)
	return up
}

// SetHidden hides (hide true) or shows provider for user. It reports whether
// anything changed.
func (p *Prefs) SetHidden(user, provider string, hide bool) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	var next UserPrefs
	err := p.st.Update(context.Background(), func(tx switchboard.StoreTx) error {
		changed = false
		var up UserPrefs
		v, err := tx.Get(prefsBucket, user)
		switch {
		case err == nil:
			if err := json.Unmarshal(v, &up); err != nil {
				return err
			}
		case switchboard.ErrorCode(err) != switchboard.ENOTFOUND:
			return err
		}
		has := slices.Contains(up.Hidden, provider)
		switch {
		case hide && !has:
			up.Hidden = append(up.Hidden, provider)
			sort.Strings(up.Hidden)
			changed = true
		case !hide && has:
			up.Hidden = slices.DeleteFunc(up.Hidden, func(s string) bool { return s == provider })
			changed = true
		}
		next = up
		if !changed {
			return nil
		}
		up.UpdatedAt = time.Now().UTC()
		next = up
		b, err := json.Marshal(up)
		if err != nil {
			return err
		}
		return tx.Put(prefsBucket, user, b)
	})
	if err != nil {
		return false, fmt.Errorf("saving prefs of %q: %w", user, err)
	}
	m := maps.Clone(*p.m.Load())
	m[user] = next
	p.m.Store(&m)
	return changed, nil
}
