package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-mcp/switchboard"
)

const (
	// pollBatch is how many change rows one read takes.
	pollBatch = 1000
	// maxQueued is how many changes wait for a slow consumer before they
	// collapse into one "reload everything".
	maxQueued = 4096
	// pruneEvery is how often a replica prunes old change rows.
	pruneEvery = time.Minute
	// maxBackoff caps the wait between reconnection attempts.
	maxBackoff = 5 * time.Second
)

// listen keeps a LISTEN connection and reads the change table after every
// notification and every ResyncInterval, reconnecting with backoff when the
// connection is lost.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, conn)
		conn = nil
		if ctx.Err() != nil {
			return
		}
		s.lmu.Lock()
		if s.listenErr == nil {
			s.listenDown = time.Now()
			s.log.Warn().Err(err).Msg("store: lost the connection that listens for other replicas' changes; reconnecting")
		} else {
			s.log.Debug().Err(err).Msg("store: still reconnecting")
		}
		s.listenErr = err
		s.lmu.Unlock()
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenOnce runs one LISTEN connection until it fails or ctx ends: conn,
// already listening, or a new one.
func (s *Store) listenOnce(ctx context.Context, conn *pgx.Conn) error {
	if conn == nil {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
		c, err := pgx.ConnectConfig(cctx, s.connCf.Copy())
		cancel()
		if err != nil {
			return fmt.Errorf("connecting: %w", err)
		}
		conn = c
		if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
			_ = conn.Close(context.Background())
			return fmt.Errorf("listening: %w", err)
		}
	}
	defer func() { _ = conn.Close(context.Background()) }()
	// Catch up on what happened while there was no connection.
	if err := s.poll(ctx, conn); err != nil {
		return err
	}
	s.lmu.Lock()
	if s.listenErr != nil {
		s.log.Info().Dur("down_for", time.Since(s.listenDown)).Msg("store: listening for other replicas' changes again")
	}
	s.listenErr = nil
	s.lmu.Unlock()
	lastPrune := time.Time{}
	for {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.ResyncInterval)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !pgconn.Timeout(err) {
			return fmt.Errorf("waiting for notifications: %w", err)
		}
		if err := s.poll(ctx, conn); err != nil {
			return err
		}
		if time.Since(lastPrune) >= pruneEvery {
			lastPrune = time.Now()
			if err := s.prune(ctx, conn); err != nil {
				return err
			}
		}
	}
}

// poll reads the change rows after lastSeq, in batches, and queues the other
// writers' changes.
func (s *Store) poll(ctx context.Context, conn *pgx.Conn) error {
	for {
		s.lmu.Lock()
		last := s.lastSeq
		s.lmu.Unlock()
		var (
			pruned  int64
			changes []switchboard.StoreChange
			n       int
		)
		err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, "SELECT value FROM switchboard_meta WHERE name = 'changes_pruned_through'").Scan(&pruned); err != nil {
				return err
			}
			if pruned > last {
				// Rows this replica had not read were pruned: it was away
				// longer than the retention.
				changes = append(changes, switchboard.StoreChange{})
				last = pruned
			}
			rows, err := tx.Query(ctx, `SELECT seq, writer, bucket, key, prefix FROM switchboard_changes
				WHERE seq > $1 ORDER BY seq LIMIT $2`, last, pollBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var (
					seq            int64
					writer, bucket string
					key            []byte
					prefix         bool
				)
				if err := rows.Scan(&seq, &writer, &bucket, &key, &prefix); err != nil {
					return err
				}
				n++
				last = seq
				if writer == s.writer {
					continue
				}
				changes = append(changes, switchboard.StoreChange{Bucket: bucket, Key: string(key), Prefix: prefix})
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("reading changes: %w", err)
		}
		s.lmu.Lock()
		s.lastSeq = last
		s.caughtUp = time.Now()
		s.lmu.Unlock()
		s.push(changes)
		if n < pollBatch {
			return nil
		}
	}
}

// prune deletes change rows older than the retention and records how far.
func (s *Store) prune(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `WITH d AS (
			DELETE FROM switchboard_changes WHERE at < now() - make_interval(secs => $1) RETURNING seq)
		UPDATE switchboard_meta SET value = greatest(value, (SELECT max(seq) FROM d))
		WHERE name = 'changes_pruned_through' AND EXISTS (SELECT 1 FROM d)`, s.cfg.ChangeRetention.Seconds())
	if err != nil {
		return fmt.Errorf("pruning changes: %w", err)
	}
	return nil
}

// broad is the "anything may have changed" change.
var broad = switchboard.StoreChange{}

// push queues changes for the consumer. Past maxQueued unread changes the
// queue collapses into one broad change, which covers everything queued
// until the consumer reads it.
func (s *Store) push(changes []switchboard.StoreChange) {
	if len(changes) == 0 {
		return
	}
	s.omu.Lock()
	for _, c := range changes {
		switch {
		case len(s.q) == 1 && s.q[0] == broad:
			// A pending reload covers it.
		case c == broad || len(s.q) >= maxQueued:
			s.q = append(s.q[:0], broad)
			s.gen++
		default:
			s.q = append(s.q, c)
		}
	}
	s.omu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// deliver hands queued changes to the Changes channel.
func (s *Store) deliver(ctx context.Context) {
	defer s.wg.Done()
	for {
		s.omu.Lock()
		if len(s.q) == 0 {
			s.omu.Unlock()
			select {
			case <-s.kick:
				continue
			case <-ctx.Done():
				return
			}
		}
		c, gen := s.q[0], s.gen
		s.omu.Unlock()
		select {
		case s.out <- c:
			s.omu.Lock()
			if s.gen == gen { // not collapsed meanwhile
				s.q = s.q[1:]
				if len(s.q) == 0 {
					s.q = nil
				}
			}
			s.omu.Unlock()
		case <-ctx.Done():
			return
		}
	}
}
