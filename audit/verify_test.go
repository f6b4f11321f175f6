package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// cleanLog writes n records (checkpointed on Close) and returns the file.
func cleanLog(t *testing.T, key []byte, n int, users ...string) string {
	t.Helper()
	l := MustOpen(t, Config{DigestKey: key})
	for i := range n {
		rec := toolCall(i + 1)
		if len(users) > 0 {
			rec.Principal = users[i%len(users)]
			rec.Provider = users[i%len(users)] + "-fs"
		}
		mustWrite(t, l, rec)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return l.cfg.File
}

func fileLines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(data), "\n")
}

func writeLines(t *testing.T, name string, lines []string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rehash rewrites records from index from on with mutate applied, recomputing
// every hash as an attacker without the key would.
func rehash(t *testing.T, lines []string, from int, mutate func(*Record)) []string {
	t.Helper()
	out := slices.Clone(lines)
	prev := zeroHash
	for i, line := range lines {
		if line == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if i >= from {
			mutate(&rec)
			enc, err := json.Marshal(newBody(&rec))
			if err != nil {
				t.Fatal(err)
			}
			var h [64]byte
			copy(h[:], prev)
			out[i] = string(appendLine(nil, rec.Seq, &h, enc[1:len(enc)-1]))
			rec.Hash = string(h[:])
		}
		prev = rec.Hash
	}
	return out
}

func TestVerifyDetectsTampering(t *testing.T) {
	otherKey := MustKey(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T, file string)
		keyed  bool // only VerifyWithKey detects it
		line   int
		seq    uint64
		reason string
	}{
		{
			name: "edit one byte",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				lines[4] = strings.Replace(lines[4], "alice", "alicf", 1)
				writeLines(t, file, lines)
			},
			line: 5, seq: 5, reason: "hash mismatch",
		},
		{
			name: "edit one byte of a hash",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				b := []byte(lines[2])
				b[len(b)-5] ^= 1
				lines[2] = string(b)
				writeLines(t, file, lines)
			},
			line: 3, seq: 3, reason: "hash mismatch",
		},
		{
			name: "delete a record",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, slices.Delete(lines, 4, 5))
			},
			line: 5, seq: 6, reason: "seq 6 follows 4",
		},
		{
			name: "swap two records",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				lines[3], lines[4] = lines[4], lines[3]
				writeLines(t, file, lines)
			},
			line: 4, seq: 5, reason: "seq 5 follows 3",
		},
		{
			name: "replay a record",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, slices.Insert(lines, 6, lines[2]))
			},
			line: 7, seq: 3, reason: "seq 3 follows 6",
		},
		{
			name: "blank line",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, slices.Insert(lines, 2, "\n"))
			},
			line: 3, seq: 3, reason: "not a JSON record",
		},
		{
			name: "truncate the tail mid-line",
			tamper: func(t *testing.T, file string) {
				st, _ := os.Stat(file)
				if err := os.Truncate(file, st.Size()-10); err != nil {
					t.Fatal(err)
				}
			},
			line: 10, seq: 10, reason: "incomplete last line",
		},
		{
			name: "truncate whole records",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, lines[:8])
			},
			line: 0, seq: 10, reason: "records were cut from the end",
		},
		{
			name: "rewrite the chain, keep the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 4, func(r *Record) { r.Principal = "mallory" }))
			},
			line: 10, seq: 10, reason: "hash differs from the checkpoint's",
		},
		{
			name: "rewrite the chain and the checkpoint without the key",
			tamper: func(t *testing.T, file string) {
				lines := rehash(t, fileLines(t, file), 4, func(r *Record) { r.Principal = "mallory" })
				writeLines(t, file, lines)
				seq, hash, err := parseChain([]byte(lines[9]))
				if err != nil {
					t.Fatal(err)
				}
				h := head{Seq: seq, Hash: hash, Time: time.Now().UTC(), MAC: headMAC(checkpointKey(otherKey), seq, hash)}
				data, _ := json.Marshal(h)
				if err := os.WriteFile(headFile(file), data, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			keyed: true,
			line:  0, seq: 10, reason: "checkpoint MAC mismatch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := MustKey(t)
			file := cleanLog(t, key, 10)
			mustVerify(t, file, key)
			tt.tamper(t, file)

			check := func(res VerifyResult, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if res.OK || res.Broken == nil {
					t.Fatalf("tampering not detected: %+v", res)
				}
				b := res.Broken
				if b.Line != tt.line || b.Seq != tt.seq || !strings.Contains(b.Reason, tt.reason) {
					t.Errorf("broken = %s; want line %d seq %d %q", b, tt.line, tt.seq, tt.reason)
				}
			}
			check(VerifyWithKey(file, key))
			res, err := Verify(file)
			if tt.keyed {
				if err != nil || !res.OK {
					t.Errorf("Verify without the key: %+v %v (this case needs the key)", res, err)
				}
			} else {
				check(res, err)
			}
		})
	}
}

// Without the checkpoint file, cutting whole records off the end goes unseen:
// the documented limit.
func TestVerifyLimitWithoutCheckpoint(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 10)
	if err := os.Remove(headFile(file)); err != nil {
		t.Fatal(err)
	}
	writeLines(t, file, fileLines(t, file)[:8])
	res := mustVerify(t, file, key)
	if res.Checkpoint != "absent" || res.LastSeq != 8 {
		t.Errorf("verify: %+v", res)
	}
}

func TestVerifyMissingRotatedFile(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key, MaxSizeBytes: 1500})
	for i := range 30 {
		mustWrite(t, l, toolCall(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	backups, err := listBackups(l.cfg.File)
	if err != nil || len(backups) < 3 {
		t.Fatalf("%d backups, %v", len(backups), err)
	}
	if err := os.Remove(backups[1].path); err != nil {
		t.Fatal(err)
	}
	res, err := VerifyWithKey(l.cfg.File, key)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Broken == nil || res.Broken.File != backups[2].path || res.Broken.Line != 1 || !strings.Contains(res.Broken.Reason, "missing") {
		t.Errorf("verify: %+v %v", res, res.Broken)
	}
}

func TestVerifyNoLog(t *testing.T) {
	if _, err := Verify(filepath.Join(t.TempDir(), "nope.log")); err == nil {
		t.Error("Verify of a missing log succeeded")
	}
}

// Open notices records cut from the end against the checkpoint, records it in
// the log, and continues the chain from what is there.
func TestOpenRecordsTruncation(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 10)
	writeLines(t, file, fileLines(t, file)[:8])

	l := MustOpen(t, Config{File: file, DigestKey: key})
	mustWrite(t, l, toolCall(99))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, file)
	if len(recs) != 10 {
		t.Fatalf("%d records", len(recs))
	}
	anomaly := recs[8]
	if anomaly.Seq != 9 || anomaly.Type != TypeAudit || anomaly.Detail["event"] != "open_anomaly" || !strings.Contains(anomaly.Error, "seq 10") {
		t.Errorf("anomaly record: %+v", anomaly)
	}
	res := mustVerify(t, file, key)
	if len(res.Notes) == 0 || !strings.Contains(strings.Join(res.Notes, "\n"), "records are missing") {
		t.Errorf("verify notes: %q", res.Notes)
	}
}

// Open isolates half a line left by a crash: the next record starts on its own
// line and continues the chain; verify still reports the damaged line.
func TestOpenIsolatesIncompleteLine(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 5)
	if err := os.Remove(headFile(file)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":6,"prev_hash":"ab`)
	_ = f.Close()

	l := MustOpen(t, Config{File: file, DigestKey: key})
	mustWrite(t, l, toolCall(7))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := fileLines(t, file)
	if len(lines) != 9 || lines[5] != `{"seq":6,"prev_hash":"ab`+"\n" {
		t.Fatalf("lines: %q", lines)
	}
	var anomaly, next Record
	if err := json.Unmarshal([]byte(lines[6]), &anomaly); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[7]), &next); err != nil {
		t.Fatal(err)
	}
	if anomaly.Seq != 6 || !strings.Contains(anomaly.Error, "incomplete last line") || next.Seq != 7 {
		t.Errorf("after the fragment: %+v / %+v", anomaly, next)
	}
	res, err := Verify(file)
	if err != nil || res.OK || res.Broken.Line != 6 {
		t.Errorf("verify: %+v %v", res.Broken, err)
	}
}

func TestTail(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 6, "alice", "bob")
	tests := []struct {
		name   string
		filter Filter
		json   bool
		want   []string // substrings, one per output line
	}{
		{"all", Filter{}, false, []string{"#1", "#2", "#3", "#4", "#5", "#6"}},
		{"user", Filter{User: "bob"}, false, []string{"#2  tool_call        user:bob ", "#4", "#6"}},
		{"kind:user", Filter{User: "user:alice"}, false, []string{"#1", "#3", "#5"}},
		{"provider", Filter{Provider: "alice-fs"}, false, []string{"alice-fs__read_file", "alice-fs__read_file", "alice-fs__read_file"}},
		{"both", Filter{User: "alice", Provider: "bob-fs"}, false, nil},
		{"json", Filter{User: "bob"}, true, []string{`"seq":2,`, `"seq":4,`, `"seq":6,`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			if err := Tail(context.Background(), file, false, tt.filter, &out, tt.json); err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if out.Len() == 0 {
				got = nil
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(got), len(tt.want), out.String())
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("line %d %q does not contain %q", i, got[i], w)
				}
				if tt.json && !json.Valid([]byte(got[i])) {
					t.Errorf("line %d is not JSON", i)
				}
				if !tt.json && (!strings.Contains(got[i], "allow/ok") || !strings.Contains(got[i], "12ms")) {
					t.Errorf("line %d lacks outcome or latency: %q", i, got[i])
				}
			}
		})
	}
}

func TestFormatRecord(t *testing.T) {
	rec := Record{
		Seq: 7, Time: time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC), Type: TypeConfigReload,
		Outcome: OutcomeError, Error: "line 3: \x1b[2Jbad\nkey",
		Detail: map[string]string{"old": "abc", "new": "d\u202eef"},
	}
	got := FormatRecord(&rec)
	want := `2025-01-02T03:04:05.006Z  #7  config_reload    -                     -                             error               error="line 3: \x1b[2Jbad\nkey"  new=d\u202eef  old=abc`
	if got != want {
		t.Errorf("FormatRecord:\n got %s\nwant %s", got, want)
	}
}

func TestTailFollowsRotation(t *testing.T) {
	old := tailPoll
	tailPoll = 5 * time.Millisecond
	defer func() { tailPoll = old }()

	key := MustKey(t)
	file := filepath.Join(t.TempDir(), "audit.log")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- Tail(ctx, file, true, Filter{}, &out, false) }() // before the file exists

	l, err := Open(Config{File: file, DigestKey: key, MaxSizeBytes: 1500}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 30
	for i := range n {
		mustWrite(t, l, toolCall(i))
		if i%7 == 0 {
			time.Sleep(2 * tailPoll) // let the tailer catch up between rotations now and then
		}
	}
	waitFor(t, "all records tailed", func() bool { return strings.Contains(out.String(), fmt.Sprintf("#%d ", n)) })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Tail: %v", err)
	}
	backups, _ := listBackups(file)
	if len(backups) < 3 {
		t.Errorf("only %d rotations", len(backups))
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("tailed %d lines, want %d:\n%s", len(lines), n, out.String())
	}
	for i, line := range lines {
		if !strings.Contains(line, fmt.Sprintf("#%d ", i+1)) {
			t.Errorf("line %d: %s", i, line)
		}
	}
}
