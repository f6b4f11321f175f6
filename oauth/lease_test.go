package oauth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard/oauth"
)

// memLeases is switchboard.Leases in memory, without expiry: the test says
// when a holder lets go.
type memLeases struct {
	mu     sync.Mutex
	holder map[string]string
	// beforeTake, if set, runs (once) when a lease is about to be granted.
	beforeTake func()
}

func (l *memLeases) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.holder[name]; ok && h != holder {
		return false, nil
	}
	if l.holder == nil {
		l.holder = map[string]string{}
	}
	l.holder[name] = holder
	if f := l.beforeTake; f != nil {
		l.beforeTake = nil
		f()
	}
	return true, nil
}

func (l *memLeases) ReleaseLease(ctx context.Context, name, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder[name] == holder {
		delete(l.holder, name)
	}
	return nil
}

func (l *memLeases) heldBy(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder[name]
}

// MustLeasedManager is MustManager with leases, as replica "here".
func MustLeasedManager(t *testing.T, as *fakeAS, clk *clock, leases *memLeases) (*oauth.Manager, *oauth.MemoryStore) {
	t.Helper()
	store := &oauth.MemoryStore{}
	m, err := oauth.New(zerolog.New(zerolog.NewTestWriter(t)), oauth.Options{
		Store: store, RedirectURL: "http://127.0.0.1:1/callback", Now: clk.Now, Leases: leases, Holder: "here",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetConfigs([]*oauth.Config{{Provider: "fx", Issuer: as.URL}}); err != nil {
		t.Fatal(err)
	}
	q, binding := begin(t, m, "alice")
	q.Set("iss", as.URL)
	if _, _, err := m.Complete(context.Background(), q, binding); err != nil {
		t.Fatal(err)
	}
	return m, store
}

// TestRefreshLeasedElsewhere: while another replica holds a grant's refresh
// lease, this one does not refresh it. A call gets the current access token
// while it lasts; once it has expired, the call waits for the grant the other
// replica saves, without a token request of its own.
func TestRefreshLeasedElsewhere(t *testing.T) {
	as := newFakeAS(t)
	clk := &clock{now: time.Now()}
	leases := &memLeases{}
	m, store := MustLeasedManager(t, as, clk, leases)
	ctx := context.Background()
	first, _ := store.Token(ctx, "alice", "fx")
	const lease = "oauth-refresh:alice/fx"
	if ok, _ := leases.TryLease(ctx, lease, "there", time.Minute); !ok {
		t.Fatal("the other replica could not take the lease")
	}

	clk.add(59 * time.Minute) // due, not expired
	got, err := m.Token(ctx, "alice", "fx")
	if err != nil || got != first.AccessToken {
		t.Fatalf("Token while leased elsewhere = %v; want the current token", err)
	}
	if n := as.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes while another replica held the lease", n)
	}

	clk.add(2 * time.Minute) // expired
	o := *first
	other := &o
	other.AccessToken, other.RefreshToken = "access-other-0123456789", "refresh-other-0123456789"
	other.Obtained, other.Expiry = clk.Now(), clk.Now().Add(time.Hour)
	go func() {
		time.Sleep(300 * time.Millisecond)
		if err := store.SaveToken(ctx, "alice", "fx", other); err != nil {
			t.Error(err)
		}
		_ = leases.ReleaseLease(ctx, lease, "there")
	}()
	got, err = m.Token(ctx, "alice", "fx")
	if err != nil || got != "access-other-0123456789" {
		t.Fatalf("Token after expiry = %q, %v; want the other replica's token", got.Reveal(), err)
	}
	if n := as.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes; the other replica's grant should have been taken", n)
	}
}

// TestRefreshLeaseReadsAgain: a replica reads the grant again once it holds
// the lease, and takes the one another replica saved just before letting go
// of it, instead of spending the rotated refresh token. When the lease comes
// free without a new grant (its holder died), a call whose token expired
// refreshes it here. The lease is released after each.
func TestRefreshLeaseReadsAgain(t *testing.T) {
	as := newFakeAS(t)
	clk := &clock{now: time.Now()}
	leases := &memLeases{}
	m, store := MustLeasedManager(t, as, clk, leases)
	ctx := context.Background()
	first, _ := store.Token(ctx, "alice", "fx")
	const lease = "oauth-refresh:alice/fx"
	// The other replica saves its refreshed grant and lets go of the lease
	// just after this one read the grant, just before it takes the lease.
	clk.add(59 * time.Minute)
	o := *first
	other := &o
	other.AccessToken, other.RefreshToken = "access-other-0123456789", "refresh-other-0123456789"
	other.Obtained, other.Expiry = clk.Now(), clk.Now().Add(time.Hour)
	leases.beforeTake = func() {
		if err := store.SaveToken(ctx, "alice", "fx", other); err != nil {
			t.Error(err)
		}
	}
	got, err := m.Token(ctx, "alice", "fx")
	if err != nil || got != "access-other-0123456789" {
		t.Fatalf("Token = %q, %v; want the grant saved before the lease was taken", got.Reveal(), err)
	}
	if n := as.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes; the grant read under the lease was not due", n)
	}
	if h := leases.heldBy(lease); h != "" {
		t.Fatalf("the lease is still held by %q", h)
	}

	// Now a holder that dies: the lease comes free with no new grant, and a
	// call whose token expired refreshes here.
	if ok, _ := leases.TryLease(ctx, lease, "there", time.Minute); !ok {
		t.Fatal("the other replica could not take the lease")
	}
	clk.add(2 * time.Hour)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = leases.ReleaseLease(ctx, lease, "there")
	}()
	got, err = m.Token(ctx, "alice", "fx")
	if err != nil || got == "access-other-0123456789" {
		t.Fatalf("Token after the holder died = %q, %v; want a refresh here", got.Reveal(), err)
	}
	if n := as.refreshes.Load(); n != 1 {
		t.Fatalf("refreshes = %d, want 1", n)
	}
	if h := leases.heldBy(lease); h != "" {
		t.Fatalf("the lease is still held by %q after the refresh", h)
	}
}
