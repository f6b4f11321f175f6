package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/providers"
)

// auditTypeServiceToken is the audit record type of service-token issues and
// revocations.
const auditTypeServiceToken = "service_token"

type userArgs struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles,omitempty"`
}

type keyResult struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	// URL is the gateway's MCP URL, as its config says it listens, for the
	// connect hint.
	URL string `json:"url,omitempty"`
}

type tokenArgs struct {
	Service string        `json:"service"`
	TTL     time.Duration `json:"ttl"`
}

type tokenResult struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	JTI     string    `json:"jti"`
}

type revokeArgs struct {
	// Token is a whole service token or its id (jti, 32 hex digits).
	Token string `json:"token"`
}

func (env *opsEnv) userAdd(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[userArgs](raw)
	if err != nil {
		return nil, err
	}
	cfg := env.cfg()
	for _, r := range a.Roles {
		if _, ok := cfg.Roles[r]; !ok && r != auth.RoleAdmin {
			return nil, switchboard.Errorf(switchboard.EINVALID, "role %q is not defined under roles in %s (built-in: admin)", r, cfg.Path)
		}
	}
	key, err := env.id.users.Add(a.Name, a.Roles)
	if err != nil {
		return nil, err
	}
	return keyResult{Name: a.Name, Key: key, URL: mcpURL(cfg)}, nil
}

func (env *opsEnv) userRm(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[userArgs](raw)
	if err != nil {
		return nil, err
	}
	if err := env.id.users.Remove(a.Name); err != nil {
		return nil, err
	}
	if r := env.run; r != nil {
		// What a removed user had running ends: their subscriptions/listen
		// streams and their own instances. Their sessions fail
		// authentication on the next request.
		r.mux.CloseListens(string(switchboard.PrincipalUser) + ":" + a.Name)
		if err := r.sup.StopUser(ctx, a.Name); err != nil {
			return nil, fmt.Errorf("user %s removed, but stopping their instances: %w", a.Name, err)
		}
		r.mux.PolicyChanged()
	}
	return struct{}{}, nil
}

func (env *opsEnv) userRotate(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[userArgs](raw)
	if err != nil {
		return nil, err
	}
	key, err := env.id.users.RotateKey(a.Name)
	if err != nil {
		return nil, err
	}
	if env.run != nil {
		// Open subscriptions/listen streams end, so the client comes back
		// with the new key (session-era sessions fail their next request).
		env.run.mux.CloseListens(string(switchboard.PrincipalUser) + ":" + a.Name)
	}
	return keyResult{Name: a.Name, Key: key, URL: mcpURL(env.cfg())}, nil
}

func (env *opsEnv) serviceToken(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[tokenArgs](raw)
	if err != nil {
		return nil, err
	}
	cfg := env.cfg()
	if _, ok := cfg.Services[a.Service]; !ok {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "service %q is not defined under services in %s", a.Service, cfg.Path)
	}
	tok, info, err := env.id.tokens.IssueInfo(a.Service, a.TTL)
	if err != nil {
		return nil, err
	}
	if err := env.id.tokLog.Issued(info); err != nil {
		return nil, err
	}
	env.audit(audit.Record{Type: auditTypeServiceToken, Principal: a.Service, PrincipalKind: string(switchboard.PrincipalService),
		Detail: map[string]string{"action": "issue", "jti": info.JTI, "expires": info.ExpiresAt.UTC().Format(time.RFC3339)}})
	return tokenResult{Token: tok, Expires: info.ExpiresAt, JTI: info.JTI}, nil
}

// serviceRevoke revokes one service token. Online it changes the running
// gateway's token log, so the token's next request is refused; offline it
// writes the store, and the next start loads it.
func (env *opsEnv) serviceRevoke(ctx context.Context, raw json.RawMessage) (any, error) {
	a, err := decode[revokeArgs](raw)
	if err != nil {
		return nil, err
	}
	jti := strings.TrimSpace(a.Token)
	var info *auth.TokenInfo
	if strings.Count(jti, ".") == 2 { // a whole token: it must be one this gateway signed
		ti, err := env.id.tokens.Inspect(jti)
		if err != nil {
			return nil, err
		}
		info, jti = &ti, ti.JTI
	}
	rec, err := env.id.tokLog.Revoke(jti, info)
	if err != nil {
		return nil, err
	}
	env.audit(audit.Record{Type: auditTypeServiceToken, Principal: rec.Service, PrincipalKind: string(switchboard.PrincipalService),
		Detail: map[string]string{"action": "revoke", "jti": rec.JTI, "expires": rec.ExpiresAt.UTC().Format(time.RFC3339)}})
	return rec, nil
}

func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users of /mcp and their API keys"}
	var roles []string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a user and print its API key (shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res keyResult
			if err := adminCall(cmd, "user.add", userArgs{Name: args[0], Roles: roles}, &res); err != nil {
				return err
			}
			printKey(cmd, res)
			return nil
		},
	}
	add.Flags().StringSliceVar(&roles, "role", nil, "role to grant (repeatable); built-in: admin")
	cmd.AddCommand(add)
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List users, roles and key prefixes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var list []auth.User
			if err := adminCall(cmd, "user.list", nil, &list); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLES\tKEY\tCREATED")
			for _, u := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\n", u.Name, strings.Join(u.Roles, ","), u.KeyPrefix, u.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a user; their key stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := adminCall(cmd, "user.rm", userArgs{Name: args[0]}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s removed\n", args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate-key NAME",
		Short: "Replace a user's API key and print the new one (the old stops working)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res keyResult
			if err := adminCall(cmd, "user.rotate", userArgs{Name: args[0]}, &res); err != nil {
				return err
			}
			printKey(cmd, res)
			return nil
		},
	})
	return cmd
}

func printKey(cmd *cobra.Command, res keyResult) {
	out := cmd.OutOrStdout()
	url := res.URL
	if url == "" {
		url = "http://HOST:PORT/mcp"
	}
	fmt.Fprintf(out, "API key for %s (shown only this once):\n\n  %s\n\n", res.Name, res.Key)
	fmt.Fprintf(out, "Connect Claude Code:\n  claude mcp add --transport http switchboard %s --header \"Authorization: Bearer %s\"\n", url, res.Key)
}

// mcpURL is the MCP URL of the gateway cfg describes: auth.resource_url
// when set, else its listen address (a wildcard address as 127.0.0.1; a
// port 0, chosen at startup, cannot be known: "" then).
func mcpURL(cfg *providers.Config) string {
	if cfg.Auth.ResourceURL != "" {
		return cfg.Auth.ResourceURL
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil || port == "0" {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/mcp"
}

func newServiceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Service principals for /mcp/internal"}
	var ttl time.Duration
	tok := &cobra.Command{
		Use:   "token NAME",
		Short: "Issue a signed, expiring token for a service defined in gateway.yaml",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res tokenResult
			if err := adminCall(cmd, "service.token", tokenArgs{Service: args[0], TTL: ttl}, &res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "id %s, expires %s; use it as: Authorization: Bearer <token> on /mcp/internal\n", res.JTI, res.Expires.Local().Format(time.RFC3339))
			return nil
		},
	}
	tok.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "token lifetime")
	cmd.AddCommand(tok)
	cmd.AddCommand(&cobra.Command{
		Use:   "revoke TOKEN|ID",
		Short: "Revoke one service token (the token itself, or its id from `service list`); refused from its next request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rec auth.TokenRecord
			if err := adminCall(cmd, "service.revoke", revokeArgs{Token: args[0]}, &rec); err != nil {
				return err
			}
			svc := rec.Service
			if svc == "" {
				svc = "unknown service (no record of this id: kept revoked for the longest token lifetime)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked service token %s of %s (it would have expired %s)\n", rec.JTI, svc, rec.ExpiresAt.Local().Format(time.RFC3339))
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the service tokens that have not expired: id, service, issued, expires, revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var list []auth.TokenRecord
			if err := adminCall(cmd, "service.list", nil, &list); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSERVICE\tISSUED\tEXPIRES\tSTATE")
			for _, r := range list {
				issued, state := "-", "active"
				if !r.IssuedAt.IsZero() {
					issued = r.IssuedAt.Local().Format(time.DateTime)
				}
				if r.Revoked() {
					state = "revoked " + r.RevokedAt.Local().Format(time.DateTime)
				}
				svc := r.Service
				if svc == "" {
					svc = "?"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.JTI, svc, issued, r.ExpiresAt.Local().Format(time.DateTime), state)
			}
			return tw.Flush()
		},
	})
	return cmd
}
