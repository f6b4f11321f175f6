package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/store/postgres"
	"github.com/switchboard-mcp/switchboard/vault"
)

// The vault's internal keys: generated on first use, never leaving the vault
// except into the gateway's memory, and out of reach of `secret` and
// ${secret:} (names starting with SWITCHBOARD_ are refused there).
const (
	// serviceKeySecret signs service tokens.
	serviceKeySecret = "SWITCHBOARD_SERVICE_SIGNING_KEY"
	// auditKeySecret keys the audit log: argument digests, every record's
	// hash in the chain and the checkpoint MAC. If it was removed, a new one
	// is made, and nothing written under the old one verifies any more
	// (verify says so, naming both key ids).
	auditKeySecret = "SWITCHBOARD_AUDIT_DIGEST_KEY"
)

// openVault loads the master key and opens the store and the vault in it. A
// wrong key stops here, before any provider starts.
func openVault(cfg *providers.Config, getenv func(string) string, allowGenerate bool, opts vault.Options, log zerolog.Logger) (switchboard.Store, *vault.Vault, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating data dir: %w", err)
	}
	key, origin, err := vault.LoadKey(vault.KeySource{
		EnvValue: getenv(vault.EnvKey), KeyFile: cfg.Vault.KeyFile, DataDir: cfg.DataDir, AllowGenerate: allowGenerate,
	})
	if err != nil {
		return nil, nil, err
	}
	defer key.Zero()
	if origin == vault.KeyGenerated {
		log.Warn().Str("key_file", filepath.Join(cfg.DataDir, vault.KeyFileName)).
			Msg("GENERATED A NEW VAULT KEY for local development; back it up, and use SWITCHBOARD_VAULT_KEY or vault.key_file in production")
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	v, err := vault.Open(context.Background(), st, key, opts)
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return st, v, nil
}

// openStore opens the store cfg names: PostgreSQL, shared by every replica
// that names the same database, or the bbolt file in the data dir.
func openStore(cfg *providers.Config, log zerolog.Logger) (switchboard.Store, error) {
	pg := cfg.Store.Postgres
	if pg == nil {
		return bolt.Open(filepath.Join(cfg.DataDir, bolt.FileName), bolt.Options{})
	}
	dsn, err := pg.ResolveDSN()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return postgres.Open(ctx, postgres.Config{DSN: dsn, Replica: cfg.Replica, MaxConns: int32(pg.MaxConns),
		ResyncInterval: pg.ResyncInterval.D()}, log.With().Str("component", "store").Logger())
}

// storeName says where the store is, for messages.
func storeName(st switchboard.Store) string {
	if p, ok := st.(interface{ Path() string }); ok {
		return p.Path()
	}
	return "PostgreSQL (store.postgres)"
}

// auditKey returns the audit key from the vault (made on first use): serve,
// the offline CLI's audit records, `audit digest` and `audit verify` all
// come here.
func auditKey(v *vault.Vault) ([]byte, error) {
	return internalKey(v, auditKeySecret, "audit digest key")
}

// internalKey returns the vault's internal key name; what says what it is for.
func internalKey(v *vault.Vault, name, what string) ([]byte, error) {
	key, err := v.InternalKey(name)
	if err != nil {
		return nil, fmt.Errorf("loading the %s: %w", what, err)
	}
	return key, nil
}

// identity is who may call the gateway: users and their API keys, service
// tokens, the authenticator, and the per-user state visibility depends on.
type identity struct {
	users  *auth.Users
	prefs  *auth.Prefs
	tokens *auth.ServiceTokens
	tokLog *auth.TokenLog // issued and revoked service tokens
	authn  *auth.Authenticator
	vault  *vault.Vault // its index of connections
	log    zerolog.Logger
}

// openIdentity opens users, preferences and service tokens on st, and the
// authenticator for cfg. The CLI's offline operations use it too.
func openIdentity(st switchboard.Store, v *vault.Vault, cfg *providers.Config, log zerolog.Logger) (*identity, error) {
	users, err := auth.NewUsers(st)
	if err != nil {
		return nil, err
	}
	prefs, err := auth.NewPrefs(st)
	if err != nil {
		return nil, err
	}
	key, err := internalKey(v, serviceKeySecret, "service signing key")
	if err != nil {
		return nil, err
	}
	tokens, err := auth.NewServiceTokens(key)
	if err != nil {
		return nil, err
	}
	tokLog, err := auth.NewTokenLog(st)
	if err != nil {
		return nil, err
	}
	tokens.SetRevocationCheck(tokLog.IsRevoked)
	authn, err := auth.New(users, tokens, authConfig(cfg), log)
	if err != nil {
		return nil, err
	}
	return &identity{users: users, prefs: prefs, tokens: tokens, tokLog: tokLog, authn: authn, vault: v, log: log}, nil
}

// refreshed is what identity.refresh found other writers changed.
type refreshed struct {
	users auth.UsersDiff
	conns []vault.ConnRef
}

// refresh re-reads what changes (other replicas' writes) may have touched
// of what is cached from the store: users and keys, preferences, service
// token revocations, the index of connections. It reads everything it can
// and returns every error.
func (id *identity) refresh(changes []switchboard.StoreChange) (refreshed, error) {
	var (
		r          refreshed
		errs       []error
		uerr, cerr error
	)
	r.users, uerr = id.users.Refresh(changes)
	r.conns, cerr = id.vault.RefreshConnections(changes)
	errs = append(errs, uerr, id.prefs.Refresh(changes), id.tokLog.Refresh(changes), cerr)
	return r, errors.Join(errs...)
}

// firstAdmin creates an admin user on a fresh dev install and returns its key
// (shown once), or "".
func (id *identity) firstAdmin() (string, error) {
	list, err := id.users.List()
	if err != nil || len(list) > 0 {
		return "", err
	}
	return id.users.Add("admin", []string{auth.RoleAdmin})
}

// principal is local user name as the principal their API key would give.
func (id *identity) principal(name string) (*switchboard.Principal, error) {
	u, err := id.users.Get(name)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "no local user %q (switchboard user add): a user who signs in with OIDC gets their roles from their token, so they connect and set preferences themselves (POST /api/connections/<provider>, /api/prefs/<provider>/hide)", name)
	}
	if err != nil {
		return nil, err
	}
	return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: u.Name, Roles: u.Roles, Endpoint: switchboard.EndpointPublic}, nil
}

// userState answers per-user visibility questions from memory: the vault's
// index of connections, the users' preferences.
type userState struct {
	prefs *auth.Prefs
	vault *vault.Vault
}

func (u userState) Connected(user, provider string) bool { return u.vault.Connected(user, provider) }
func (u userState) Hidden(user, provider string) bool    { return u.prefs.Hidden(user, provider) }

// authConfig is the authenticator's part of cfg.
func authConfig(cfg *providers.Config) auth.Config {
	ac := auth.Config{}
	for _, o := range cfg.Auth.OIDC {
		ac.OIDC = append(ac.OIDC, auth.OIDCConfig{
			Issuer: o.Issuer, Audience: o.Audience, JWKSURL: o.JWKSURL,
			UserClaim: o.UserClaim, RolesClaim: o.RolesClaim, RoleMap: o.RoleMap,
		})
	}
	for name := range cfg.Services {
		ac.Services = append(ac.Services, name)
	}
	return ac
}

// edgeConfig is the edge's part of cfg; resourceURL is the gateway's public
// MCP URL.
func edgeConfig(cfg *providers.Config, resourceURL string) auth.EdgeConfig {
	return auth.EdgeConfig{
		Disabled:            cfg.Auth.Disabled,
		AllowedHosts:        cfg.Auth.AllowedHosts,
		AllowedOrigins:      cfg.Auth.AllowedOrigins,
		MaxBodyBytes:        int64(cfg.Auth.MaxBodyMB) << 20,
		BodyTimeout:         cfg.Server.BodyTimeout.D(),
		ResourceMetadataURL: strings.TrimSuffix(resourceURL, "/mcp") + "/.well-known/oauth-protected-resource",
		RateRPS:             cfg.Auth.RateLimit.RPS,
		RateBurst:           cfg.Auth.RateLimit.Burst,
		FailureRPS:          cfg.Auth.FailureLimit.RPS,
		FailureBurst:        cfg.Auth.FailureLimit.Burst,
	}
}
