package providers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// Timing of file-triggered reloads (see "Live reload" in docs/configuration.md).
const (
	// WatchQuiet is how long a watched file must see no event before it is
	// read; two reads 100 ms apart must then agree.
	WatchQuiet = 300 * time.Millisecond
	// WatchSettle is how long a file written in place must have been
	// unchanged before a disruptive change in it (one that stops or restarts a
	// provider or changes what callers may see or do) is applied. A writer that
	// pauses mid-file for less than this never gets its valid prefix applied.
	WatchSettle = 2 * time.Second
)

// Watcher watches one file (gateway.yaml, or a skill) through its folder, so
// that a rename-over and a Kubernetes ..data symlink swap are both seen and
// the watch survives them, and reports when the file's bytes change.
type Watcher struct {
	path string
	opts WatchOptions

	mu   sync.Mutex
	want string // hash of the bytes last reported, "" after Superseded
}

// WatchOptions configure a Watcher.
type WatchOptions struct {
	Logger zerolog.Logger
	// Disruptive reports whether the file's bytes would stop or restart a
	// provider or change access if applied; such a change written into the
	// file in place (perhaps a valid prefix of what the writer is still
	// writing) is reported only once the file has been unchanged for
	// WatchSettle. Nil: no change is disruptive.
	Disruptive func(data []byte) bool
	// Changed is called with the hash (HashBytes) of the bytes to apply.
	Changed func(hash string)
}

// NewWatcher returns a watcher of path; Run starts it.
func NewWatcher(path string, opts WatchOptions) *Watcher {
	return &Watcher{path: path, opts: opts}
}

// Superseded tells the watcher that the change it reported as hash was not
// applied because the file changed again before it was read: the bytes it
// reported are not in force, so if the file goes back to them they are
// reported again.
func (w *Watcher) Superseded(hash string) {
	w.mu.Lock()
	if w.want == hash {
		w.want = ""
	}
	w.mu.Unlock()
}

func (w *Watcher) wanted() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.want
}

// Run watches until ctx ends. Bursts of events are debounced (WatchQuiet); a
// file still being written is read again until two reads agree. A change
// that arrived by replacing the file is complete and reported at once; a
// change written in place that is disruptive is reported once the file has
// been unchanged for WatchSettle. If the folder cannot be watched, it polls
// every 2 s instead.
func (w *Watcher) Run(ctx context.Context) {
	log := w.opts.Logger
	dir, base := filepath.Dir(w.path), filepath.Base(w.path)
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		err = fw.Add(dir)
	}
	var events <-chan fsnotify.Event
	var poll <-chan time.Time
	polling := err != nil
	if polling {
		log.Warn().Err(err).Str("file", w.path).Msg("cannot watch the folder; polling every 2s instead")
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		poll = t.C
	} else {
		defer fw.Close()
		events = fw.Events
	}
	seen := FileHash(w.path)
	w.mu.Lock()
	w.want = seen
	w.mu.Unlock()
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
				debounce = time.After(WatchQuiet)
			}
		case <-poll:
			debounce = time.After(0)
		case <-debounce:
			debounce = nil
			data, err := os.ReadFile(w.path)
			a := HashBytes(data, err)
			time.Sleep(100 * time.Millisecond)
			if b := FileHash(w.path); a != b {
				changedAt = time.Now()
				debounce = time.After(WatchQuiet) // still being written
				continue
			}
			if a != seen {
				seen = a
				if polling {
					changedAt = time.Now()
				}
			}
			if a == "" || a == w.wanted() {
				continue
			}
			if inPlace && w.opts.Disruptive != nil && w.opts.Disruptive(data) {
				if wait := time.Until(changedAt.Add(WatchSettle)); wait > 0 {
					log.Debug().Dur("wait", wait).Str("file", w.path).Msg("file written in place; waiting for it to settle before a disruptive reload")
					debounce = time.After(wait)
					continue
				}
			}
			w.mu.Lock()
			w.want = a
			w.mu.Unlock()
			if w.opts.Changed != nil {
				w.opts.Changed(a)
			}
		}
	}
}

// HashBytes is the hex SHA-256 of b, or "" when err is set.
func HashBytes(b []byte, err error) string {
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// FileHash is the hex SHA-256 of the file's bytes, or "" when it cannot be read.
func FileHash(path string) string {
	b, err := os.ReadFile(path)
	return HashBytes(b, err)
}
