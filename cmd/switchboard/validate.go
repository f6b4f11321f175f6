package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/skills"
)

func newValidateCmd() *cobra.Command {
	var live bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check gateway.yaml and the providers' skills; print every problem as file:line: message",
		Long: `Check gateway.yaml without starting anything: strict keys, references between
sections (roles, services, default_role name declared providers), tool-name
rules, and that every enabled provider has a valid usage skill under 1,000
words. With --live, also start the providers (or ask the running gateway) and
report skills that mention tools a provider no longer has, and items a
provider exposes that clash with the gateway's reserved names (its skills) or
with another provider's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := configPath(cmd)
			cfg, err := providers.LoadFile(path)
			if err != nil {
				for _, p := range providers.Problems(err) {
					fmt.Fprintln(cmd.ErrOrStderr(), p.String())
				}
				return &exitError{code: 1}
			}
			problems := skillProblems(cfg)
			if live {
				stale, err := liveStale(cmd, cfg)
				if err != nil {
					return err
				}
				problems = append(problems, stale...)
			}
			for _, p := range problems {
				fmt.Fprintln(cmd.ErrOrStderr(), p)
			}
			if len(problems) > 0 {
				return &exitError{code: 1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d providers)\n", path, len(cfg.Providers))
			return nil
		},
	}
	cmd.Flags().BoolVar(&live, "live", false, "start the providers and report skills naming tools they no longer have")
	return cmd
}

// skillProblems checks the skills of cfg's providers.
func skillProblems(cfg *providers.Config) []string {
	set, errs := skills.Load(skills.Builtin(), cfg.Skills.Dir)
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	enabled := map[string]bool{}
	for name, p := range cfg.Providers {
		enabled[name] = p.IsEnabled()
	}
	required := cfg.Skills.Required == nil || *cfg.Skills.Required
	for _, p := range skills.Validate(set, enabled, required) {
		out = append(out, p.String())
	}
	return out
}

func init() {
	registerOp("skills.stale", func(ctx context.Context, env *adminEnv, _ json.RawMessage) (any, error) {
		if env.main == nil {
			return nil, errOnlineOnly
		}
		return env.main.staleSkills(), nil
	})
}

// staleSkills compares every served skill with its provider's live tools and
// prompts.
func (m *Main) staleSkills() []string {
	m.mu.Lock()
	set := m.skills
	m.mu.Unlock()
	var out []string
	for _, p := range m.config().SortedProviders() {
		sk := set.Get(p.Name)
		if sk == nil || !p.IsEnabled() {
			continue
		}
		names := m.mux.ProviderTools(p.Name)
		if len(names) == 0 {
			out = append(out, fmt.Sprintf("%s: provider %s exposes no tools right now (is it running? see /status)", sk.Path, p.Name))
			continue
		}
		names = append(names, m.mux.ProviderPrompts(p.Name)...)
		if stale := skills.StaleTools(sk, p.Name, names); len(stale) > 0 {
			out = append(out, fmt.Sprintf("%s: mentions tools %s has no longer: %s", sk.Path, p.Name, strings.Join(stale, ", ")))
		}
	}
	// Items the providers expose that clash with the gateway's own names or
	// each other's: renamed or skipped, and worth fixing.
	for _, p := range m.mux.Problems() {
		if strings.Contains(p, "gateway's") || strings.Contains(p, "collides") || strings.Contains(p, "also served") {
			out = append(out, m.config().Path+": "+p)
		}
	}
	sort.Strings(out)
	return out
}

// liveStale asks the running gateway, or starts the providers in-process.
func liveStale(cmd *cobra.Command, cfg *providers.Config) ([]string, error) {
	c, err := newAdminClient(cmd)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []string
	if c.Online() {
		err := c.call(cmd.Context(), "skills.stale", nil, &out)
		return out, err
	}
	m := NewMain(cfg.Path)
	m.Stderr = io.Discard
	m.ListenOverride = "127.0.0.1:0"
	if err := m.Open(cmd.Context()); err != nil {
		return nil, err
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
	defer cancel()
	for !m.settled() {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("providers did not start within 60s: see switchboard serve's log")
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, st := range m.health().Providers {
		if st.State == switchboard.StateFailed {
			out = append(out, fmt.Sprintf("%s: provider %s failed to start: %s", cfg.Path, st.Provider, st.LastError))
		}
	}
	return append(out, m.staleSkills()...), nil
}

// settled reports whether every shared provider is running with its catalog
// in the mux, or failed.
func (m *Main) settled() bool {
	h := m.health()
	if !h.Ready {
		return false
	}
	for _, p := range h.Providers {
		if p.User == "" && p.State == switchboard.StateRunning && p.Tools == 0 && len(m.mux.ProviderPrompts(p.Provider)) == 0 {
			return false
		}
	}
	return true
}
