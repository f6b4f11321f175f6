package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// The schema's migrations, applied in order: migrations/NNNN_name.sql. A
// migration, once released, is never edited; changes are new files. Each
// must keep the previous release working (add, then remove a release later),
// because replicas are updated one at a time.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the advisory lock key replicas take while they migrate:
// several replicas starting at once apply each migration exactly once.
const migrationLock int64 = 0x5357_4d49_4752_0001 // "SWMIGR" 1

// migration is one schema version.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations, by version.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, label, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", n)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: label, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: versions must run 1, 2, 3… without gaps", m.version, m.name)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema version this binary knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate brings the database's schema to SchemaVersion, holding the
// migration lock so that replicas starting together do not race. It refuses
// a database whose schema is newer than this binary knows.
func migrate(ctx context.Context, conn *pgx.Conn, log zerolog.Logger) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrating: waiting for the migration lock: %w", err)
	}
	defer func() {
		// Closing the connection would release it too; unlock for the pool's sake.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS switchboard_schema (
		version int PRIMARY KEY,
		name    text NOT NULL,
		applied timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrating: creating switchboard_schema: %w", err)
	}
	var have int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM switchboard_schema").Scan(&have); err != nil {
		return fmt.Errorf("migrating: reading the schema version: %w", err)
	}
	latest := len(ms)
	if have > latest {
		return fmt.Errorf("migrating: the database's schema is version %d, newer than this binary's %d: run a newer switchboard (or restore the database it was made for)", have, latest)
	}
	for _, m := range ms[have:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO switchboard_schema (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrating: applying %04d_%s: %w", m.version, m.name, err)
		}
		log.Info().Int("version", m.version).Str("migration", m.name).Msg("store: schema migrated")
	}
	return nil
}

// errClosed is returned by every call after Close.
var errClosed = errors.New("store closed")
