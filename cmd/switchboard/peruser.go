package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/vault"
)

// userInstances runs scope: user providers: one process per (provider,
// connected user), started on the user's first list or call, with that user's
// connection secrets, reaped when idle, capped per provider.
type userInstances struct {
	m        *Main
	mu       sync.Mutex
	lastUsed map[switchboard.InstanceKey]time.Time
	starting map[switchboard.InstanceKey]bool
}

func newUserInstances(m *Main) *userInstances {
	return &userInstances{m: m, lastUsed: map[switchboard.InstanceKey]time.Time{}, starting: map[switchboard.InstanceKey]bool{}}
}

// instances adapts the supervisor to the mux.
type instances struct{ m *Main }

func (i instances) Upstream(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error) {
	if key.User != "" {
		return i.m.users.upstream(ctx, key)
	}
	if up, ok := i.m.sup.Running(key); ok {
		return up, nil
	}
	return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", key.Provider)
}

func (i instances) UserScoped(provider string) bool {
	p := i.m.config().Providers[provider]
	return p != nil && p.UserScoped()
}

// Ensure starts p's own instances of the user-scoped providers p has
// connected and may see, and waits for them (each bounded by its provider's
// init timeout), so that p's first list already holds their tools.
func (i instances) Ensure(ctx context.Context, p *switchboard.Principal) {
	if p == nil || p.Kind != switchboard.PrincipalUser {
		return
	}
	var wg sync.WaitGroup
	cfg := i.m.config()
	pol := policyFor(cfg, userState{prefs: i.m.id.prefs, conns: i.m.id.conns})
	for _, prov := range cfg.SortedProviders() {
		// Only what the user sees right now: a stored connection to a
		// provider their roles no longer grant starts nothing.
		if !prov.IsEnabled() || !prov.UserScoped() || pol.Why(p, prov.Name) != mux.AxisNone {
			continue
		}
		key := switchboard.InstanceKey{Provider: prov.Name, User: p.ID}
		if _, ok := i.m.sup.Running(key); ok {
			i.m.users.touch(key)
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, prov.Limits.InitTimeout.D()+5*time.Second)
			defer cancel()
			if _, err := i.m.users.upstream(ctx, key); err != nil {
				i.m.Log.Debug().Str("provider", key.String()).Str("reason", switchboard.ErrorMessage(err)).Msg("per-user instance not started")
			}
		})
	}
	wg.Wait()
}

// upstream returns the user's running instance, starting it if the user is
// connected and the provider is under its cap.
func (u *userInstances) upstream(ctx context.Context, key switchboard.InstanceKey) (switchboard.Upstream, error) {
	u.touch(key)
	if up, ok := u.m.sup.Running(key); ok {
		return up, nil
	}
	p := u.m.config().Providers[key.Provider]
	if p == nil || !p.IsEnabled() || !p.UserScoped() {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", key.Provider)
	}
	if !u.m.id.conns.has(key.User, key.Provider) {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "connect %s first: switchboard connect %s --user %s, or POST /api/connections/%s", key.Provider, key.Provider, key.User, key.Provider)
	}
	if err := u.ensureStarted(ctx, p, key); err != nil {
		return nil, err
	}
	if err := u.m.sup.WaitReady(ctx, key); err != nil {
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "provider %s for %s did not start", key.Provider, key.User)
	}
	if up, ok := u.m.sup.Running(key); ok {
		return up, nil
	}
	return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s for %s is not running", key.Provider, key.User)
}

func (u *userInstances) touch(key switchboard.InstanceKey) {
	u.mu.Lock()
	u.lastUsed[key] = time.Now()
	u.mu.Unlock()
}

// ensureStarted starts key once, respecting the provider's instance cap.
func (u *userInstances) ensureStarted(ctx context.Context, p *providers.Provider, key switchboard.InstanceKey) error {
	u.mu.Lock()
	if u.starting[key] || u.m.sup.Has(key) {
		u.mu.Unlock()
		return nil
	}
	n := 0
	for _, st := range u.m.sup.Status() {
		if st.Provider == key.Provider && st.User != "" {
			n++
		}
	}
	if n >= p.Connection.MaxUsers {
		u.mu.Unlock()
		return switchboard.Errorf(switchboard.EOVERLOADED, "provider %s already runs %d per-user instances (connection.max_instances)", key.Provider, n)
	}
	u.starting[key] = true
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.starting, key)
		u.mu.Unlock()
	}()
	spec, err := u.m.specFor(ctx, p, key.User)
	if err != nil {
		return err
	}
	return u.m.sup.Start(spec)
}

// stop stops a user's instance (disconnect, user removed, provider changed).
func (u *userInstances) stop(ctx context.Context, key switchboard.InstanceKey) {
	_ = u.m.sup.Stop(ctx, key)
	u.mu.Lock()
	delete(u.lastUsed, key)
	u.mu.Unlock()
}

// reap stops per-user instances idle longer than their provider's idle timeout.
func (u *userInstances) reap(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cfg := u.m.config()
		for _, st := range u.m.sup.Status() {
			if st.User == "" || st.InFlight > 0 {
				continue
			}
			key := switchboard.InstanceKey{Provider: st.Provider, User: st.User}
			p := cfg.Providers[st.Provider]
			u.mu.Lock()
			last, ok := u.lastUsed[key]
			u.mu.Unlock()
			switch {
			case p == nil || !p.UserScoped() || !p.IsEnabled():
				u.stop(ctx, key)
			case !ok || time.Since(last) > p.Connection.IdleTimeout.D():
				u.m.Log.Info().Str("provider", key.String()).Msg("stopping idle per-user instance")
				u.stop(ctx, key)
			}
		}
	}
}

// userSecretsEnv adds a user's connection secrets to env.
func (m *Main) userSecretsEnv(ctx context.Context, p *providers.Provider, user string, env map[string]string) error {
	for _, name := range p.Connection.Secrets {
		sec, err := m.vault.UserSecret(ctx, user, p.Name, name)
		switch {
		case errors.Is(err, vault.ErrNotFound):
			return switchboard.Errorf(switchboard.EUNAVAILABLE, "missing connection secret %s for %s", name, user)
		case err != nil:
			return switchboard.WrapError(switchboard.EUNAVAILABLE, err, "connection secret %s of %s unreadable", name, user)
		}
		env[name] = sec.Reveal()
	}
	return nil
}

// reconcileUsers stops per-user instances whose provider's process spec changed
// or went away; they start again on next use with the new spec.
func (m *Main) reconcileUsers(ctx context.Context, old, cur *providers.Config) {
	for _, st := range m.sup.Status() {
		if st.User == "" {
			continue
		}
		o, c := old.Providers[st.Provider], cur.Providers[st.Provider]
		if c == nil || !c.IsEnabled() || o == nil || !providers.SameProcess(o, c) {
			m.users.stop(ctx, switchboard.InstanceKey{Provider: st.Provider, User: st.User})
		}
	}
}

// --- connections and preferences: admin ops, CLI and the user HTTP API ---

type connArgs struct {
	User     string            `json:"user"`
	Provider string            `json:"provider"`
	Values   map[string][]byte `json:"values,omitempty"`
}

func init() {
	registerOp("connect", func(ctx context.Context, env *adminEnv, raw json.RawMessage) (any, error) {
		var a connArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		who, err := env.userPrincipal(a.User)
		if err != nil {
			return nil, err
		}
		if err := env.reachable(who, a.Provider, true, true); err != nil {
			return nil, err
		}
		return nil, env.connect(ctx, a.User, a.Provider, a.Values)
	})
	registerOp("disconnect", func(ctx context.Context, env *adminEnv, raw json.RawMessage) (any, error) {
		var a connArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		return nil, env.disconnect(ctx, a.User, a.Provider)
	})
	registerOp("connections", func(ctx context.Context, env *adminEnv, raw json.RawMessage) (any, error) {
		var a connArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		return env.vault.Connections(a.User)
	})
	registerOp("prefs", func(ctx context.Context, env *adminEnv, raw json.RawMessage) (any, error) {
		var a prefArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		who, err := env.userPrincipal(a.User)
		if err != nil {
			return nil, err
		}
		if err := env.reachable(who, a.Provider, false, true); err != nil {
			return nil, err
		}
		return nil, env.setHidden(a.User, a.Provider, a.Hide)
	})
	registerOp("tools", func(ctx context.Context, env *adminEnv, raw json.RawMessage) (any, error) {
		if env.main == nil {
			return nil, errOnlineOnly
		}
		var a toolsArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		return env.main.toolsFor(ctx, a)
	})
}

// Connections and preferences follow the visibility of tools: a user may
// connect, list, hide or show only a provider they could see once connected.
// To the user a provider they cannot see does not exist: the same status and
// text as a provider that does not, and nothing is stored or started. The
// operator (the admin ops behind `switchboard connect` and `prefs`) is told
// why instead.

// errNoProvider is the user-facing answer for a provider that does not exist
// or that the user cannot see.
func errNoProvider(name string) error {
	return switchboard.Errorf(switchboard.ENOTFOUND, "no provider %q", name)
}

// selfServiceAxis is the first axis that hides provider from who, leaving out
// the two axes connecting and preferences are about: not connected, and
// hidden by preference.
func selfServiceAxis(cfg *providers.Config, who *switchboard.Principal, provider string) mux.Axis {
	why := policyFor(cfg, nil).Why(who, provider)
	if why == mux.AxisConnection || why == mux.AxisPreference {
		return mux.AxisNone
	}
	return why
}

// reachable returns nil if who may connect (userScoped: the provider must be
// scope: user) or set preferences for provider. Otherwise a user gets
// errNoProvider, and the operator an explanation.
func (env *adminEnv) reachable(who *switchboard.Principal, provider string, userScoped, operator bool) error {
	p := env.cfg.Providers[provider]
	why := selfServiceAxis(env.cfg, who, provider)
	if p != nil && why == mux.AxisNone && (!userScoped || p.UserScoped()) {
		return nil
	}
	if !operator {
		return errNoProvider(provider)
	}
	switch {
	case p == nil:
		return switchboard.Errorf(switchboard.ENOTFOUND, "no provider %q in the config", provider)
	case !p.IsEnabled():
		return switchboard.Errorf(switchboard.EINVALID, "provider %q is disabled", provider)
	case userScoped && !p.UserScoped():
		return switchboard.Errorf(switchboard.EINVALID, "provider %q is shared (not scope: user): there is nothing to connect", provider)
	case why == mux.AxisInternalOnly:
		return switchboard.Errorf(switchboard.EFORBIDDEN, "user %q cannot use provider %q: it is internal_only (only services on /mcp/internal see it)", who.ID, provider)
	case why == mux.AxisRole:
		roles := "none, and default_role grants nothing here"
		if len(who.Roles) > 0 {
			roles = strings.Join(who.Roles, ", ")
		}
		return switchboard.Errorf(switchboard.EFORBIDDEN, "user %q cannot use provider %q: no role of theirs grants it (roles: %s); give them a role that lists %s first", who.ID, provider, roles, provider)
	default:
		return switchboard.Errorf(switchboard.EFORBIDDEN, "user %q cannot use provider %q (%s)", who.ID, provider, why)
	}
}

// userPrincipal is a local user as the principal their API key would give,
// for the operator's admin ops.
func (env *adminEnv) userPrincipal(name string) (*switchboard.Principal, error) {
	var users *auth.Users
	if env.main != nil {
		users = env.main.id.users
	} else {
		var err error
		if users, err = auth.NewUsers(env.store); err != nil {
			return nil, err
		}
	}
	u, err := users.Get(name)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "no local user %q (switchboard user add): a user who signs in with OIDC gets their roles from their token, so they connect and set preferences themselves (POST /api/connections/<provider>, /api/prefs/<provider>/hide)", name)
	}
	if err != nil {
		return nil, err
	}
	return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: u.Name, Roles: u.Roles, Endpoint: switchboard.EndpointPublic}, nil
}

// connect validates and stores a user's connection secrets. The caller has
// checked the user may connect provider (reachable).
func (env *adminEnv) connect(ctx context.Context, user, provider string, values map[string][]byte) error {
	p := env.cfg.Providers[provider]
	if p == nil || !p.UserScoped() {
		return errNoProvider(provider)
	}
	var missing, unknown []string
	for _, name := range p.Connection.Secrets {
		if len(values[name]) == 0 {
			missing = append(missing, name)
		}
	}
	for name := range values {
		if !slices.Contains(p.Connection.Secrets, name) {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	if len(missing) > 0 || len(unknown) > 0 {
		msg := fmt.Sprintf("provider %s needs exactly %s", provider, strings.Join(p.Connection.Secrets, ", "))
		if len(missing) > 0 {
			msg += "; missing " + strings.Join(missing, ", ")
		}
		if len(unknown) > 0 {
			msg += "; not expected " + strings.Join(unknown, ", ")
		}
		return switchboard.Errorf(switchboard.EINVALID, "%s", msg)
	}
	if err := env.vault.SetConnection(user, provider, values); err != nil {
		return err
	}
	env.changed(ctx, audit.TypeConnection, user, provider, "connect")
	if env.main != nil {
		// New credentials: the user's running instance restarts on next use.
		env.main.users.stop(ctx, switchboard.InstanceKey{Provider: provider, User: user})
	}
	return nil
}

func (env *adminEnv) disconnect(ctx context.Context, user, provider string) error {
	if err := env.vault.DeleteConnection(user, provider); err != nil {
		return err
	}
	env.changed(ctx, audit.TypeConnection, user, provider, "disconnect")
	if env.main != nil {
		env.main.users.stop(ctx, switchboard.InstanceKey{Provider: provider, User: user})
	}
	return nil
}

type prefArgs struct {
	User     string `json:"user"`
	Provider string `json:"provider"`
	Hide     bool   `json:"hide"`
}

// setHidden stores a preference. The caller has checked the user may see
// provider (reachable).
func (env *adminEnv) setHidden(user, provider string, hide bool) error {
	if env.cfg.Providers[provider] == nil {
		return errNoProvider(provider)
	}
	prefs := (*auth.Prefs)(nil)
	if env.main != nil {
		prefs = env.main.id.prefs
	} else {
		var err error
		if prefs, err = auth.NewPrefs(env.store); err != nil {
			return err
		}
	}
	changed, err := prefs.SetHidden(user, provider, hide)
	if err != nil || !changed {
		return err
	}
	action := "show"
	if hide {
		action = "hide"
	}
	env.changed(context.Background(), audit.TypePreference, user, provider, action)
	return nil
}

// changed refreshes caches, notifies sessions whose view changed, and audits.
func (env *adminEnv) changed(ctx context.Context, typ, user, provider, action string) {
	env.audit(audit.Record{Type: typ, PrincipalKind: string(switchboard.PrincipalUser), Principal: user, Provider: provider, Detail: map[string]string{"action": action}})
	m := env.main
	if m == nil {
		return
	}
	if typ == audit.TypeConnection {
		if err := m.id.conns.reload(m.vault); err != nil {
			m.Log.Error().Err(err).Msg("reloading connection state")
		}
	}
	m.mux.PolicyChanged()
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

// toolsFor shows what a caller sees and why each hidden provider is hidden.
func (m *Main) toolsFor(ctx context.Context, a toolsArgs) (toolsView, error) {
	var p *switchboard.Principal
	switch {
	case a.Service != "":
		p = &switchboard.Principal{Kind: switchboard.PrincipalService, ID: a.Service, Endpoint: switchboard.EndpointInternal}
	case a.User != "":
		u, err := m.id.users.Get(a.User)
		if err != nil {
			return toolsView{}, err
		}
		p = &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: u.Name, Roles: u.Roles, Endpoint: switchboard.EndpointPublic}
	default:
		return toolsView{}, switchboard.Errorf(switchboard.EINVALID, "name a --user or an --internal service")
	}
	pol := policyFor(m.config(), userState{prefs: m.id.prefs, conns: m.id.conns})
	v := toolsView{Principal: p.String(), Tools: m.mux.VisibleTools(ctx, p), Hidden: map[string]string{}}
	for _, prov := range m.config().SortedProviders() {
		if !prov.IsEnabled() {
			v.Hidden[prov.Name] = "disabled"
			continue
		}
		if why := pol.Why(p, prov.Name); why != mux.AxisNone {
			v.Hidden[prov.Name] = string(why)
			continue
		}
		if len(m.mux.ProviderTools(prov.Name)) == 0 && !prov.UserScoped() {
			v.Hidden[prov.Name] = "not running"
		}
	}
	return v, nil
}

func newConnectCmds() []*cobra.Command {
	var user string
	connect := &cobra.Command{
		Use:   "connect PROVIDER --user NAME",
		Short: "Store a user's credentials for a scope: user provider (KEY=VALUE lines on stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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

// apiRoutes is the user self-service API: users manage their own connections
// and preferences with their own token. Secrets never pass through MCP.
func (m *Main) apiRoutes(h *http.ServeMux) {
	user := func(fn func(w http.ResponseWriter, r *http.Request, env *adminEnv, p *switchboard.Principal)) http.Handler {
		return m.edge(switchboard.EndpointPublic, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := switchboard.PrincipalFromContext(r.Context())
			if p == nil || p.Kind != switchboard.PrincipalUser {
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden"})
				return
			}
			fn(w, r, &adminEnv{cfg: m.config(), store: m.store, vault: m.vault, main: m}, p)
		}))
	}
	reply := func(w http.ResponseWriter, err error, ok any) {
		if err != nil {
			code := http.StatusBadRequest
			switch switchboard.ErrorCode(err) {
			case switchboard.ENOTFOUND:
				code = http.StatusNotFound
			case switchboard.EINTERNAL:
				code = http.StatusInternalServerError
			}
			writeJSON(w, code, map[string]string{"error": switchboard.ErrorMessage(err)})
			return
		}
		writeJSON(w, http.StatusOK, ok)
	}
	h.Handle("GET /api/connections", user(func(w http.ResponseWriter, r *http.Request, env *adminEnv, p *switchboard.Principal) {
		list, err := m.vault.Connections(p.ID)
		visible := list[:0]
		for _, c := range list {
			if env.reachable(p, c.Provider, true, false) == nil {
				visible = append(visible, c)
			}
		}
		reply(w, err, map[string]any{"connections": visible})
	}))
	h.Handle("POST /api/connections/{provider}", user(func(w http.ResponseWriter, r *http.Request, env *adminEnv, p *switchboard.Principal) {
		provider := r.PathValue("provider")
		if err := env.reachable(p, provider, true, false); err != nil {
			reply(w, err, nil)
			return
		}
		var body struct {
			Secrets map[string]string `json:"secrets"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			reply(w, switchboard.Errorf(switchboard.EINVALID, "want a JSON body {\"secrets\": {\"NAME\": \"value\"}}"), nil)
			return
		}
		values := map[string][]byte{}
		for k, v := range body.Secrets {
			values[k] = []byte(v)
		}
		reply(w, env.connect(r.Context(), p.ID, provider, values), map[string]string{"status": "connected"})
	}))
	h.Handle("DELETE /api/connections/{provider}", user(func(w http.ResponseWriter, r *http.Request, env *adminEnv, p *switchboard.Principal) {
		reply(w, env.disconnect(r.Context(), p.ID, r.PathValue("provider")), map[string]string{"status": "disconnected"})
	}))
	h.Handle("GET /api/prefs", user(func(w http.ResponseWriter, r *http.Request, env *adminEnv, p *switchboard.Principal) {
		prefs := m.id.prefs.Get(p.ID)
		var hidden []string
		for _, prov := range prefs.Hidden {
			if env.reachable(p, prov, false, false) == nil {
				hidden = append(hidden, prov)
			}
		}
		prefs.Hidden = hidden
		reply(w, nil, prefs)
	}))
	for _, hide := range []bool{true, false} {
		verb := "show"
		if hide {
			verb = "hide"
		}
		h.Handle("POST /api/prefs/{provider}/"+verb, user(func(w http.ResponseWriter, r *http.Request, env *adminEnv, p *switchboard.Principal) {
			provider := r.PathValue("provider")
			err := env.reachable(p, provider, false, false)
			if err == nil {
				err = env.setHidden(p.ID, provider, hide)
			}
			reply(w, err, map[string]string{"status": verb})
		}))
	}
}
