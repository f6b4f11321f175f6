// Package logbuf coalesces log lines into fewer writes when they come fast.
//
// A gateway under load logs a line per request. Written one by one, each line
// costs a system call, which on a virtual machine is several microseconds of
// the request's CPU. A Writer writes a line at once when the previous write
// is older than its window, so a quiet gateway's log is as immediate as an
// unbuffered one; lines that follow within the window wait for its end and go
// out together, so a busy gateway makes one write per window instead of one
// per line. Lines that must not wait (warnings, errors) use WriteNow, which
// writes everything pending first, so the order of lines is kept.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// maxPending is the most a Writer holds before it writes without waiting for
// the window's end.
const maxPending = 64 << 10

// Writer coalesces writes to an underlying writer. It is safe for concurrent
// use. The zero value is not usable; use New.
type Writer struct {
	w      io.Writer
	window time.Duration
	timer  *time.Timer

	mu      sync.Mutex
	pending []byte
	last    time.Time // when the underlying writer was last written
	armed   bool      // the timer will write pending
	closed  bool      // every write goes straight through
}

// New returns a Writer that delays a line by at most window.
func New(w io.Writer, window time.Duration) *Writer {
	b := &Writer{w: w, window: window}
	b.timer = time.AfterFunc(time.Hour, b.tick)
	b.timer.Stop()
	return b
}

// Write writes p at once if the underlying writer has not been written for a
// window, and otherwise holds it until the window ends. An error writing held
// lines is lost, as a log line's write error is anyway.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.closed || !b.armed && now.Sub(b.last) >= b.window {
		b.flushLocked(now)
		b.last = now
		return b.w.Write(p)
	}
	if len(b.pending)+len(p) > maxPending {
		b.flushLocked(now)
		if len(p) > maxPending {
			return b.w.Write(p)
		}
	}
	b.pending = append(b.pending, p...)
	if !b.armed {
		b.armed = true
		b.timer.Reset(b.window - now.Sub(b.last))
	}
	return len(p), nil
}

// WriteNow writes what is held, then p, before it returns.
func (b *Writer) WriteNow(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.flushLocked(now)
	b.last = now
	return b.w.Write(p)
}

// Flush writes what is held.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked(time.Now())
}

// Close writes what is held and makes every later write go straight through,
// so lines logged while a process exits are not left behind. The underlying
// writer is not closed.
func (b *Writer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.timer.Stop()
	return b.flushLocked(time.Now())
}

func (b *Writer) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = false
	_ = b.flushLocked(time.Now())
}

func (b *Writer) flushLocked(now time.Time) error {
	if len(b.pending) == 0 {
		return nil
	}
	_, err := b.w.Write(b.pending)
	b.pending = b.pending[:0]
	b.last = now
	return err
}
