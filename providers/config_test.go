package providers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	cfg, err := LoadFile("testdata/good.yaml")
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	dir, _ := filepath.Abs("testdata")
	if cfg.DataDir != filepath.Join(dir, "data") {
		t.Errorf("DataDir = %q, want it resolved against the config folder", cfg.DataDir)
	}
	n := cfg.Providers["notes"]
	if n.Limits.CallTimeout.D() != 30*time.Second {
		t.Errorf("defaults not applied: call_timeout = %v", n.Limits.CallTimeout.D())
	}
	if n.Limits.MaxMessageMB != DefaultMaxMessageMB {
		t.Errorf("MaxMessageMB = %d", n.Limits.MaxMessageMB)
	}
	if got := n.SecretRefs(); len(got) != 1 || got[0] != "NOTES_KEY" {
		t.Errorf("SecretRefs = %v", got)
	}
	if cfg.Providers["off"].IsEnabled() {
		t.Error("off should be disabled")
	}
	if !cfg.Providers["gh"].UserScoped() {
		t.Error("gh should be user-scoped")
	}
	if cfg.Listen != "127.0.0.1:0" || cfg.Hash == "" {
		t.Errorf("listen %q hash %q", cfg.Listen, cfg.Hash)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte("providers: {}\n"), "/tmp/x/gateway.yaml", "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultListen {
		t.Errorf("Listen = %q, want loopback default", cfg.Listen)
	}
	if cfg.DataDir != "/tmp/x/data" {
		t.Errorf("DataDir = %q", cfg.DataDir)
	}
	want := ServerConfig{ReadHeaderTimeout: Duration(10 * time.Second), BodyTimeout: Duration(64 * time.Second),
		IdleTimeout: Duration(120 * time.Second), MaxConnsPerClient: 256}
	if cfg.Server != want {
		t.Errorf("Server = %+v, want %+v", cfg.Server, want)
	}
	if f := cfg.Auth.FailureLimit; f.RPS != 1 || f.Burst != 30 {
		t.Errorf("Auth.FailureLimit = %+v, want 30 at once then 1/s", f)
	}
}

func TestDefaultBodyTimeoutScalesWithMaxBody(t *testing.T) {
	tests := []struct {
		name string
		mb   int
		want time.Duration
	}{
		{"small bodies get the floor", 1, 30 * time.Second},
		{"the default 4 MiB at 64 KiB/s", 4, 64 * time.Second},
		{"large uploads get more", 64, 1024 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(fmt.Sprintf("auth: {max_body_mb: %d}\n", tt.mb)), "/tmp/x/gateway.yaml", "gateway.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Server.BodyTimeout.D(); got != tt.want {
				t.Errorf("body_timeout for %d MiB = %v, want %v", tt.mb, got, tt.want)
			}
		})
	}
}

// A tools/call waits for its audit record unless audit.wait_for_write is false
// or the log is off.
func TestAuditWaitsForWriteByDefault(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want bool
	}{
		{"default", "", true},
		{"explicit true", "audit: {wait_for_write: true}\n", true},
		{"explicit false", "audit: {wait_for_write: false}\n", false},
		{"log disabled", "audit: {disabled: true}\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml+"providers: {}\n"), "/tmp/x/gateway.yaml", "gateway.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Audit.WaitsForWrite(); got != tt.want {
				t.Errorf("WaitsForWrite() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must appear as a "file:line: message" problem
	}{
		{"unknown_key.bad.yaml", []string{`:5: unknown key "comand"`}},
		{"bad_yaml.bad.yaml", []string{`bad_yaml.bad.yaml:`}},
		{"bad_prefix.bad.yaml", []string{`:2: provider "Notes_X": the key is the tool prefix`}},
		{"empty_command.bad.yaml", []string{`:2: provider "notes": command is empty`}},
		{"unknown_ref.bad.yaml", []string{
			`:6: role "alpha" names unknown provider "ghost"`,
			`:9: service "cron" names unknown provider prefix "notez"`,
			`:10: default_role "nobody" is not a role`,
		}},
		{"bad_env.bad.yaml", []string{
			`:5: provider "notes": env TOKEN: a reference must be the whole value`,
			`:6: provider "notes": "1BAD" is not a valid environment variable name`,
		}},
		{"open_nonloopback.bad.yaml", []string{`:1: listen "0.0.0.0:8080" is not a loopback address`}},
		{"user_scope.bad.yaml", []string{`provider "gh": scope: user needs connection.secrets`}},
		{"bad_duration.bad.yaml", []string{`:5: invalid duration "soon"`}},
		{"bad_remote.bad.yaml", []string{
			`:2: provider "both": set command (with args, env) or url, not both`,
			`:6: provider "plain": url "http://mcp.example.com/mcp" must use https (http only on a loopback address)`,
			`:8: provider "creds": url "https://user:pw@mcp.example.com/mcp" must not carry credentials`,
			`:11: provider "tr": transport "websocket" must be auto, streamable-http or sse`,
			`:15: provider "hdr": header Authorization is set by the gateway`,
			`:16: provider "hdr": header X-Api-Key: a reference must be the whole value`,
			`:19: provider "lim": max_memory_mb and max_cpu bound a process`,
			`:20: provider "cmdhdr": transport and headers apply only to a url provider`,
		}},
		{"bad_oauth.bad.yaml", []string{
			`:4: provider "shared": oauth: an oauth connection is a user's: it needs scope: user`,
			`:8: provider "inline": oauth: client_secret must be a ${secret:NAME} reference, never the value`,
			`:12: provider "half": oauth: authorization_url and token_url go together`,
			`:18: provider "nodeliver": oauth: say how the process gets the token`,
			`:22: provider "remotedeliver": oauth: token_env and token_file are for command providers`,
			`:26: provider "noid": oauth: explicit endpoints need a client_id`,
		}},
		{"duplicate.bad.yaml", []string{`:4: mapping key "notes" already defined at line 2`}},
		{"bad_audit.bad.yaml", []string{
			`:1: audit: max_size_mb, max_backups and max_age_days must not be negative`,
			`:4: audit.wait_for_write needs the audit log, which audit.disabled turns off`,
			`:5: audit.fsync needs the audit log, which audit.disabled turns off`,
		}},
		{"bad_audit_type.bad.yaml", []string{`bad_audit_type.bad.yaml:2:`}},
		{"reserved_secret.bad.yaml", []string{
			`:5: provider "notes": env SIGNING: secret name "SWITCHBOARD_SERVICE_SIGNING_KEY" is reserved: names starting with SWITCHBOARD_ belong to the gateway's internal keys`,
			`:6: provider "notes": env DIGEST: secret name "switchboard_audit_digest_key" is reserved`,
		}},
		{"bad_tracing.bad.yaml", []string{
			`:2: tracing.protocol "thrift" must be http/protobuf or grpc`,
			`:3: tracing.endpoint "collector:4318" must be a URL like http://collector:4318`,
			`:4: tracing.sample_ratio must be a number from 0 to 1`,
			`:6: tracing.headers: "bad header" is not a valid header name`,
			`:7: tracing.headers.Authorization: a reference must be the whole value`,
			`:8: tracing.headers.X-Key: secret name "SWITCHBOARD_AUDIT_DIGEST_KEY" is reserved`,
			`:1: tracing: timeout, batch_delay and max_queue must not be negative`,
			`:11: metrics.max_principals needs metrics.principal_label: true`,
		}},
		{"bad_tracing_key.bad.yaml", []string{`:3: unknown key "sampling"`}},
		{"bad_server.bad.yaml", []string{
			`:1: server: max_conns_per_client and max_conns must not be negative`,
			`:3: server.body_timeout must not be negative`,
			`:5: auth.failure_limit: rps and burst must be positive numbers`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := LoadFile(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatal("LoadFile succeeded, want an error")
			}
			var lines []string
			for _, p := range Problems(err) {
				lines = append(lines, p.String())
			}
			all := strings.Join(lines, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems:\n%s\nwant one containing %q", all, w)
				}
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, filepath.Join("testdata", tt.file)+":") {
					t.Errorf("problem %q does not start with file:", l)
				}
			}
		})
	}
}

func TestUnreadableFile(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "cannot read file") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseEnvValue(t *testing.T) {
	tests := []struct {
		in   string
		kind RefKind
		name string
		bad  bool
	}{
		{"plain", RefLiteral, "", false},
		{"${secret:TOKEN}", RefSecret, "TOKEN", false},
		{"${env:HOME}", RefEnv, "HOME", false},
		{"${env:}", 0, "", true},
		{"x${secret:A}", 0, "", true},
		{"$HOME", RefLiteral, "", false},
	}
	for _, tt := range tests {
		r, err := ParseEnvValue(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("ParseEnvValue(%q) err = %v", tt.in, err)
			continue
		}
		if !tt.bad && (r.Kind != tt.kind || r.Name != tt.name) {
			t.Errorf("ParseEnvValue(%q) = %+v", tt.in, r)
		}
	}
}

func mustParse(t *testing.T, dir, s string) *Config {
	t.Helper()
	p := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMaxConsecutiveTimeouts(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want int
		err  string
	}{
		{name: "default", yaml: "providers: {p: {command: x}}\n", want: DefaultMaxConsecutiveTimeouts},
		{name: "set", yaml: "providers: {p: {command: x, limits: {max_consecutive_timeouts: 5}}}\n", want: 5},
		{name: "zero disables", yaml: "providers: {p: {command: x, limits: {max_consecutive_timeouts: 0}}}\n", want: 0},
		{name: "from defaults", yaml: "defaults: {max_consecutive_timeouts: 0}\nproviders: {p: {command: x}}\n", want: 0},
		{name: "own value over defaults", yaml: "defaults: {max_consecutive_timeouts: 0}\nproviders: {p: {command: x, limits: {max_consecutive_timeouts: 2}}}\n", want: 2},
		{name: "negative", yaml: "providers: {p: {command: x, limits: {max_consecutive_timeouts: -1}}}\n", err: `:1: provider "p": limits must be non-negative numbers`},
		{name: "not a number", yaml: "providers:\n  p:\n    command: x\n    limits: {max_consecutive_timeouts: often}\n", err: `gateway.yaml:4:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "/tmp/x/gateway.yaml", "gateway.yaml")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Providers["p"].Limits.MaxConsecutiveTimeouts; got.Value != tt.want || !got.Set {
				t.Errorf("max_consecutive_timeouts = %+v, want %d", got, tt.want)
			}
		})
	}
}
