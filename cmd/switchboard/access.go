package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/api"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/vault"
)

// access changes users' connections and preferences: for the user
// themselves (the REST API) or for the operator (the CLI, through the admin
// socket or offline). Whether the user may reach the provider is the
// policy's to say, whether the secrets are the right ones the provider's.
type access struct {
	vault *vault.Vault
	id    *identity
	live  *live
	audit func(audit.Record)
	// changed applies a stored change to the running gateway: nil offline.
	changed func(ctx context.Context, user, provider string, connection bool)
	// link returns a one-use OAuth connect link, and disconnect removes an
	// OAuth connection (revoking its tokens): nil offline.
	link           func(user, provider string) (string, error)
	disconnectAuth func(ctx context.Context, user, provider string) error
}

var _ api.Service = (*access)(nil)

// Connections implements api.Service.
func (a *access) Connections(ctx context.Context, who *switchboard.Principal) (any, error) {
	list, err := a.vault.Connections(who.ID)
	if err != nil {
		return nil, err
	}
	pol := a.live.policy()
	visible := []vault.Connection{}
	for _, c := range list {
		if pol.SelfService(who, c.Provider, true, false) == nil {
			visible = append(visible, c)
		}
	}
	return visible, nil
}

// Reachable implements api.Service.
func (a *access) Reachable(ctx context.Context, who *switchboard.Principal, provider string, connection bool) error {
	return a.live.policy().SelfService(who, provider, connection, false)
}

// Connect implements api.Service.
func (a *access) Connect(ctx context.Context, who *switchboard.Principal, provider string, secrets map[string][]byte) error {
	return a.connect(ctx, who, provider, secrets, false)
}

// connect validates and stores who's connection secrets for provider; an
// operator (for who) is told why a provider is out of reach.
func (a *access) connect(ctx context.Context, who *switchboard.Principal, provider string, values map[string][]byte, operator bool) error {
	if err := a.live.policy().SelfService(who, provider, true, operator); err != nil {
		return err
	}
	p := a.live.cur.Load().cfg.Providers[provider]
	if p == nil {
		return auth.ErrNoProvider(provider)
	}
	if p.OAuth != nil {
		return switchboard.Errorf(switchboard.EINVALID, "provider %s connects with OAuth, not secrets: switchboard connect %s --user %s --oauth prints a link, or POST /api/connections/%s/oauth", provider, provider, who.ID, provider)
	}
	if err := p.CheckConnection(values); err != nil {
		return err
	}
	if err := a.vault.SetConnection(who.ID, provider, values); err != nil {
		return err
	}
	a.done(ctx, audit.TypeConnection, who.ID, provider, "connect")
	return nil
}

// Disconnect implements api.Service. An OAuth connection's tokens are
// revoked at the authorization server first, when the gateway runs.
func (a *access) Disconnect(ctx context.Context, who *switchboard.Principal, provider string) error {
	if c, err := a.vault.Connection(who.ID, provider); err == nil && c.Kind == vault.ConnOAuth && a.disconnectAuth != nil {
		// The oauth manager deletes it and announces it (audit, instance, views).
		return a.disconnectAuth(ctx, who.ID, provider)
	}
	if err := a.vault.DeleteConnection(who.ID, provider); err != nil {
		return err
	}
	a.done(ctx, audit.TypeConnection, who.ID, provider, "disconnect")
	return nil
}

// ConnectLink implements api.Service: a one-use link by which who connects
// provider with OAuth in a browser.
func (a *access) ConnectLink(ctx context.Context, who *switchboard.Principal, provider string) (string, error) {
	return a.connectLink(ctx, who, provider, false)
}

func (a *access) connectLink(ctx context.Context, who *switchboard.Principal, provider string, operator bool) (string, error) {
	if err := a.live.policy().SelfService(who, provider, true, operator); err != nil {
		return "", err
	}
	if a.link == nil {
		return "", errOnlineOnly
	}
	return a.link(who.ID, provider)
}

// Prefs implements api.Service: what who hid, of what they can see.
func (a *access) Prefs(ctx context.Context, who *switchboard.Principal) (any, error) {
	prefs := a.id.prefs.Get(who.ID)
	pol := a.live.policy()
	var hidden []string
	for _, prov := range prefs.Hidden {
		if pol.SelfService(who, prov, false, false) == nil {
			hidden = append(hidden, prov)
		}
	}
	prefs.Hidden = hidden
	return prefs, nil
}

// SetHidden implements api.Service.
func (a *access) SetHidden(ctx context.Context, who *switchboard.Principal, provider string, hide bool) error {
	return a.setHidden(ctx, who, provider, hide, false)
}

func (a *access) setHidden(ctx context.Context, who *switchboard.Principal, provider string, hide, operator bool) error {
	if err := a.live.policy().SelfService(who, provider, false, operator); err != nil {
		return err
	}
	changed, err := a.id.prefs.SetHidden(who.ID, provider, hide)
	if err != nil || !changed {
		return err
	}
	action := "show"
	if hide {
		action = "hide"
	}
	a.done(ctx, audit.TypePreference, who.ID, provider, action)
	return nil
}

// done audits a change and applies it to the running gateway.
func (a *access) done(ctx context.Context, typ, user, provider, action string) {
	a.audit(audit.Record{Type: typ, PrincipalKind: string(switchboard.PrincipalUser), Principal: user, Provider: provider, Detail: map[string]string{"action": action}})
	if a.changed != nil {
		a.changed(ctx, user, provider, typ == audit.TypeConnection)
	}
}

type connArgs struct {
	User     string            `json:"user"`
	Provider string            `json:"provider"`
	Values   map[string][]byte `json:"values,omitempty"`
}

type prefArgs struct {
	User     string `json:"user"`
	Provider string `json:"provider"`
	Hide     bool   `json:"hide"`
}

type toolsArgs struct {
	User    string `json:"user,omitempty"`
	Service string `json:"service,omitempty"`
}

type toolsView struct {
	Principal string            `json:"principal"`
	Tools     []string          `json:"tools"`
	Hidden    map[string]string `json:"hidden"` // provider → axis
}

func newConnectCmds() []*cobra.Command {
	var user string
	var withOAuth bool
	connect := &cobra.Command{
		Use:   "connect PROVIDER --user NAME [--oauth]",
		Short: "Store a user's credentials for a scope: user provider (KEY=VALUE lines on stdin), or print an OAuth connect link (--oauth)",
		Long: `Store a user's credentials for a scope: user provider, read as KEY=VALUE
lines on stdin. For a provider with an oauth connection, --oauth prints a
link instead: the user opens it in a browser (within ten minutes, once),
signs in at the service and approves; the tokens go to the vault under the
user. Needs a running gateway.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if withOAuth {
				var res map[string]string
				if err := adminCall(cmd, "connect.oauth", connArgs{User: user, Provider: args[0]}, &res); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s connects %s by opening, within ten minutes:\n%s\n", user, args[0], res["url"])
				return nil
			}
			values, err := readKeyValues(cmd.InOrStdin())
			if err != nil {
				return err
			}
			if err := adminCall(cmd, "connect", connArgs{User: user, Provider: args[0], Values: values}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s connected %s (%d secrets stored encrypted)\n", user, args[0], len(values))
			return nil
		},
	}
	disconnect := &cobra.Command{
		Use:   "disconnect PROVIDER --user NAME",
		Short: "Remove a user's credentials for a provider and stop their instance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := adminCall(cmd, "disconnect", connArgs{User: user, Provider: args[0]}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s disconnected %s\n", user, args[0])
			return nil
		},
	}
	connect.Flags().BoolVar(&withOAuth, "oauth", false, "print a one-use link by which the user connects in a browser (oauth providers)")
	for _, c := range []*cobra.Command{connect, disconnect} {
		c.Flags().StringVar(&user, "user", "", "the user")
		_ = c.MarkFlagRequired("user")
	}
	return []*cobra.Command{connect, disconnect}
}

// readKeyValues reads KEY=VALUE lines; blank lines and # comments are skipped.
func readKeyValues(r io.Reader) (map[string][]byte, error) {
	values := map[string][]byte{}
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("stdin line %d: want KEY=VALUE", n)
		}
		values[strings.TrimSpace(k)] = []byte(v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(values) == 0 {
		return nil, fmt.Errorf("no KEY=VALUE lines on stdin")
	}
	return values, nil
}

func newPrefsCmd() *cobra.Command {
	var user string
	cmd := &cobra.Command{Use: "prefs", Short: "Per-user preferences: hide or show a provider in a user's own sessions"}
	for _, hide := range []bool{true, false} {
		verb := "show"
		if hide {
			verb = "hide"
		}
		c := &cobra.Command{
			Use:   verb + " PROVIDER --user NAME",
			Short: strings.ToUpper(verb[:1]) + verb[1:] + " a provider in the user's sessions",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := adminCall(cmd, "prefs", prefArgs{User: user, Provider: args[0], Hide: hide}, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s %s\n", user, verb, args[0])
				return nil
			},
		}
		c.Flags().StringVar(&user, "user", "", "the user")
		_ = c.MarkFlagRequired("user")
		cmd.AddCommand(c)
	}
	return cmd
}

func newToolsCmd() *cobra.Command {
	var a toolsArgs
	cmd := &cobra.Command{
		Use:   "tools (--user NAME | --internal SERVICE)",
		Short: "Print what a caller sees, and which axis hides each hidden provider",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var v toolsView
			if err := adminCall(cmd, "tools", a, &v); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s sees %d tools:\n", v.Principal, len(v.Tools))
			for _, t := range v.Tools {
				fmt.Fprintf(out, "  %s\n", t)
			}
			if len(v.Hidden) > 0 {
				fmt.Fprintln(out, "hidden providers:")
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				names := make([]string, 0, len(v.Hidden))
				for n := range v.Hidden {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					fmt.Fprintf(tw, "  %s\t%s\n", n, v.Hidden[n])
				}
				_ = tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&a.User, "user", "", "a user")
	cmd.Flags().StringVar(&a.Service, "internal", "", "a service principal on /mcp/internal")
	return cmd
}
