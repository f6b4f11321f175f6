package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/switchboard-mcp/switchboard"
)

// tailPoll is how often Tail looks for growth and rotation when following.
var tailPoll = 250 * time.Millisecond

// Filter selects records for Tail. Empty fields match everything.
type Filter struct {
	// User matches the principal, as "alice" or "user:alice".
	User string
	// Provider matches the provider exactly.
	Provider string
}

func (f Filter) match(r *Record) bool {
	if f.User != "" && f.User != r.Principal && f.User != r.PrincipalKind+":"+r.Principal {
		return false
	}
	return f.Provider == "" || f.Provider == r.Provider
}

// Tail writes the records of the current log file that match filter to out:
// the raw JSON lines with jsonOut, otherwise one readable line per record (time,
// seq, type, principal, provider__tool, decision/outcome, latency, error and
// details, with control characters escaped). With follow it then waits for new
// records, following rotation (reading any file rotated away between two polls),
// until ctx ends, and returns nil. A record whose seq is not above the last one
// shown is skipped; use Verify to check the chain.
func Tail(ctx context.Context, file string, follow bool, filter Filter, out io.Writer, jsonOut bool) error {
	f, err := os.Open(file)
	for err != nil {
		if !follow || !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tailing audit log: %w", err)
		}
		if !sleep(ctx, tailPoll) {
			return nil
		}
		f, err = os.Open(file)
	}
	defer func() { _ = f.Close() }()

	t := &tailer{out: out, filter: filter, json: jsonOut}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		if err := t.drain(r); err != nil {
			return fmt.Errorf("tailing audit log: %w", err)
		}
		if !follow {
			return t.flush()
		}
		next := rotated(f, file)
		if next == nil {
			if !sleep(ctx, tailPoll) {
				return nil
			}
			continue
		}
		// The old file is final once moved: read its last records, then any
		// file rotated away since, then the new one.
		err := t.drain(r)
		if err == nil {
			err = t.flush()
		}
		if err == nil {
			err = t.backups(file, r)
		}
		_ = f.Close()
		f = next
		r.Reset(f)
		if err != nil {
			return fmt.Errorf("tailing audit log: %w", err)
		}
	}
}

type tailer struct {
	out     io.Writer
	filter  Filter
	json    bool
	partial []byte // a line without its newline yet
	last    uint64 // highest seq shown or skipped by the filter
}

// drain reads r to its end; an incomplete last line waits in t.partial.
func (t *tailer) drain(r *bufio.Reader) error {
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			t.partial = append(t.partial, line...)
			return nil
		}
		if err != nil {
			return err
		}
		if len(t.partial) > 0 {
			line, t.partial = append(t.partial, line...), nil
		}
		if err := t.emit(line[:len(line)-1]); err != nil {
			return err
		}
	}
}

// flush shows an incomplete last line, which will not be completed.
func (t *tailer) flush() error {
	if len(t.partial) == 0 {
		return nil
	}
	line := t.partial
	t.partial = nil
	return t.emit(line)
}

// backups reads the rotated files holding records after the last one seen.
func (t *tailer) backups(file string, r *bufio.Reader) error {
	bs, err := listBackups(file)
	if err != nil {
		return err
	}
	for i, b := range bs {
		if i+1 < len(bs) && bs[i+1].first <= t.last+1 {
			continue // every record in b is at most t.last
		}
		f, err := os.Open(b.path)
		if err != nil {
			return err
		}
		r.Reset(f)
		err = t.drain(r)
		if err == nil {
			err = t.flush()
		}
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *tailer) emit(line []byte) error {
	var rec Record
	if err := json.Unmarshal(line, &rec); err != nil {
		if t.json {
			return nil
		}
		_, err := fmt.Fprintf(t.out, "(unreadable line of %d bytes)\n", len(line))
		return err
	}
	if rec.Seq <= t.last {
		return nil
	}
	t.last = rec.Seq
	if !t.filter.match(&rec) {
		return nil
	}
	if t.json {
		_, err := t.out.Write(append(line, '\n'))
		return err
	}
	_, err := io.WriteString(t.out, FormatRecord(&rec)+"\n")
	return err
}

// rotated returns the new file at path if it is no longer the open file f.
func rotated(f *os.File, path string) *os.File {
	cur, err := f.Stat()
	if err != nil {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil || os.SameFile(cur, st) {
		return nil
	}
	nf, err := os.Open(path)
	if err != nil {
		return nil
	}
	return nf
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// FormatRecord renders rec as one readable line, without a newline. Control
// characters, invalid UTF-8 and bidirectional overrides are escaped, so a record
// cannot forge lines or drive the terminal.
func FormatRecord(rec *Record) string {
	var b strings.Builder
	b.WriteString(rec.Time.UTC().Format("2006-01-02T15:04:05.000Z"))
	b.WriteString("  #")
	b.WriteString(strconv.FormatUint(rec.Seq, 10))
	b.WriteString("  ")
	pad(&b, clean(rec.Type), 15)

	principal := rec.Principal
	if rec.PrincipalKind != "" && principal != "" {
		principal = rec.PrincipalKind + ":" + principal
	}
	pad(&b, orDash(clean(principal)), 20)

	target := rec.Provider
	switch {
	case rec.Provider != "" && rec.Tool != "":
		target = rec.Provider + switchboard.ToolSeparator + rec.Tool
	case rec.Tool != "":
		target = rec.Tool
	}
	pad(&b, orDash(clean(target)), 28)

	result := rec.Outcome
	if rec.Decision != "" {
		result = strings.TrimSuffix(rec.Decision+"/"+rec.Outcome, "/")
	}
	pad(&b, orDash(clean(result)), 16)

	if rec.LatencyMS > 0 || rec.Type == TypeToolCall {
		b.WriteString(strconv.FormatInt(rec.LatencyMS, 10))
		b.WriteString("ms")
	}
	if rec.Error != "" {
		b.WriteString("  error=")
		b.WriteString(strconv.Quote(rec.Error))
	}
	if rec.TraceID != "" {
		b.WriteString("  trace=")
		b.WriteString(clean(rec.TraceID))
	}
	keys := make([]string, 0, len(rec.Detail))
	for k := range rec.Detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString("  ")
		b.WriteString(clean(k))
		b.WriteByte('=')
		b.WriteString(clean(rec.Detail[k]))
	}
	return strings.TrimRight(b.String(), " ")
}

func pad(b *strings.Builder, s string, width int) {
	b.WriteString(s)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b.WriteByte(' ')
	}
	b.WriteString("  ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clean escapes everything in s that a terminal could act on.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if unsafeRune(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	switch {
	case r == utf8.RuneError, unicode.IsControl(r), r == '\u2028', r == '\u2029':
		return true
	case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\u200e', r == '\u200f':
		return true
	}
	return false
}
