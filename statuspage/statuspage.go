// Package statuspage serves the gateway's status as a server-rendered HTML page and as JSON.
package statuspage

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/switchboard-mcp/switchboard"
)

// Status is everything the page shows. Every string in it must already be
// redacted by the caller; the page escapes it for HTML and JSON.
type Status struct {
	Version    string                       `json:"version"`
	StartedAt  time.Time                    `json:"started_at"`
	Listen     string                       `json:"listen,omitempty"`
	Providers  []switchboard.ProviderStatus `json:"providers"`
	Sessions   []Session                    `json:"sessions"`
	LastReload ReloadStatus                 `json:"last_reload"`
	Events     []Event                      `json:"events"`
	// Usage is the tool calls this gateway served in the last 24 hours;
	// nil hides the section.
	Usage *Usage `json:"usage_24h,omitempty"`
	// OAuth lists the providers users connect with OAuth, and how.
	OAuth []OAuthProvider `json:"oauth,omitempty"`
}

// Usage sums the tool calls of a period by principal and by provider.
type Usage struct {
	// Since is the start of the period; Partial says the gateway has not
	// seen all of it (it started later and its audit log did not cover
	// the rest).
	Since      time.Time  `json:"since"`
	Partial    bool       `json:"partial,omitempty"`
	Principals []UsageRow `json:"by_principal"`
	Providers  []UsageRow `json:"by_provider"`
	Total      UsageRow   `json:"total"`
}

// UsageRow is the calls of one principal or provider. P50MS and P95MS are
// latency percentiles, in milliseconds, over the calls the policy allowed.
type UsageRow struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind,omitempty"` // for a principal: user or service
	Calls      int64   `json:"calls"`
	ToolErrors int64   `json:"tool_errors"`
	Errors     int64   `json:"errors"`
	Denied     int64   `json:"denied"`
	Timeouts   int64   `json:"timeouts"`
	P50MS      float64 `json:"p50_ms"`
	P95MS      float64 `json:"p95_ms"`
	ReqBytes   int64   `json:"req_bytes"`
	RespBytes  int64   `json:"resp_bytes"`
}

// OAuthProvider is a provider users connect with OAuth: Link starts the
// flow for the admin viewing the page (a one-use link made when followed);
// Command prints a link for another user.
type OAuthProvider struct {
	Provider string `json:"provider"`
	Link     string `json:"link"`
	Command  string `json:"command"`
}

// Session is one open MCP session.
type Session struct {
	// ID is shortened by the handler to its first IDPrefixLen characters.
	ID        string    `json:"id"`
	Principal string    `json:"principal"`
	Endpoint  string    `json:"endpoint"`
	Client    string    `json:"client,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
}

// ReloadStatus is the outcome of the last configuration load or reload.
type ReloadStatus struct {
	At         time.Time `json:"at,omitzero"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	ConfigHash string    `json:"config_hash,omitempty"`
	// NeedsRestart names changed settings that apply only after a restart.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// Event is one recent high-signal event: a provider failed, a reload was
// rejected, a secret was rotated.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
}

// IDPrefixLen is how much of a session ID the page shows.
const IDPrefixLen = 8

// maxMessage caps an event message in a Ring.
const maxMessage = 1024

// now is the clock; tests replace it.
var now = time.Now

//go:embed status.html style.css
var files embed.FS

var (
	css     = mustRead("style.css")
	csp     = "default-src 'none'; style-src 'sha256-" + cssHash() + "'; img-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	funcs   = template.FuncMap{"ts": ts, "ago": ago, "short": short, "badge": badge, "ms": fmtMS, "bytes": fmtBytes}
	page    = template.Must(template.New("status.html").Funcs(funcs).ParseFS(files, "status.html"))
	stateOK = map[switchboard.ProviderState]string{
		switchboard.StateRunning:  "running",
		switchboard.StateQueued:   "starting",
		switchboard.StateStarting: "starting",
		switchboard.StateBackoff:  "backoff",
		switchboard.StateFailed:   "failed",
		switchboard.StateStopping: "stopping",
		switchboard.StateStopped:  "stopped",
	}
)

func mustRead(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func cssHash() string {
	sum := sha256.Sum256([]byte(css))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Handler serves the status returned by get: JSON for "?format=json" or a
// request that accepts application/json but not text/html, HTML otherwise.
// Only GET and HEAD are allowed. Mount it behind the admin authentication.
func Handler(get func(ctx context.Context) Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		st := normalize(get(r.Context()))
		t := now()
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")

		if wantsJSON(r) {
			body, err := json.MarshalIndent(struct {
				Status
				UptimeSeconds int64 `json:"uptime_seconds"`
			}{st, uptimeSeconds(st.StartedAt, t)}, "", "  ")
			if err != nil {
				http.Error(w, "encoding status", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "application/json")
			_, _ = w.Write(append(body, '\n'))
			return
		}
		var buf bytes.Buffer
		if err := page.Execute(&buf, newView(st, t)); err != nil {
			http.Error(w, "rendering status page", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		_, _ = w.Write(buf.Bytes())
	})
}

func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "html":
		return false
	}
	var jsonOK, htmlOK bool
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/json":
			jsonOK = true
		case "text/html":
			htmlOK = true
		}
	}
	return jsonOK && !htmlOK
}

// normalize shortens session IDs, sorts, and makes nil lists empty, on a copy.
func normalize(st Status) Status {
	st.Providers = slices.Clone(st.Providers)
	if st.Providers == nil {
		st.Providers = []switchboard.ProviderStatus{}
	}
	slices.SortStableFunc(st.Providers, func(a, b switchboard.ProviderStatus) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.User, b.User))
	})
	st.Sessions = slices.Clone(st.Sessions)
	if st.Sessions == nil {
		st.Sessions = []Session{}
	}
	for i := range st.Sessions {
		st.Sessions[i].ID = shortID(st.Sessions[i].ID)
	}
	slices.SortStableFunc(st.Sessions, func(a, b Session) int {
		return cmp.Or(cmp.Compare(a.Principal, b.Principal), cmp.Compare(a.Client, b.Client), cmp.Compare(a.Endpoint, b.Endpoint), a.CreatedAt.Compare(b.CreatedAt))
	})
	st.Events = slices.Clone(st.Events)
	if st.Events == nil {
		st.Events = []Event{}
	}
	slices.SortStableFunc(st.Events, func(a, b Event) int { return b.Time.Compare(a.Time) })
	return st
}

func shortID(id string) string {
	if len(id) <= IDPrefixLen {
		return id
	}
	return strings.ToValidUTF8(id[:IDPrefixLen], "") + "…"
}

// view is what the template renders.
type view struct {
	Status
	Now           time.Time
	Uptime        string
	Shared        []providerView
	PerUser       []providerView
	SessionGroups []sessionGroup
	CSS           template.CSS
}

type providerView struct {
	switchboard.ProviderStatus
	Uptime string
}

type sessionGroup struct {
	Principal, Client, Endpoint string
	Count                       int
	Oldest, LastSeen            time.Time
}

func newView(st Status, t time.Time) *view {
	v := &view{Status: st, Now: t, CSS: template.CSS(css), Uptime: "—"}
	if !st.StartedAt.IsZero() {
		v.Uptime = human(t.Sub(st.StartedAt))
	}
	for _, p := range st.Providers {
		pv := providerView{ProviderStatus: p, Uptime: "—"}
		if p.State == switchboard.StateRunning && !p.StartedAt.IsZero() {
			pv.Uptime = human(t.Sub(p.StartedAt))
		}
		if p.User == "" {
			v.Shared = append(v.Shared, pv)
		} else {
			v.PerUser = append(v.PerUser, pv)
		}
	}
	// Sessions are sorted by principal, client and endpoint, so groups are runs.
	for _, s := range st.Sessions {
		n := len(v.SessionGroups)
		if n > 0 {
			g := &v.SessionGroups[n-1]
			if g.Principal == s.Principal && g.Client == s.Client && g.Endpoint == s.Endpoint {
				g.Count++
				if s.CreatedAt.Before(g.Oldest) {
					g.Oldest = s.CreatedAt
				}
				if s.LastSeen.After(g.LastSeen) {
					g.LastSeen = s.LastSeen
				}
				continue
			}
		}
		v.SessionGroups = append(v.SessionGroups, sessionGroup{
			Principal: s.Principal, Client: s.Client, Endpoint: s.Endpoint,
			Count: 1, Oldest: s.CreatedAt, LastSeen: s.LastSeen,
		})
	}
	return v
}

func uptimeSeconds(started, t time.Time) int64 {
	if started.IsZero() {
		return 0
	}
	return int64(t.Sub(started) / time.Second)
}

// ts formats t for a datetime attribute and for people: UTC, to the second.
func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now().Sub(t)
	if d < time.Second {
		return "just now"
	}
	return human(d) + " ago"
}

// human renders d with its two largest units: "3d 4h", "2h 5m", "4m 10s", "12s".
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	days, hours, mins, secs := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm %ds", mins, secs)
	}
	return fmt.Sprintf("%ds", secs)
}

// fmtMS renders a latency in milliseconds with three significant digits.
func fmtMS(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v < 1:
		return fmt.Sprintf("%.0f µs", v*1000)
	case v < 1000:
		return strconv.FormatFloat(v, 'g', 3, 64) + " ms"
	}
	return strconv.FormatFloat(v/1000, 'g', 3, 64) + " s"
}

// fmtBytes renders a byte count in binary units.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// short is a hash's first 12 characters.
func short(s string) string {
	if len(s) <= 12 {
		return s
	}
	return s[:12]
}

// badge is the CSS class for a provider state.
func badge(s switchboard.ProviderState) string { return stateOK[s] }

// Ring keeps the most recent events for the status page. It is safe for
// concurrent use.
type Ring struct {
	mu   sync.Mutex
	buf  []Event
	next int
	n    int
}

// NewRing returns a Ring that keeps the last size events (100 if size <= 0).
func NewRing(size int) *Ring {
	if size <= 0 {
		size = 100
	}
	return &Ring{buf: make([]Event, size)}
}

// Add records an event now. msg must already be redacted; it is cut to 1 KiB.
func (r *Ring) Add(kind, msg string) {
	if len(msg) > maxMessage {
		i := maxMessage
		for i > 0 && !utf8.RuneStart(msg[i]) { // do not split a character
			i--
		}
		msg = msg[:i] + "…"
	}
	e := Event{Time: now().UTC(), Kind: kind, Message: msg}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = e
	r.next = (r.next + 1) % len(r.buf)
	if r.n < len(r.buf) {
		r.n++
	}
}

// List returns the kept events, newest first.
func (r *Ring) List() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Event, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}
