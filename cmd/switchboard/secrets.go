package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/vault"
)

type secretArgs struct {
	Name  string `json:"name"`
	Value []byte `json:"value,omitempty"`
}

// secretResult says what a secret change did.
type secretResult struct {
	// Restarted names the providers whose env uses the secret.
	Restarted []string `json:"restarted,omitempty"`
	// Failed lists the providers that did not come back with the change.
	Failed []providers.ProviderFailure `json:"failed,omitempty"`
}

// secretChange sets (set) or removes a shared secret, then, when a gateway is
// running, replaces the providers whose environment changed with it, and
// only those.
func (env *opsEnv) secretChange(ctx context.Context, raw json.RawMessage, set bool) (any, error) {
	a, err := decode[secretArgs](raw)
	if err != nil {
		return nil, err
	}
	action := "rm"
	if set {
		action, err = "set", env.vault.Set(a.Name, a.Value)
	} else {
		err = env.vault.Delete(a.Name)
	}
	if err != nil {
		return nil, err
	}
	env.audit(audit.Record{Type: audit.TypeSecret, Detail: map[string]string{"action": action, "name": a.Name}})
	var res secretResult
	for _, p := range env.cfg().SortedProviders() {
		for _, ref := range p.SecretRefs() {
			if ref == a.Name {
				res.Restarted = append(res.Restarted, p.Name)
			}
		}
	}
	if env.run != nil && len(res.Restarted) > 0 {
		res.Failed = env.run.rel.SecretsChanged(ctx).Failed
	}
	return res, nil
}

func (env *opsEnv) vaultRotate(ctx context.Context, _ json.RawMessage) (any, error) {
	n, err := env.vault.Rotate()
	if err != nil {
		return nil, err
	}
	env.audit(audit.Record{Type: audit.TypeSecret, Detail: map[string]string{"action": "rotate", "entries": strconv.Itoa(n)}})
	return map[string]int{"reencrypted": n}, nil
}

func newSecretCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Manage secrets in the vault (values never on the command line)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "set NAME",
		Short: "Store a secret; the value is read from stdin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), vault.MaxValueSize+1))
			if err != nil {
				return fmt.Errorf("reading the value from stdin: %w", err)
			}
			value = []byte(strings.TrimRight(string(value), "\r\n"))
			if len(value) == 0 {
				return fmt.Errorf("no value on stdin: pipe it in, e.g. `printf %%s \"$TOKEN\" | switchboard secret set %s`", args[0])
			}
			var res secretResult
			if err := adminCall(cmd, "secret.set", secretArgs{Name: args[0], Value: value}, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s set\n", args[0])
			return printRestarted(cmd, res)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List secret names and update times (never values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var entries []vault.Entry
			if err := adminCall(cmd, "secret.list", nil, &entries); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tUPDATED\tKEY")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name, e.UpdatedAt.Local().Format(time.DateTime), e.KeyID)
			}
			return tw.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res secretResult
			if err := adminCall(cmd, "secret.rm", secretArgs{Name: args[0]}, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s removed\n", args[0])
			return printRestarted(cmd, res)
		},
	})
	return cmd
}

// printRestarted says which providers use a changed secret, and fails on a
// provider that did not come back with it.
func printRestarted(cmd *cobra.Command, res secretResult) error {
	if len(res.Restarted) > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "providers using it: %s (restarted if running)\n", strings.Join(res.Restarted, ", "))
	}
	if len(res.Failed) == 0 {
		return nil
	}
	for _, f := range res.Failed {
		fmt.Fprintf(cmd.OutOrStdout(), "FAILED: %s: %s\n", f.Provider, f.Error)
	}
	return &exitError{code: 1}
}

func newVaultCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "vault", Short: "Create the vault key, rotate data keys, rekey"}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Generate a vault key into the data dir (if none is configured) and create the vault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := offlineConfig(cmd, "a gateway is running: the vault already exists")
			if err != nil {
				return err
			}
			v, st, err := openOffline(cfg, true)
			if err != nil {
				return err
			}
			defer v.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "vault ready at %s\n", storeName(st))
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Add a new data key and re-encrypt every entry in one transaction",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res map[string]int
			if err := adminCall(cmd, "vault.rotate", nil, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated: %d entries re-encrypted under a new data key\n", res["reencrypted"])
			return nil
		},
	})
	var newKeyFile string
	rekey := &cobra.Command{
		Use:   "rekey --new-key-file FILE",
		Short: "Re-wrap the vault under a new master key (offline: stop the gateway first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := offlineConfig(cmd, "stop the gateway first: rekey changes the key it was started with")
			if err != nil {
				return err
			}
			newKey, err := vault.ReadKeyFile(newKeyFile)
			if err != nil {
				return err
			}
			defer newKey.Zero()
			v, _, err := openOffline(cfg, false)
			if err != nil {
				return err
			}
			defer v.Close()
			if err := v.Rekey(newKey); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rekeyed: start the gateway with the key in %s from now on\n", newKeyFile)
			return nil
		},
	}
	rekey.Flags().StringVar(&newKeyFile, "new-key-file", "", "file holding the new base64 master key")
	_ = rekey.MarkFlagRequired("new-key-file")
	cmd.AddCommand(rekey)
	return cmd
}
