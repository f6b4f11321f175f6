// Package critpath splits the time of a one-client load, as seen by the
// gateway goroutine that serves the client's connection, into the segments of
// a call: reading and routing the request, the pipe write to the child,
// waiting for the child's answer, framing the answer, writing it to the
// socket, and the bookkeeping after it. It reads a Go execution trace (the
// gateway's /debug/pprof/trace) with golang.org/x/exp/trace.
//
// A CPU profile says where the gateway burns CPU; at one client the question
// is where a call waits, and only the trace's goroutine timeline answers it.
package critpath

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// Markers name the functions (substrings of a frame's function name) whose
// presence on a goroutine's stack, when it enters a system call or blocks,
// tells the segments apart.
type Markers struct {
	SocketRead  string // the HTTP server reading a request
	PipeWrite   string // writing the request to the child's stdin
	ChildWait   string // blocked until the child's answer is routed back
	AnswerWrite string // writing the answer to the client's socket; one per call
	AccessLog   string // writing the access-log line
}

// Gateway are the markers of the Switchboard gateway's fast call path.
var Gateway = Markers{
	SocketRead:  "net/http.(*connReader).Read",
	PipeWrite:   "supervisor.(*Conn).write",
	ChildWait:   "supervisor.(*Conn).Call",
	AnswerWrite: "mux.writeJSONBody",
	AccessLog:   "mux.(*Server).logRequest",
}

// Segment is one kind of interval on the serving goroutine's timeline.
type Segment struct {
	Name string
	// OnPath is true for the segments between the request's arrival and the
	// answer's write: the client waits through them.
	OnPath bool
	Total  time.Duration
	Count  int // intervals
}

// PerCall is the segment's time divided by the calls.
func (s Segment) PerCall(calls int) time.Duration {
	if calls == 0 {
		return 0
	}
	return s.Total / time.Duration(calls)
}

// Breakdown is the timeline of the goroutine that wrote the most answers.
type Breakdown struct {
	Goroutine uint64
	Calls     int           // answer writes
	Span      time.Duration // from its first to its last transition
	Segments  []Segment     // in call order; empty ones left out
}

// OnPath sums the segments a call's client waits through.
func (b *Breakdown) OnPath() time.Duration {
	var d time.Duration
	for _, s := range b.Segments {
		if s.OnPath {
			d += s.Total
		}
	}
	return d
}

// Waiting is the time spent waiting for the child's answer.
func (b *Breakdown) Waiting() time.Duration {
	for _, s := range b.Segments {
		if s.Name == segChild {
			return s.Total
		}
	}
	return 0
}

// Segment names, in the order of a call.
const (
	segRequest     = "request: parse, authenticate, route (running)"
	segRequestWait = "request: runnable, waiting for a CPU"
	segSocketRead  = "socket read syscalls"
	segPipeWrite   = "pipe write to the child (syscall)"
	segChild       = "waiting for the child's answer (pipe, child, reader goroutine)"
	segAnswerWait  = "answer: runnable, waiting for a CPU"
	segAnswer      = "answer: check and frame the child's result (running)"
	segAnswerWrite = "answer write to the socket (syscall)"
	segAfter       = "after the answer: audit, metrics, log line, net/http (running)"
	segAfterWait   = "after the answer: runnable, waiting for a CPU"
	segAccessLog   = "access-log write (syscall)"
	segOtherSys    = "other syscalls"
	segOtherWait   = "other blocking (net/http's background read, locks)"
	segIdle        = "waiting for the client's next request"
)

var order = []struct {
	name   string
	onPath bool
}{
	{segSocketRead, true}, {segRequest, true}, {segRequestWait, true}, {segPipeWrite, true}, {segChild, true},
	{segAnswerWait, true}, {segAnswer, true}, {segAnswerWrite, true},
	{segAfter, false}, {segAfterWait, false}, {segAccessLog, false}, {segOtherSys, false}, {segOtherWait, false}, {segIdle, false},
}

type transition struct {
	at     trace.Time
	to     trace.GoState
	reason string
	stack  string // function names, newline-separated; only for Syscall and Waiting
}

// Analyze reads a trace and returns the breakdown of the goroutine that wrote
// the most answers.
func Analyze(r io.Reader, m Markers) (*Breakdown, error) {
	rd, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading trace: %w", err)
	}
	byG := map[trace.GoID][]transition{}
	answers := map[trace.GoID]int{}
	for {
		ev, err := rd.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading trace: %w", err)
		}
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		_, to := st.Goroutine()
		g := st.Resource.Goroutine()
		t := transition{at: ev.Time(), to: to, reason: st.Reason}
		if to == trace.GoSyscall || to == trace.GoWaiting {
			t.stack = funcs(st.Stack)
			if to == trace.GoSyscall && strings.Contains(t.stack, m.AnswerWrite) {
				answers[g]++
			}
		}
		byG[g] = append(byG[g], t)
	}
	var best trace.GoID
	for g, n := range answers {
		if n > answers[best] || n == answers[best] && g < best {
			best = g
		}
	}
	if answers[best] == 0 {
		return nil, fmt.Errorf("no goroutine wrote an answer (marker %q) in the trace", m.AnswerWrite)
	}
	return walk(byG[best], uint64(best), answers[best], m), nil
}

func funcs(s trace.Stack) string {
	var b strings.Builder
	for f := range s.Frames() {
		b.WriteString(f.Func)
		b.WriteByte('\n')
	}
	return b.String()
}

type phase int

const (
	beforeChild phase = iota
	afterChild
	afterAnswer
)

// walk attributes each interval between two transitions to a segment, by the
// state entered and the call phase the goroutine is in.
func walk(ts []transition, g uint64, calls int, m Markers) *Breakdown {
	totals := map[string]*Segment{}
	add := func(name string, d time.Duration) {
		s := totals[name]
		if s == nil {
			s = &Segment{Name: name}
			totals[name] = s
		}
		s.Total += d
		s.Count++
	}
	ph := afterAnswer
	b := &Breakdown{Goroutine: g, Calls: calls}
	for i, t := range ts {
		// Reading the next request starts a call's first phase.
		if ph == afterAnswer && t.to == trace.GoSyscall && strings.Contains(t.stack, m.SocketRead) {
			ph = beforeChild
		}
		if i+1 == len(ts) {
			break
		}
		d := ts[i+1].at.Sub(t.at)
		switch t.to {
		case trace.GoRunning:
			add(pick(ph, segRequest, segAnswer, segAfter), d)
		case trace.GoRunnable:
			add(pick(ph, segRequestWait, segAnswerWait, segAfterWait), d)
		case trace.GoSyscall:
			switch {
			case strings.Contains(t.stack, m.SocketRead):
				add(segSocketRead, d)
			case strings.Contains(t.stack, m.PipeWrite):
				add(segPipeWrite, d)
			case strings.Contains(t.stack, m.AnswerWrite):
				add(segAnswerWrite, d)
				ph = afterAnswer
			case strings.Contains(t.stack, m.AccessLog):
				add(segAccessLog, d)
			default:
				add(segOtherSys, d)
			}
		case trace.GoWaiting:
			switch {
			case strings.Contains(t.stack, m.ChildWait):
				add(segChild, d)
				ph = afterChild
			case strings.Contains(t.stack, m.SocketRead):
				add(segIdle, d)
			default:
				add(segOtherWait, d)
			}
		}
	}
	if len(ts) > 1 {
		b.Span = ts[len(ts)-1].at.Sub(ts[0].at)
	}
	for _, o := range order {
		if s := totals[o.name]; s != nil {
			s.OnPath = o.onPath
			b.Segments = append(b.Segments, *s)
		}
	}
	return b
}

func pick(ph phase, before, after, done string) string {
	switch ph {
	case beforeChild:
		return before
	case afterChild:
		return after
	default:
		return done
	}
}

// Table renders the breakdown as a markdown table, per call.
func (b *Breakdown) Table() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "| Segment (goroutine %d, %d calls, %s per call) | per call | on the call's path |\n|---|--:|:-:|\n",
		b.Goroutine, b.Calls, round(b.Span/time.Duration(max(b.Calls, 1))))
	for _, s := range b.Segments {
		path := ""
		if s.OnPath {
			path = "yes"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", s.Name, round(s.PerCall(b.Calls)), path)
	}
	fmt.Fprintf(&sb, "| **on the path, in all** | **%s** |  |\n", round(b.OnPath()/time.Duration(max(b.Calls, 1))))
	return sb.String()
}

func round(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}
