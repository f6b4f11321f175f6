package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/metrics"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/statuspage"
	"github.com/switchboard-mcp/switchboard/supervisor"
	"github.com/switchboard-mcp/switchboard/usage"
	"github.com/switchboard-mcp/switchboard/vault"
)

// auditKeySecret names the vault's internal key that keys the audit log:
// argument digests, every record's hash in the chain and the checkpoint MAC.
const auditKeySecret = "SWITCHBOARD_AUDIT_DIGEST_KEY"

// ops is what operators watch: the audit log, metrics and recent events.
type ops struct {
	audit *audit.Log // nil when audit.disabled
	// waitForWrite makes tools/call answer only once its record is written
	// (audit.wait_for_write, the default); otherwise the record is queued.
	waitForWrite bool
	metrics      *metrics.Metrics
	events       *statuspage.Ring
	// usage is the last day's calls for the status page (usage.go);
	// usageSeeded is set once the audit log's earlier calls are in it.
	usage       *usage.Window
	usageSeeded atomic.Bool
}

// auditKey returns the audit key from the vault (made on first use). It is
// the one place the audit key is read: serve, the offline CLI's audit records,
// `audit digest` and `audit verify` all come here. If the key was removed, a
// new one is made, and nothing written under the old one verifies any more
// (verify says so, naming both key ids).
func auditKey(v *vault.Vault) ([]byte, error) {
	return internalKey(v, auditKeySecret, "audit digest key")
}

func (m *Main) openOps() error {
	cfg := m.config()
	o := &ops{metrics: metrics.New(), events: statuspage.NewRing(100), usage: usage.NewWindow(statusHours, 0)}
	if cfg.Metrics.PrincipalLabel {
		o.metrics.EnablePrincipals(cfg.Metrics.MaxPrincipals)
	}
	if !cfg.Audit.Disabled {
		key, err := auditKey(m.vault)
		if err != nil {
			return err
		}
		l, err := audit.Open(audit.Config{
			File: cfg.Audit.File, MaxSizeMB: cfg.Audit.MaxSizeMB, MaxBackups: cfg.Audit.MaxBackups,
			MaxAgeDays: cfg.Audit.MaxAgeDays, FailOpen: cfg.Audit.FailOpen, DigestKey: key, Fsync: cfg.Audit.Fsync,
		}, m.Log)
		if err != nil {
			return fmt.Errorf("opening the audit log: %w", err)
		}
		o.audit, o.waitForWrite = l, cfg.Audit.WaitsForWrite()
		o.metrics.Audit(func() bool { return l.Err() == nil }, l.Dropped)
		// Open logged and recorded each at error level; the status page shows them.
		for _, a := range l.Anomalies() {
			o.events.Add("audit", "audit log integrity check failed at startup: "+a)
		}
	}
	m.ops = o
	o.metrics.Reload(true)
	m.auditEvent(audit.Record{Type: audit.TypeStartup, Detail: map[string]string{"version": version, "config_hash": cfg.Hash}})
	return nil
}

// auditEvent writes a non-call record and waits for it (callers such as tests
// and the admin socket read the log right after); failures are logged (the
// call path is where fail-closed matters).
func (m *Main) auditEvent(rec audit.Record) {
	if m.ops == nil || m.ops.audit == nil {
		return
	}
	if err := m.ops.audit.Write(rec); err != nil {
		m.Log.Error().Str("type", rec.Type).Err(err).Msg("audit record not written")
	}
}

// callObserver feeds every tools/call into the audit log and metrics.
type callObserver struct{ m *Main }

var (
	_ mux.CallObserver    = callObserver{}
	_ mux.SessionObserver = callObserver{}
)

// Admit refuses calls while the audit log cannot be written, unless fail_open.
func (o callObserver) Admit(ctx context.Context, c *mux.CallInfo) error {
	a := o.m.ops.audit
	if a == nil || o.m.config().Audit.FailOpen {
		return nil
	}
	if err := a.Err(); err != nil {
		return switchboard.Errorf(switchboard.EUNAVAILABLE, "the audit log cannot be written, so tool calls are refused until it can")
	}
	return nil
}

// Done records the call's outcome, exactly once per tools/call. By default
// (audit.wait_for_write) the mux runs it before the answer is sent
// (RecordBeforeAnswer) and it waits until the record is in the file (Write:
// concurrent calls share one write). With wait_for_write: false it runs after
// the answer and only queues the record (Append). Either way, Admit refuses
// further calls while the log cannot be written.
func (o callObserver) Done(ctx context.Context, c *mux.CallInfo) {
	o.m.ops.metrics.ToolCall(c.Provider, c.Tool, c.Outcome, c.Latency)
	if c.Principal != nil {
		o.m.ops.metrics.PrincipalCall(string(c.Principal.Kind), c.Principal.ID, c.Provider, c.Outcome, c.ReqBytes, c.RespBytes)
	}
	uc := infoCall(c)
	o.m.ops.usage.Add(&uc)
	if o.m.ops.audit == nil {
		return
	}
	rec := audit.Record{
		Type: audit.TypeToolCall, RequestID: c.RequestID, Session: c.SessionID,
		Endpoint: string(c.Endpoint), Client: c.Client, Provider: c.Provider, Tool: c.Tool,
		Decision: c.Decision, Outcome: c.Outcome, LatencyMS: c.Latency.Milliseconds(),
		LatencyUS: c.Latency.Microseconds(), ReqBytes: int64(c.ReqBytes), RespBytes: int64(c.RespBytes),
		TraceID: c.TraceID,
	}
	if c.Tool == "" {
		rec.Tool = c.Exposed
	}
	if c.Principal != nil {
		rec.PrincipalKind, rec.Principal = string(c.Principal.Kind), c.Principal.ID
	}
	if len(c.Args) > 0 {
		rec.ArgsDigest = o.m.ops.audit.Digest(c.Args)
	}
	if c.Err != nil {
		rec.Error = o.m.Redactor.String(switchboard.ErrorMessage(c.Err))
	}
	var err error
	if o.m.ops.waitForWrite {
		err = o.m.ops.audit.Write(rec)
	} else {
		err = o.m.ops.audit.Append(rec)
	}
	if err != nil {
		o.m.Log.Error().Str("request_id", c.RequestID).Err(err).Msg("audit record for a tool call not written")
	}
}

// RecordBeforeAnswer implements mux.RecordFirst: with audit.wait_for_write
// (the default) the caller's answer waits for its audit record.
func (o callObserver) RecordBeforeAnswer() bool {
	return o.m.ops != nil && o.m.ops.audit != nil && o.m.ops.waitForWrite
}

func (o callObserver) SessionOpened(ep switchboard.Endpoint) {
	o.m.ops.metrics.SessionOpened(string(ep))
}
func (o callObserver) SessionClosed(ep switchboard.Endpoint) {
	o.m.ops.metrics.SessionClosed(string(ep))
}

// providerEvent turns supervisor lifecycle events into audit records, metrics
// and status-page events.
func (m *Main) providerEvent(ev supervisor.Event) {
	if m.ops == nil {
		return
	}
	name := ev.Key.String()
	detail := map[string]string{"event": ev.Kind}
	if ev.PID != 0 {
		detail["pid"] = strconv.Itoa(ev.PID)
	}
	switch ev.Kind {
	case supervisor.EventExit:
		detail["exit_code"] = strconv.Itoa(ev.ExitCode)
		if ev.Signal != "" {
			detail["signal"] = ev.Signal
		}
	case supervisor.EventRestart:
		detail["delay"] = ev.Delay.String()
		m.ops.metrics.ProviderRestart(name)
	}
	rec := audit.Record{Type: audit.TypeProvider, Provider: name, Detail: detail}
	if ev.Err != "" {
		rec.Error = m.Redactor.String(ev.Err)
	}
	m.auditEvent(rec)
	switch ev.Kind {
	case supervisor.EventReady:
		m.ops.metrics.ProviderState(name, switchboard.StateRunning)
	case supervisor.EventExit:
		m.ops.metrics.ProviderState(name, switchboard.StateBackoff)
		how := fmt.Sprintf("code %d", ev.ExitCode)
		if ev.Signal != "" {
			how = "signal " + ev.Signal
		}
		m.ops.events.Add("provider", name+" exited ("+how+")")
	case supervisor.EventFailed:
		m.ops.metrics.ProviderState(name, switchboard.StateFailed)
		m.ops.events.Add("provider", name+" failed: "+m.Redactor.String(ev.Err))
	case supervisor.EventStop:
		m.ops.metrics.RemoveProvider(name)
	}
}

// status builds the status page's view.
func (m *Main) status(ctx context.Context) statuspage.Status {
	h := m.health()
	st := statuspage.Status{Version: version, StartedAt: m.started, Listen: m.Addr(), Providers: h.Providers}
	for _, s := range m.mux.Sessions() {
		st.Sessions = append(st.Sessions, statuspage.Session{ID: s.ID, Principal: s.Principal, Endpoint: string(s.Endpoint), Client: s.Client, CreatedAt: s.CreatedAt})
	}
	r := h.Reload
	st.LastReload = statuspage.ReloadStatus{At: r.At, OK: r.OK, Error: r.Error, ConfigHash: r.NewHash, NeedsRestart: r.NeedsRestart}
	if m.ops != nil {
		st.Events = m.ops.events.List()
	}
	st.Usage = m.statusUsage(time.Now())
	return st
}

func (m *Main) statusHandler() http.Handler {
	return m.requireAdmin(statuspage.Handler(m.status))
}

func (m *Main) metricsHandler() http.Handler {
	return m.requireAdmin(m.ops.metrics.Handler())
}

func (m *Main) closeOps() error {
	if m.ops != nil && m.ops.audit != nil {
		return m.ops.audit.Close()
	}
	return nil
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
			out := cmd.OutOrStdout()
			for _, n := range res.Notes {
				fmt.Fprintln(out, "note:", n)
			}
			for _, a := range res.Alarms {
				fmt.Fprintln(out, "ALARM:", a)
			}
			switch {
			case res.Broken != nil:
				where := fmt.Sprintf("%s:%d", res.Broken.File, res.Broken.Line)
				if res.Broken.Line == 0 {
					where = res.Broken.File
				}
				fmt.Fprintf(out, "BROKEN at %s (seq %d): %s\n", where, res.Broken.Seq, res.Broken.Reason)
				return &exitError{code: 1}
			case len(res.Alarms) > 0:
				fmt.Fprintf(out, "FAILED: the chain of %d records checks out, but the gateway found the log altered when it opened it (%d alarm(s) above); keep the files as evidence and move them aside to start a new log\n", res.Records, len(res.Alarms))
				return &exitError{code: 1}
			case !res.OK:
				fmt.Fprintf(out, "UNPROVEN (%d records, seq %d..%d): %s\n", res.Records, res.FirstSeq, res.LastSeq, res.Unproven)
				return &exitError{code: 2}
			}
			fmt.Fprintf(out, "ok: %d records in %d files, seq %d..%d; every record and the checkpoint verified under audit key %s\n", res.Records, len(res.Files), res.FirstSeq, res.LastSeq, res.KeyID)
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

func init() {
	registerOp("audit.digest", func(ctx context.Context, env *adminEnv, raw json.RawMessage) (any, error) {
		key, err := auditKey(env.vault)
		if err != nil {
			return nil, err
		}
		// The gateway digests the arguments exactly as the client sent them.
		var args json.RawMessage
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, err
		}
		return map[string]string{"digest": audit.Digest(key, args)}, nil
	})
	registerOp("audit.verify", func(ctx context.Context, env *adminEnv, _ json.RawMessage) (any, error) {
		key, err := auditKey(env.vault)
		if err != nil {
			return nil, err
		}
		return audit.VerifyWithKey(env.cfg.Audit.File, key)
	})
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
