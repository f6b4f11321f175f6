package providers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStoreConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // "" means valid
	}{
		{"bbolt by default", "providers: {}\n", ""},
		{"dsn from the environment", "store: {postgres: {dsn: '${env:PG_DSN}'}}\n", ""},
		{"dsn file", "store: {postgres: {dsn_file: pg.dsn}}\n", ""},
		{"literal dsn without a password", "store: {postgres: {dsn: 'host=/run/postgresql dbname=switchboard'}}\n", ""},
		{"neither", "store: {postgres: {max_conns: 4}}\n", ":1: store.postgres: set dsn (${env:NAME}) or dsn_file"},
		{"both", "store:\n  postgres:\n    dsn: '${env:X}'\n    dsn_file: f\n", ":2: store.postgres: dsn and dsn_file are both set"},
		{"password keyword", "store:\n  postgres:\n    dsn: 'host=db password=hunter2'\n", ":3: store.postgres.dsn holds a password"},
		{"password in a URL", "store: {postgres: {dsn: 'postgres://sb:hunter2@db/switchboard'}}\n", "store.postgres.dsn holds a password"},
		{"password in URL query", "store: {postgres: {dsn: 'postgres://db/switchboard?password=hunter2'}}\n", "store.postgres.dsn holds a password"},
		{"from the vault", "store: {postgres: {dsn: '${secret:PG}'}}\n", "the vault lives in the store"},
		{"bad env name", "store: {postgres: {dsn: '${env:1X}'}}\n", `store.postgres.dsn: "1X" is not a valid environment variable name`},
		{"resync too fast", "store: {postgres: {dsn: '${env:X}', resync_interval: 10ms}}\n", "resync_interval must be between 100ms and 1m"},
		{"negative pool", "store: {postgres: {dsn: '${env:X}', max_conns: -1}}\n", "max_conns must not be negative"},
		{"unknown key", "store:\n  postgres:\n    dsn: '${env:X}'\n    password: x\n", `:4: unknown key "password"`},
		{"unknown store", "store: {mysql: {}}\n", `unknown key "mysql"`},
		{"bad replica", "replica: 'no spaces'\n", `replica "no spaces" must match`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "/tmp/x/gateway.yaml", "gateway.yaml")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a problem containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the problem repeats the password: %v", err)
			}
		})
	}
}

func TestStoreConfigDefaultsAndDSN(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pg.dsn"), []byte("  postgres://sb:pw@db/sb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("replica: r-1\nstore: {postgres: {dsn_file: pg.dsn}}\n"), filepath.Join(dir, "gateway.yaml"), "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pg := cfg.Store.Postgres
	if pg.DSNFile != filepath.Join(dir, "pg.dsn") {
		t.Errorf("dsn_file = %q, want it resolved against the config folder", pg.DSNFile)
	}
	if pg.MaxConns != DefaultPostgresMaxConns || pg.ResyncInterval.D() != 2*time.Second {
		t.Errorf("defaults: max_conns %d, resync_interval %v", pg.MaxConns, pg.ResyncInterval.D())
	}
	if dsn, err := pg.ResolveDSN(); err != nil || dsn != "postgres://sb:pw@db/sb" {
		t.Errorf("ResolveDSN = %q, %v", dsn, err)
	}
	if want := filepath.Join(dir, "data", "audit-r-1.log"); cfg.Audit.File != want {
		t.Errorf("audit.file = %q, want %q: replicas' logs must have distinct names", cfg.Audit.File, want)
	}

	t.Setenv("SB_TEST_DSN", "host=db user=sb")
	cfg, err = Parse([]byte("store: {postgres: {dsn: '${env:SB_TEST_DSN}'}}\n"), filepath.Join(dir, "gateway.yaml"), "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if dsn, err := cfg.Store.Postgres.ResolveDSN(); err != nil || dsn != "host=db user=sb" {
		t.Errorf("ResolveDSN from env = %q, %v", dsn, err)
	}
	if cfg.Replica != DefaultReplica() || cfg.Replica == "" {
		t.Errorf("replica = %q, want the host name %q", cfg.Replica, DefaultReplica())
	}
	t.Setenv("SB_TEST_DSN", "")
	if _, err := cfg.Store.Postgres.ResolveDSN(); err == nil || !strings.Contains(err.Error(), "SB_TEST_DSN is unset or empty") {
		t.Errorf("ResolveDSN with the variable unset: %v", err)
	}

	// The default store keeps today's audit file name.
	cfg, err = Parse([]byte("providers: {}\n"), filepath.Join(dir, "gateway.yaml"), "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Postgres != nil || cfg.Audit.File != filepath.Join(dir, "data", "audit.log") {
		t.Errorf("bbolt default: store %+v, audit.file %q", cfg.Store, cfg.Audit.File)
	}
}

func TestDefaultReplicaIsValid(t *testing.T) {
	if r := DefaultReplica(); !replicaRe.MatchString(r) {
		t.Fatalf("DefaultReplica() = %q does not validate", r)
	}
}
