package logbuf

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder counts the writes made to it.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	return r.buf.Write(p)
}

func (r *recorder) state() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQuietLinesGoOutAtOnce(t *testing.T) {
	r := &recorder{}
	b := New(r, time.Millisecond)
	for i := range 3 {
		if i > 0 {
			time.Sleep(3 * time.Millisecond) // past the window
		}
		if _, err := b.Write([]byte(fmt.Sprintf("line %d\n", i))); err != nil {
			t.Fatal(err)
		}
		// time.Sleep sleeps at least as long as asked, so the window has
		// always passed: the line is written before Write returns.
		if got, n := r.state(); n != i+1 || !strings.HasSuffix(got, fmt.Sprintf("line %d\n", i)) {
			t.Fatalf("line %d was held: %d writes, %q", i, n, got)
		}
	}
}

func TestBurstIsCoalescedAndOrdered(t *testing.T) {
	r := &recorder{}
	b := New(r, time.Hour) // nothing but the first line leaves before Flush
	var want strings.Builder
	for i := range 100 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if got, n := r.state(); n != 1 || got != "line 0\n" {
		t.Fatalf("before the window ends: %d writes, %q; want the first line alone", n, got)
	}
	if _, err := b.WriteNow([]byte("error\n")); err != nil {
		t.Fatal(err)
	}
	want.WriteString("error\n")
	got, n := r.state()
	if got != want.String() {
		t.Fatalf("WriteNow did not write the held lines first, in order:\n%s", got)
	}
	if n != 3 {
		t.Fatalf("%d writes for a line, a burst and an error; want 3", n)
	}
}

func TestWindowEndWritesHeldLines(t *testing.T) {
	r := &recorder{}
	b := New(r, 20*time.Millisecond)
	for i := range 10 {
		_, _ = b.Write([]byte(fmt.Sprintf("line %d\n", i)))
	}
	waitFor(t, func() bool { s, _ := r.state(); return strings.Contains(s, "line 9\n") }, "the window's end")
	if _, n := r.state(); n != 2 {
		t.Fatalf("%d writes; want the first line, then the rest together", n)
	}
}

func TestLargeLinesAreNotHeldPastTheCap(t *testing.T) {
	r := &recorder{}
	b := New(r, time.Hour)
	_, _ = b.Write([]byte("first\n"))
	big := bytes.Repeat([]byte("x"), maxPending+1)
	if _, err := b.Write(big); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.state(); len(got) != len("first\n")+len(big) {
		t.Fatalf("a line larger than the cap was held (%d bytes written)", len(got))
	}
	for range 3 {
		_, _ = b.Write(bytes.Repeat([]byte("y"), maxPending/2))
	}
	if got, _ := r.state(); !strings.Contains(got, "yyy") {
		t.Fatal("held lines past the cap were not written")
	}
}

func TestCloseWritesHeldAndLaterLines(t *testing.T) {
	r := &recorder{}
	b := New(r, time.Hour)
	_, _ = b.Write([]byte("a\n"))
	_, _ = b.Write([]byte("b\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = b.Write([]byte("c\n"))
	if got, _ := r.state(); got != "a\nb\nc\n" {
		t.Fatalf("after Close: %q", got)
	}
}

func TestConcurrentWritersLoseNothing(t *testing.T) {
	r := &recorder{}
	b := New(r, 2*time.Millisecond)
	var wg sync.WaitGroup
	const writers, lines = 8, 500
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				_, _ = b.Write([]byte(fmt.Sprintf("w%d-%d\n", w, i)))
			}
		}()
	}
	wg.Wait()
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	got, writes := r.state()
	if n := strings.Count(got, "\n"); n != writers*lines {
		t.Fatalf("%d lines written; want %d", n, writers*lines)
	}
	last := make([]int, writers) // each writer's lines stay in its order
	for i := range last {
		last[i] = -1
	}
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		var w, i int
		if _, err := fmt.Sscanf(l, "w%d-%d", &w, &i); err != nil || w < 0 || w >= writers {
			t.Fatalf("torn line %q", l)
		}
		if i != last[w]+1 {
			t.Fatalf("writer %d: line %d after %d", w, i, last[w])
		}
		last[w] = i
	}
	t.Logf("%d lines in %d writes", writers*lines, writes)
}
