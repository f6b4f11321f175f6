package mux

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// stream is one HTTP response: a single JSON body, or an SSE stream once
// something must go out before the final answer (progress, a log message, a
// request to the client), or from the start for a GET stream or a
// subscriptions/listen stream.
//
// Until it switches to SSE only the handler's goroutine writes, in finish.
// After the switch one writer goroutine owns the ResponseWriter: events and
// the final answer reach it through a buffered channel, so a slow client
// never blocks whoever produced an event (a child's read loop, for
// progress). finish waits for the writer, so nothing writes after the
// handler returns.
type stream struct {
	w         http.ResponseWriter
	heartbeat time.Duration

	mu     sync.Mutex
	sse    bool
	closed bool
	events chan []byte
	done   chan struct{}

	status  int          // the HTTP status sent, for the access log
	dropped atomic.Int64 // events that did not fit
}

// eventQueue bounds the events waiting for a slow client.
const eventQueue = 256

func newStream(w http.ResponseWriter, heartbeat time.Duration) *stream {
	return &stream{w: w, heartbeat: heartbeat}
}

// open switches to SSE at once; the caller must eventually call finish.
func (st *stream) open() {
	st.mu.Lock()
	st.startLocked()
	st.mu.Unlock()
}

func (st *stream) startLocked() {
	if st.sse || st.closed {
		return
	}
	st.sse = true
	st.status = http.StatusOK
	st.events = make(chan []byte, eventQueue)
	st.done = make(chan struct{})
	go st.run()
}

// event sends frame before the final answer, switching to SSE. It never
// blocks: a frame that does not fit the queue is dropped and counted. It
// reports whether the frame was queued.
func (st *stream) event(frame []byte) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	st.startLocked()
	select {
	case st.events <- frame:
		return true
	default:
		st.dropped.Add(1)
		return false
	}
}

// eventWait is event for a frame that must not be lost (a request to the
// client): it waits for room until ctx ends.
func (st *stream) eventWait(ctx context.Context, frame []byte) error {
	for {
		st.mu.Lock()
		if st.closed {
			st.mu.Unlock()
			return errStreamClosed
		}
		st.startLocked()
		select {
		case st.events <- frame:
			st.mu.Unlock()
			return nil
		default:
		}
		st.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// finish sends the final frame, if any, and ends the response: as a JSON
// body with status, or as the last SSE event. It returns once everything
// is written (or the client is gone). Idempotent, and every call waits for
// the writer: a GET stream is finished both by its handler and by the
// session's end, and the handler must not return (letting net/http finish
// the response) while the writer still flushes.
func (st *stream) finish(status int, frame []byte) {
	st.mu.Lock()
	if st.closed {
		sse, done := st.sse, st.done
		st.mu.Unlock()
		if sse {
			<-done
		}
		return
	}
	st.closed = true
	if !st.sse {
		st.mu.Unlock()
		if frame == nil {
			st.status = status
			st.w.WriteHeader(status)
			return
		}
		st.status = status
		writeJSONBody(st.w, status, frame)
		return
	}
	if frame != nil {
		st.events <- frame // the writer drains even when the client is gone
	}
	close(st.events)
	st.mu.Unlock()
	<-st.done
}

// isSSE reports whether the response went out as an SSE stream.
func (st *stream) isSSE() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sse
}

// run is the writer goroutine of an SSE stream.
func (st *stream) run() {
	defer close(st.done)
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	st.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(st.w)
	_ = rc.Flush()
	var tick <-chan time.Time
	if st.heartbeat > 0 {
		t := time.NewTicker(st.heartbeat)
		defer t.Stop()
		tick = t.C
	}
	failed := false
	buf := make([]byte, 0, 512)
	for {
		select {
		case f, ok := <-st.events:
			if !ok {
				return
			}
			if failed {
				continue // drain: the client is gone
			}
			buf = append(buf[:0], "event: message\ndata: "...)
			buf = append(buf, f...)
			buf = append(buf, "\n\n"...)
			if _, err := st.w.Write(buf); err != nil {
				failed = true
				continue
			}
			// Write what is queued before flushing once.
			for drained := false; !drained; {
				select {
				case f, ok := <-st.events:
					if !ok {
						_ = rc.Flush()
						return
					}
					buf = append(buf[:0], "event: message\ndata: "...)
					buf = append(buf, f...)
					buf = append(buf, "\n\n"...)
					if _, err := st.w.Write(buf); err != nil {
						failed = true
					}
				default:
					drained = true
				}
			}
			if cap(buf) > 1<<20 {
				buf = make([]byte, 0, 512)
			}
			if err := rc.Flush(); err != nil {
				failed = true
			}
		case <-tick:
			if failed {
				continue
			}
			if _, err := st.w.Write([]byte(": keep-alive\n\n")); err != nil {
				failed = true
				continue
			}
			if err := rc.Flush(); err != nil {
				failed = true
			}
		}
	}
}

// writeJSONBody writes a complete JSON answer and flushes it at once, so the
// client has it before the bookkeeping that follows (audit record, metrics,
// access log). Content-Length is set so that net/http sends no chunked
// framing and has nothing left to write when the handler returns.
func writeJSONBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	flush(w)
}

// flush sends what w holds. net/http's own writer is flushed directly;
// http.NewResponseController, which also finds a wrapped writer's, costs an
// allocation on every answer.
func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(w).Flush()
}

type streamError string

func (e streamError) Error() string { return string(e) }

// errStreamClosed is returned for an event sent after the response ended.
const errStreamClosed = streamError("the response has ended")
