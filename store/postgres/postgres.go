// Package postgres implements switchboard.Store on PostgreSQL, for several
// gateway replicas sharing one state.
//
// Everything lives in four tables (see migrations/): switchboard_kv holds
// the values, as bytea by bucket and key; switchboard_changes records each
// committed write; switchboard_meta holds bookkeeping; switchboard_leases
// holds the replicas' leases (switchboard.Leases). The schema is created
// and upgraded by Open under an advisory lock, so replicas that start
// together migrate it once.
//
// Update runs fn in a SERIALIZABLE transaction and runs it again when
// PostgreSQL reports a serialization failure or a deadlock, so concurrent
// read-modify-write updates from any replica lose nothing.
//
// Changes. Each Update that writes inserts one row per changed key into
// switchboard_changes and sends NOTIFY switchboard_changes, both in its
// transaction (so only committed writes are announced). Every Store keeps
// one connection that LISTENs; on a notification, and at least every
// Config.ResyncInterval even without one, it reads the rows after the last
// it has seen. A missed notification therefore delays a change by at most
// the resync interval, and a lost connection is re-established (with
// backoff) and caught up from where it stopped. Writers take an advisory
// lock just before they insert their rows, so rows become visible in seq
// order and a reader that has seen seq N has seen every committed row
// before it. Rows older than Config.ChangeRetention are pruned; a replica
// that was away longer than that gets an empty StoreChange ("reload
// everything").
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// Defaults for zero Config fields.
const (
	DefaultMaxConns        = 10
	DefaultResyncInterval  = 2 * time.Second
	DefaultChangeRetention = 15 * time.Minute
	// DefaultConnectTimeout bounds each connection attempt.
	DefaultConnectTimeout = 10 * time.Second
)

// Limits on names. PostgreSQL's btree index holds keys of about 2.7 kB at
// most; these leave room.
const (
	MaxBucketLen = 255
	MaxKeyLen    = 2048
)

// notifyChannel is the LISTEN/NOTIFY channel of switchboard_changes.
const notifyChannel = "switchboard_changes"

// changeLock is the advisory lock writers hold while they append to
// switchboard_changes (until their commit), which keeps seq order equal to
// commit order.
const changeLock int64 = 0x5357_4348_4e47_0001 // "SWCHNG" 1

// maxAttempts bounds how often Update runs fn when transactions conflict.
const maxAttempts = 100

// Config configures a Store.
type Config struct {
	// DSN is a libpq connection string or postgres:// URL.
	DSN string
	// Replica names this gateway replica in switchboard_changes and in
	// pg_stat_activity (application_name), for operators.
	Replica string
	// MaxConns bounds the connection pool (plus one listening connection).
	MaxConns int32
	// ResyncInterval is how often the change table is read when no
	// notification has arrived: the longest a missed notification can delay
	// a change.
	ResyncInterval time.Duration
	// ChangeRetention is how long change rows are kept.
	ChangeRetention time.Duration
	// ConnectTimeout bounds each connection attempt.
	ConnectTimeout time.Duration
}

// Store is a switchboard.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	cfg    Config
	log    zerolog.Logger
	pool   *pgxpool.Pool
	connCf *pgx.ConnConfig
	writer string // this Store value's name in switchboard_changes

	closed atomic.Bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	out  chan switchboard.StoreChange
	omu  sync.Mutex
	q    []switchboard.StoreChange // changes not yet handed to out
	gen  uint64                    // bumped when q collapses
	kick chan struct{}

	lmu        sync.Mutex
	lastSeq    int64     // newest switchboard_changes row read
	listenErr  error     // why the listening connection is down; nil while it is up
	listenDown time.Time // since when
	caughtUp   time.Time // last successful read of the change table
}

var _ switchboard.Store = (*Store)(nil)

// Open connects, migrates the schema and starts listening for other
// replicas' changes. Changes committed before Open returns are not
// delivered: read the state after Open.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Store, error) {
	if cfg.DSN == "" {
		return nil, errors.New("opening postgres store: empty DSN")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.ChangeRetention <= 0 {
		cfg.ChangeRetention = DefaultChangeRetention
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// The parse error may quote the DSN, password and all.
		return nil, errors.New("opening postgres store: the DSN does not parse (a libpq key=value string or a postgres:// URL)")
	}
	pcfg.MaxConns = cfg.MaxConns
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		name := "switchboard"
		if cfg.Replica != "" {
			name += " " + cfg.Replica
		}
		pcfg.ConnConfig.RuntimeParams["application_name"] = name
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	s := &Store{
		cfg:    cfg,
		log:    log.With().Str("component", "store").Logger(),
		connCf: pcfg.ConnConfig.Copy(),
		writer: cfg.Replica + "/" + hex.EncodeToString(id[:]),
		out:    make(chan switchboard.StoreChange, 64),
		kick:   make(chan struct{}, 1),
	}

	conn, err := pgx.ConnectConfig(ctx, s.connCf.Copy())
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: connecting to %s: %w", describe(pcfg.ConnConfig), err)
	}
	// This connection migrates, then becomes the listening one: once Open
	// returns, every later change is heard.
	err = migrate(ctx, conn, s.log)
	if err == nil {
		_, err = conn.Exec(ctx, "LISTEN "+notifyChannel)
	}
	if err == nil {
		err = conn.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM switchboard_changes").Scan(&s.lastSeq)
	}
	if err == nil {
		s.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	}
	if err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	s.caughtUp = time.Now()
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go s.listen(bg, conn)
	go s.deliver(bg)
	return s, nil
}

// describe names the server of cfg without its password.
func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", c.Host, c.Port, c.User, c.Database)
}

func (s *Store) check() error {
	if s.closed.Load() {
		return switchboard.WrapError(switchboard.EUNAVAILABLE, errClosed, "store unavailable")
	}
	return nil
}

// unavailable wraps a database error: the caller sees "store unavailable",
// the log the cause.
func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return switchboard.WrapError(switchboard.EUNAVAILABLE, fmt.Errorf("%s: %w", op, err), "store unavailable")
}

func notFound(bucket, key string) error {
	return switchboard.Errorf(switchboard.ENOTFOUND, "%s %q not found", bucket, key)
}

// querier is what Get and List need: the pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func get(ctx context.Context, q querier, bucket, key string) ([]byte, error) {
	var v []byte
	err := q.QueryRow(ctx, "SELECT value FROM switchboard_kv WHERE bucket = $1 AND key = $2", bucket, []byte(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(bucket, key)
	}
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// prefixEnd returns the least key greater than every key starting with p, or
// nil when there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func list(ctx context.Context, q querier, bucket, prefix string) ([]switchboard.StoreEntry, error) {
	var (
		rows pgx.Rows
		err  error
	)
	p := []byte(prefix)
	if end := prefixEnd(p); end != nil {
		rows, err = q.Query(ctx, "SELECT key, value, updated FROM switchboard_kv WHERE bucket = $1 AND key >= $2 AND key < $3 ORDER BY key", bucket, p, end)
	} else {
		rows, err = q.Query(ctx, "SELECT key, value, updated FROM switchboard_kv WHERE bucket = $1 AND key >= $2 ORDER BY key", bucket, p)
	}
	if err != nil {
		return nil, err
	}
	var out []switchboard.StoreEntry
	for rows.Next() {
		var (
			k, v []byte
			e    switchboard.StoreEntry
		)
		if err := rows.Scan(&k, &v, &e.Updated); err != nil {
			rows.Close()
			return nil, err
		}
		if v == nil {
			v = []byte{}
		}
		e.Key, e.Value = string(k), v
		out = append(out, e)
	}
	return out, rows.Err()
}

// Get returns the value of key in bucket, or an ENOTFOUND error.
func (s *Store) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	v, err := get(ctx, s.pool, bucket, key)
	if err != nil && switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		return nil, unavailable("reading "+bucket, err)
	}
	return v, err
}

// List returns the entries of bucket whose keys start with prefix, in byte
// order of the keys.
func (s *Store) List(ctx context.Context, bucket, prefix string) ([]switchboard.StoreEntry, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	out, err := list(ctx, s.pool, bucket, prefix)
	if err != nil {
		return nil, unavailable("listing "+bucket, err)
	}
	return out, nil
}

// Update runs fn in one SERIALIZABLE transaction, again (up to 100 times,
// with a short random backoff) while concurrent writers conflict with it.
func (s *Store) Update(ctx context.Context, fn func(tx switchboard.StoreTx) error) error {
	if err := s.check(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := s.updateOnce(ctx, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts || ctx.Err() != nil {
			if err != nil && retryable(err) {
				return unavailable(fmt.Sprintf("updating (conflicting writers, %d attempts)", attempt), err)
			}
			return err
		}
		backoff := time.Duration(mrand.Int64N(int64(min(attempt, 20)) * int64(2*time.Millisecond)))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// retryable reports a conflict that running the transaction again resolves.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", // serialization_failure
			"40P01": // deadlock_detected
			return true
		}
	}
	return false
}

// change is one write recorded by a transaction.
type change struct {
	bucket string
	key    string
	prefix bool
}

// storeTx is one attempt of an Update.
type storeTx struct {
	ctx     context.Context
	tx      pgx.Tx
	err     error // the first database error: the transaction is aborted
	changes []change
	seen    map[change]bool
}

func (t *storeTx) fail(op string, err error) error {
	if t.err == nil {
		t.err = err
	}
	if retryable(err) {
		return err // Update runs fn again
	}
	return unavailable(op, err)
}

func (t *storeTx) record(c change) {
	if !t.seen[c] {
		t.seen[c] = true
		t.changes = append(t.changes, c)
	}
}

func validName(bucket, key string) error {
	switch {
	case bucket == "":
		return switchboard.Errorf(switchboard.EINVALID, "store: empty bucket name")
	case len(bucket) > MaxBucketLen:
		return switchboard.Errorf(switchboard.EINVALID, "store: bucket name longer than %d bytes", MaxBucketLen)
	case key == "":
		return switchboard.Errorf(switchboard.EINVALID, "store: empty key in bucket %s", bucket)
	case len(key) > MaxKeyLen:
		return switchboard.Errorf(switchboard.EINVALID, "store: key in bucket %s longer than %d bytes", bucket, MaxKeyLen)
	}
	for i := range len(bucket) {
		if bucket[i] == 0 {
			return switchboard.Errorf(switchboard.EINVALID, "store: bucket name %q contains a NUL byte", bucket)
		}
	}
	return nil
}

func (t *storeTx) Get(bucket, key string) ([]byte, error) {
	if t.err != nil {
		return nil, t.err
	}
	v, err := get(t.ctx, t.tx, bucket, key)
	if err != nil && switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		return nil, t.fail("reading "+bucket, err)
	}
	return v, err
}

func (t *storeTx) List(bucket, prefix string) ([]switchboard.StoreEntry, error) {
	if t.err != nil {
		return nil, t.err
	}
	out, err := list(t.ctx, t.tx, bucket, prefix)
	if err != nil {
		return nil, t.fail("listing "+bucket, err)
	}
	return out, nil
}

func (t *storeTx) Put(bucket, key string, value []byte) error {
	if t.err != nil {
		return t.err
	}
	if err := validName(bucket, key); err != nil {
		return err
	}
	if value == nil {
		value = []byte{} // nil would be NULL
	}
	_, err := t.tx.Exec(t.ctx, `INSERT INTO switchboard_kv (bucket, key, value, updated) VALUES ($1, $2, $3, clock_timestamp())
		ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, updated = excluded.updated`, bucket, []byte(key), value)
	if err != nil {
		return t.fail("writing "+bucket, err)
	}
	t.record(change{bucket: bucket, key: key})
	return nil
}

func (t *storeTx) Delete(bucket, key string) error {
	if t.err != nil {
		return t.err
	}
	tag, err := t.tx.Exec(t.ctx, "DELETE FROM switchboard_kv WHERE bucket = $1 AND key = $2", bucket, []byte(key))
	if err != nil {
		return t.fail("deleting from "+bucket, err)
	}
	if tag.RowsAffected() > 0 {
		t.record(change{bucket: bucket, key: key})
	}
	return nil
}

func (t *storeTx) DeletePrefix(bucket, prefix string) error {
	if t.err != nil {
		return t.err
	}
	var (
		tag pgconn.CommandTag
		err error
	)
	p := []byte(prefix)
	if end := prefixEnd(p); end != nil {
		tag, err = t.tx.Exec(t.ctx, "DELETE FROM switchboard_kv WHERE bucket = $1 AND key >= $2 AND key < $3", bucket, p, end)
	} else {
		tag, err = t.tx.Exec(t.ctx, "DELETE FROM switchboard_kv WHERE bucket = $1 AND key >= $2", bucket, p)
	}
	if err != nil {
		return t.fail("deleting from "+bucket, err)
	}
	if tag.RowsAffected() > 0 {
		t.record(change{bucket: bucket, key: prefix, prefix: true})
	}
	return nil
}

// updateOnce is one attempt at fn.
func (s *Store) updateOnce(ctx context.Context, fn func(tx switchboard.StoreTx) error) (err error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable("beginning a transaction", err)
	}
	t := &storeTx{ctx: ctx, tx: tx, seen: map[change]bool{}}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	ferr := fn(t)
	switch {
	case t.err != nil && retryable(t.err):
		return t.err
	case ferr != nil:
		return ferr
	case t.err != nil: // fn went on after a failed write
		return unavailable("updating", t.err)
	}
	if len(t.changes) > 0 {
		if err := s.recordChanges(ctx, tx, t.changes); err != nil {
			if retryable(err) {
				return err
			}
			return unavailable("recording changes", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		if retryable(err) || ctx.Err() != nil {
			return err
		}
		return unavailable("committing", err)
	}
	return nil
}

// recordChanges appends the transaction's writes to switchboard_changes and
// notifies the listeners, in one round trip. The advisory lock, held until
// the commit, makes seq order the commit order.
func (s *Store) recordChanges(ctx context.Context, tx pgx.Tx, changes []change) error {
	buckets := make([]string, len(changes))
	keys := make([][]byte, len(changes))
	prefix := make([]bool, len(changes))
	for i, c := range changes {
		buckets[i], keys[i], prefix[i] = c.bucket, []byte(c.key), c.prefix
	}
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1)", changeLock)
	b.Queue(`INSERT INTO switchboard_changes (writer, bucket, key, prefix)
		SELECT $1, b, k, p FROM unnest($2::text[], $3::bytea[], $4::bool[]) AS u(b, k, p)`, s.writer, buckets, keys, prefix)
	b.Queue("SELECT pg_notify($1, '')", notifyChannel)
	return tx.SendBatch(ctx, b).Close()
}

// TryLease implements switchboard.Leases in table switchboard_leases, in one
// statement: the row is inserted, or taken over when its lease ran out or
// holder holds it, by the database's clock. Concurrent takers serialize on
// the row; exactly one of them gets a free lease.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	if name == "" || holder == "" || ttl <= 0 {
		return false, switchboard.Errorf(switchboard.EINVALID, "taking a lease: name, holder and a positive ttl are required")
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO switchboard_leases AS l (name, holder, expires)
		VALUES ($1, $2, now() + make_interval(secs => $3))
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
		WHERE l.expires <= now() OR l.holder = excluded.holder`, name, holder, ttl.Seconds())
	if err != nil {
		return false, unavailable("taking lease "+name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease implements switchboard.Leases.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := s.check(); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, "DELETE FROM switchboard_leases WHERE name = $1 AND holder = $2", name, holder); err != nil {
		return unavailable("releasing lease "+name, err)
	}
	return nil
}

// Changes delivers what other Store values on the database changed. It is
// closed by Close.
func (s *Store) Changes() <-chan switchboard.StoreChange { return s.out }

// Ready returns nil when the database answers and the listening connection
// is up; otherwise an EUNAVAILABLE error saying what is down. Readiness
// probes use it: a replica that cannot hear other replicas' changes serves
// stale state. While the listening connection has read the change table
// within the last two resync intervals, that read is the proof the database
// answers: a probe then costs no round trip and never waits for a
// connection of a busy pool.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	s.lmu.Lock()
	lerr, since, caught := s.listenErr, s.listenDown, s.caughtUp
	s.lmu.Unlock()
	if lerr != nil {
		return switchboard.WrapError(switchboard.EUNAVAILABLE, lerr,
			"store: not listening for other replicas' changes since %s", since.UTC().Format(time.RFC3339))
	}
	if time.Since(caught) <= 2*s.cfg.ResyncInterval {
		return nil
	}
	if err := s.pool.Ping(ctx); err != nil {
		return unavailable("pinging the database", err)
	}
	return nil
}

// Stats describes the change feed, for status pages and tests.
type Stats struct {
	LastSeq   int64     // newest change row read
	CaughtUp  time.Time // last successful read of the change table
	Listening bool      // the LISTEN connection is up
}

// Stats returns the change feed's state.
func (s *Store) Stats() Stats {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return Stats{LastSeq: s.lastSeq, CaughtUp: s.caughtUp, Listening: s.listenErr == nil}
}

// Close stops listening, closes the pool and then the Changes channel.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.cancel()
		s.wg.Wait()
		s.pool.Close()
		close(s.out)
	})
	return nil
}
