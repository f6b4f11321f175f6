package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/providers"
)

// ReloadResult is the outcome of one reload, shown in /status and printed by
// `switchboard reload`.
type ReloadResult struct {
	At           time.Time `json:"at"`
	OK           bool      `json:"ok"`
	Unchanged    bool      `json:"unchanged,omitempty"`
	Error        string    `json:"error,omitempty"`
	Trigger      string    `json:"trigger"`
	OldHash      string    `json:"old_hash,omitempty"`
	NewHash      string    `json:"new_hash,omitempty"`
	Added        []string  `json:"added,omitempty"`
	Removed      []string  `json:"removed,omitempty"`
	Restarted    []string  `json:"restarted,omitempty"`
	PolicyOnly   []string  `json:"policy_only,omitempty"`
	NeedsRestart []string  `json:"needs_restart,omitempty"`
}

type reloadReq struct {
	trigger string
	reply   chan ReloadResult
}

// DrainGrace bounds how long a removed or changed provider's in-flight calls
// may run before it is stopped.
const DrainGrace = 10 * time.Second

// reloader is the one goroutine that applies reloads, whatever triggered them.
func (m *Main) reloader(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-m.reloadCh:
			res := m.applyReload(ctx, req.trigger)
			m.mu.Lock()
			m.lastReload = res
			m.mu.Unlock()
			if req.reply != nil {
				req.reply <- res
			}
		}
	}
}

// Reload asks the reconciler to reload and waits for the outcome.
func (m *Main) Reload(ctx context.Context, trigger string) (ReloadResult, error) {
	reply := make(chan ReloadResult, 1)
	select {
	case m.reloadCh <- reloadReq{trigger: trigger, reply: reply}:
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
	select {
	case res := <-reply:
		return res, nil
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
}

// requestReload queues a reload without waiting; bursts coalesce because the
// channel holds one request and a full channel means one is already queued.
func (m *Main) requestReload(trigger string) {
	select {
	case m.reloadCh <- reloadReq{trigger: trigger}:
	default:
	}
}

// applyReload parses and validates the whole file, then applies it or keeps the
// old config untouched.
func (m *Main) applyReload(ctx context.Context, trigger string) ReloadResult {
	old := m.config()
	res := ReloadResult{At: time.Now().UTC(), Trigger: trigger, OldHash: old.Hash}
	next, err := providers.LoadFile(m.ConfigPath)
	if err != nil {
		res.Error = err.Error()
		m.Log.Error().Str("trigger", trigger).Strs("problems", problemLines(err)).Msg("reload rejected; the previous config keeps serving")
		m.reloaded(res)
		return res
	}
	res.NewHash = next.Hash
	if next.Hash == old.Hash {
		res.OK, res.Unchanged = true, true
		return res
	}
	ch := providers.Diff(old, next)
	// Settings that cannot change live keep their old values until a restart.
	next.Listen, next.DataDir, next.Vault, next.Audit, next.Sessions = old.Listen, old.DataDir, old.Vault, old.Audit, old.Sessions
	next.Server = old.Server
	if !next.Auth.Disabled && old.Auth.Disabled || next.Auth.Disabled && !old.Auth.Disabled {
		ch.NeedsRestart = append(ch.NeedsRestart, "auth.disabled")
		next.Auth.Disabled = old.Auth.Disabled
	}
	if err := m.id.authn.SetConfig(authConfig(next)); err != nil {
		res.Error = "auth: " + switchboard.ErrorMessage(err)
		m.Log.Error().Str("trigger", trigger).Err(err).Msg("reload rejected; the previous config keeps serving")
		m.reloaded(res)
		return res
	}
	m.mu.Lock()
	m.cfg = next
	m.mu.Unlock()
	m.id.limiter.SetConfig(rateConfig(next, m))
	m.id.fails.SetConfig(failureConfig(next, m))
	m.mux.SetFilter(policyFor(next, userState{prefs: m.id.prefs, conns: m.id.conns}))
	m.applySkills()
	m.setLogLevel(next.Log.Level)
	restarted := m.reconcile(ctx)
	m.reconcileUsers(ctx, old, next)
	res.OK = true
	res.Added, res.Removed, res.PolicyOnly, res.NeedsRestart = ch.Added, ch.Removed, ch.PolicyOnly, ch.NeedsRestart
	res.Restarted = restarted
	ev := m.Log.Info().Str("trigger", trigger).Str("old_hash", short(old.Hash)).Str("new_hash", short(next.Hash)).
		Strs("added", ch.Added).Strs("removed", ch.Removed).Strs("restarted", restarted).Strs("policy_only", ch.PolicyOnly)
	if len(ch.NeedsRestart) > 0 {
		ev = ev.Strs("needs_gateway_restart", ch.NeedsRestart)
	}
	ev.Msg("config reloaded")
	m.reloaded(res)
	return res
}

func problemLines(err error) []string {
	var out []string
	for _, p := range providers.Problems(err) {
		out = append(out, p.String())
	}
	return out
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// watchConfig watches the config file's folder (so a rename-over and a
// Kubernetes ..data symlink swap are both seen, and the watch survives them)
// and queues a reload when the file's bytes change. Bursts are debounced; a
// file still being written is read again until two reads agree.
func (m *Main) watchConfig(ctx context.Context) {
	path := m.ConfigPath
	dir := filepath.Dir(path)
	base := filepath.Base(path)
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(dir)
	}
	var events <-chan fsnotify.Event
	var poll <-chan time.Time
	if err != nil {
		m.Log.Warn().Err(err).Msg("cannot watch the config folder; polling every 2s instead")
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		poll = t.C
	} else {
		defer w.Close()
		events = w.Events
	}
	last := fileHash(path)
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			name := filepath.Base(ev.Name)
			if name == base || name == "..data" || strings.HasPrefix(name, "..") {
				debounce = time.After(300 * time.Millisecond)
			}
		case <-poll:
			debounce = time.After(0)
		case <-debounce:
			debounce = nil
			a := fileHash(path)
			time.Sleep(100 * time.Millisecond)
			if b := fileHash(path); a != b {
				debounce = time.After(300 * time.Millisecond) // still being written
				continue
			}
			if a != last && a != "" {
				last = a
				m.requestReload("file")
			}
		}
	}
}

func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// watchSIGHUP reloads on SIGHUP.
func (m *Main) watchSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			m.requestReload("sighup")
		}
	}
}

func init() {
	registerOp("reload", func(ctx context.Context, env *adminEnv, _ json.RawMessage) (any, error) {
		if env.main == nil {
			return nil, errOnlineOnly
		}
		return env.main.Reload(ctx, "admin")
	})
}

func newReloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Reload gateway.yaml in the running gateway and print the outcome",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAdminClient(cmd)
			if err != nil {
				return err
			}
			if !c.Online() {
				return errOnlineOnly
			}
			var res ReloadResult
			if err := c.call(cmd.Context(), "reload", nil, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !res.OK {
				fmt.Fprintf(out, "reload failed; the previous config keeps serving:\n%s\n", res.Error)
				return &exitError{code: 1}
			}
			if res.Unchanged {
				fmt.Fprintln(out, "reload: config unchanged")
				return nil
			}
			var b bytes.Buffer
			for _, part := range []struct {
				label string
				names []string
			}{{"added", res.Added}, {"removed", res.Removed}, {"restarted", res.Restarted}, {"policy only", res.PolicyOnly}, {"needs a gateway restart", res.NeedsRestart}} {
				if len(part.names) > 0 {
					fmt.Fprintf(&b, "  %s: %s\n", part.label, strings.Join(part.names, ", "))
				}
			}
			fmt.Fprintf(out, "reloaded %s\n%s", short(res.NewHash), b.String())
			return nil
		},
	}
}
