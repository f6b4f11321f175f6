package critpath

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"testing"
	"time"
)

// childDelay is how long the fake child takes to answer: the child segment
// must account for at least this much per call.
const childDelay = time.Millisecond

// fakeGateway mirrors the gateway's call path with real parts: a loopback HTTP
// server whose handler writes each request to a pipe, a "child" goroutine
// that answers on another pipe after childDelay, a reader goroutine that
// routes the answer back over a channel, and a log file.
type fakeGateway struct {
	toChild *os.File
	answers chan []byte
	log     *os.File
}

func newFakeGateway(t *testing.T) *fakeGateway {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(t.TempDir(), "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{toChild: inW, answers: make(chan []byte, 1), log: log}
	go func() { // the child
		sc := bufio.NewScanner(inR)
		for sc.Scan() {
			time.Sleep(childDelay)
			if _, err := outW.Write(append(sc.Bytes(), '\n')); err != nil {
				return
			}
		}
		outW.Close()
	}()
	go func() { // the reader goroutine
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			g.answers <- bytes.Clone(sc.Bytes())
		}
	}()
	t.Cleanup(func() {
		inW.Close()
		log.Close()
	})
	return g
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fakePipeWrite(g.toChild, body)
	answer := fakeCall(g.answers)
	fakeAnswer(w, answer)
	fakeLog(g.log)
}

//go:noinline
func fakePipeWrite(f *os.File, b []byte) { _, _ = f.Write(append(b, '\n')) }

//go:noinline
func fakeCall(ch chan []byte) []byte { return <-ch }

//go:noinline
func fakeAnswer(w http.ResponseWriter, b []byte) {
	_, _ = w.Write(b)
	w.(http.Flusher).Flush()
}

//go:noinline
func fakeLog(f *os.File) { _, _ = f.WriteString("served one call\n") }

var fakeMarkers = Markers{
	SocketRead:  "net/http.(*connReader).Read",
	PipeWrite:   "critpath.fakePipeWrite",
	ChildWait:   "critpath.fakeCall",
	AnswerWrite: "critpath.fakeAnswer",
	AccessLog:   "critpath.fakeLog",
}

func TestAnalyzeSplitsACallsTime(t *testing.T) {
	srv := httptest.NewServer(newFakeGateway(t))
	defer srv.Close()
	client := srv.Client()
	call := func() {
		resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("ping"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ping" {
			t.Fatalf("answer %q, want ping", b)
		}
	}
	call() // open the keep-alive connection outside the trace

	const calls = 40
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("cannot trace: %v", err)
	}
	for range calls {
		call()
	}
	trace.Stop()

	b, err := Analyze(&buf, fakeMarkers)
	if err != nil {
		t.Fatal(err)
	}
	if b.Calls != calls {
		t.Errorf("Calls = %d, want %d", b.Calls, calls)
	}
	seg := map[string]Segment{}
	var sum time.Duration
	for _, s := range b.Segments {
		seg[s.Name] = s
		sum += s.Total
	}
	if sum != b.Span {
		t.Errorf("segments sum to %s, span is %s: every interval must be attributed once", sum, b.Span)
	}
	// A call waits on the child only if its answer is not there yet when the
	// handler reaches fakeCall. On a loaded machine the handler can lose its
	// CPU for longer than childDelay after the pipe write; that call's time
	// is then (rightly) runnable time, and it has no child interval.
	child := seg[segChild]
	if child.Count > calls || child.Count < calls*9/10 || child.PerCall(b.Calls) < childDelay/2 {
		t.Errorf("child segment: %d intervals, %s per call; want %d (at least %d on a loaded machine) and at least %s", child.Count, child.PerCall(b.Calls), calls, calls*9/10, childDelay/2)
	}
	if b.Waiting() != child.Total {
		t.Errorf("Waiting() = %s, want the child segment's %s", b.Waiting(), child.Total)
	}
	for _, name := range []string{segPipeWrite, segAnswerWrite, segAccessLog} {
		if s := seg[name]; s.Count != calls {
			t.Errorf("%s: %d intervals, want %d", name, s.Count, calls)
		}
	}
	if !child.OnPath || seg[segAccessLog].OnPath || seg[segIdle].OnPath {
		t.Errorf("on-path flags wrong: child %v, access log %v, idle %v", child.OnPath, seg[segAccessLog].OnPath, seg[segIdle].OnPath)
	}
	if seg[segRequest].Total == 0 || seg[segAnswer].Total == 0 || seg[segAfter].Total == 0 {
		t.Errorf("running time not split by phase: request %s, answer %s, after %s", seg[segRequest].Total, seg[segAnswer].Total, seg[segAfter].Total)
	}
	if b.OnPath() < time.Duration(calls)*childDelay {
		t.Errorf("on-path time %s is less than the child's %s", b.OnPath(), time.Duration(calls)*childDelay)
	}
	tab := b.Table()
	if !strings.Contains(tab, segChild) || !strings.Contains(tab, "on the path, in all") {
		t.Errorf("table lacks rows:\n%s", tab)
	}
	t.Logf("\n%s", tab)
}

func TestAnalyzeWithoutAnswers(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("cannot trace: %v", err)
	}
	time.Sleep(time.Millisecond)
	trace.Stop()
	if _, err := Analyze(&buf, fakeMarkers); err == nil || !strings.Contains(err.Error(), "no goroutine wrote an answer") {
		t.Errorf("err = %v, want a plain error naming the missing marker", err)
	}
}
