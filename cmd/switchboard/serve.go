package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newServeCmd() *cobra.Command {
	var devKey bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			shareCPUs()
			m := NewMain(configPath(cmd))
			m.Stderr = cmd.ErrOrStderr()
			m.DevKey = devKey
			m.OnServing = func() {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "\nSwitchboard is serving MCP at %s/mcp\n", m.URL())
				fmt.Fprintf(out, "  health:  curl %s/healthz\n", m.URL())
				if m.FirstAdminKey != "" {
					fmt.Fprintf(out, "\nCreated the first admin user. Its API key is shown only this once:\n\n  %s\n\n", m.FirstAdminKey)
					fmt.Fprintf(out, "Connect Claude Code:\n\n  claude mcp add --transport http switchboard %s/mcp --header \"Authorization: Bearer %s\"\n\n", m.URL(), m.FirstAdminKey)
				} else {
					fmt.Fprintf(out, "  connect: claude mcp add --transport http switchboard %s/mcp --header \"Authorization: Bearer $SWITCHBOARD_KEY\"\n", m.URL())
					fmt.Fprintf(out, "  (create a key with: switchboard user add NAME --role admin)\n\n")
				}
			}
			return m.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&devKey, "dev", false, "local development: generate a missing vault key into the data dir")
	return cmd
}
