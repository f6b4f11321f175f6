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
	"sync"
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

	superseded bool // a file reload whose bytes changed again before it ran; not recorded
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
			if !res.superseded {
				m.mu.Lock()
				m.lastReload = res
				m.mu.Unlock()
			}
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
	if want := m.fileWant.Load(); trigger == "file" && want != next.Hash {
		// The file changed again after the watcher confirmed it: those bytes
		// were never checked for settling. The watcher sees the new change.
		m.fileWant.CompareAndSwap(want, "")
		res.superseded = true
		return res
	}
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

// Timing of file-triggered reloads (see "Live reload" in docs/configuration.md).
const (
	// configQuiet is how long the file must see no event before it is read;
	// two reads 100 ms apart must then agree.
	configQuiet = 300 * time.Millisecond
	// ConfigSettle is how long a file written in place must have been
	// unchanged before a disruptive change in it (one that stops or restarts a
	// provider or changes what callers may see or do) is applied. A writer that
	// pauses mid-file for less than this never gets its valid prefix applied.
	ConfigSettle = 2 * time.Second
)

// watchConfig watches the config file's folder (so a rename-over and a
// Kubernetes ..data symlink swap are both seen, and the watch survives them)
// and queues a reload when the file's bytes change. Bursts are debounced; a
// file still being written is read again until two reads agree. A change that
// arrived by replacing the file (rename, symlink swap) is complete and applies
// at once; a change written into the file in place may be a valid prefix of
// what the writer is still writing, so if it is disruptive it applies only once
// the file has been unchanged for ConfigSettle, confirmed by a re-read.
func (m *Main) watchConfig(ctx context.Context) {
	path := m.ConfigPath
	abs, _ := filepath.Abs(path)
	dir := filepath.Dir(path)
	base := filepath.Base(path)
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(dir)
	}
	var events <-chan fsnotify.Event
	var poll <-chan time.Time
	polling := err != nil
	if polling {
		m.Log.Warn().Err(err).Msg("cannot watch the config folder; polling every 2s instead")
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		poll = t.C
	} else {
		defer w.Close()
		events = w.Events
	}
	seen := fileHash(path)
	m.fileWant.Store(seen)
	changedAt := time.Now()
	inPlace := polling // a poll cannot tell how the file changed
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
				if name == base && ev.Has(fsnotify.Write) {
					inPlace = true
				} else if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) {
					inPlace = false // replaced whole
				}
				changedAt = time.Now()
				debounce = time.After(configQuiet)
			}
		case <-poll:
			debounce = time.After(0)
		case <-debounce:
			debounce = nil
			data, err := os.ReadFile(path)
			a := hashBytes(data, err)
			time.Sleep(100 * time.Millisecond)
			if b := fileHash(path); a != b {
				changedAt = time.Now()
				debounce = time.After(configQuiet) // still being written
				continue
			}
			if a != seen {
				seen = a
				if polling {
					changedAt = time.Now()
				}
			}
			if a == "" || a == m.fileWant.Load() {
				continue
			}
			if inPlace && m.disruptive(data, abs) {
				if wait := time.Until(changedAt.Add(ConfigSettle)); wait > 0 {
					m.Log.Debug().Dur("wait", wait).Msg("config written in place; waiting for it to settle before a disruptive reload")
					debounce = time.After(wait)
					continue
				}
			}
			m.fileWant.Store(a)
			m.requestReload("file")
		}
	}
}

// disruptive reports whether data, as the next config, would stop or restart
// a provider or change access. An invalid file is not: it is rejected whole.
func (m *Main) disruptive(data []byte, abs string) bool {
	next, err := providers.Parse(data, abs, m.ConfigPath)
	if err != nil {
		return false
	}
	return providers.Diff(m.config(), next).Disruptive()
}

func hashBytes(b []byte, err error) string {
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func fileHash(path string) string {
	b, err := os.ReadFile(path)
	return hashBytes(b, err)
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

// atomicString is a string read and written from several goroutines.
type atomicString struct {
	mu sync.Mutex
	s  string
}

func (a *atomicString) Load() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.s
}

func (a *atomicString) Store(s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.s = s
}

// CompareAndSwap sets the string to new if it is old, and reports whether it did.
func (a *atomicString) CompareAndSwap(old, new string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.s != old {
		return false
	}
	a.s = new
	return true
}
