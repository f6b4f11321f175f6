package vault_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

// mustOpenOn opens the vault kept in st with key (the store stays open).
func mustOpenOn(tb testing.TB, st switchboard.Store, key vault.Key) *vault.Vault {
	tb.Helper()
	v, err := vault.Open(context.Background(), st, key, vault.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = v.Close() })
	return v
}

// mustStore opens a bbolt store in a temp dir, closed at cleanup.
func mustStore(tb testing.TB) *bolt.Store {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

const sep = switchboard.StoreKeySep

// TestRefreshConnections: two vaults on one store stand for two replicas.
// RefreshConnections reads only when a change touches the connections, and
// returns the connections made, replaced or removed: named by a key, by the
// prefix of one connection or of one user's, or found by comparing when the
// change names nothing.
func TestRefreshConnections(t *testing.T) {
	st, key := mustStore(t), vault.GenerateKey()
	here, there := mustOpenOn(t, st, key), mustOpenOn(t, st, key)
	conn := func(user, provider string) {
		t.Helper()
		if err := there.SetConnection(user, provider, map[string][]byte{"TOKEN": []byte("t-" + user)}); err != nil {
			t.Fatal(err)
		}
	}
	disconnect := func(user, provider string) {
		t.Helper()
		if err := there.DeleteConnection(user, provider); err != nil {
			t.Fatal(err)
		}
	}
	record := func(user, provider string) switchboard.StoreChange {
		return switchboard.StoreChange{Bucket: "vault.conn", Key: user + sep + provider + sep + "record"}
	}
	prefix := func(p string) switchboard.StoreChange {
		return switchboard.StoreChange{Bucket: "vault.conn", Key: p, Prefix: true}
	}
	ref := func(user, provider string) vault.ConnRef { return vault.ConnRef{User: user, Provider: provider} }

	conn("ann", "gh")
	if got, err := here.RefreshConnections([]switchboard.StoreChange{{Bucket: "vault.secret", Key: "X"}, {Bucket: "users"}}); err != nil || got != nil || here.Connected("ann", "gh") {
		t.Fatalf("a change of other buckets read the connections: %v, %v", got, err)
	}
	tests := []struct {
		name   string
		change func() []switchboard.StoreChange
		want   []vault.ConnRef
		ann    bool // here.Connected("ann", "gh") afterwards
	}{
		{name: "a record written", change: func() []switchboard.StoreChange {
			return []switchboard.StoreChange{prefix("ann" + sep + "gh" + sep), record("ann", "gh")}
		}, want: []vault.ConnRef{ref("ann", "gh")}, ann: true},
		{name: "a value written", change: func() []switchboard.StoreChange {
			conn("ann", "gh")
			return []switchboard.StoreChange{{Bucket: "vault.conn", Key: "ann" + sep + "gh" + sep + "values" + sep + "TOKEN"}}
		}, want: []vault.ConnRef{ref("ann", "gh")}, ann: true},
		{name: "a connection deleted", change: func() []switchboard.StoreChange {
			disconnect("ann", "gh")
			return []switchboard.StoreChange{prefix("ann" + sep + "gh" + sep)}
		}, want: []vault.ConnRef{ref("ann", "gh")}},
		{name: "all of one user's", change: func() []switchboard.StoreChange {
			conn("bob", "gh")
			conn("bob", "fs")
			conn("cy", "gh")
			if _, err := here.RefreshConnections([]switchboard.StoreChange{{}}); err != nil {
				t.Fatal(err)
			}
			disconnect("bob", "gh")
			disconnect("bob", "fs")
			return []switchboard.StoreChange{prefix("bob" + sep)}
		}, want: []vault.ConnRef{ref("bob", "fs"), ref("bob", "gh")}},
		{name: "anything: replaced and made found by comparing", change: func() []switchboard.StoreChange {
			time.Sleep(time.Millisecond) // a later UpdatedAt
			conn("cy", "gh")
			conn("dee", "fs")
			return []switchboard.StoreChange{{}}
		}, want: []vault.ConnRef{ref("cy", "gh"), ref("dee", "fs")}},
		{name: "the whole bucket", change: func() []switchboard.StoreChange {
			disconnect("dee", "fs")
			return []switchboard.StoreChange{{Bucket: "vault.conn"}}
		}, want: []vault.ConnRef{ref("dee", "fs")}},
		{name: "named, though a rebuild read it first", change: func() []switchboard.StoreChange {
			conn("eve", "gh")
			if err := here.SetConnection("fay", "gh", map[string][]byte{"TOKEN": []byte("x")}); err != nil {
				t.Fatal(err) // a write here rebuilds the index, reading eve's too
			}
			return []switchboard.StoreChange{record("eve", "gh")}
		}, want: []vault.ConnRef{ref("eve", "gh")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := here.RefreshConnections(tt.change())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("RefreshConnections = %v, want %v", got, tt.want)
			}
			if here.Connected("ann", "gh") != tt.ann {
				t.Errorf("Connected(ann, gh) = %v, want %v", !tt.ann, tt.ann)
			}
		})
	}
}

// holdingStore holds the first List of the connections after reading them.
type holdingStore struct {
	switchboard.Store
	held    atomic.Bool
	reading chan struct{}
	release chan struct{}
}

func (h *holdingStore) List(ctx context.Context, bucket, prefix string) ([]switchboard.StoreEntry, error) {
	es, err := h.Store.List(ctx, bucket, prefix)
	if bucket == "vault.conn" && h.held.CompareAndSwap(false, true) {
		close(h.reading)
		<-h.release
	}
	return es, err
}

// TestRefreshNeverPutsBackAConnection: a refresh that read the connections
// before a connection made here committed cannot store its older index over
// the one the write built.
func TestRefreshNeverPutsBackAConnection(t *testing.T) {
	h := &holdingStore{Store: mustStore(t), reading: make(chan struct{}), release: make(chan struct{})}
	h.held.Store(true) // Open reads freely
	v := mustOpenOn(t, h, vault.GenerateKey())
	h.held.Store(false)
	refreshed := make(chan error, 1)
	go func() { _, err := v.RefreshConnections([]switchboard.StoreChange{{}}); refreshed <- err }()
	<-h.reading
	wrote := make(chan error, 1)
	go func() { wrote <- v.SetConnection("ann", "gh", map[string][]byte{"TOKEN": []byte("x")}) }()
	select {
	case err := <-wrote: // the write did not wait for the refresh
		wrote <- err
	case <-time.After(300 * time.Millisecond): // it waits for the refresh
	}
	close(h.release)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !v.Connected("ann", "gh") {
		t.Fatal("a refresh that read before a connection was made put the old index back over it")
	}
}

func TestSecretsTouched(t *testing.T) {
	tests := []struct {
		name    string
		changes []switchboard.StoreChange
		want    bool
	}{
		{name: "none", want: false},
		{name: "a shared secret", changes: []switchboard.StoreChange{{Bucket: "users", Key: "a"}, {Bucket: "vault.secret", Key: "TOKEN"}}, want: true},
		{name: "the keyring", changes: []switchboard.StoreChange{{Bucket: "vault.keys", Key: "k2"}}, want: true},
		{name: "anything", changes: []switchboard.StoreChange{{}}, want: true},
		{name: "connections and users only", changes: []switchboard.StoreChange{{Bucket: "vault.conn"}, {Bucket: "users"}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := vault.SecretsTouched(tt.changes); got != tt.want {
				t.Errorf("SecretsTouched = %v, want %v", got, tt.want)
			}
		})
	}
}
