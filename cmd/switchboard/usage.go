package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/statuspage"
	"github.com/switchboard-mcp/switchboard/usage"
)

func newUsageCmd() *cobra.Command {
	var since, until string
	var by []string
	var jsonOut, csvOut bool
	cmd := &cobra.Command{
		Use:   "usage [FILE|DIR...]",
		Short: "Report tool-call usage per user, service, provider or tool from the audit log",
		Long: `Usage sums the tool calls recorded in the audit log: calls, tool errors, other
errors, denials, timeouts, p50/p95 latency (over the calls the policy allowed)
and request and response bytes, grouped by user, service, provider and/or tool.

It reads every retained file of the log: the configured audit.file and its
rotated files, or the logs given as arguments. Give several files or folders
to sum the logs of several replicas; a folder's audit logs are found by their
content.

--since and --until take a time (2026-03-01, 2026-03-01T12:00:00Z) or a
duration before now (90m, 24h, 7d); --until is excluded. --by takes user,
service, provider and tool, combined with commas or repeated; tool groups by
provider too. A user's calls have no service and a service's no user.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if jsonOut && csvOut {
				return errors.New("usage: pick one of --json and --csv")
			}
			now := time.Now()
			from, err := parseWhen(since, now)
			if err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			to, err := parseWhen(until, now)
			if err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			if !from.IsZero() && !to.IsZero() && !from.Before(to) {
				return errors.New("usage: --since must be before --until")
			}
			dims, err := usage.ParseDims(by...)
			if err != nil {
				return fmt.Errorf("--by: %w", err)
			}
			paths := args
			if len(paths) == 0 {
				c, err := newAdminClient(cmd)
				if err != nil {
					return err
				}
				cfg, err := c.config()
				c.Close()
				if err != nil {
					return err
				}
				if cfg.Audit.Disabled {
					return errors.New("usage: the audit log is disabled in this config (audit.disabled), so there is nothing to report")
				}
				paths = []string{cfg.Audit.File}
			}
			var files []string
			seen := map[string]bool{}
			for _, p := range paths {
				fs, err := audit.Files(p, from)
				if err != nil {
					return err
				}
				for _, f := range fs {
					abs, _ := filepath.Abs(f)
					if !seen[abs] {
						seen[abs] = true
						files = append(files, f)
					}
				}
			}
			agg := usage.NewAggregator(from, to, dims)
			st, err := audit.ReadFiles(files, func(r *audit.Record) error {
				if r.Type == audit.TypeToolCall {
					c := recordCall(r)
					agg.Add(&c)
				}
				return nil
			})
			if err != nil {
				return err
			}
			rep := agg.Report()
			out := cmd.OutOrStdout()
			switch {
			case jsonOut:
				return rep.WriteJSON(out)
			case csvOut:
				return rep.WriteCSV(out)
			}
			if err := rep.WriteTable(out); err != nil {
				return err
			}
			fmt.Fprintf(out, "read %d records in %d audit files", st.Records, st.Files)
			if st.Skipped > 0 {
				fmt.Fprintf(out, "; %d unreadable lines skipped (switchboard audit verify checks the log)", st.Skipped)
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "count calls from this time on (2026-03-01, RFC 3339, or a duration before now: 24h, 7d)")
	cmd.Flags().StringVar(&until, "until", "", "count calls before this time (same forms)")
	cmd.Flags().StringSliceVar(&by, "by", []string{"user"}, "group by user, service, provider and/or tool (comma-separated or repeated)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	cmd.Flags().BoolVar(&csvOut, "csv", false, "print CSV (one line per row, no total)")
	return cmd
}

// parseWhen reads a time for --since and --until: "" (unbounded), a date,
// an RFC 3339 time, or a duration before now ("90m", "24h", "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (2026-03-01, 2026-03-01T12:00:00Z) or a duration (24h, 7d)", s)
}

// recordCall is a tool-call audit record as usage counts it.
func recordCall(r *audit.Record) usage.Call {
	lat := time.Duration(r.LatencyUS) * time.Microsecond
	if r.LatencyUS == 0 {
		lat = time.Duration(r.LatencyMS) * time.Millisecond
	}
	return usage.Call{Time: r.Time, PrincipalKind: r.PrincipalKind, Principal: r.Principal, Provider: r.Provider,
		Tool: r.Tool, Decision: r.Decision, Outcome: r.Outcome, Latency: lat, ReqBytes: r.ReqBytes, RespBytes: r.RespBytes}
}

// infoCall is a finished tools/call as usage counts it.
func infoCall(c *mux.CallInfo) usage.Call {
	// The end of the call, as its audit record's time is.
	u := usage.Call{Time: c.Start.Add(c.Latency), Provider: c.Provider, Tool: c.Tool, Decision: c.Decision, Outcome: c.Outcome,
		Latency: c.Latency, ReqBytes: int64(c.ReqBytes), RespBytes: int64(c.RespBytes)}
	if c.Principal != nil {
		u.PrincipalKind, u.Principal = string(c.Principal.Kind), c.Principal.ID
	}
	return u
}

// statusHours is the period of the status page's usage section.
const statusHours = 24

// seedUsage adds to the status page's window the calls of the last day
// that the audit log recorded before this gateway started (the live ones
// are added as they end), reading in the background.
func (m *Main) seedUsage(ctx context.Context) {
	cfg := m.config()
	if cfg.Audit.Disabled || m.ops == nil {
		return
	}
	started := m.ops.started
	from := started.Add(-statusHours * time.Hour)
	files, err := audit.Files(cfg.Audit.File, from)
	if err != nil {
		m.ops.usageSeeded.Store(true) // a fresh log: nothing before this start
		return
	}
	_, err = audit.ReadFiles(files, func(r *audit.Record) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.Type == audit.TypeToolCall && !r.Time.Before(from) && r.Time.Before(started) {
			c := recordCall(r)
			m.ops.usage.Add(&c)
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			m.Log.Warn().Err(err).Msg("reading the audit log for the status page's usage")
		}
		return
	}
	m.ops.usageSeeded.Store(true)
}

// statusUsage is the status page's usage section: the last statusHours
// hours, to the hour. Until the audit log has been read back at startup
// (or when there is none), it covers what this process served.
func (o *ops) statusUsage(now time.Time) *statuspage.Usage {
	if o.usage == nil {
		return nil
	}
	principals, providers, total := o.usage.Snapshot(now)
	u := &statuspage.Usage{Since: now.Truncate(time.Hour).Add(-(statusHours - 1) * time.Hour), Total: row(total, "", "")}
	if !o.usageSeeded.Load() && o.started.After(u.Since) {
		u.Since, u.Partial = o.started, true
	}
	for _, r := range principals {
		kind, name := "user", r.User
		if r.Service != "" {
			kind, name = "service", r.Service
		}
		u.Principals = append(u.Principals, row(r, name, kind))
	}
	for _, r := range providers {
		u.Providers = append(u.Providers, row(r, r.Provider, ""))
	}
	return u
}

func row(r usage.Row, name, kind string) statuspage.UsageRow {
	return statuspage.UsageRow{Name: name, Kind: kind, Calls: r.Calls, ToolErrors: r.ToolErrors, Errors: r.Errors,
		Denied: r.Denied, Timeouts: r.Timeouts, P50MS: float64(r.P50.Microseconds()) / 1000,
		P95MS: float64(r.P95.Microseconds()) / 1000, ReqBytes: r.ReqBytes, RespBytes: r.RespBytes}
}
