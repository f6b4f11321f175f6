package postgres_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/postgres"
	"github.com/switchboard-mcp/switchboard/store/postgres/pgtest"
	"github.com/switchboard-mcp/switchboard/store/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func testLogger(tb testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
}

// MustOpen opens a Store on dsn, closed when tb ends.
func MustOpen(tb testing.TB, dsn string, mod ...func(*postgres.Config)) *postgres.Store {
	tb.Helper()
	cfg := postgres.Config{DSN: dsn, Replica: "test", MaxConns: 8}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

func TestConformance(t *testing.T) {
	srv := pgtest.Shared(t)
	storetest.Run(t, storetest.Options{
		Shared: true,
		New: func(t *testing.T) func(t *testing.T) switchboard.Store {
			dsn := srv.CreateDB(t)
			return func(t *testing.T) switchboard.Store { return MustOpen(t, dsn) }
		},
	})
}

// TestMigrateConcurrently starts eight replicas on an empty database at once:
// each migration is applied exactly once and every replica opens.
func TestMigrateConcurrently(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.CreateDB(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*postgres.Store, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stores[i], errs[i] = postgres.Open(ctx, postgres.Config{DSN: dsn, Replica: "r", MaxConns: 2}, testLogger(t))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		} else {
			t.Cleanup(func() { _ = stores[i].Close() })
		}
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, maxV int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM switchboard_schema").Scan(&rows, &maxV); err != nil {
		t.Fatal(err)
	}
	if rows != postgres.SchemaVersion() || maxV != postgres.SchemaVersion() {
		t.Fatalf("switchboard_schema has %d rows up to version %d, want one per version up to %d", rows, maxV, postgres.SchemaVersion())
	}
}

// TestNewerSchemaRefused: a binary never runs on a schema it does not know.
func TestNewerSchemaRefused(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.CreateDB(t)
	MustOpen(t, dsn).Close()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO switchboard_schema (version, name) VALUES (999, 'from_the_future')"); err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Open(ctx, postgres.Config{DSN: dsn}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("open on a newer schema: %v, want a refusal", err)
	}
}

// TestOpenErrorHidesPassword: a bad DSN or an unreachable server is reported
// without the password.
func TestOpenErrorHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://u:hunter2-secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=1 password=hunter2-secret connect_timeout=2 sslmode=disable",
		"postgres://u:hunter2-secret@127.0.0.1:notaport/db",
	} {
		_, err := postgres.Open(ctx, postgres.Config{DSN: dsn}, testLogger(t))
		if err == nil {
			t.Fatalf("open %q succeeded", dsn)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// TestMissedNotificationResync writes a change the way a replica would but
// without its NOTIFY: the periodic resync still delivers it.
func TestMissedNotificationResync(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.CreateDB(t)
	st := MustOpen(t, dsn, func(c *postgres.Config) { c.ResyncInterval = 300 * time.Millisecond })
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	start := time.Now()
	if _, err := conn.Exec(ctx, `BEGIN;
		INSERT INTO switchboard_kv (bucket, key, value) VALUES ('b', 'silent'::bytea, 'x'::bytea);
		INSERT INTO switchboard_changes (writer, bucket, key) VALUES ('someone-else', 'b', 'silent'::bytea);
		COMMIT`); err != nil {
		t.Fatal(err)
	}
	storetest.WaitChange(t, st.Changes(), "b", "silent", 5*time.Second)
	t.Logf("a change without NOTIFY arrived after %s (resync every 300ms)", time.Since(start))
}

// TestPrunedChangesReloadAll: a replica that missed change rows that have
// since been pruned is told to reload everything.
func TestPrunedChangesReloadAll(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.CreateDB(t)
	ctx := context.Background()
	writer := MustOpen(t, dsn, func(c *postgres.Config) { c.ChangeRetention = time.Millisecond })
	// reader reads changes every 200 ms; the writer prunes what is older
	// than a millisecond, possibly before reader has read it.
	reader := MustOpen(t, dsn, func(c *postgres.Config) { c.ResyncInterval = 200 * time.Millisecond })
	for i := range 5 {
		storetest.MustPut(t, writer, "b", fmt.Sprintf("k%d", i), []byte("x"))
	}
	time.Sleep(10 * time.Millisecond)
	before := reader.Stats().LastSeq
	if err := postgres.PruneNow(ctx, writer); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left, pruned int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM switchboard_changes),
		(SELECT value FROM switchboard_meta WHERE name = 'changes_pruned_through')`).Scan(&left, &pruned); err != nil {
		t.Fatal(err)
	}
	if left != 0 || pruned < 5 {
		t.Fatalf("after pruning: %d rows left, pruned through %d; want 0 rows, through >= 5", left, pruned)
	}
	// If reader had not read the rows yet, it must be told to reload
	// everything. A replica whose cursor is behind the pruned mark must be,
	// in any case: move the mark past late's cursor.
	if before < pruned {
		seen := storetest.WaitChange(t, reader.Changes(), "zz", "zz", 5*time.Second)
		if last := seen[len(seen)-1]; last != (switchboard.StoreChange{}) {
			t.Fatalf("got %v, want the empty StoreChange (reload everything)", last)
		}
	}
	late := MustOpen(t, dsn, func(c *postgres.Config) { c.ResyncInterval = 200 * time.Millisecond })
	if _, err := conn.Exec(ctx, "UPDATE switchboard_meta SET value = value + 100 WHERE name = 'changes_pruned_through'"); err != nil {
		t.Fatal(err)
	}
	seen := storetest.WaitChange(t, late.Changes(), "zz", "zz", 5*time.Second)
	if last := seen[len(seen)-1]; last != (switchboard.StoreChange{}) {
		t.Fatalf("got %v, want the empty StoreChange (reload everything)", last)
	}
}

// TestReconnect: the database goes away and comes back; the Store reports
// itself unready meanwhile, then reconnects, catches up on what other
// replicas wrote while it was away, and serves again.
func TestReconnect(t *testing.T) {
	srv, err := pgtest.Start()
	if err != nil {
		pgtest.Shared(t) // skips or fails with the reason
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	dsn := srv.CreateDB(t)
	fast := func(c *postgres.Config) {
		c.ResyncInterval = 200 * time.Millisecond
		c.ConnectTimeout = 2 * time.Second
	}
	a := MustOpen(t, dsn, fast)
	b := MustOpen(t, dsn, fast)
	ctx := context.Background()
	storetest.MustPut(t, a, "b", "before", []byte("1"))
	storetest.WaitChange(t, b.Changes(), "b", "before", 5*time.Second)
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("ready before the outage: %v", err)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for b.Ready(ctx) == nil {
		if time.Now().After(deadline) {
			t.Fatal("still ready 15 s after the database stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := a.Get(ctx, "b", "before"); switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("get while the database is down: %v, want EUNAVAILABLE", err)
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// a writes as soon as it can (its pool reconnects on demand).
	deadline = time.Now().Add(30 * time.Second)
	for {
		err := a.Update(ctx, func(tx switchboard.StoreTx) error { return tx.Put("b", "after", []byte("2")) })
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writing after the database came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	storetest.WaitChange(t, b.Changes(), "b", "after", 15*time.Second)
	deadline = time.Now().Add(15 * time.Second)
	for {
		err := b.Ready(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 15 s after the database came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := storetest.MustGet(t, b, "b", "after"); string(got) != "2" {
		t.Fatalf("after reconnect b reads %q", got)
	}
}

// TestChangeLatency measures how long a committed write takes to reach
// another Store value's Changes (the numbers in docs/deploy.md), and holds
// the promise: within a second.
func TestChangeLatency(t *testing.T) {
	srv := pgtest.Shared(t)
	dsn := srv.CreateDB(t)
	a, b := MustOpen(t, dsn), MustOpen(t, dsn)
	const n = 200
	lat := make([]time.Duration, 0, n)
	for i := range n {
		key := fmt.Sprintf("k%03d", i)
		start := time.Now()
		storetest.MustPut(t, a, "lat", key, []byte("v"))
		committed := time.Now()
		storetest.WaitChange(t, b.Changes(), "lat", key, 5*time.Second)
		lat = append(lat, time.Since(committed))
		if i == 0 {
			t.Logf("first write took %s to commit", committed.Sub(start))
		}
	}
	slices.Sort(lat)
	p50, p99, worst := lat[n/2], lat[n*99/100], lat[n-1]
	t.Logf("commit → other replica's Changes over %d writes: p50 %s, p99 %s, max %s", n, p50, p99, worst)
	if p99 > time.Second {
		t.Errorf("p99 %s: changes must reach other replicas within a second", p99)
	}
}

// TestDeletePrefixNamesItsPrefix: another replica learns which keys a
// DeletePrefix removed (the vault tells whose connection it was from it).
func TestDeletePrefixNamesItsPrefix(t *testing.T) {
	dsn := pgtest.Shared(t).CreateDB(t)
	a, b := MustOpen(t, dsn), MustOpen(t, dsn)
	storetest.MustPut(t, a, "b", "ann\x1fgh\x1frecord", []byte("1"))
	storetest.WaitChange(t, b.Changes(), "b", "ann\x1fgh\x1frecord", 5*time.Second)
	if err := a.Update(context.Background(), func(tx switchboard.StoreTx) error { return tx.DeletePrefix("b", "ann\x1fgh\x1f") }); err != nil {
		t.Fatal(err)
	}
	seen := storetest.WaitChange(t, b.Changes(), "b", "ann\x1fgh\x1frecord", 5*time.Second)
	if got, want := seen[len(seen)-1], (switchboard.StoreChange{Bucket: "b", Key: "ann\x1fgh\x1f", Prefix: true}); got != want {
		t.Errorf("the DeletePrefix arrived as %+v, want %+v", got, want)
	}
}
