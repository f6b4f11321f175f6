package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/providers"
)

func newValidateCmd() *cobra.Command {
	var live bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check gateway.yaml and the providers' skills; print every problem as file:line: message",
		Long: `Check gateway.yaml without starting anything: strict keys, references between
sections (roles, services, default_role name declared providers), tool-name
rules, and that every enabled provider has a valid usage skill under 1,000
words (its own, or the one its skill: names). With --live, also ask the
running gateway for this data dir (it says which copy of each skill it
serves), or, when none runs, start the providers in a throwaway data dir
(the vault is needed only when the config references ${secret:}), and report
skills that mention tools a provider does not have, and items a provider
exposes that clash with the gateway's reserved names or another provider's.`,
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
				rep, err := liveStale(cmd, cfg)
				if err != nil {
					return err
				}
				problems = append(problems, rep.Problems...)
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
	cmd.Flags().BoolVar(&live, "live", false, "run the providers (or ask the running gateway) and report skills naming tools they do not have")
	return cmd
}

// liveStale asks the running gateway, or starts the providers in-process,
// and says on stdout which copy of each skill it checked.
func liveStale(cmd *cobra.Command, cfg *providers.Config) (staleReport, error) {
	out := cmd.OutOrStdout()
	c, err := newAdminClient(cmd)
	if err != nil {
		return staleReport{}, err
	}
	defer c.Close()
	var rep staleReport
	if c.Online() {
		if err := c.call(cmd.Context(), "skills.stale", nil, &rep); err != nil {
			return rep, err
		}
		fmt.Fprintf(out, "checked the skills the running gateway serves (read %s):\n", rep.LoadedAt.Local().Format(time.DateTime))
		printCopies(out, rep)
		return rep, nil
	}
	rep, err = liveRun(cmd.Context(), cfg)
	if err == nil {
		fmt.Fprintln(out, "no gateway runs for this data dir: started the providers here and checked these skills:")
		printCopies(out, rep)
	}
	return rep, err
}

// printCopies lists the file each provider's skill was read from, and says
// when the file changed after the gateway read it.
func printCopies(w io.Writer, rep staleReport) {
	names := make([]string, 0, len(rep.Skills))
	for n := range rep.Skills {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		note := ""
		if fi, err := os.Stat(filepath.Clean(rep.Skills[n])); err == nil && fi.ModTime().After(rep.LoadedAt) {
			note = " (the file changed since: the gateway reloads skills within seconds, or run switchboard reload)"
		}
		fmt.Fprintf(w, "  %s: %s%s\n", n, rep.Skills[n], note)
	}
}

// liveRun starts cfg's providers in a gateway of its own, on a free port,
// and reports on their skills. A config that references no ${secret:} runs
// in a throwaway data dir: no vault key is needed, and nothing is written
// where the real gateway keeps its state.
func liveRun(ctx context.Context, cfg *providers.Config) (staleReport, error) {
	m := NewMain(cfg.Path)
	m.Stderr = io.Discard
	m.DevKey = true
	secrets := false
	for _, p := range cfg.Providers {
		secrets = secrets || len(p.SecretRefs()) > 0
	}
	tmp := ""
	if !secrets {
		var err error
		if tmp, err = os.MkdirTemp("", "switchboard-validate-"); err != nil {
			return staleReport{}, err
		}
		defer os.RemoveAll(tmp)
	}
	m.Adjust = func(c *providers.Config) {
		c.Listen = "127.0.0.1:0"
		if tmp != "" {
			c.DataDir, c.Audit.Disabled, c.Vault.KeyFile = tmp, true, ""
		}
	}
	if err := m.Open(ctx); err != nil {
		return staleReport{}, err
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for !m.settled() {
		select {
		case <-ctx.Done():
			return staleReport{}, fmt.Errorf("providers did not start within 60s: see switchboard serve's log")
		case <-time.After(50 * time.Millisecond):
		}
	}
	rep := m.live.stale(m.mux)
	for _, st := range m.health().Providers {
		if st.State == switchboard.StateFailed {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: provider %s failed to start: %s", cfg.Path, st.Provider, st.LastError))
		}
	}
	sort.Strings(rep.Problems)
	return rep, nil
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
