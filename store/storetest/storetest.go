// Package storetest is the conformance suite of switchboard.Store. Every
// implementation's tests call Run with a way to make a fresh backend; the
// suite checks the contract the gateway relies on:
//
//   - Get of a missing key (in a missing or an existing bucket) fails with an
//     ENOTFOUND error; an empty bucket name or key is refused on Put.
//   - Values are copied in and out: changing a slice after Put, or the slice
//     Get returned, changes nothing stored. An empty value is stored as empty.
//   - List returns the keys with a prefix in byte order (not a collation's),
//     with the time each entry was last written; a missing bucket lists empty.
//   - Update is atomic: fn's error, or a failure to commit, leaves nothing
//     written; inside fn, reads see fn's own writes. Delete of a missing key is
//     not an error. DeletePrefix removes only that bucket's keys with the
//     prefix ("" removes the whole bucket).
//   - Concurrent read-modify-write Updates (also from several Store values on
//     one backend) lose no update: a conflicting fn is run again.
//   - A canceled context fails Get, List and Update without writing.
//   - What was committed is there after Close and a new Open. After Close,
//     calls fail and the Changes channel (if any) is closed.
//   - Values of several MiB round-trip.
//   - Leases: a lease taken by one holder is refused to another until it is
//     released or its ttl runs out; its holder may take it again; a release
//     by someone else changes nothing; of many holders racing for a free
//     lease (through several Store values, when shared), exactly one gets it.
//
// For backends several Store values may share at once (Options.Shared, e.g.
// PostgreSQL), Changes is checked too: a committed write through one value
// reaches every other value's Changes within Options.ChangeWithin, naming the
// bucket and key (or something broader: a prefix of the key, a "" key for the
// bucket, or an empty StoreChange for "anything"); the data is readable through the receiving
// value once the change arrives; a value's own writes, a rolled-back Update
// and an Update that writes nothing are not delivered; a consumer that does
// not read does not block writers and, when it reads again, learns of the
// last change (possibly coalesced into a broad one).
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// Options describes the Store under test.
type Options struct {
	// New makes a fresh, empty backend for one test and returns a function
	// that opens a Store on it. The suite closes every Store it opens; New
	// cleans up the backend itself (t.Cleanup).
	New func(t *testing.T) (open func(t *testing.T) switchboard.Store)
	// Shared says open may be called while a Store opened earlier on the same
	// backend is still open, as replicas sharing a database do. It enables
	// the tests of Changes and of conflicts between Store values. Without it,
	// Changes must return nil.
	Shared bool
	// ChangeWithin bounds how long a change may take to reach another Store
	// value's Changes. Zero means one second, the gateway's promise.
	ChangeWithin time.Duration
}

const bucket = "conformance"

// Run runs the conformance suite.
func Run(t *testing.T, o Options) {
	if o.New == nil {
		t.Fatal("storetest: Options.New is nil")
	}
	if o.ChangeWithin == 0 {
		o.ChangeWithin = time.Second
	}
	s := suite{o}
	tests := []struct {
		name   string
		fn     func(t *testing.T)
		shared bool
	}{
		{"GetMissing", s.getMissing, false},
		{"PutGetCopies", s.putGetCopies, false},
		{"InvalidNames", s.invalidNames, false},
		{"BucketsAreSeparate", s.bucketsAreSeparate, false},
		{"ListOrderAndPrefix", s.listOrderAndPrefix, false},
		{"ListUpdatedTimes", s.listUpdated, false},
		{"UpdateRollsBack", s.updateRollsBack, false},
		{"ReadYourWrites", s.readYourWrites, false},
		{"DeletePrefix", s.deletePrefix, false},
		{"LargeValues", s.largeValues, false},
		{"ManyKeys", s.manyKeys, false},
		{"ConcurrentIncrements", s.concurrentIncrements, false},
		{"InsertIfAbsentRace", s.insertIfAbsent, false},
		{"CanceledContext", s.canceled, false},
		{"Reopen", s.reopen, false},
		{"Close", s.close, false},
		{"ChangesNilUnlessShared", s.changesNil, false},
		{"ChangesDelivered", s.changesDelivered, true},
		{"ChangesNotOwnOrRolledBack", s.changesNotOwn, true},
		{"ChangesDataVisible", s.changesDataVisible, true},
		{"ChangesSlowConsumer", s.changesSlowConsumer, true},
		{"ConcurrentIncrementsAcrossValues", s.incrementsAcross, true},
		{"LeaseHolders", s.leaseHolders, false},
		{"LeaseExpires", s.leaseExpires, false},
		{"LeaseContention", s.leaseContention, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.shared && !o.Shared {
				t.Skip("the backend is not shared between Store values (Options.Shared is false)")
			}
			tc.fn(t)
		})
	}
}

type suite struct{ o Options }

// open makes a fresh backend and opens a Store on it, closed at cleanup.
func (s suite) open(t *testing.T) (switchboard.Store, func(t *testing.T) switchboard.Store) {
	t.Helper()
	opener := s.o.New(t)
	again := func(t *testing.T) switchboard.Store {
		t.Helper()
		st := opener(t)
		if st == nil {
			t.Fatal("open returned a nil Store")
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	return again(t), again
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// MustPut writes key=value in one Update.
func MustPut(tb testing.TB, st switchboard.Store, bucket, key string, value []byte) {
	tb.Helper()
	if err := st.Update(context.Background(), func(tx switchboard.StoreTx) error {
		return tx.Put(bucket, key, value)
	}); err != nil {
		tb.Fatalf("put %s/%q: %v", bucket, key, err)
	}
}

// MustGet reads key, failing the test if it is missing.
func MustGet(tb testing.TB, st switchboard.Store, bucket, key string) []byte {
	tb.Helper()
	v, err := st.Get(context.Background(), bucket, key)
	if err != nil {
		tb.Fatalf("get %s/%q: %v", bucket, key, err)
	}
	return v
}

func wantNotFound(tb testing.TB, err error, what string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s: no error, want ENOTFOUND", what)
	}
	if c := switchboard.ErrorCode(err); c != switchboard.ENOTFOUND {
		tb.Fatalf("%s: error %v has code %q, want %q", what, err, c, switchboard.ENOTFOUND)
	}
}

func keys(es []switchboard.StoreEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

func (s suite) getMissing(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	_, err := st.Get(ctx, "no-such-bucket", "k")
	wantNotFound(t, err, "get from a missing bucket")
	MustPut(t, st, bucket, "present", []byte("v"))
	_, err = st.Get(ctx, bucket, "absent")
	wantNotFound(t, err, "get of a missing key")
	err = st.Update(ctx, func(tx switchboard.StoreTx) error {
		_, err := tx.Get(bucket, "absent")
		wantNotFound(t, err, "tx get of a missing key")
		_, err = tx.Get("no-such-bucket", "k")
		wantNotFound(t, err, "tx get from a missing bucket")
		return nil
	})
	if err != nil {
		t.Fatalf("read-only update: %v", err)
	}
}

func (s suite) putGetCopies(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	in := []byte("value-1")
	MustPut(t, st, bucket, "k", in)
	in[0] = 'X' // the caller reuses its buffer
	got := MustGet(t, st, bucket, "k")
	if string(got) != "value-1" {
		t.Fatalf("get after the caller changed its slice = %q, want %q", got, "value-1")
	}
	got[0] = 'Y'
	if again := MustGet(t, st, bucket, "k"); string(again) != "value-1" {
		t.Fatalf("get after the caller changed the returned slice = %q, want %q", again, "value-1")
	}
	MustPut(t, st, bucket, "k", []byte("value-2"))
	if got := MustGet(t, st, bucket, "k"); string(got) != "value-2" {
		t.Fatalf("get after overwrite = %q, want value-2", got)
	}
	MustPut(t, st, bucket, "empty", []byte{})
	if got := MustGet(t, st, bucket, "empty"); len(got) != 0 {
		t.Fatalf("empty value came back as %q", got)
	}
	ls, err := st.List(ctx, bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	ls[0].Value = append(ls[0].Value[:0], "changed"...)
	ls2, _ := st.List(ctx, bucket, "")
	if string(ls2[0].Value) == "changed" {
		t.Fatal("changing a listed value changed the store")
	}
}

func (s suite) invalidNames(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	for _, tc := range []struct{ name, bucket, key string }{
		{"empty bucket", "", "k"},
		{"empty key", bucket, ""},
	} {
		err := st.Update(ctx, func(tx switchboard.StoreTx) error { return tx.Put(tc.bucket, tc.key, []byte("v")) })
		if err == nil {
			t.Errorf("%s: Put succeeded, want an error", tc.name)
		}
	}
	// Keys are bytes: odd ones must round-trip.
	odd := []string{"a\x00b", "\xff\xfe", "é/ü", "with space", "1000:" + string(bytes.Repeat([]byte("k"), 995))}
	for _, k := range odd {
		MustPut(t, st, bucket, k, []byte(k))
		if got := MustGet(t, st, bucket, k); string(got) != k {
			t.Errorf("key %q: got %q", k, got)
		}
	}
	ls, err := st.List(ctx, bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(odd)
	slices.Sort(want)
	if !slices.Equal(keys(ls), want) {
		t.Errorf("list = %q, want %q", keys(ls), want)
	}
}

func (s suite) bucketsAreSeparate(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	MustPut(t, st, "b1", "k", []byte("one"))
	MustPut(t, st, "b2", "k", []byte("two"))
	MustPut(t, st, "b1x", "k", []byte("three"))
	if got := MustGet(t, st, "b1", "k"); string(got) != "one" {
		t.Fatalf("b1/k = %q", got)
	}
	if got := MustGet(t, st, "b2", "k"); string(got) != "two" {
		t.Fatalf("b2/k = %q", got)
	}
	ls, err := st.List(ctx, "b1", "")
	if err != nil || len(ls) != 1 || string(ls[0].Value) != "one" {
		t.Fatalf("list b1 = %v, %v; want only one entry", ls, err)
	}
	if err := st.Update(ctx, func(tx switchboard.StoreTx) error { return tx.Delete("b2", "k") }); err != nil {
		t.Fatal(err)
	}
	if got := MustGet(t, st, "b1", "k"); string(got) != "one" {
		t.Fatalf("deleting b2/k changed b1/k to %q", got)
	}
}

func (s suite) listOrderAndPrefix(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	all := []string{"b", "a", "ab", "a\x00", "B", "é", "\xff", "\xff\x00", "\xff\xff", "aa\xff", "ab\x00z", "Z", "0"}
	err := st.Update(ctx, func(tx switchboard.StoreTx) error {
		for _, k := range all {
			if err := tx.Put(bucket, k, []byte("v:"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	byteOrder := slices.Clone(all)
	slices.Sort(byteOrder) // Go compares strings by their bytes
	for _, prefix := range []string{"", "a", "ab", "\xff", "\xff\xff", "é", "zz", "a\x00"} {
		var want []string
		for _, k := range byteOrder {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
				want = append(want, k)
			}
		}
		ls, err := st.List(ctx, bucket, prefix)
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		if !slices.Equal(keys(ls), want) {
			t.Errorf("list %q = %q, want %q (byte order)", prefix, keys(ls), want)
		}
		for _, e := range ls {
			if string(e.Value) != "v:"+e.Key {
				t.Errorf("list %q: %q has value %q", prefix, e.Key, e.Value)
			}
		}
		// The same inside a transaction.
		err = st.Update(ctx, func(tx switchboard.StoreTx) error {
			ls, err := tx.List(bucket, prefix)
			if err != nil {
				return err
			}
			if !slices.Equal(keys(ls), want) {
				t.Errorf("tx list %q = %q, want %q", prefix, keys(ls), want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ls, err := st.List(ctx, "no-such-bucket", "")
	if err != nil || len(ls) != 0 {
		t.Fatalf("list of a missing bucket = %v, %v; want empty, nil", ls, err)
	}
}

func (s suite) listUpdated(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	before := time.Now()
	MustPut(t, st, bucket, "a", []byte("1"))
	time.Sleep(20 * time.Millisecond)
	MustPut(t, st, bucket, "b", []byte("1"))
	after := time.Now()
	ls, err := st.List(ctx, bucket, "")
	if err != nil || len(ls) != 2 {
		t.Fatalf("list = %v, %v", ls, err)
	}
	const skew = time.Minute // the database may keep its own clock
	for _, e := range ls {
		if e.Updated.IsZero() || e.Updated.Before(before.Add(-skew)) || e.Updated.After(after.Add(skew)) {
			t.Errorf("%q updated %v, want between %v and %v", e.Key, e.Updated, before, after)
		}
	}
	if !ls[1].Updated.After(ls[0].Updated) {
		t.Errorf("b (written later) updated %v, not after a's %v", ls[1].Updated, ls[0].Updated)
	}
	first := ls[0].Updated
	time.Sleep(20 * time.Millisecond)
	MustPut(t, st, bucket, "a", []byte("2"))
	ls, _ = st.List(ctx, bucket, "a")
	if !ls[0].Updated.After(first) {
		t.Errorf("rewriting a left its time at %v (was %v)", ls[0].Updated, first)
	}
}

var errBoom = errors.New("boom from fn")

func (s suite) updateRollsBack(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	MustPut(t, st, bucket, "keep", []byte("orig"))
	MustPut(t, st, bucket, "gone", []byte("orig"))
	MustPut(t, st, "other", "p/1", []byte("orig"))
	err := st.Update(ctx, func(tx switchboard.StoreTx) error {
		if err := tx.Put(bucket, "keep", []byte("changed")); err != nil {
			return err
		}
		if err := tx.Put(bucket, "new", []byte("x")); err != nil {
			return err
		}
		if err := tx.Delete(bucket, "gone"); err != nil {
			return err
		}
		if err := tx.DeletePrefix("other", "p/"); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("update returned %v, want fn's error", err)
	}
	if got := MustGet(t, st, bucket, "keep"); string(got) != "orig" {
		t.Errorf("keep = %q after rollback", got)
	}
	if got := MustGet(t, st, bucket, "gone"); string(got) != "orig" {
		t.Errorf("gone = %q after rollback", got)
	}
	if got := MustGet(t, st, "other", "p/1"); string(got) != "orig" {
		t.Errorf("other/p/1 = %q after rollback", got)
	}
	_, err = st.Get(ctx, bucket, "new")
	wantNotFound(t, err, "a key put by a rolled-back update")
}

func (s suite) readYourWrites(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	MustPut(t, st, bucket, "p/old", []byte("o"))
	MustPut(t, st, bucket, "p/del", []byte("d"))
	err := st.Update(ctx, func(tx switchboard.StoreTx) error {
		if err := tx.Put(bucket, "p/new", []byte("n")); err != nil {
			return err
		}
		if err := tx.Delete(bucket, "p/del"); err != nil {
			return err
		}
		if err := tx.Delete(bucket, "never-existed"); err != nil {
			return fmt.Errorf("delete of a missing key: %w", err)
		}
		v, err := tx.Get(bucket, "p/new")
		if err != nil || string(v) != "n" {
			return fmt.Errorf("tx get of its own put = %q, %v", v, err)
		}
		if _, err := tx.Get(bucket, "p/del"); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
			return fmt.Errorf("tx get of its own delete: %v, want ENOTFOUND", err)
		}
		ls, err := tx.List(bucket, "p/")
		if err != nil {
			return err
		}
		if got := keys(ls); !slices.Equal(got, []string{"p/new", "p/old"}) {
			return fmt.Errorf("tx list = %q, want [p/new p/old]", got)
		}
		if err := tx.DeletePrefix(bucket, "p/"); err != nil {
			return err
		}
		if ls, _ := tx.List(bucket, ""); len(ls) != 0 {
			return fmt.Errorf("tx list after DeletePrefix = %q", keys(ls))
		}
		return tx.Put(bucket, "p/after", []byte("a"))
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := st.List(ctx, bucket, "")
	if err != nil || !slices.Equal(keys(ls), []string{"p/after"}) {
		t.Fatalf("after commit: list = %q, %v; want [p/after]", keys(ls), err)
	}
}

func (s suite) deletePrefix(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	err := st.Update(ctx, func(tx switchboard.StoreTx) error {
		for _, k := range []string{"u/alice/1", "u/alice/2", "u/alicia", "u/bob/1", "v"} {
			if err := tx.Put(bucket, k, []byte(k)); err != nil {
				return err
			}
			if err := tx.Put("second", k, []byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	del := func(b, p string) {
		t.Helper()
		if err := st.Update(ctx, func(tx switchboard.StoreTx) error { return tx.DeletePrefix(b, p) }); err != nil {
			t.Fatalf("DeletePrefix(%q, %q): %v", b, p, err)
		}
	}
	list := func(b string) []string {
		t.Helper()
		ls, err := st.List(ctx, b, "")
		if err != nil {
			t.Fatal(err)
		}
		return keys(ls)
	}
	del(bucket, "u/alice/")
	if got := list(bucket); !slices.Equal(got, []string{"u/alicia", "u/bob/1", "v"}) {
		t.Fatalf("after DeletePrefix u/alice/: %q", got)
	}
	del(bucket, "nothing-matches")
	del("no-such-bucket", "x")
	del(bucket, "")
	if got := list(bucket); len(got) != 0 {
		t.Fatalf("after DeletePrefix \"\": %q", got)
	}
	if got := list("second"); len(got) != 5 {
		t.Fatalf("DeletePrefix on %s touched bucket second: %q", bucket, got)
	}
}

func randBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func (s suite) largeValues(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	big := randBytes(t, 4<<20)
	MustPut(t, st, bucket, "big", big)
	if got := MustGet(t, st, bucket, "big"); !bytes.Equal(got, big) {
		t.Fatalf("4 MiB value came back as %d different bytes", len(got))
	}
	ls, err := st.List(ctx, bucket, "b")
	if err != nil || len(ls) != 1 || !bytes.Equal(ls[0].Value, big) {
		t.Fatalf("list of the 4 MiB value: %d entries, %v", len(ls), err)
	}
	// Several large values in one transaction.
	vals := [][]byte{randBytes(t, 2<<20), randBytes(t, 2<<20), randBytes(t, 2<<20)}
	err = st.Update(ctx, func(tx switchboard.StoreTx) error {
		for i, v := range vals {
			if err := tx.Put(bucket, "many/"+strconv.Itoa(i), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if got := MustGet(t, st, bucket, "many/"+strconv.Itoa(i)); !bytes.Equal(got, v) {
			t.Fatalf("many/%d differs", i)
		}
	}
}

func (s suite) manyKeys(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	const n = 2000
	err := st.Update(ctx, func(tx switchboard.StoreTx) error {
		for i := range n {
			if err := tx.Put(bucket, fmt.Sprintf("k%05d", n-1-i), []byte(strconv.Itoa(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := st.List(ctx, bucket, "k")
	if err != nil || len(ls) != n {
		t.Fatalf("list: %d entries, %v; want %d", len(ls), err, n)
	}
	for i, e := range ls {
		if e.Key != fmt.Sprintf("k%05d", i) {
			t.Fatalf("entry %d is %q", i, e.Key)
		}
	}
}

// increment adds one to the decimal counter at key.
func increment(ctx context.Context, st switchboard.Store, key string, runs *int64, mu *sync.Mutex) error {
	return st.Update(ctx, func(tx switchboard.StoreTx) error {
		mu.Lock()
		*runs++
		mu.Unlock()
		n := 0
		v, err := tx.Get(bucket, key)
		switch {
		case err == nil:
			if n, err = strconv.Atoi(string(v)); err != nil {
				return err
			}
		case switchboard.ErrorCode(err) != switchboard.ENOTFOUND:
			return err
		}
		return tx.Put(bucket, key, []byte(strconv.Itoa(n+1)))
	})
}

func (s suite) runIncrements(t *testing.T, stores []switchboard.Store) {
	ctx := ctxT(t)
	const workers, each = 8, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		runs int64
		errs = make(chan error, workers*each)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stores[w%len(stores)]
			for range each {
				if err := increment(ctx, st, "counter", &runs, &mu); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("increment: %v", err)
	}
	got := MustGet(t, stores[0], bucket, "counter")
	if string(got) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d concurrent increments (fn ran %d times): updates were lost", got, workers*each, runs)
	}
	t.Logf("%d increments, fn ran %d times", workers*each, runs)
}

func (s suite) concurrentIncrements(t *testing.T) {
	st, _ := s.open(t)
	s.runIncrements(t, []switchboard.Store{st})
}

func (s suite) incrementsAcross(t *testing.T) {
	a, open := s.open(t)
	b := open(t)
	s.runIncrements(t, []switchboard.Store{a, b})
}

var errExists = errors.New("already exists")

func (s suite) insertIfAbsent(t *testing.T) {
	a, open := s.open(t)
	stores := []switchboard.Store{a}
	if s.o.Shared {
		stores = append(stores, open(t))
	}
	ctx := ctxT(t)
	const n = 8
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = stores[i%len(stores)].Update(ctx, func(tx switchboard.StoreTx) error {
				if _, err := tx.Get(bucket, "user/alice"); err == nil {
					return errExists
				} else if switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
					return err
				}
				return tx.Put(bucket, "user/alice", []byte(strconv.Itoa(i)))
			})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("both %d and %d created the same key", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, errExists):
			t.Errorf("worker %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no worker created the key")
	}
	if got := MustGet(t, a, bucket, "user/alice"); string(got) != strconv.Itoa(winner) {
		t.Fatalf("user/alice = %s, but worker %d won", got, winner)
	}
}

func (s suite) canceled(t *testing.T) {
	st, _ := s.open(t)
	MustPut(t, st, bucket, "k", []byte("v"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Get(ctx, bucket, "k"); err == nil {
		t.Error("get with a canceled context succeeded")
	}
	if _, err := st.List(ctx, bucket, ""); err == nil {
		t.Error("list with a canceled context succeeded")
	}
	err := st.Update(ctx, func(tx switchboard.StoreTx) error { return tx.Put(bucket, "k2", []byte("v")) })
	if err == nil {
		t.Error("update with a canceled context succeeded")
	}
	_, err = st.Get(context.Background(), bucket, "k2")
	wantNotFound(t, err, "a key put under a canceled context")
}

func (s suite) reopen(t *testing.T) {
	st, open := s.open(t)
	MustPut(t, st, bucket, "durable", []byte("yes"))
	MustPut(t, st, "other", "x", []byte("y"))
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	st2 := open(t)
	if got := MustGet(t, st2, bucket, "durable"); string(got) != "yes" {
		t.Fatalf("after reopen: %q", got)
	}
	if got := MustGet(t, st2, "other", "x"); string(got) != "y" {
		t.Fatalf("after reopen: %q", got)
	}
}

func (s suite) close(t *testing.T) {
	st, _ := s.open(t)
	MustPut(t, st, bucket, "k", []byte("v"))
	ch := st.Changes()
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	ctx := ctxT(t)
	if _, err := st.Get(ctx, bucket, "k"); err == nil {
		t.Error("get after close succeeded")
	}
	if _, err := st.List(ctx, bucket, ""); err == nil {
		t.Error("list after close succeeded")
	}
	if err := st.Update(ctx, func(tx switchboard.StoreTx) error { return nil }); err == nil {
		t.Error("update after close succeeded")
	}
	_ = st.Close() // a second Close must not panic or hang
	if ch != nil {
		deadline := time.After(10 * time.Second)
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-deadline:
				t.Fatal("the Changes channel is still open 10 s after Close")
			}
		}
	}
}

func (s suite) changesNil(t *testing.T) {
	if s.o.Shared {
		st, _ := s.open(t)
		if st.Changes() == nil {
			t.Fatal("a shared backend's Store returns nil Changes: replicas would never learn of each other's writes")
		}
		return
	}
	st, _ := s.open(t)
	if st.Changes() != nil {
		t.Fatal("a Store that owns its backend alone must return nil Changes")
	}
}

// covers reports whether c announces a change of bucket/key.
func covers(c switchboard.StoreChange, bucket, key string) bool { return c.Covers(bucket, key) }

// WaitChange reads ch until a change covering bucket/key arrives, or within
// passes; it returns the changes read, that one last.
func WaitChange(tb testing.TB, ch <-chan switchboard.StoreChange, bucket, key string, within time.Duration) []switchboard.StoreChange {
	tb.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	var seen []switchboard.StoreChange
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				tb.Fatalf("Changes closed while waiting for %s/%q (saw %v)", bucket, key, seen)
			}
			seen = append(seen, c)
			if covers(c, bucket, key) {
				return seen
			}
		case <-deadline.C:
			tb.Fatalf("no change of %s/%q within %s (saw %v)", bucket, key, within, seen)
		}
	}
}

func (s suite) changesDelivered(t *testing.T) {
	a, open := s.open(t)
	b := open(t)
	ctx := ctxT(t)
	ch := b.Changes()
	within := s.o.ChangeWithin

	start := time.Now()
	MustPut(t, a, bucket, "put", []byte("1"))
	WaitChange(t, ch, bucket, "put", within)
	t.Logf("a put reached the other Store value in %s", time.Since(start))

	err := a.Update(ctx, func(tx switchboard.StoreTx) error {
		for _, k := range []string{"m1", "m2", "m3"} {
			if err := tx.Put("multi", k, []byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string]bool{"m1": true, "m2": true, "m3": true}
	deadline := time.After(within)
	for len(pending) > 0 {
		select {
		case c := <-ch:
			for k := range pending {
				if covers(c, "multi", k) {
					delete(pending, k)
				}
			}
		case <-deadline:
			t.Fatalf("keys %v of a three-key update never reached the other Store value", pending)
		}
	}

	if err := a.Update(ctx, func(tx switchboard.StoreTx) error { return tx.Delete(bucket, "put") }); err != nil {
		t.Fatal(err)
	}
	WaitChange(t, ch, bucket, "put", within)

	MustPut(t, a, "prefixed", "p/1", []byte("x"))
	WaitChange(t, ch, "prefixed", "p/1", within)
	if err := a.Update(ctx, func(tx switchboard.StoreTx) error { return tx.DeletePrefix("prefixed", "p/") }); err != nil {
		t.Fatal(err)
	}
	WaitChange(t, ch, "prefixed", "p/1", within)

	// And the other way round.
	MustPut(t, b, bucket, "from-b", []byte("1"))
	WaitChange(t, a.Changes(), bucket, "from-b", within)
}

func (s suite) changesNotOwn(t *testing.T) {
	a, open := s.open(t)
	b := open(t)
	ctx := ctxT(t)
	within := s.o.ChangeWithin
	// a's own write, a rolled-back update through b, an update through b
	// that writes nothing; then a marker through b. a must see the marker
	// and nothing naming the earlier keys.
	MustPut(t, a, bucket, "own", []byte("1"))
	err := b.Update(ctx, func(tx switchboard.StoreTx) error {
		if err := tx.Put(bucket, "rolled-back", []byte("1")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("rolled-back update returned %v", err)
	}
	err = b.Update(ctx, func(tx switchboard.StoreTx) error {
		_, err := tx.Get(bucket, "own")
		return err
	})
	if err != nil {
		t.Fatalf("read-only update: %v", err)
	}
	MustPut(t, b, bucket, "marker", []byte("1"))
	seen := WaitChange(t, a.Changes(), bucket, "marker", within)
	for _, c := range seen {
		if c == (switchboard.StoreChange{Bucket: bucket, Key: "own"}) {
			t.Errorf("a Store value was told of its own write: %v", c)
		}
		if c == (switchboard.StoreChange{Bucket: bucket, Key: "rolled-back"}) {
			t.Errorf("a rolled-back write was delivered: %v", c)
		}
	}
	// b must see a's write, and not the marker it wrote itself.
	for _, c := range WaitChange(t, b.Changes(), bucket, "own", within) {
		if c == (switchboard.StoreChange{Bucket: bucket, Key: "marker"}) {
			t.Errorf("b was told of its own write: %v", c)
		}
	}
}

func (s suite) changesDataVisible(t *testing.T) {
	a, open := s.open(t)
	b := open(t)
	ctx := ctxT(t)
	ch := b.Changes()
	for i := range 20 {
		want := strconv.Itoa(i)
		MustPut(t, a, bucket, "v", []byte(want))
		WaitChange(t, ch, bucket, "v", s.o.ChangeWithin)
		// What was announced is readable: no stale read after the change.
		got, err := b.Get(ctx, bucket, "v")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(string(got)); n < i {
			t.Fatalf("after change %d, the other Store value reads %s", i, got)
		}
	}
}

func (s suite) changesSlowConsumer(t *testing.T) {
	a, open := s.open(t)
	b := open(t)
	ctx := ctxT(t)
	ch := b.Changes() // not read while a writes
	const updates, per = 10, 500
	done := make(chan error, 1)
	go func() {
		for u := range updates {
			err := a.Update(ctx, func(tx switchboard.StoreTx) error {
				for i := range per {
					if err := tx.Put(bucket, fmt.Sprintf("k%02d-%03d", u, i), []byte("x")); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("writes blocked while another Store value's consumer did not read Changes")
	}
	last := fmt.Sprintf("k%02d-%03d", updates-1, per-1)
	// The consumer catches up: it must learn of the last write (or get a
	// broad change) within a bounded time, however much it missed.
	start := time.Now()
	seen := WaitChange(t, ch, bucket, last, 30*time.Second)
	t.Logf("after %d unread changes, the consumer learned of the last in %d reads, %s", updates*per, len(seen), time.Since(start))
}

// MustTryLease takes a lease and fails tb on an error.
func MustTryLease(tb testing.TB, st switchboard.Store, name, holder string, ttl time.Duration) bool {
	tb.Helper()
	ok, err := st.TryLease(context.Background(), name, holder, ttl)
	if err != nil {
		tb.Fatalf("TryLease(%s, %s): %v", name, holder, err)
	}
	return ok
}

func (s suite) leaseHolders(t *testing.T) {
	st, _ := s.open(t)
	ctx := ctxT(t)
	const ttl = time.Minute
	if !MustTryLease(t, st, "job", "a", ttl) {
		t.Fatal("a could not take a free lease")
	}
	if MustTryLease(t, st, "job", "b", ttl) {
		t.Fatal("b took the lease a holds")
	}
	if !MustTryLease(t, st, "job", "a", ttl) {
		t.Fatal("a could not take again the lease it holds")
	}
	if !MustTryLease(t, st, "other", "b", ttl) {
		t.Fatal("b could not take another, free, lease")
	}
	if err := st.ReleaseLease(ctx, "job", "b"); err != nil {
		t.Fatalf("ReleaseLease by a non-holder: %v", err)
	}
	if MustTryLease(t, st, "job", "b", ttl) {
		t.Fatal("b took a's lease after b's own release of it")
	}
	if err := st.ReleaseLease(ctx, "job", "a"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if err := st.ReleaseLease(ctx, "job", "a"); err != nil {
		t.Fatalf("ReleaseLease of a released lease: %v", err)
	}
	if !MustTryLease(t, st, "job", "b", ttl) {
		t.Fatal("b could not take the lease a released")
	}
	if MustTryLease(t, st, "job", "a", ttl) {
		t.Fatal("a took the lease b now holds")
	}
	for _, tc := range []struct {
		name, lease, holder string
		ttl                 time.Duration
	}{
		{"no name", "", "a", ttl},
		{"no holder", "job2", "", ttl},
		{"no ttl", "job2", "a", 0},
	} {
		if _, err := st.TryLease(ctx, tc.lease, tc.holder, tc.ttl); err == nil {
			t.Errorf("TryLease with %s: no error", tc.name)
		}
	}
}

func (s suite) leaseExpires(t *testing.T) {
	st, _ := s.open(t)
	const ttl = 500 * time.Millisecond
	start := time.Now()
	if !MustTryLease(t, st, "job", "a", ttl) {
		t.Fatal("a could not take a free lease")
	}
	if MustTryLease(t, st, "job", "b", time.Minute) {
		t.Fatal("b took a's lease before its ttl ran out")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !MustTryLease(t, st, "job", "b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatalf("b could not take a's lease %v after its %v ttl", time.Since(start), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); took < ttl {
		t.Fatalf("b took a's lease after %v, before its %v ttl ran out", took, ttl)
	}
	if MustTryLease(t, st, "job", "a", ttl) {
		t.Fatal("a took back the lease b took over")
	}
	if err := st.ReleaseLease(ctxT(t), "job", "a"); err != nil {
		t.Fatalf("ReleaseLease of a lapsed lease: %v", err)
	}
	if MustTryLease(t, st, "job", "c", ttl) {
		t.Fatal("a's release of its lapsed lease freed b's")
	}
}

func (s suite) leaseContention(t *testing.T) {
	st, again := s.open(t)
	stores := []switchboard.Store{st}
	if s.o.Shared {
		stores = append(stores, again(t), again(t))
	}
	for round := range 5 {
		name := "race" + strconv.Itoa(round)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			won  []string
			errs []error
		)
		start := make(chan struct{})
		for i := range 8 {
			holder := "h" + strconv.Itoa(i)
			wg.Go(func() {
				<-start
				ok, err := stores[i%len(stores)].TryLease(context.Background(), name, holder, time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					won = append(won, holder)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: TryLease: %v", round, errors.Join(errs...))
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d holders took one free lease (%v); want exactly one", round, len(won), won)
		}
	}
}
