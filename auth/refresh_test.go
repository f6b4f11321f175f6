package auth

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// TestUsersRefresh: two Users on one store stand for two replicas. Refresh
// reads only when a change touches the users, and reports who was removed
// and whose key or roles changed, also when a reload in between had read
// the new state already.
func TestUsersRefresh(t *testing.T) {
	st := MustDB(t)
	here, err := NewUsers(st)
	if err != nil {
		t.Fatal(err)
	}
	there, err := NewUsers(st)
	if err != nil {
		t.Fatal(err)
	}
	add := func(name string) string {
		t.Helper()
		key, err := there.Add(name, []string{"dev"})
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	refresh := func(changes ...switchboard.StoreChange) UsersDiff {
		t.Helper()
		d, err := here.Refresh(changes)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	authenticates := func(key string) bool { _, ok := here.authenticate(key); return ok }
	users := func(key string) switchboard.StoreChange {
		return switchboard.StoreChange{Bucket: bucketUsers, Key: key}
	}

	alice, bob, carol := add("alice"), add("bob"), add("carol")
	if d := refresh(switchboard.StoreChange{Bucket: prefsBucket, Key: "alice"}); authenticates(alice) || len(d.Removed)+len(d.Changed) > 0 {
		t.Fatalf("a change of another bucket read the users (diff %+v)", d)
	}
	if d := refresh(users("alice"), users("bob"), users("carol")); !authenticates(alice) || !authenticates(bob) || !authenticates(carol) ||
		len(d.Removed)+len(d.Changed) > 0 {
		t.Fatalf("added users: diff %+v, want none (new users have nothing open)", d)
	}

	tests := []struct {
		name             string
		change           func() []switchboard.StoreChange
		removed, changed []string
	}{
		{name: "named: a key rotated, a user removed", change: func() []switchboard.StoreChange {
			old, _ := here.Get("alice")
			if _, err := there.RotateKey("alice"); err != nil {
				t.Fatal(err)
			}
			if err := there.Remove("bob"); err != nil {
				t.Fatal(err)
			}
			return []switchboard.StoreChange{users("alice"), {Bucket: bucketAPIKeys, Key: old.KeyPrefix[len(keyScheme):]}, users("bob")}
		}, removed: []string{"bob"}, changed: []string{"alice"}},
		{name: "by a key id only", change: func() []switchboard.StoreChange {
			old, _ := here.Get("carol")
			if _, err := there.RotateKey("carol"); err != nil {
				t.Fatal(err)
			}
			return []switchboard.StoreChange{{Bucket: bucketAPIKeys, Key: old.KeyPrefix[len(keyScheme):]}}
		}, changed: []string{"carol"}},
		{name: "broad: roles changed, a user removed", change: func() []switchboard.StoreChange {
			if err := there.SetRoles("carol", []string{"ops"}); err != nil {
				t.Fatal(err)
			}
			if err := there.Remove("alice"); err != nil {
				t.Fatal(err)
			}
			return []switchboard.StoreChange{{}}
		}, removed: []string{"alice"}, changed: []string{"carol"}},
		{name: "named, though a reload read it first", change: func() []switchboard.StoreChange {
			if _, err := there.RotateKey("carol"); err != nil {
				t.Fatal(err)
			}
			if err := here.Reload(); err != nil {
				t.Fatal(err)
			}
			return []switchboard.StoreChange{users("carol")}
		}, changed: []string{"carol"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := refresh(tt.change()...)
			if !slices.Equal(d.Removed, tt.removed) || !slices.Equal(d.Changed, tt.changed) {
				t.Errorf("diff %+v, want removed %v, changed %v", d, tt.removed, tt.changed)
			}
		})
	}
	if authenticates(alice) || authenticates(bob) || authenticates(carol) {
		t.Error("a removed user's or a replaced key still authenticates after Refresh")
	}
}

// holdingStore holds the first List of bucket after reading it: the caller
// gets the entries as they were when it read, once release is closed.
type holdingStore struct {
	switchboard.Store
	bucket  string
	held    atomic.Bool
	reading chan struct{} // closed when the held List has read
	release chan struct{}
}

func newHoldingStore(st switchboard.Store, bucket string) *holdingStore {
	return &holdingStore{Store: st, bucket: bucket, reading: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdingStore) List(ctx context.Context, bucket, prefix string) ([]switchboard.StoreEntry, error) {
	es, err := h.Store.List(ctx, bucket, prefix)
	if bucket == h.bucket && h.held.CompareAndSwap(false, true) {
		close(h.reading)
		<-h.release
	}
	return es, err
}

// mustNotPutBack runs refresh (another replica's change arrives) and, while
// it holds what it read, write (a write through this replica); then checks
// that the write is in the cache. A refresh that stored what it read after
// the write's own reload would put the old state back.
func mustNotPutBack(t *testing.T, h *holdingStore, refresh func() error, write func() error, check func() bool) {
	t.Helper()
	refreshed := make(chan error, 1)
	go func() { refreshed <- refresh() }()
	<-h.reading
	wrote := make(chan error, 1)
	go func() { wrote <- write() }()
	select {
	case err := <-wrote: // the write did not wait for the refresh
		if err != nil {
			t.Fatal(err)
		}
		wrote <- nil
	case <-time.After(300 * time.Millisecond): // it waits for the refresh
	}
	close(h.release)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !check() {
		t.Fatal("a refresh that read before a write put the old state back over it")
	}
}

func TestRefreshNeverPutsBackWhatAWriteReplaced(t *testing.T) {
	broad := []switchboard.StoreChange{{}}
	t.Run("users", func(t *testing.T) {
		h := newHoldingStore(MustDB(t), bucketUsers)
		u, err := NewUsers(h.Store)
		if err != nil {
			t.Fatal(err)
		}
		u.st = h
		var key string
		mustNotPutBack(t, h, func() error { _, err := u.Refresh(broad); return err },
			func() error { var err error; key, err = u.Add("dana", nil); return err },
			func() bool { _, ok := u.authenticate(key); return ok })
	})
	t.Run("prefs", func(t *testing.T) {
		h := newHoldingStore(MustDB(t), prefsBucket)
		p, err := NewPrefs(h.Store)
		if err != nil {
			t.Fatal(err)
		}
		p.st = h
		mustNotPutBack(t, h, func() error { return p.Refresh(broad) },
			func() error { _, err := p.SetHidden("dana", "gh", true); return err },
			func() bool { return p.Hidden("dana", "gh") })
	})
	t.Run("service token revocations", func(t *testing.T) {
		h := newHoldingStore(MustDB(t), bucketServiceTokens)
		clk := newFakeClock()
		l, err := newTokenLog(h.Store, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		l.st = h
		st := mustTokens(t, clk, l)
		_, info := mustIssue(t, st, l, "ci", time.Hour)
		mustNotPutBack(t, h, func() error { return l.Refresh(broad) },
			func() error { _, err := l.Revoke(info.JTI, &info); return err },
			func() bool { return l.IsRevoked(info.JTI) })
	})
}

func TestRefreshReadsOnlyWhatChanged(t *testing.T) {
	st := MustDB(t)
	p, err := NewPrefs(st)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewPrefs(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.SetHidden("ann", "gh", true); err != nil {
		t.Fatal(err)
	}
	if err := p.Refresh([]switchboard.StoreChange{{Bucket: bucketUsers}}); err != nil || p.Hidden("ann", "gh") {
		t.Fatalf("a users change read the preferences (err %v)", err)
	}
	if err := p.Refresh([]switchboard.StoreChange{{Bucket: prefsBucket, Key: "ann"}}); err != nil || !p.Hidden("ann", "gh") {
		t.Fatalf("a preferences change did not read them (err %v)", err)
	}
}
