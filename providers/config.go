// Package providers loads and validates gateway.yaml: the provider specs, the
// prefix invariant, policy sections, and the diff between two configs on reload.
package providers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/gate"
)

// Config is a parsed, defaulted and validated gateway.yaml.
type Config struct {
	Listen  string       `yaml:"listen"`
	DataDir string       `yaml:"data_dir"`
	Log     LogConfig    `yaml:"log"`
	Vault   VaultConfig  `yaml:"vault"`
	Auth    AuthConfig   `yaml:"auth"`
	Server  ServerConfig `yaml:"server"`
	Audit   AuditConfig  `yaml:"audit"`
	Store   StoreConfig  `yaml:"store"`
	// Replica names this gateway process among replicas sharing a store: in
	// every audit record, in the store's change log and in PostgreSQL's
	// pg_stat_activity. Default: the host name up to its first dot (the pod
	// name on Kubernetes).
	Replica string `yaml:"replica"`
	// Tracing and Metrics: see observability.go.
	Tracing TracingConfig `yaml:"tracing"`
	Metrics MetricsConfig `yaml:"metrics"`
	Skills  SkillsConfig  `yaml:"skills"`
	// SkillsDir is shorthand for skills.dir.
	SkillsDir   string               `yaml:"skills_dir"`
	Sessions    SessionConfig        `yaml:"sessions"`
	Shutdown    ShutdownConfig       `yaml:"shutdown"`
	Defaults    Limits               `yaml:"defaults"`
	Providers   map[string]*Provider `yaml:"providers"`
	Roles       map[string]*Role     `yaml:"roles"`
	DefaultRole string               `yaml:"default_role"`
	Services    map[string]*Service  `yaml:"services"`

	// Path is the absolute path of the file this config was read from.
	Path string `yaml:"-"`
	// Hash is the SHA-256 of the file's bytes, for audit and status.
	Hash string `yaml:"-"`
	// Dir is the folder relative paths resolve against.
	Dir string `yaml:"-"`

	lines map[string]int // "providers.notes.command" → line, for error reporting
}

// LogConfig configures the operational log.
type LogConfig struct {
	Level    string   `yaml:"level"`     // trace, debug, info, warn, error
	SlowCall Duration `yaml:"slow_call"` // warn when a tools/call takes longer
}

// VaultConfig says where the master key comes from when SWITCHBOARD_VAULT_KEY is unset.
type VaultConfig struct {
	KeyFile string `yaml:"key_file"`
}

// AuthConfig configures who may call the gateway.
type AuthConfig struct {
	// Disabled turns authentication off. Only allowed on a loopback listen address.
	Disabled       bool         `yaml:"disabled"`
	OIDC           []OIDCIssuer `yaml:"oidc"`
	AllowedHosts   []string     `yaml:"allowed_hosts"`
	AllowedOrigins []string     `yaml:"allowed_origins"`
	RateLimit      RateLimit    `yaml:"rate_limit"`
	// FailureLimit bounds failed authentications per client address: Burst
	// failures at once, then RPS a second; past it the address gets 429.
	FailureLimit RateLimit `yaml:"failure_limit"`
	// ResourceURL is this gateway's public URL, for OAuth protected-resource metadata.
	ResourceURL string `yaml:"resource_url"`
	// MaxBodyMB caps request bodies.
	MaxBodyMB int `yaml:"max_body_mb"`
}

// ServerConfig bounds what one connection or one client address can hold of
// the HTTP server. It takes effect at restart.
type ServerConfig struct {
	// ReadHeaderTimeout bounds the request line and headers, and, until the
	// request is authenticated, the rest of it.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// BodyTimeout bounds reading an authenticated request's body. Default:
	// DefaultBodyTimeout for auth.max_body_mb.
	BodyTimeout Duration `yaml:"body_timeout"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConnsPerClient caps open connections from one address (an IPv6
	// address counts by its /64); more are closed as they arrive.
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
	// MaxConns caps open connections in all; 0 means three quarters of the
	// gateway's open-file limit.
	MaxConns int `yaml:"max_conns"`
}

// DefaultBodyTimeout is the default server.body_timeout for a body limit of
// maxBodyMB: time for the largest body at 64 KiB/s, and never under 30 s.
func DefaultBodyTimeout(maxBodyMB int) time.Duration {
	return max(30*time.Second, time.Duration(maxBodyMB)*16*time.Second)
}

// OIDCIssuer is one trusted token issuer.
type OIDCIssuer struct {
	Issuer     string            `yaml:"issuer"`
	Audience   string            `yaml:"audience"`
	JWKSURL    string            `yaml:"jwks_url"`
	UserClaim  string            `yaml:"user_claim"`
	RolesClaim string            `yaml:"roles_claim"`
	RoleMap    map[string]string `yaml:"role_map"`
}

// RateLimit is a per-principal token bucket for tool calls.
type RateLimit struct {
	RPS   float64 `yaml:"rps"`
	Burst int     `yaml:"burst"`
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	File       string `yaml:"file"`
	MaxSizeMB  int    `yaml:"max_size_mb"`
	MaxBackups int    `yaml:"max_backups"`
	MaxAgeDays int    `yaml:"max_age_days"`
	FailOpen   bool   `yaml:"fail_open"`
	// WaitForWrite (default true; see WaitsForWrite) makes every tools/call
	// answer only after its audit record is in the file, written together with
	// the records of concurrent calls (a group commit). False answers first and
	// writes the record an instant later, so a hard kill of the gateway can
	// lose the records of the last answered calls.
	WaitForWrite *bool `yaml:"wait_for_write"`
	// Fsync also syncs each group of records to stable storage before the
	// calls waiting for them answer, so that they survive a crash of the
	// machine, not only of the gateway. Off by default: it costs a disk flush
	// (milliseconds on many disks) per group.
	Fsync    bool `yaml:"fsync"`
	Disabled bool `yaml:"disabled"`
}

// WaitsForWrite reports whether tools/call answers wait for their audit
// record: audit.wait_for_write, true unless set to false or the log is
// disabled.
func (a AuditConfig) WaitsForWrite() bool {
	return !a.Disabled && (a.WaitForWrite == nil || *a.WaitForWrite)
}

// StoreConfig says where users, API-key hashes, vault entries, per-user
// connections and preferences live. Unset, they live in one bbolt file in
// data_dir, which one gateway process at a time may open.
type StoreConfig struct {
	// Postgres keeps them in PostgreSQL instead, shared by every replica
	// that names the same database.
	Postgres *PostgresConfig `yaml:"postgres"`
}

// PostgresConfig is the PostgreSQL store. Exactly one of DSN and DSNFile is
// set. The DSN is a libpq connection string or a postgres:// URL.
type PostgresConfig struct {
	// DSN is "${env:NAME}" (read from the gateway's environment at start) or
	// a literal DSN without a password (peer, certificate or .pgpass
	// authentication): a password never sits in gateway.yaml.
	DSN string `yaml:"dsn"`
	// DSNFile is a file holding the DSN (a mounted Secret), relative to the
	// config file's folder.
	DSNFile string `yaml:"dsn_file"`
	// MaxConns bounds each replica's connection pool (default 10), plus
	// one connection that listens for other replicas' changes.
	MaxConns int `yaml:"max_conns"`
	// ResyncInterval is how often each replica re-reads the change log
	// even without a notification (default 2s): the longest a lost
	// notification can delay a change.
	ResyncInterval Duration `yaml:"resync_interval"`
}

// Defaults of the postgres store.
const (
	DefaultPostgresMaxConns = 10
	DefaultResyncInterval   = 2 * time.Second
)

// ResolveDSN reads the DSN: from DSNFile (trimmed), from the environment
// variable DSN names, or DSN itself. The error never contains the DSN.
func (p *PostgresConfig) ResolveDSN() (string, error) {
	switch {
	case p.DSNFile != "":
		b, err := os.ReadFile(p.DSNFile)
		if err != nil {
			return "", fmt.Errorf("reading store.postgres.dsn_file: %s", unwrapPathError(err))
		}
		dsn := strings.TrimSpace(string(b))
		if dsn == "" {
			return "", fmt.Errorf("store.postgres.dsn_file %s is empty", p.DSNFile)
		}
		return dsn, nil
	case p.DSN != "":
		ref, err := ParseEnvValue(p.DSN)
		if err != nil {
			return "", fmt.Errorf("store.postgres.dsn: %w", err)
		}
		if ref.Kind != RefEnv {
			return p.DSN, nil
		}
		dsn := strings.TrimSpace(os.Getenv(ref.Name))
		if dsn == "" {
			return "", fmt.Errorf("store.postgres.dsn: environment variable %s is unset or empty", ref.Name)
		}
		return dsn, nil
	}
	return "", errors.New("store.postgres: set dsn or dsn_file")
}

// dsnPasswordRe finds a password in a key=value DSN or a URL's userinfo.
var dsnPasswordRe = regexp.MustCompile(`(?i)(^|\s)password\s*=|^[a-z]+://[^/@?#]*:[^/@?#]*@|[?&]password=`)

// SkillsConfig configures usage skills.
type SkillsConfig struct {
	Dir      string `yaml:"dir"`
	Required *bool  `yaml:"required"`
}

// SessionConfig configures MCP sessions (session era) and the stateless
// era's subscriptions/listen streams, per principal.
type SessionConfig struct {
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxPerPrincipal caps one principal's open sessions; initialize past it
	// answers 429 (default 100).
	MaxPerPrincipal int `yaml:"max_per_principal"`
	// MaxListensPerPrincipal caps one principal's open subscriptions/listen
	// streams (default 8).
	MaxListensPerPrincipal int `yaml:"max_listens_per_principal"`
}

// Session defaults.
const (
	DefaultSessionsPerPrincipal = 100
	DefaultListensPerPrincipal  = 8
)

// ShutdownConfig bounds a graceful stop (SIGTERM): readiness turns false at
// once; after Delay the listener closes and in-flight requests get up to Drain
// to finish; then providers stop and the audit log is flushed.
type ShutdownConfig struct {
	Delay Duration `yaml:"delay"`
	Drain Duration `yaml:"drain"`
}

// Provider is one stdio MCP server. Its key in gateway.yaml is its tool prefix.
type Provider struct {
	Name        string            `yaml:"-"`
	Command     string            `yaml:"command"`
	Args        []string          `yaml:"args"`
	Env         map[string]string `yaml:"env"`
	Dir         string            `yaml:"dir"`
	Enabled     *bool             `yaml:"enabled"`
	Description string            `yaml:"description"`
	Scope       string            `yaml:"scope"` // shared (default) or user
	// Protocol is the MCP era the gateway speaks to the provider in: auto
	// (default: probe with server/discover, else initialize), 2025-11-25
	// (initialize only) or 2026-07-28 (stateless only).
	Protocol     string     `yaml:"protocol"`
	Connection   Connection `yaml:"connection"`
	InternalOnly bool       `yaml:"internal_only"`
	Public       bool       `yaml:"public"`
	ReadOnly     bool       `yaml:"read_only"`
	Tools        ToolPolicy `yaml:"tools"`
	Limits       Limits     `yaml:"limits"`

	// URL, instead of Command, makes a remote provider: an MCP server the
	// gateway reaches as a client over streamable HTTP (or legacy SSE).
	URL string `yaml:"url"`
	// Transport of a URL provider: auto (default), streamable-http or sse.
	Transport string `yaml:"transport"`
	// Headers are sent with every request to a URL provider; values may be
	// ${secret:NAME} or ${env:NAME}.
	Headers map[string]string `yaml:"headers"`
	// OAuth makes a scope: user provider's connection an OAuth one.
	OAuth *OAuth `yaml:"oauth"`

	// Skill names the usage skill this provider uses when it is not filed
	// under its own prefix: the skill of the server it runs ("filesystem"),
	// with that skill's own prefix replaced by this provider's where it
	// names tools. Empty: the skill filed under the prefix, if any, else the
	// one named like the prefix.
	Skill string `yaml:"skill"`
	// SkillNote is added to the skill for this provider: what differs for
	// the callers of this instance (whose files, which account).
	SkillNote string `yaml:"skill_note"`
}

// OAuth is a provider's OAuth connection. For a URL provider everything
// may be discovered from the server (protected resource metadata, then the
// authorization server's metadata, then dynamic registration); the fields
// narrow or replace discovery. A command provider needs the authorization
// server (issuer, or both endpoints) and how its process gets the token.
type OAuth struct {
	// Issuer is the authorization server's issuer identifier; its metadata
	// is discovered (RFC 8414, OpenID Connect).
	Issuer string `yaml:"issuer"`
	// AuthorizationURL and TokenURL replace discovery; RevocationURL is
	// optional.
	AuthorizationURL string `yaml:"authorization_url"`
	TokenURL         string `yaml:"token_url"`
	RevocationURL    string `yaml:"revocation_url"`
	// ClientID is a pre-registered client; ClientSecret (a ${secret:NAME}
	// reference only) its secret. Without one the gateway registers itself.
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// Scopes to ask for (default: what the server asks for).
	Scopes []string `yaml:"scopes"`
	// TokenEnv (command providers) names the environment variable that
	// carries the access token; when the token is refreshed, a new process
	// takes over from the old one, make-before-break.
	TokenEnv string `yaml:"token_env"`
	// TokenFile (command providers) names the environment variable that
	// carries the path of a file holding the access token, in a directory
	// of the instance's own; the gateway rewrites it on refresh, with no
	// restart, for servers that read it again.
	TokenFile string `yaml:"token_file"`
}

// Remote reports whether p is reached over HTTP (url:) rather than run.
func (p *Provider) Remote() bool { return p.URL != "" }

// Connection names what each user supplies for a scope: user provider.
type Connection struct {
	Secrets     []string `yaml:"secrets"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	MaxUsers    int      `yaml:"max_instances"`
}

// ToolPolicy is a provider's server-side write policy: glob patterns over the
// provider's own (unprefixed) tool names.
type ToolPolicy struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// Limits bound one provider instance. Zero values take the defaults.
type Limits struct {
	MaxConcurrent int      `yaml:"max_concurrent"`
	MaxQueue      int      `yaml:"max_queue"`
	CallTimeout   Duration `yaml:"call_timeout"`
	InitTimeout   Duration `yaml:"init_timeout"`
	MaxMessageMB  int      `yaml:"max_message_mb"`
	MaxMemoryMB   int      `yaml:"max_memory_mb"`
	MaxCPU        float64  `yaml:"max_cpu"`
	// MaxConsecutiveTimeouts is how many calls in a row may hit call_timeout
	// before the provider's process is killed and restarted; 0 never
	// restarts it. Unset, it takes the default.
	MaxConsecutiveTimeouts OptionalInt `yaml:"max_consecutive_timeouts"`
}

// OptionalInt is an integer whose absence from the YAML differs from 0.
type OptionalInt struct {
	Value int
	Set   bool
}

// UnmarshalYAML reads an integer.
func (o *OptionalInt) UnmarshalYAML(n *yaml.Node) error {
	var v int
	if err := n.Decode(&v); err != nil {
		return err
	}
	*o = OptionalInt{Value: v, Set: true}
	return nil
}

// MarshalYAML writes the integer, or nothing when unset.
func (o OptionalInt) MarshalYAML() (any, error) {
	if !o.Set {
		return nil, nil
	}
	return o.Value, nil
}

// Role maps a role name to the providers (and optionally tools) it may see.
type Role struct {
	Providers []string `yaml:"providers"`
	// Tools, if set, are glob patterns over exposed names ("notes__read_*").
	Tools []string `yaml:"tools"`
}

// Service is a service principal for /mcp/internal.
type Service struct {
	AllowedProviderPrefixes []string `yaml:"allowed_provider_prefixes"`
}

// IsEnabled reports whether the provider should run (default true).
func (p *Provider) IsEnabled() bool { return p.Enabled == nil || *p.Enabled }

// UserScoped reports whether the provider runs one process per connected user.
func (p *Provider) UserScoped() bool { return p.Scope == ScopeUser }

// Scopes.
const (
	ScopeShared = "shared"
	ScopeUser   = "user"
)

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses "1m30s" or a plain number of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration like \"30s\"", n.Line)
	}
	if secs, err := strconv.ParseFloat(n.Value, 64); err == nil {
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Problem is one thing wrong with a config file.
type Problem struct {
	File    string
	Line    int
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Message)
}

// ValidationError lists every problem found in one config file.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Problems returns the problems in err if it is a *ValidationError, or err as one problem.
func Problems(err error) []Problem {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	return []Problem{{Message: err.Error()}}
}

// LoadFile reads, parses, defaults and validates a gateway.yaml.
func LoadFile(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{{File: path, Message: "cannot read file: " + unwrapPathError(err)}}}
	}
	return Parse(data, abs, path)
}

func unwrapPathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse parses data read from the file at abs; display is the name used in errors.
func Parse(data []byte, abs, display string) (*Config, error) {
	if display == "" {
		display = abs
	}
	fail := func(line int, msg string) error {
		return &ValidationError{Problems: []Problem{{File: display, Line: line, Message: msg}}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line, msg := yamlErrorLine(err)
		return nil, fail(line, msg)
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			ve := &ValidationError{}
			for _, e := range te.Errors {
				line, msg := yamlErrorLine(errors.New(e))
				ve.Problems = append(ve.Problems, Problem{File: display, Line: line, Message: msg})
			}
			return nil, ve
		}
		line, msg := yamlErrorLine(err)
		return nil, fail(line, msg)
	}
	sum := sha256.Sum256(data)
	cfg.Hash = hex.EncodeToString(sum[:])
	cfg.Path = abs
	cfg.Dir = filepath.Dir(abs)
	cfg.lines = map[string]int{}
	indexLines(&root, "", cfg.lines)
	cfg.applyDefaults()
	if problems := cfg.validate(display); len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return cfg, nil
}

var yamlLineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

var unknownFieldRe = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// yamlErrorLine turns "yaml: line 3: did not find expected key" into (3, "...").
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		rest := m[2]
		if u := unknownFieldRe.FindStringSubmatch(rest); u != nil {
			rest = fmt.Sprintf("unknown key %q", u[1])
		}
		rest = strings.TrimPrefix(rest, "cannot unmarshal ")
		return n, rest
	}
	return 0, strings.TrimPrefix(msg, "yaml: ")
}

// indexLines records the line of every mapping key by dotted path.
func indexLines(n *yaml.Node, path string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line
			indexLines(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = c.Line
			indexLines(c, p, out)
		}
	}
}

// Line returns the line of a dotted key path, or of its nearest ancestor.
func (c *Config) Line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Defaults.
const (
	DefaultListen       = "127.0.0.1:8080"
	DefaultDataDir      = "./data"
	DefaultMaxBodyMB    = 4
	DefaultSessionIdle  = 30 * time.Minute
	DefaultSlowCall     = 5 * time.Second
	DefaultMaxMessageMB = 16
	// DefaultMaxConsecutiveTimeouts is limits.max_consecutive_timeouts when
	// unset: the gate's own default.
	DefaultMaxConsecutiveTimeouts = gate.DefaultMaxConsecutiveTimeouts
	DefaultUserIdle               = 15 * time.Minute
	DefaultMaxUserProcs           = 50
	DefaultRateLimitRPS           = 50
	DefaultRateLimitBurs          = 100
	// DefaultFailureRPS and DefaultFailureBurst: 30 failed authentications
	// at once from one address, then one a second.
	DefaultFailureRPS   = 1
	DefaultFailureBurst = 30
	// DefaultReadHeaderTimeout, DefaultIdleTimeout and DefaultMaxConnsPerClient
	// are the server section's defaults.
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxConnsPerClient = 256
)

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	c.DataDir = c.Resolve(c.DataDir)
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.SlowCall == 0 {
		c.Log.SlowCall = Duration(DefaultSlowCall)
	}
	if c.Auth.MaxBodyMB == 0 {
		c.Auth.MaxBodyMB = DefaultMaxBodyMB
	}
	if c.Auth.RateLimit.RPS == 0 {
		c.Auth.RateLimit.RPS = DefaultRateLimitRPS
	}
	if c.Auth.RateLimit.Burst == 0 {
		c.Auth.RateLimit.Burst = DefaultRateLimitBurs
	}
	if c.Auth.FailureLimit.RPS == 0 {
		c.Auth.FailureLimit.RPS = DefaultFailureRPS
	}
	if c.Auth.FailureLimit.Burst == 0 {
		c.Auth.FailureLimit.Burst = DefaultFailureBurst
	}
	if c.Server.ReadHeaderTimeout == 0 {
		c.Server.ReadHeaderTimeout = Duration(DefaultReadHeaderTimeout)
	}
	if c.Server.BodyTimeout == 0 {
		c.Server.BodyTimeout = Duration(DefaultBodyTimeout(c.Auth.MaxBodyMB))
	}
	if c.Server.IdleTimeout == 0 {
		c.Server.IdleTimeout = Duration(DefaultIdleTimeout)
	}
	if c.Server.MaxConnsPerClient == 0 {
		c.Server.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if c.Vault.KeyFile != "" {
		c.Vault.KeyFile = c.Resolve(c.Vault.KeyFile)
	}
	if c.Replica == "" {
		c.Replica = DefaultReplica()
	}
	if c.Audit.File == "" && c.Store.Postgres != nil {
		// Replicas' logs are gathered in one place to be verified; their
		// names tell them apart there.
		c.Audit.File = filepath.Join(c.DataDir, "audit-"+c.Replica+".log")
	} else if c.Audit.File == "" {
		c.Audit.File = filepath.Join(c.DataDir, "audit.log")
	} else {
		c.Audit.File = c.Resolve(c.Audit.File)
	}
	if c.Audit.MaxSizeMB == 0 {
		c.Audit.MaxSizeMB = 100
	}
	if c.Audit.MaxBackups == 0 {
		c.Audit.MaxBackups = 10
	}
	if pg := c.Store.Postgres; pg != nil {
		if pg.DSNFile != "" {
			pg.DSNFile = c.Resolve(pg.DSNFile)
		}
		if pg.MaxConns == 0 {
			pg.MaxConns = DefaultPostgresMaxConns
		}
		if pg.ResyncInterval == 0 {
			pg.ResyncInterval = Duration(DefaultResyncInterval)
		}
	}
	if c.Skills.Dir == "" {
		c.Skills.Dir = c.SkillsDir
	}
	if c.Skills.Dir != "" {
		c.Skills.Dir = c.Resolve(c.Skills.Dir)
	}
	if c.Shutdown.Drain == 0 {
		c.Shutdown.Drain = Duration(10 * time.Second)
	}
	if c.Sessions.IdleTimeout == 0 {
		c.Sessions.IdleTimeout = Duration(DefaultSessionIdle)
	}
	if c.Sessions.MaxPerPrincipal == 0 {
		c.Sessions.MaxPerPrincipal = DefaultSessionsPerPrincipal
	}
	if c.Sessions.MaxListensPerPrincipal == 0 {
		c.Sessions.MaxListensPerPrincipal = DefaultListensPerPrincipal
	}
	c.applyObservabilityDefaults()
	if c.Providers == nil {
		c.Providers = map[string]*Provider{}
	}
	for name, p := range c.Providers {
		if p == nil {
			p = &Provider{}
			c.Providers[name] = p
		}
		p.Name = name
		if p.Scope == "" {
			p.Scope = ScopeShared
		}
		if p.Dir == "" {
			p.Dir = c.Dir
		} else {
			p.Dir = c.Resolve(p.Dir)
		}
		if p.Connection.IdleTimeout == 0 {
			p.Connection.IdleTimeout = Duration(DefaultUserIdle)
		}
		if p.Connection.MaxUsers == 0 {
			p.Connection.MaxUsers = DefaultMaxUserProcs
		}
		p.Limits = p.Limits.withDefaults(c.Defaults)
	}
}

func (l Limits) withDefaults(d Limits) Limits {
	if l.MaxConcurrent == 0 {
		l.MaxConcurrent = d.MaxConcurrent
	}
	if l.MaxQueue == 0 {
		l.MaxQueue = d.MaxQueue
	}
	if l.CallTimeout == 0 {
		l.CallTimeout = d.CallTimeout
	}
	if l.InitTimeout == 0 {
		l.InitTimeout = d.InitTimeout
	}
	if l.MaxMessageMB == 0 {
		l.MaxMessageMB = d.MaxMessageMB
	}
	if l.MaxMessageMB == 0 {
		l.MaxMessageMB = DefaultMaxMessageMB
	}
	if l.MaxMemoryMB == 0 {
		l.MaxMemoryMB = d.MaxMemoryMB
	}
	if l.MaxCPU == 0 {
		l.MaxCPU = d.MaxCPU
	}
	if !l.MaxConsecutiveTimeouts.Set {
		l.MaxConsecutiveTimeouts = d.MaxConsecutiveTimeouts
	}
	if !l.MaxConsecutiveTimeouts.Set {
		l.MaxConsecutiveTimeouts = OptionalInt{Value: DefaultMaxConsecutiveTimeouts, Set: true}
	}
	return l
}

// Resolve returns p made absolute against the config file's folder.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

var (
	envNameRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	roleNameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	skillNameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	refRe        = regexp.MustCompile(`^\$\{(secret|env):([^}]*)\}$`)
	replicaRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// DefaultReplica is the default replica name: the host name up to its first
// dot, with characters a replica name cannot hold replaced by "-"
// ("gateway" if there is no host name).
func DefaultReplica() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "gateway"
	}
	h, _, _ = strings.Cut(h, ".")
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	if b[0] == '-' || b[0] == '_' {
		b[0] = 'h'
	}
	return string(b)
}

// SortedProviders returns the providers ordered by prefix.
func (c *Config) SortedProviders() []*Provider {
	out := make([]*Provider, 0, len(c.Providers))
	for _, p := range c.Providers {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (c *Config) validate(file string) []Problem {
	var ps []Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{File: file, Line: c.Line(path), Message: fmt.Sprintf(format, args...)})
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		add("listen", "listen %q is not host:port", c.Listen)
	} else if c.Auth.Disabled && !IsLoopback(host) {
		add("listen", "listen %q is not a loopback address: authentication cannot be disabled there", c.Listen)
	}
	if c.SkillsDir != "" && c.Skills.Dir != c.Resolve(c.SkillsDir) {
		add("skills_dir", "skills_dir and skills.dir disagree: set one")
	}
	if a := c.Audit; a.MaxSizeMB < 0 || a.MaxBackups < 0 || a.MaxAgeDays < 0 {
		add("audit", "audit: max_size_mb, max_backups and max_age_days must not be negative")
	}
	if c.Audit.Disabled && c.Audit.WaitForWrite != nil && *c.Audit.WaitForWrite {
		add("audit.wait_for_write", "audit.wait_for_write needs the audit log, which audit.disabled turns off: set one")
	}
	if c.Audit.Disabled && c.Audit.Fsync {
		add("audit.fsync", "audit.fsync needs the audit log, which audit.disabled turns off: set one")
	}
	if !replicaRe.MatchString(c.Replica) {
		add("replica", "replica %q must match [A-Za-z0-9][A-Za-z0-9._-]* (at most 63 characters)", c.Replica)
	}
	if pg := c.Store.Postgres; pg != nil {
		switch {
		case pg.DSN == "" && pg.DSNFile == "":
			add("store.postgres", "store.postgres: set dsn (${env:NAME}) or dsn_file")
		case pg.DSN != "" && pg.DSNFile != "":
			add("store.postgres", "store.postgres: dsn and dsn_file are both set: set one")
		case pg.DSN != "":
			if ref, err := ParseEnvValue(pg.DSN); err != nil {
				add("store.postgres.dsn", "store.postgres.dsn: %v", err)
			} else if ref.Kind == RefSecret {
				add("store.postgres.dsn", "store.postgres.dsn: the vault lives in the store, so the store's DSN cannot come from it: use ${env:NAME} or dsn_file")
			} else if ref.Kind == RefLiteral && dsnPasswordRe.MatchString(pg.DSN) {
				add("store.postgres.dsn", "store.postgres.dsn holds a password: never write one in gateway.yaml; use ${env:NAME} or dsn_file")
			}
		}
		if pg.MaxConns < 0 {
			add("store.postgres.max_conns", "store.postgres.max_conns must not be negative")
		}
		if pg.ResyncInterval < Duration(100*time.Millisecond) || pg.ResyncInterval > Duration(time.Minute) {
			add("store.postgres.resync_interval", "store.postgres.resync_interval must be between 100ms and 1m")
		}
	}
	if c.Auth.MaxBodyMB < 0 {
		add("auth.max_body_mb", "auth.max_body_mb must be positive")
	}
	for _, d := range []struct {
		path string
		v    Duration
	}{{"log.slow_call", c.Log.SlowCall}, {"sessions.idle_timeout", c.Sessions.IdleTimeout},
		{"shutdown.delay", c.Shutdown.Delay}, {"shutdown.drain", c.Shutdown.Drain},
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout}, {"server.body_timeout", c.Server.BodyTimeout},
		{"server.idle_timeout", c.Server.IdleTimeout}} {
		if d.v < 0 {
			add(d.path, "%s must not be negative", d.path)
		}
	}
	if c.Sessions.MaxPerPrincipal < 0 || c.Sessions.MaxListensPerPrincipal < 0 {
		add("sessions", "sessions.max_per_principal and max_listens_per_principal must be positive")
	}
	if r := c.Auth.RateLimit; r.RPS < 0 || r.Burst < 0 || math.IsNaN(r.RPS) || math.IsInf(r.RPS, 0) {
		add("auth.rate_limit", "auth.rate_limit: rps and burst must be positive numbers")
	}
	if r := c.Auth.FailureLimit; r.RPS < 0 || r.Burst < 0 || math.IsNaN(r.RPS) || math.IsInf(r.RPS, 0) {
		add("auth.failure_limit", "auth.failure_limit: rps and burst must be positive numbers")
	}
	if s := c.Server; s.MaxConnsPerClient < 0 || s.MaxConns < 0 {
		add("server", "server: max_conns_per_client and max_conns must not be negative")
	}
	c.validateObservability(add)
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		add("log.level", "log.level %q must be one of trace, debug, info, warn, error", c.Log.Level)
	}
	for i, o := range c.Auth.OIDC {
		path := fmt.Sprintf("auth.oidc[%d]", i)
		if o.Issuer == "" {
			add(path, "oidc issuer: issuer is empty")
		}
		if o.Audience == "" {
			add(path, "oidc issuer %q: audience is empty (tokens must be minted for this gateway)", o.Issuer)
		}
	}
	for _, p := range c.SortedProviders() {
		path := "providers." + p.Name
		if !switchboard.ValidPrefix(p.Name) {
			add(path, "provider %q: the key is the tool prefix and must match [a-z0-9][a-z0-9-]* (at most 32 characters, no \"__\")", p.Name)
		}
		switch {
		case p.URL != "":
			ps = append(ps, c.validateRemote(file, p)...)
		case strings.TrimSpace(p.Command) == "":
			add(path, "provider %q: command is empty", p.Name)
		}
		if p.URL == "" && (p.Transport != "" || len(p.Headers) > 0) {
			add(path, "provider %q: transport and headers apply only to a url provider", p.Name)
		}
		if p.OAuth != nil {
			ps = append(ps, c.validateOAuth(file, p)...)
		}
		if p.Skill != "" && (len(p.Skill) > 64 || !skillNameRe.MatchString(p.Skill)) {
			add(path+".skill", "provider %q: skill %q must name a skill folder: lowercase letters, digits and hyphens", p.Name, p.Skill)
		}
		switch p.Protocol {
		case "", "auto", "2025-11-25", "2026-07-28":
		default:
			add(path+".protocol", "provider %q: protocol %q must be auto, 2025-11-25 or 2026-07-28", p.Name, p.Protocol)
		}
		if p.Scope != ScopeShared && p.Scope != ScopeUser {
			add(path+".scope", "provider %q: scope %q must be shared or user", p.Name, p.Scope)
		}
		if p.Scope == ScopeShared && len(p.Connection.Secrets) > 0 {
			add(path+".connection", "provider %q: connection secrets need scope: user", p.Name)
		}
		if p.Scope == ScopeUser && len(p.Connection.Secrets) == 0 && p.OAuth == nil {
			add(path+".connection", "provider %q: scope: user needs connection.secrets naming what each user supplies, or an oauth connection", p.Name)
		}
		for _, s := range p.Connection.Secrets {
			if !envNameRe.MatchString(s) {
				add(path+".connection.secrets", "provider %q: connection secret %q is not a valid environment variable name", p.Name, s)
			}
		}
		keys := make([]string, 0, len(p.Env))
		for k := range p.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			epath := path + ".env." + k
			if !envNameRe.MatchString(k) {
				add(epath, "provider %q: %q is not a valid environment variable name", p.Name, k)
			}
			ref, err := ParseEnvValue(p.Env[k])
			if err != nil {
				add(epath, "provider %q: env %s: %v", p.Name, k, err)
				continue
			}
			if ref.Kind == RefSecret && !secretNameRe.MatchString(ref.Name) {
				add(epath, "provider %q: env %s: secret name %q must match [A-Za-z_][A-Za-z0-9_]*", p.Name, k, ref.Name)
			} else if ref.Kind == RefSecret && switchboard.ReservedSecretName(ref.Name) {
				add(epath, "provider %q: env %s: secret name %q is reserved: names starting with %s belong to the gateway's internal keys", p.Name, k, ref.Name, switchboard.ReservedSecretPrefix)
			}
		}
		for _, pat := range append(append([]string{}, p.Tools.Allow...), p.Tools.Deny...) {
			if _, err := filepath.Match(pat, ""); err != nil {
				add(path+".tools", "provider %q: bad tool pattern %q", p.Name, pat)
			}
		}
		l := p.Limits
		if l.MaxConcurrent < 0 || l.MaxQueue < 0 || l.MaxMessageMB < 0 || l.MaxMemoryMB < 0 || !(l.MaxCPU >= 0) ||
			math.IsInf(l.MaxCPU, 0) || l.CallTimeout < 0 || l.InitTimeout < 0 || l.MaxConsecutiveTimeouts.Value < 0 {
			add(path+".limits", "provider %q: limits must be non-negative numbers", p.Name)
		}
		if p.Connection.IdleTimeout < 0 || p.Connection.MaxUsers < 0 {
			add(path+".connection", "provider %q: connection idle_timeout and max_instances must not be negative", p.Name)
		}
	}
	// The prefix invariant: everything else that names a provider must name a declared one.
	for _, name := range sortedKeys(c.Roles) {
		r := c.Roles[name]
		path := "roles." + name
		if !roleNameRe.MatchString(name) {
			add(path, "role %q: name must match [a-z0-9][a-z0-9_-]*", name)
		}
		if r == nil {
			continue
		}
		for i, pf := range r.Providers {
			if pf != "*" && c.Providers[pf] == nil {
				add(fmt.Sprintf("%s.providers[%d]", path, i), "role %q names unknown provider %q", name, pf)
			}
		}
		for i, pat := range r.Tools {
			if _, err := filepath.Match(pat, ""); err != nil {
				add(fmt.Sprintf("%s.tools[%d]", path, i), "role %q: bad tool pattern %q", name, pat)
			}
		}
	}
	if c.DefaultRole != "" && c.Roles[c.DefaultRole] == nil {
		add("default_role", "default_role %q is not a role defined under roles", c.DefaultRole)
	}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		path := "services." + name
		if !roleNameRe.MatchString(name) {
			add(path, "service %q: name must match [a-z0-9][a-z0-9_-]*", name)
		}
		if s == nil {
			continue
		}
		for i, pf := range s.AllowedProviderPrefixes {
			if c.Providers[pf] == nil {
				add(fmt.Sprintf("%s.allowed_provider_prefixes[%d]", path, i), "service %q names unknown provider prefix %q", name, pf)
			}
		}
	}
	return ps
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// IsLoopback reports whether host (an IP or "localhost") is a loopback address.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RefKind says where an env value comes from.
type RefKind int

// Env value kinds.
const (
	RefLiteral RefKind = iota
	RefSecret          // ${secret:NAME}: from the vault
	RefEnv             // ${env:NAME}: from the gateway's own environment
)

// EnvRef is a parsed provider env value.
type EnvRef struct {
	Kind  RefKind
	Name  string // secret or env var name
	Value string // the literal, for RefLiteral
}

// ParseEnvValue parses "${secret:NAME}", "${env:NAME}" or a literal.
func ParseEnvValue(v string) (EnvRef, error) {
	if m := refRe.FindStringSubmatch(v); m != nil {
		if m[2] == "" {
			return EnvRef{}, fmt.Errorf("empty name in %q", v)
		}
		if m[1] == "secret" {
			return EnvRef{Kind: RefSecret, Name: m[2]}, nil
		}
		if !envNameRe.MatchString(m[2]) {
			return EnvRef{}, fmt.Errorf("%q is not a valid environment variable name", m[2])
		}
		return EnvRef{Kind: RefEnv, Name: m[2]}, nil
	}
	if strings.Contains(v, "${secret:") || strings.Contains(v, "${env:") {
		return EnvRef{}, fmt.Errorf("a reference must be the whole value, like ${secret:NAME}")
	}
	return EnvRef{Kind: RefLiteral, Value: v}, nil
}

// SecretRefs returns the vault secret names the provider references (its
// env, its headers, its OAuth client secret), sorted.
func (p *Provider) SecretRefs() []string {
	var out []string
	vals := make([]string, 0, len(p.Env)+len(p.Headers)+1)
	for _, v := range p.Env {
		vals = append(vals, v)
	}
	for _, v := range p.Headers {
		vals = append(vals, v)
	}
	if p.OAuth != nil && p.OAuth.ClientSecret != "" {
		vals = append(vals, p.OAuth.ClientSecret)
	}
	for _, v := range vals {
		if r, err := ParseEnvValue(v); err == nil && r.Kind == RefSecret && !slices.Contains(out, r.Name) {
			out = append(out, r.Name)
		}
	}
	sort.Strings(out)
	return out
}

// DataDirOf returns the data dir a config file names, reading it leniently:
// it works on a file that does not validate, so tools can find a running
// gateway's admin socket while the file is being edited.
func DataDirOf(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return "", err
	}
	var partial struct {
		DataDir string `yaml:"data_dir"`
	}
	_ = yaml.Unmarshal(data, &partial) // best effort: fall back to the default
	if partial.DataDir == "" {
		partial.DataDir = DefaultDataDir
	}
	if !filepath.IsAbs(partial.DataDir) {
		partial.DataDir = filepath.Join(filepath.Dir(abs), partial.DataDir)
	}
	return partial.DataDir, nil
}
