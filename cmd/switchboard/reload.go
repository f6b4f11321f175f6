package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/gate"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/supervisor"
)

// ReloadResult is the outcome of one reload (providers.Reloader).
type ReloadResult = providers.ReloadResult

// executor carries out a reload's plan (providers.Executor): child
// processes with the supervisor, then url providers' connections with the
// remote manager.
type executor struct {
	sup *supervisor.Supervisor
	m   *Main
}

// Execute implements providers.Executor.
func (e executor) Execute(ctx context.Context, p *providers.Plan, background bool, commit func([]string)) ([]string, []providers.ProviderFailure) {
	ch := supervisor.Changes{StopUsers: p.StopUsers, Providers: map[string]supervisor.Provider{}, Background: background}
	for _, in := range p.Start {
		if !in.Provider.Remote() {
			ch.Start = append(ch.Start, specOf(in.Provider, in.Env, ""))
		}
	}
	for _, in := range p.Replace {
		if !in.Provider.Remote() {
			ch.Replace = append(ch.Replace, specOf(in.Provider, in.Env, ""))
		}
	}
	for _, in := range p.Stop {
		if !in.Provider.Remote() {
			ch.Stop = append(ch.Stop, in.Key())
		}
	}
	for name, in := range p.Next().Users {
		if in.Provider.Remote() {
			continue
		}
		c := in.Provider.Connection
		ch.Providers[name] = supervisor.Provider{UserScoped: true, MaxUsers: c.MaxUsers,
			IdleTimeout: c.IdleTimeout.D(), InitTimeout: in.Provider.Limits.InitTimeout.D()}
	}
	res := e.sup.Apply(ctx, ch, func(failed []supervisor.Failure) {
		var names []string
		for _, f := range failed {
			names = append(names, f.Key.Provider)
		}
		commit(names)
	})
	if e.m != nil {
		e.m.applyRemote(ctx, p)
	}
	var replaced []string
	for _, k := range res.Replaced {
		replaced = append(replaced, k.Provider)
	}
	for _, in := range p.Replace {
		if in.Provider.Remote() {
			replaced = append(replaced, in.Provider.Name)
		}
	}
	var failed []providers.ProviderFailure
	for _, f := range res.Failed {
		failed = append(failed, providers.ProviderFailure{Provider: f.Key.String(), Error: f.Err})
	}
	return replaced, failed
}

// specOf is the supervisor spec of p's instance for user ("" for the shared
// one) with the resolved environment env.
func specOf(p *providers.Provider, env map[string]string, user string) supervisor.Spec {
	l := p.Limits
	return supervisor.Spec{
		Key:             switchboard.InstanceKey{Provider: p.Name, User: user},
		Command:         p.Command,
		Args:            p.Args,
		Env:             env,
		Dir:             p.Dir,
		InitTimeout:     l.InitTimeout.D(),
		Limits:          callLimits(l),
		MaxMessageBytes: l.MaxMessageMB << 20,
		MaxMemoryBytes:  int64(l.MaxMemoryMB) << 20,
		MaxCPU:          l.MaxCPU,
		// Only a user's own instance may ask its client for roots: a shared
		// child would apply one user's roots to every user.
		Roots:    user != "",
		Protocol: strings.TrimPrefix(p.Protocol, "auto"),
	}
}

// callLimits are a provider's limits on calls, for a child's spec and a
// remote server's alike.
func callLimits(l providers.Limits) gate.Limits {
	maxTimeouts := l.MaxConsecutiveTimeouts.Value // unset: 0, the default
	if l.MaxConsecutiveTimeouts.Set && maxTimeouts == 0 {
		maxTimeouts = -1 // 0 turns the restart off; in gate.Limits, 0 means the default
	}
	return gate.Limits{
		CallTimeout:            l.CallTimeout.D(),
		MaxConcurrent:          l.MaxConcurrent,
		MaxQueue:               l.MaxQueue,
		MaxConsecutiveTimeouts: maxTimeouts,
	}
}

// userSpec gives the supervisor the spec of a user's own instance of a
// scope: user provider: the config's, with the user's connection secrets.
func (m *Main) userSpec(env *providers.Resolver) func(ctx context.Context, key switchboard.InstanceKey) (supervisor.Spec, error) {
	return func(ctx context.Context, key switchboard.InstanceKey) (supervisor.Spec, error) {
		in, ok := m.rel.State().Users[key.Provider]
		if !ok {
			return supervisor.Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", key.Provider)
		}
		if in.Provider.Remote() {
			return supervisor.Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is remote", key.Provider)
		}
		if !m.vault.Connected(key.User, key.Provider) {
			if in.Provider.OAuth != nil {
				return supervisor.Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "connect %s first: switchboard connect %s --user %s --oauth, or POST /api/connections/%s/oauth", key.Provider, key.Provider, key.User, key.Provider)
			}
			return supervisor.Spec{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "connect %s first: switchboard connect %s --user %s, or POST /api/connections/%s", key.Provider, key.Provider, key.User, key.Provider)
		}
		vals, err := env.Env(ctx, in.Provider, key.User)
		if err != nil {
			return supervisor.Spec{}, err
		}
		if err := m.oauthEnv(ctx, in.Provider, key.User, vals); err != nil {
			return supervisor.Spec{}, err
		}
		return specOf(in.Provider, vals, key.User), nil
	}
}

func newReloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Reload gateway.yaml and the skills in the running gateway and print the outcome",
		Long: `Reload gateway.yaml (and the operator's skills) in the running gateway and
print what changed. Exit status 1 when the config is rejected (the previous
one keeps serving) or when a provider failed to start (the rest applied; a
changed provider that failed keeps its previous process).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			if !c.Online() {
				return errOnlineOnly
			}
			var res ReloadResult
			if err := c.call(cmd.Context(), "reload", nil, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.Unchanged {
				fmt.Fprintln(out, "reload: config and skills unchanged")
				return nil
			}
			if !res.OK && len(res.Failed) == 0 {
				fmt.Fprintf(out, "reload failed; the previous config keeps serving:\n%s\n", res.Error)
				return &exitError{code: 1}
			}
			fmt.Fprintf(out, "reloaded %s\n", short(res.NewHash))
			for _, part := range []struct {
				label string
				names []string
			}{{"added", res.Added}, {"removed", res.Removed}, {"restarted", res.Restarted}, {"policy only", res.PolicyOnly}, {"needs a gateway restart", res.NeedsRestart}} {
				if len(part.names) > 0 {
					fmt.Fprintf(out, "  %s: %s\n", part.label, strings.Join(part.names, ", "))
				}
			}
			if res.Skills {
				fmt.Fprintln(out, "  skills: reloaded from skills.dir")
			}
			if len(res.Failed) > 0 {
				fmt.Fprintln(out, "FAILED (a changed provider keeps its previous process; see switchboard status or /status):")
				for _, f := range res.Failed {
					fmt.Fprintf(out, "  %s: %s\n", f.Provider, f.Error)
				}
				return &exitError{code: 1}
			}
			return nil
		},
	}
}
