package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/vault"
)

// auditDigest is the args_digest of JSON arguments, to search the log: the
// gateway digests the arguments exactly as the client sent them.
func (env *opsEnv) auditDigest(ctx context.Context, raw json.RawMessage) (any, error) {
	key, err := auditKey(env.vault)
	if err != nil {
		return nil, err
	}
	var args json.RawMessage
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, err
	}
	return map[string]string{"digest": audit.Digest(key, args)}, nil
}

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit log"}
	var follow, jsonOut bool
	var user, provider string
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Print audit events, one line each (raw JSON lines with --json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := auditFile(cmd)
			if err != nil {
				return err
			}
			return audit.Tail(cmd.Context(), file, follow, audit.Filter{User: user, Provider: provider}, cmd.OutOrStdout(), jsonOut)
		},
	}
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	tail.Flags().BoolVar(&jsonOut, "json", false, "print the raw JSON lines")
	tail.Flags().StringVar(&user, "user", "", "only events of this principal")
	tail.Flags().StringVar(&provider, "provider", "", "only events of this provider")
	cmd.AddCommand(tail)
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Prove the log unaltered with the audit key: every record, the chain across rotated files, the checkpoint",
		Long: `Verify checks every record's HMAC under the audit key (from the vault, through
the running gateway or offline), the chain across rotated files, and the
checkpoint that pins its end, and reports the alarms the gateway recorded when
it found the log altered at startup.

Exit status: 0 the log is proven; 1 it is broken, cut, forged, keyed under
another key, its checkpoint is missing or altered, or the gateway recorded an
alarm; 2 nothing wrong was found but the log cannot be proven (no access to
the audit key, or records written before the chain was keyed that nothing
pins). See docs/configuration.md, "What the audit chain proves".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := auditFile(cmd)
			if err != nil {
				return err
			}
			res, err := verifyAudit(cmd, file)
			if err != nil {
				return err
			}
			if code := res.Report(cmd.OutOrStdout()); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "digest",
		Short: "Print the args_digest of the JSON arguments read from stdin, to search the log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var in json.RawMessage
			if err := json.NewDecoder(cmd.InOrStdin()).Decode(&in); err != nil {
				return fmt.Errorf("reading JSON arguments from stdin: %w", err)
			}
			var res map[string]string
			if err := adminCall(cmd, "audit.digest", in, &res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res["digest"])
			return nil
		},
	})
	return cmd
}

func auditFile(cmd *cobra.Command) (string, error) {
	c, err := newAdminClient(cmd)
	if err != nil {
		return "", err
	}
	defer c.Close()
	cfg, err := c.config()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(cfg.Audit.File); err != nil {
		return "", fmt.Errorf("audit log %s: %w", cfg.Audit.File, err)
	}
	return cfg.Audit.File, nil
}

// verifyAudit verifies with the audit key (through the gateway or the vault).
// Without the vault's master key it checks what the structure shows, which
// is never a proof.
func verifyAudit(cmd *cobra.Command, file string) (audit.VerifyResult, error) {
	var res audit.VerifyResult
	err := adminCall(cmd, "audit.verify", nil, &res)
	if err != nil && !errors.Is(err, vault.ErrNoKey) {
		return res, err
	}
	if err != nil {
		res, verr := audit.Verify(file)
		if res.Unproven != "" {
			res.Unproven = fmt.Sprintf("the audit key is in the vault, which cannot be opened without its master key (%v): %s", err, res.Unproven)
		}
		return res, verr
	}
	return res, nil
}
