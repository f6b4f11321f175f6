package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/audit"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/internal/logbuf"
	"github.com/switchboard-mcp/switchboard/internal/redact"
	"github.com/switchboard-mcp/switchboard/metrics"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/statuspage"
	"github.com/switchboard-mcp/switchboard/supervisor"
	"github.com/switchboard-mcp/switchboard/usage"
	"github.com/switchboard-mcp/switchboard/vault"
)

// ops is what operators watch: the audit log, metrics, recent events and the
// log level.
type ops struct {
	audit        *audit.Log // nil when audit.disabled
	waitForWrite bool       // audit.wait_for_write: a tools/call answers once its record is written
	failOpen     bool       // audit.fail_open: serve calls while the log cannot be written
	metrics      *metrics.Metrics
	events       *statuspage.Ring
	level        *levelFilter
	redact       func(string) string
	log          zerolog.Logger
	started      time.Time
	closing      atomic.Bool // Close began: not ready any more
	tel          telemetry   // the trace pipeline (telemetry.go); zero when tracing is off
	// usage is the last day's calls for the status page (usage.go);
	// usageSeeded is set once the audit log's earlier calls are in it.
	usage       *usage.Window
	usageSeeded atomic.Bool
}

// openOps opens the audit log of cfg (keyed with the vault's audit key),
// metrics and the status page's event ring. The audit settings take effect
// at startup only.
func openOps(cfg *providers.Config, v *vault.Vault, level *levelFilter, r *redact.Redactor, log zerolog.Logger) (*ops, error) {
	o := &ops{metrics: metrics.New(), events: statuspage.NewRing(100), level: level, redact: r.String, log: log,
		started: time.Now(), failOpen: cfg.Audit.FailOpen, usage: usage.NewWindow(statusHours, 0)}
	if cfg.Metrics.PrincipalLabel {
		o.metrics.EnablePrincipals(cfg.Metrics.MaxPrincipals)
	}
	if !cfg.Audit.Disabled {
		key, err := auditKey(v)
		if err != nil {
			return nil, err
		}
		l, err := audit.Open(audit.Config{
			File: cfg.Audit.File, MaxSizeMB: cfg.Audit.MaxSizeMB, MaxBackups: cfg.Audit.MaxBackups,
			MaxAgeDays: cfg.Audit.MaxAgeDays, FailOpen: cfg.Audit.FailOpen, DigestKey: key, Fsync: cfg.Audit.Fsync,
			Replica: cfg.Replica,
		}, log)
		if err != nil {
			return nil, fmt.Errorf("opening the audit log: %w", err)
		}
		o.audit, o.waitForWrite = l, cfg.Audit.WaitsForWrite()
		o.metrics.Audit(func() bool { return l.Err() == nil }, l.Dropped)
		// Open logged and recorded each at error level; the status page shows them.
		for _, a := range l.Anomalies() {
			o.events.Add("audit", "audit log integrity check failed at startup: "+a)
		}
	}
	o.metrics.Reload(true)
	o.event(audit.Record{Type: audit.TypeStartup, Detail: map[string]string{"version": version, "config_hash": cfg.Hash}})
	return o, nil
}

// event writes a record that is not a call's and waits for it (callers such
// as tests and the admin socket read the log right after); a failure is
// logged (the call path is where failing closed matters).
func (o *ops) event(rec audit.Record) {
	if o.audit == nil {
		return
	}
	if err := o.audit.Write(rec); err != nil {
		o.log.Error().Str("type", rec.Type).Err(err).Msg("audit record not written")
	}
}

func (o *ops) close() error {
	o.tel.close(o.log)
	if o.audit != nil {
		return o.audit.Close()
	}
	return nil
}

// callObserver feeds every tools/call into the audit log and metrics.
type callObserver struct {
	o      *ops
	redact func(string) string
}

var (
	_ mux.CallObserver    = callObserver{}
	_ mux.SessionObserver = callObserver{}
)

// Admit refuses calls while the audit log cannot be written, unless fail_open.
func (c callObserver) Admit(ctx context.Context, ci *mux.CallInfo) error {
	a := c.o.audit
	if a == nil || c.o.failOpen {
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
func (c callObserver) Done(ctx context.Context, ci *mux.CallInfo) {
	c.o.metrics.ToolCall(ci.Provider, ci.Tool, ci.Outcome, ci.Latency)
	if ci.Principal != nil {
		c.o.metrics.PrincipalCall(string(ci.Principal.Kind), ci.Principal.ID, ci.Provider, ci.Outcome, ci.ReqBytes, ci.RespBytes)
	}
	uc := infoCall(ci)
	c.o.usage.Add(&uc)
	l := c.o.audit
	if l == nil {
		return
	}
	rec := audit.Record{
		Type: audit.TypeToolCall, RequestID: ci.RequestID, Session: ci.SessionID,
		Endpoint: string(ci.Endpoint), Client: ci.Client, Provider: ci.Provider, Tool: ci.Tool,
		Decision: ci.Decision, Outcome: ci.Outcome, LatencyMS: ci.Latency.Milliseconds(),
		LatencyUS: ci.Latency.Microseconds(), ReqBytes: int64(ci.ReqBytes), RespBytes: int64(ci.RespBytes),
		TraceID: ci.TraceID,
	}
	if ci.Tool == "" {
		rec.Tool = ci.Exposed
	}
	if ci.Principal != nil {
		rec.PrincipalKind, rec.Principal = string(ci.Principal.Kind), ci.Principal.ID
	}
	if len(ci.Args) > 0 {
		rec.ArgsDigest = l.Digest(ci.Args)
	}
	if ci.Err != nil {
		rec.Error = c.redact(callError(ci))
	}
	var err error
	if c.o.waitForWrite {
		err = l.Write(rec)
	} else {
		err = l.Append(rec)
	}
	if err != nil {
		c.o.log.Error().Str("request_id", ci.RequestID).Err(err).Msg("audit record for a tool call not written")
	}
}

// callError says what happened to a call, for the operator: a refusal of a
// tool the caller cannot see names the policy (the caller was answered as
// for a tool that does not exist), and an error the caller sees only as
// "internal error" is written out.
func callError(ci *mux.CallInfo) string {
	if ci.Decision == audit.DecisionDeny {
		if ci.Provider != "" {
			return "hidden from this caller by policy (role, allowlist, connection, preference or write policy); answered as no such tool"
		}
		return "no such tool: " + ci.Exposed
	}
	if switchboard.ErrorCode(ci.Err) == switchboard.EINTERNAL {
		return ci.Err.Error()
	}
	return switchboard.ErrorMessage(ci.Err)
}

// RecordBeforeAnswer implements mux.RecordFirst: with audit.wait_for_write
// (the default) the caller's answer waits for its audit record.
func (c callObserver) RecordBeforeAnswer() bool { return c.o.audit != nil && c.o.waitForWrite }

func (c callObserver) SessionOpened(ep switchboard.Endpoint) { c.o.metrics.SessionOpened(string(ep)) }
func (c callObserver) SessionClosed(ep switchboard.Endpoint) { c.o.metrics.SessionClosed(string(ep)) }

// providerEvent turns supervisor lifecycle events into audit records, metrics
// and status-page events.
func (o *ops) providerEvent(ev supervisor.Event) {
	name := ev.Key.String()
	if ev.Kind == supervisor.EventQueued {
		// Waiting for a turn to start is a metric, not an audit fact: the
		// spawn that follows is recorded.
		o.metrics.ProviderState(name, switchboard.StateQueued)
		return
	}
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
		o.metrics.ProviderRestart(name)
	}
	rec := audit.Record{Type: audit.TypeProvider, Provider: name, Detail: detail}
	if ev.Err != "" {
		rec.Error = o.redact(ev.Err)
	}
	o.event(rec)
	switch ev.Kind {
	case supervisor.EventSpawn:
		o.metrics.ProviderState(name, switchboard.StateStarting)
	case supervisor.EventReady:
		o.metrics.ProviderState(name, switchboard.StateRunning)
	case supervisor.EventExit:
		o.metrics.ProviderState(name, switchboard.StateBackoff)
		how := fmt.Sprintf("code %d", ev.ExitCode)
		if ev.Signal != "" {
			how = "signal " + ev.Signal
		}
		o.events.Add("provider", name+" exited ("+how+")")
	case supervisor.EventFailed:
		o.metrics.ProviderState(name, switchboard.StateFailed)
		o.events.Add("provider", name+" failed: "+o.redact(ev.Err))
	case supervisor.EventStop:
		o.metrics.RemoveProvider(name)
	}
}

// edgeHooks records the edge's refusals and counts them, and traces
// authentication when tracing is on.
func (o *ops) edgeHooks() auth.EdgeHooks {
	return auth.EdgeHooks{
		WrapAuth: o.tel.tracer.WrapAuth,
		Refused: func(r auth.Refusal) {
			rec := audit.Record{Type: r.Type, Principal: r.Principal, Endpoint: r.Endpoint, Decision: audit.DecisionDeny,
				Outcome: r.Outcome, Error: r.Error, Detail: r.Detail}
			o.event(rec)
		},
		Count: func(kind, label string) {
			switch kind {
			case "auth_failure":
				o.metrics.AuthFailure(label)
			case "rate_limited":
				o.metrics.RateLimited(label)
			case "connection_refused":
				o.metrics.ConnectionRefused(label)
			}
		},
	}
}

// reloaded records a reload outcome for metrics, the audit log and the
// status page.
func (o *ops) reloaded(res ReloadResult) {
	o.metrics.Reload(res.OK)
	rec := audit.Record{Type: audit.TypeConfigReload, Outcome: "ok",
		Detail: map[string]string{"trigger": res.Trigger, "old_hash": res.OldHash, "new_hash": res.NewHash}}
	if len(res.Restarted) > 0 {
		rec.Detail["restarted"] = strings.Join(res.Restarted, ",")
	}
	if len(res.NeedsRestart) > 0 {
		rec.Detail["needs_restart"] = strings.Join(res.NeedsRestart, ",")
	}
	switch {
	case !res.OK && len(res.Failed) > 0:
		var names []string
		for _, f := range res.Failed {
			names = append(names, f.Provider)
		}
		rec.Outcome, rec.Error = "error", res.Error
		rec.Detail["failed"] = strings.Join(names, ",")
		o.events.Add("reload", "reload applied, but providers failed: "+res.Error)
	case !res.OK:
		rec.Outcome, rec.Error = "error", res.Error
		o.events.Add("reload", "reload rejected: "+res.Error)
	default:
		o.events.Add("reload", "config reloaded ("+short(res.NewHash)+")")
	}
	o.event(rec)
}

// status builds the status page's view.
func (m *Main) status(ctx context.Context) statuspage.Status {
	h := m.health()
	st := statuspage.Status{Version: version, StartedAt: m.ops.started, Listen: m.Addr(), Providers: h.Providers, Events: m.ops.events.List()}
	for _, s := range m.mux.Sessions() {
		st.Sessions = append(st.Sessions, statuspage.Session{ID: s.ID, Principal: s.Principal, Endpoint: string(s.Endpoint), Client: s.Client, CreatedAt: s.CreatedAt})
	}
	r := h.Reload
	st.LastReload = statuspage.ReloadStatus{At: r.At, OK: r.OK, Error: r.Error, ConfigHash: r.NewHash, NeedsRestart: r.NeedsRestart}
	st.Usage = m.ops.statusUsage(time.Now())
	for _, p := range m.config().SortedProviders() {
		if p.OAuth != nil && p.IsEnabled() {
			st.OAuth = append(st.OAuth, statuspage.OAuthProvider{Provider: p.Name, Link: "/status/connect/" + p.Name,
				Command: "switchboard connect " + p.Name + " --user USER --oauth"})
		}
	}
	return st
}

func (o *ops) statusHandler(get func(context.Context) statuspage.Status) http.Handler {
	return statuspage.Handler(get)
}

// logWindow is how long a busy gateway holds an informational log line so
// that it shares a write with the lines after it (see logbuf).
const logWindow = 5 * time.Millisecond

// levelFilter drops log lines below a level that a reload can change and
// masks secrets in the rest. Warnings and errors are written at once, after
// anything held; other lines (the access log) are coalesced by a
// logbuf.Writer, so a busy gateway makes one write per logWindow instead of
// one per request.
type levelFilter struct {
	out    *logbuf.Writer
	redact *redact.Redactor
	min    atomic.Int32
}

func newLevelFilter(w io.Writer, r *redact.Redactor, level string) *levelFilter {
	f := &levelFilter{out: logbuf.New(w, logWindow), redact: r}
	f.set(level)
	return f
}

// close writes what is held; later lines are written at once.
func (f *levelFilter) close() { _ = f.out.Close() }

func (f *levelFilter) set(level string) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	f.min.Store(int32(lvl))
}

func (f *levelFilter) Write(p []byte) (int, error) { return f.WriteLevel(zerolog.NoLevel, p) }

// WriteLevel implements zerolog.LevelWriter.
func (f *levelFilter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if int32(l) < f.min.Load() {
		return len(p), nil
	}
	var err error
	if l >= zerolog.WarnLevel { // NoLevel too: a line without a level is not held
		_, err = f.out.WriteNow(f.redact.Bytes(p))
	} else {
		_, err = f.out.Write(f.redact.Bytes(p))
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
