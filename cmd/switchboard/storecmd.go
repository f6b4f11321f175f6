package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/store"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/vault"
)

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Move the gateway's state between stores"}
	var from string
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Copy the bbolt store into the PostgreSQL database store.postgres names",
		Long: `Migrate copies everything the embedded store holds (users and API-key hashes,
vault entries, connections, preferences, service-token records) from the
bbolt file in the data dir (or --from) into the PostgreSQL database that
store.postgres in gateway.yaml names, in one transaction, then reads it back
and compares. Vault entries are copied as they are, still encrypted: start
every replica with the same vault key.

Stop switchboard serve first (the file is locked while it runs). The
database must hold no state yet: migrate refuses to merge two states, and
writes nothing then. It checks the vault key against the file before it
copies, and that the database opens with it after.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return migrateStore(cmd.Context(), configPath(cmd), from, func(line string) { fmt.Fprintln(cmd.OutOrStdout(), line) })
		},
	}
	migrate.Flags().StringVar(&from, "from", "", "the bbolt file to copy (default: "+bolt.FileName+" in the data dir)")
	cmd.AddCommand(migrate)
	return cmd
}

// migrateStore copies the bbolt file from (default: the data dir's) into
// the PostgreSQL database the config at path names, printing progress.
func migrateStore(ctx context.Context, path, from string, say func(string)) error {
	cfg, err := providers.LoadFile(path)
	if err != nil {
		return err
	}
	if cfg.Store.Postgres == nil {
		return fmt.Errorf("store migrate copies the bbolt store into PostgreSQL: name the database under store.postgres in %s first", cfg.Path)
	}
	if from == "" {
		from = filepath.Join(cfg.DataDir, bolt.FileName)
	}
	if _, err := os.Stat(from); err != nil {
		return fmt.Errorf("store migrate: no bbolt store to copy: %w", err)
	}
	key, _, err := vault.LoadKey(vault.KeySource{EnvValue: os.Getenv(vault.EnvKey), KeyFile: cfg.Vault.KeyFile, DataDir: cfg.DataDir})
	if err != nil {
		return fmt.Errorf("store migrate needs the vault key the file was written with (the replicas read what it copies with it): %w", err)
	}
	defer key.Zero()
	start := time.Now()
	src, err := bolt.Open(from, bolt.Options{})
	if err != nil {
		return err
	}
	defer src.Close()
	// Opening the vault checks the key and brings an older file's layout up
	// to date before it is copied.
	v, err := vault.Open(ctx, src, key, vault.Options{})
	if err != nil {
		return err
	}
	_ = v.Close()
	dst, err := openStore(cfg, zerolog.Nop())
	if err != nil {
		return err
	}
	defer dst.Close()
	say(fmt.Sprintf("copying %s into %s", from, storeName(dst)))
	counts, err := store.Copy(ctx, dst, src, store.CopyOptions{
		Buckets:  append(auth.StoreBuckets(), vault.StoreBuckets()...),
		Progress: say,
	})
	if err != nil {
		return err
	}
	check, err := vault.Open(ctx, dst, key, vault.Options{ReadOnly: true})
	if err != nil {
		return errors.Join(errors.New("store migrate: the copy does not open with the vault key"), err)
	}
	_ = check.Close()
	names := make([]string, 0, len(counts))
	total := 0
	for b, n := range counts {
		names = append(names, fmt.Sprintf("%s %d", b, n))
		total += n
	}
	sort.Strings(names)
	say(fmt.Sprintf("migrated %d entries in %s (%s); start every replica with store.postgres and this vault key", total,
		time.Since(start).Round(time.Millisecond), strings.Join(names, ", ")))
	return nil
}
