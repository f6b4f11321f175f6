package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Stderr handling limits.
const (
	stderrMaxLine   = 8 << 10 // longer lines are truncated
	stderrTailLines = 20      // lines kept for Status
	stderrLogRate   = 100     // lines per second logged; the rest are counted
)

// tail keeps the last stderrTailLines lines in reused buffers. Redaction happens
// when the lines are read, not on the hot path.
type tail struct {
	mu    sync.Mutex
	lines [stderrTailLines][]byte
	next  int
	n     int
}

func (t *tail) add(line []byte) {
	t.mu.Lock()
	t.lines[t.next] = append(t.lines[t.next][:0], line...)
	t.next = (t.next + 1) % len(t.lines)
	t.n = min(t.n+1, len(t.lines))
	t.mu.Unlock()
}

// snapshot returns the kept lines, oldest first, passed through redact.
func (t *tail) snapshot(redact func(string) string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, t.n)
	start := (t.next - t.n + len(t.lines)) % len(t.lines)
	for i := range t.n {
		out = append(out, redact(string(t.lines[(start+i)%len(t.lines)])))
	}
	return out
}

// drainStderr reads r line by line until it ends, logging lines at info
// (rate limited) and keeping the tail. It never stops reading, so the child can
// never block on a full stderr pipe.
func drainStderr(r io.Reader, log zerolog.Logger, t *tail, redact func(string) string) {
	br := bufio.NewReaderSize(r, stderrMaxLine)
	lim := rate.NewLimiter(stderrLogRate, stderrLogRate)
	dropped := 0
	var lastWarn time.Time
	warn := func() {
		log.Warn().Int("dropped", dropped).Msg("dropped provider stderr lines over the log rate")
		dropped = 0
		lastWarn = time.Now()
	}
	// flush reports dropped lines at most once a second.
	flush := func() {
		if dropped > 0 && time.Since(lastWarn) >= time.Second {
			warn()
		}
	}
	defer func() {
		if dropped > 0 {
			warn()
		}
	}()
	for {
		line, err := br.ReadSlice('\n')
		truncated := false
		for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of a long line
			truncated = true
			if len(line) > 0 {
				t.add(bytes.TrimRight(line, "\r\n"))
				if lim.Allow() {
					flush()
					log.Info().Bool("truncated", true).Str("line", redact(string(line))).Msg("provider stderr")
				} else {
					dropped++
				}
				line = nil
			}
			_, err = br.ReadSlice('\n')
		}
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 && !truncated {
			t.add(line)
			if lim.Allow() {
				flush()
				log.Info().Str("line", redact(string(line))).Msg("provider stderr")
			} else {
				dropped++
			}
		}
		if err != nil {
			return
		}
	}
}

// rateWindow counts events in fixed one-minute windows.
type rateWindow struct {
	start time.Time
	n     int
}

// add records one event at now and returns the count in the current window.
func (w *rateWindow) add(now time.Time) int {
	if now.Sub(w.start) >= time.Minute {
		w.start, w.n = now, 0
	}
	w.n++
	return w.n
}
