package mux

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// gatedWriter is a ResponseWriter whose Flush blocks until release is closed.
type gatedWriter struct {
	h        http.Header
	release  chan struct{}
	flushing chan struct{} // closed at the first Flush
	released atomic.Bool
	first    atomic.Bool
}

func (w *gatedWriter) Header() http.Header         { return w.h }
func (w *gatedWriter) WriteHeader(int)             {}
func (w *gatedWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *gatedWriter) Flush() {
	if w.first.CompareAndSwap(false, true) {
		close(w.flushing)
	}
	<-w.release
	w.released.Store(true)
}

// TestSecondFinishWaitsForTheWriter: a GET stream is finished by the session's
// end and by its own handler. Whichever call comes second must not return
// while the writer goroutine still holds the ResponseWriter: net/http
// finishes the response as soon as the handler returns, and a flush after
// that is a data race (seen in CI as a race report from TestAgentClients).
func TestSecondFinishWaitsForTheWriter(t *testing.T) {
	w := &gatedWriter{h: http.Header{}, release: make(chan struct{}), flushing: make(chan struct{})}
	st := newStream(w, 0)
	st.open()
	<-w.flushing // the writer is inside its first Flush

	first := make(chan struct{})
	go func() { st.finish(http.StatusOK, nil); close(first) }() // the session's end
	for {
		st.mu.Lock()
		closed := st.closed
		st.mu.Unlock()
		if closed {
			break
		}
		time.Sleep(time.Millisecond)
	}

	time.AfterFunc(20*time.Millisecond, func() { close(w.release) })
	st.finish(http.StatusOK, nil) // the handler's own finish
	if !w.released.Load() {
		t.Fatal("the second finish returned while the writer was still flushing")
	}
	<-first
}
