package supervisor

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// pidOf asks the testprovider behind up for its pid.
func pidOf(tb testing.TB, up switchboard.Upstream) int {
	tb.Helper()
	txt, err := callTool(tb.(interface{ Context() context.Context }).Context(), up, "pid", nil)
	if err != nil {
		tb.Fatalf("pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(txt))
	if err != nil {
		tb.Fatalf("pid %q: %v", txt, err)
	}
	return pid
}

// TestApplyReplacesMakeBeforeBreak: a changed spec starts a second process
// next to the first; only once it is ready does the caller's commit run,
// then calls go to the new process, the key's catalog is never taken down,
// and the old process finishes its call in flight before it stops.
func TestApplyReplacesMakeBeforeBreak(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "fs", "")
	up := MustReady(t, s, spec)
	oldPID := pidOf(t, up)
	_, downsBefore := rec.counts()

	// A call in flight at the old process when the reload begins.
	var wg sync.WaitGroup
	var slowErr error
	wg.Go(func() { _, slowErr = callTool(t.Context(), up, "sleep", map[string]any{"ms": 700}) })
	waitUntil(t, 5*time.Second, func() bool { return statusOf(t, s, spec.Key).InFlight == 1 }, "the slow call in flight")

	next := spec
	next.Args = []string{"--changed"}
	var atCommit int
	res := s.Apply(t.Context(), Changes{Replace: []Spec{next}}, func([]Failure) {
		cur, ok := s.Running(spec.Key)
		if !ok {
			t.Error("nothing serves the key while the replacement starts")
			return
		}
		atCommit = pidOf(t, cur)
	})
	wg.Wait()
	if len(res.Failed) > 0 || len(res.Replaced) != 1 {
		t.Fatalf("Apply = %+v", res)
	}
	if atCommit != oldPID {
		t.Errorf("at commit calls went to pid %d, want the old process %d", atCommit, oldPID)
	}
	if slowErr != nil {
		t.Errorf("the call in flight at the old process failed: %v", slowErr)
	}
	cur, ok := s.Running(spec.Key)
	if !ok {
		t.Fatal("not running after Apply")
	}
	if newPID := pidOf(t, cur); newPID == oldPID {
		t.Fatalf("still pid %d after the replacement", newPID)
	}
	if alive(oldPID) {
		t.Errorf("the old process %d still runs after Apply returned", oldPID)
	}
	if _, downs := rec.counts(); downs != downsBefore {
		t.Errorf("OnCatalog took the key down %d times during a replacement", downs-downsBefore)
	}
	if got := s.Specs(); len(got) != 1 || len(got[0].Args) != 1 {
		t.Errorf("Specs after Apply = %+v, want the new spec only", got)
	}
}

// TestApplyKeepsTheOldProcessWhenTheNewOneFails: a replacement whose command
// cannot run is reported; the old process keeps serving and its status says
// what happened.
func TestApplyKeepsTheOldProcessWhenTheNewOneFails(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := testSpec(t, "fs", "")
	up := MustReady(t, s, spec)
	oldPID := pidOf(t, up)
	_, downsBefore := rec.counts()

	broken := spec
	broken.Command = "/nonexistent/provider"
	var atCommit []Failure
	committed := false
	res := s.Apply(t.Context(), Changes{Replace: []Spec{broken}}, func(f []Failure) { committed, atCommit = true, f })
	if !committed || len(atCommit) != 1 {
		t.Errorf("commit called %v with %+v: the rest of a reload must still apply, knowing what failed", committed, atCommit)
	}
	if len(res.Failed) != 1 || res.Failed[0].Key != spec.Key || !strings.Contains(res.Failed[0].Err, "/nonexistent/provider") {
		t.Fatalf("Failed = %+v, want the provider and its error", res.Failed)
	}
	cur, ok := s.Running(spec.Key)
	if !ok || pidOf(t, cur) != oldPID {
		t.Fatal("the old process does not serve any more")
	}
	if st := statusOf(t, s, spec.Key); !strings.Contains(st.LastError, "failed to start") || st.State != switchboard.StateRunning {
		t.Errorf("status = %+v, want running with the failure noted", st)
	}
	if _, downs := rec.counts(); downs != downsBefore {
		t.Error("the failed replacement took the key's catalog down")
	}
	if got := s.Specs(); len(got) != 1 || got[0].Command != spec.Command {
		t.Errorf("Specs = %+v, want the old spec", got)
	}
}

func TestApplyStartsAndStops(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	a := testSpec(t, "a", "")
	MustReady(t, s, a)
	b := testSpec(t, "b", "")
	res := s.Apply(t.Context(), Changes{Start: []Spec{b}, Stop: []switchboard.InstanceKey{a.Key}}, nil)
	if len(res.Failed) > 0 || len(res.Started) != 1 || res.Started[0] != b.Key || len(res.Stopped) != 1 || res.Stopped[0] != a.Key {
		t.Fatalf("Apply = %+v", res)
	}
	if s.Has(a.Key) || !s.Has(b.Key) {
		t.Fatal("wrong instances after Apply")
	}
}

// TestPerUserInstances: a user's own instance starts on their first call
// with the spec UserSpec gives, is capped per provider, is routed without
// starting again, and is reaped once idle.
func TestPerUserInstances(t *testing.T) {
	var specs sync.Map
	s, _ := MustSupervisor(t, Options{
		UserSpec: func(ctx context.Context, key switchboard.InstanceKey) (Spec, error) {
			if key.User == "nobody" {
				return Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "connect gh first")
			}
			spec := testSpec(t, key.Provider, "")
			spec.Env["WHO"] = key.User
			specs.Store(key.User, true)
			return spec, nil
		},
		Usable: func(p *switchboard.Principal) []string { return []string{"gh"} },
	})
	s.SetProviders(map[string]Provider{"gh": {UserScoped: true, MaxUsers: 1, IdleTimeout: time.Second}})
	if !s.UserScoped("gh") || s.UserScoped("other") {
		t.Fatal("UserScoped wrong")
	}
	ctx := t.Context()
	alice := switchboard.InstanceKey{Provider: "gh", User: "alice"}
	up, err := s.Upstream(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := callTool(ctx, up, "env", map[string]any{"name": "WHO"}); err != nil || got != "alice" {
		t.Fatalf("alice's instance env WHO = %q, %v", got, err)
	}
	if _, err := s.Upstream(ctx, switchboard.InstanceKey{Provider: "gh", User: "nobody"}); err == nil || !strings.Contains(err.Error(), "connect gh first") {
		t.Errorf("UserSpec's error does not reach the caller: %v", err)
	}
	if _, err := s.Upstream(ctx, switchboard.InstanceKey{Provider: "gh", User: "bob"}); switchboard.ErrorCode(err) != switchboard.EOVERLOADED {
		t.Errorf("second user past max 1: %v, want EOVERLOADED", err)
	}
	if _, err := s.Upstream(ctx, switchboard.InstanceKey{Provider: "gh"}); switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Errorf("the shared key of a per-user provider: %v, want EUNAVAILABLE", err)
	}

	reapCtx, stopReap := context.WithCancel(ctx)
	defer stopReap()
	go s.Reap(reapCtx, 50*time.Millisecond)
	// Kept busy, it stays (used every 100 ms, for longer than its idle
	// timeout: a margin of 10x for a loaded machine).
	for range 15 {
		if _, err := s.Upstream(ctx, alice); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !s.Has(alice) {
		t.Fatal("a per-user instance in use was reaped")
	}
	waitUntil(t, 10*time.Second, func() bool { return !s.Has(alice) }, "the idle instance to be reaped")

	// Ensure starts what Usable names.
	s.Ensure(ctx, &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "carol"})
	if _, ok := s.Running(switchboard.InstanceKey{Provider: "gh", User: "carol"}); !ok {
		t.Fatal("Ensure did not start carol's instance")
	}
	if err := s.StopUser(ctx, "carol"); err != nil || s.Has(switchboard.InstanceKey{Provider: "gh", User: "carol"}) {
		t.Fatalf("StopUser: %v", err)
	}
}

// TestFlightsWakeADrain: a drain waiting for calls returns as soon as the
// last one ends, and at once when none is in flight.
func TestFlightsWakeADrain(t *testing.T) {
	var f flights
	if err := f.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		f.begin()
		done := make(chan error, 1)
		go func() { done <- f.wait(t.Context()) }()
		time.Sleep(time.Millisecond)
		f.end()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the drain was not woken by the last call's end")
		}
	}
}
