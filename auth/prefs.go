package auth

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

var prefsBucket = []byte("prefs")

// Prefs stores per-user preferences (which providers a user hid from their own
// sessions) in bbolt, cached in memory so the per-request filter never reads
// the file.
type Prefs struct {
	db *bbolt.DB
	mu sync.RWMutex
	m  map[string]UserPrefs
}

// UserPrefs is one user's preferences.
type UserPrefs struct {
	Hidden    []string  `json:"hidden,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// NewPrefs opens (creating) the prefs bucket in db.
func NewPrefs(db *bbolt.DB) (*Prefs, error) {
	p := &Prefs{db: db, m: map[string]UserPrefs{}}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(prefsBucket)
		return err
	}); err != nil && !db.IsReadOnly() {
		return nil, fmt.Errorf("opening prefs: %w", err)
	}
	return p, p.Reload()
}

// Reload refreshes the cache from the file.
func (p *Prefs) Reload() error {
	m := map[string]UserPrefs{}
	err := p.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(prefsBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var up UserPrefs
			if err := json.Unmarshal(v, &up); err != nil {
				return fmt.Errorf("prefs of %q: %w", k, err)
			}
			m[string(k)] = up
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("loading prefs: %w", err)
	}
	p.mu.Lock()
	p.m = m
	p.mu.Unlock()
	return nil
}

// Hidden reports whether user hid provider.
func (p *Prefs) Hidden(user, provider string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Contains(p.m[user].Hidden, provider)
}

// Get returns user's preferences.
func (p *Prefs) Get(user string) UserPrefs {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.m[user]
}

// SetHidden hides (hide true) or shows provider for user. It reports whether
// anything changed.
func (p *Prefs) SetHidden(user, provider string, hide bool) (bool, error) {
	changed := false
	var next UserPrefs
	err := p.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(prefsBucket)
		if err != nil {
			return err
		}
		var up UserPrefs
		if v := b.Get([]byte(user)); v != nil {
			if err := json.Unmarshal(v, &up); err != nil {
				return err
			}
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
		if !changed {
			next = up
			return nil
		}
		up.UpdatedAt = time.Now().UTC()
		next = up
		v, err := json.Marshal(up)
		if err != nil {
			return err
		}
		return b.Put([]byte(user), v)
	})
	if err != nil {
		return false, fmt.Errorf("saving prefs of %q: %w", user, err)
	}
	p.mu.Lock()
	p.m[user] = next
	p.mu.Unlock()
	return changed, nil
}
