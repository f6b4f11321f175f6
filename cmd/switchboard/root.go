package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code through cobra without printing twice.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "switchboard:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "switchboard:", err)
	return 1
}

func newRootCmd() *cobra.Command {
	switchboard.Version = version
	root := &cobra.Command{
		Use:           "switchboard",
		Short:         "An MCP gateway: supervised stdio providers behind one streamable-HTTP endpoint",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringP("config", "c", "gateway.yaml", "path to gateway.yaml")
	root.AddCommand(
		newServeCmd(),
		newValidateCmd(),
		newVersionCmd(),
		newHealthcheckCmd(),
		newSecretCmd(),
		newVaultCmd(),
		newReloadCmd(),
		newUserCmd(),
		newServiceCmd(),
		newAuditCmd(),
		newPrefsCmd(),
		newToolsCmd(),
		newStoreCmd(),
	)
	root.AddCommand(newConnectCmds()...)
	return root
}

func configPath(cmd *cobra.Command) string {
	p, _ := cmd.Flags().GetString("config")
	if p == "" {
		p = "gateway.yaml"
	}
	return p
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "switchboard", version)
			return nil
		},
	}
}
