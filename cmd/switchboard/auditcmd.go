package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
		Use:   "verify [DIR]",
		Short: "Prove the log unaltered with the audit key: every record, the chain across rotated files, the checkpoint",
		Long: `Verify checks every record's HMAC under the audit key (from the vault, through
the running gateway or offline), the chain across rotated files, and the
checkpoint that pins its end, and reports the alarms the gateway recorded when
it found the log altered at startup.

With DIR it checks every log in that folder instead, each on its own: the
replicas that share a store share the audit key, but each keeps its own
chain in its own file (audit-<replica>.log). Gather the replicas' files,
with their rotated files and ".head" checkpoints, into one folder; verify
prints one line per replica's chain.

Exit status: 0 the log is proven (with DIR: every log); 1 it is broken, cut,
forged, keyed under another key, its checkpoint is missing or altered, or the
gateway recorded an alarm; 2 nothing wrong was found but the log cannot be
proven (no access to the audit key, or records written before the chain was
keyed that nothing pins). See docs/configuration.md, "What the audit chain
proves".`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				res, err := verifyAuditDir(cmd, args[0])
				if err != nil {
					return err
				}
				if code := res.Report(cmd.OutOrStdout()); code != 0 {
					return &exitError{code: code}
				}
				return nil
			}
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

// auditVerifyArgs are the arguments of the audit.verify operation: a folder
// of several replicas' logs, or none for this gateway's own log.
type auditVerifyArgs struct {
	Dir string `json:"dir,omitempty"`
}

// verifyAuditDir verifies every log in dir with the audit key (through the
// gateway or the vault), or only their structure without the vault's master
// key.
func verifyAuditDir(cmd *cobra.Command, dir string) (audit.DirResult, error) {
	var res audit.DirResult
	abs, err := filepath.Abs(dir) // the gateway reads it from its own working directory
	if err != nil {
		return res, err
	}
	if fi, err := os.Stat(abs); err != nil {
		return res, fmt.Errorf("verifying audit logs: %w", err)
	} else if !fi.IsDir() {
		return res, fmt.Errorf("verifying audit logs: %s is not a folder (without an argument, verify checks this gateway's own log)", dir)
	}
	err = adminCall(cmd, "audit.verify", auditVerifyArgs{Dir: abs}, &res)
	if errors.Is(err, vault.ErrNoKey) {
		res, verr := audit.VerifyDir(abs, nil)
		for i := range res.Chains {
			res.Chains[i].Unproven = fmt.Sprintf("the audit key is in the vault, which cannot be opened without its master key (%v): %s", err, res.Chains[i].Unproven)
		}
		return res, verr
	}
	return res, err
}
