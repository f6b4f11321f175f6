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
// every hash after them with m, as an attacker would: with a nil key (the
// unkeyed SHA-256 of pre-upgrade logs) or a key of their own.
func rehash(t *testing.T, lines []string, from int, m *lineMAC, mutate func(*Record)) []string {
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
			out[i] = string(appendLine(nil, m, rec.Seq, &h, enc[1:len(enc)-1]))
			rec.Hash = string(h[:])
		}
		prev = rec.Hash
	}
	return out
}

// writeHeadFile writes a checkpoint as someone with key would (format 2), or
// in the pre-upgrade format with v1.
func writeHeadFile(t *testing.T, file string, key []byte, v1 bool, seq uint64, hash string) {
	t.Helper()
	k := deriveKeys(key)
	h := head{V: headVersion, Seq: seq, Hash: hash, KeyID: k.id, Time: time.Now().UTC()}
	h.MAC = headMACv2(k.ck, seq, hash, k.id)
	if v1 {
		h = head{Seq: seq, Hash: hash, Time: time.Now().UTC(), MAC: headMAC(k.ck1, seq, hash)}
	}
	data, _ := json.Marshal(h)
	if err := os.WriteFile(headFile(file), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// lastChain returns the seq and hash of the last of lines (which end in "").
func lastChain(t *testing.T, lines []string) (uint64, string) {
	t.Helper()
	seq, hash, err := parseChain([]byte(lines[len(lines)-2]))
	if err != nil {
		t.Fatal(err)
	}
	return seq, hash
}

func removeHead(t *testing.T, file string) {
	t.Helper()
	if err := os.Remove(headFile(file)); err != nil {
		t.Fatal(err)
	}
}

// Each tampering of a clean 10-record log is reported at the right place with
// the audit key; without it, what the structure alone shows is reported, and
// the rest is unproven (never OK).
func TestVerifyDetectsTampering(t *testing.T) {
	otherKey := MustKey(t)
	type want struct {
		line   int // 0: the checkpoint
		seq    uint64
		reason string // "": unproven, not broken
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, file string)
		keyed  want // VerifyWithKey
		nokey  want // Verify
	}{
		{
			name: "edit one byte",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				lines[4] = strings.Replace(lines[4], "alice", "alicf", 1)
				writeLines(t, file, lines)
			},
			keyed: want{5, 5, "hash mismatch"},
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
			keyed: want{3, 3, "hash mismatch"},
			nokey: want{4, 4, "prev_hash does not match"},
		},
		{
			name: "delete a record",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, slices.Delete(lines, 4, 5))
			},
			keyed: want{5, 6, "seq 6 follows 4"},
			nokey: want{5, 6, "seq 6 follows 4"},
		},
		{
			name: "swap two records",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				lines[3], lines[4] = lines[4], lines[3]
				writeLines(t, file, lines)
			},
			keyed: want{4, 5, "seq 5 follows 3"},
			nokey: want{4, 5, "seq 5 follows 3"},
		},
		{
			name: "replay a record",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, slices.Insert(lines, 6, lines[2]))
			},
			keyed: want{7, 3, "seq 3 follows 6"},
			nokey: want{7, 3, "seq 3 follows 6"},
		},
		{
			name: "blank line",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, slices.Insert(lines, 2, "\n"))
			},
			keyed: want{3, 3, "not a JSON record"},
			nokey: want{3, 3, "not a JSON record"},
		},
		{
			name: "truncate the tail mid-line",
			tamper: func(t *testing.T, file string) {
				st, _ := os.Stat(file)
				if err := os.Truncate(file, st.Size()-10); err != nil {
					t.Fatal(err)
				}
			},
			keyed: want{10, 10, "incomplete last line"},
			nokey: want{10, 10, "incomplete last line"},
		},
		{
			name: "truncate whole records",
			tamper: func(t *testing.T, file string) {
				lines := fileLines(t, file)
				writeLines(t, file, lines[:8])
			},
			keyed: want{0, 10, "records were cut from the end"},
			nokey: want{0, 10, "records were cut from the end"},
		},
		{
			name: "truncate whole records and delete the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, fileLines(t, file)[:8])
				removeHead(t, file)
			},
			keyed: want{0, 8, "checkpoint is missing"},
			nokey: want{0, 8, "checkpoint is missing"},
		},
		{
			name: "delete the checkpoint",
			tamper: func(t *testing.T, file string) {
				removeHead(t, file)
			},
			keyed: want{0, 10, "checkpoint is missing"},
			nokey: want{0, 10, "checkpoint is missing"},
		},
		{
			// The attack of the hardening issue: rewrite a record, recompute
			// every later hash as the pre-upgrade chain did, delete the
			// checkpoint.
			name: "rewrite the chain unkeyed, delete the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 4, newLineMAC(nil), func(r *Record) { r.Principal = "mallory" }))
				removeHead(t, file)
			},
			keyed: want{5, 5, "unkeyed hash after keyed records"},
			nokey: want{5, 5, "unkeyed hash after keyed records"},
		},
		{
			name: "rewrite the chain unkeyed, keep the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 4, newLineMAC(nil), func(r *Record) { r.Principal = "mallory" }))
			},
			keyed: want{5, 5, "unkeyed hash after keyed records"},
			nokey: want{5, 5, "unkeyed hash after keyed records"},
		},
		{
			name: "rewrite the chain under another key, delete the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 4, newLineMAC(deriveKeys(otherKey).chain), func(r *Record) { r.Principal = "mallory" }))
				removeHead(t, file)
			},
			keyed: want{5, 5, "hash mismatch"},
			nokey: want{0, 10, "checkpoint is missing"},
		},
		{
			name: "rewrite the chain and the checkpoint under another key",
			tamper: func(t *testing.T, file string) {
				lines := rehash(t, fileLines(t, file), 4, newLineMAC(deriveKeys(otherKey).chain), func(r *Record) { r.Principal = "mallory" })
				writeLines(t, file, lines)
				seq, hash := lastChain(t, lines)
				writeHeadFile(t, file, otherKey, false, seq, hash)
			},
			keyed: want{5, 5, "hash mismatch: the record was altered, or written under another audit key (the checkpoint names audit key"},
		},
		{
			// Downgrade: make every record look pre-upgrade.
			name: "rewrite every record unkeyed, delete the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 0, newLineMAC(nil), func(r *Record) { r.Principal = "mallory" }))
				removeHead(t, file)
			},
		},
		{
			name: "rewrite every record unkeyed, keep the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 0, newLineMAC(nil), func(r *Record) { r.Principal = "mallory" }))
			},
			keyed: want{10, 10, "hash differs from the checkpoint's"},
			nokey: want{10, 10, "hash differs from the checkpoint's"},
		},
		{
			name: "put back a pre-upgrade checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, fileLines(t, file)[:6])
				seq, hash := lastChain(t, fileLines(t, file))
				writeHeadFile(t, file, otherKey, true, seq, hash)
			},
			keyed: want{0, 6, "pre-upgrade format but the chain is keyed"},
			nokey: want{0, 6, "pre-upgrade format but the chain is keyed"},
		},
		{
			name: "garble the checkpoint",
			tamper: func(t *testing.T, file string) {
				if err := os.WriteFile(headFile(file), []byte(`{"v":2,"seq":`), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			keyed: want{0, 10, "checkpoint is unreadable"},
			nokey: want{0, 10, "checkpoint is unreadable"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := MustKey(t)
			file := cleanLog(t, key, 10)
			mustVerify(t, file, key)
			tt.tamper(t, file)

			check := func(how string, w want, res VerifyResult, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				if res.OK {
					t.Fatalf("%s: tampering not detected: %+v", how, res)
				}
				if w.reason == "" {
					if res.Broken != nil || res.Unproven == "" {
						t.Errorf("%s: broken = %v, unproven = %q; want unproven only", how, res.Broken, res.Unproven)
					}
					return
				}
				b := res.Broken
				if b == nil {
					t.Fatalf("%s: not broken (unproven %q); want line %d seq %d %q", how, res.Unproven, w.line, w.seq, w.reason)
				}
				if b.Line != w.line || b.Seq != w.seq || !strings.Contains(b.Reason, w.reason) {
					t.Errorf("%s: broken = %s; want line %d seq %d %q", how, b, w.line, w.seq, w.reason)
				}
			}
			res, err := VerifyWithKey(file, key)
			check("VerifyWithKey", tt.keyed, res, err)
			res, err = Verify(file)
			check("Verify without the key", tt.nokey, res, err)
		})
	}
}

// Verifying with another key than the log's (the audit key was removed from
// the vault and a new one made) fails at the first record and says why.
func TestVerifyWithAnotherKeyFails(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 3)
	other := MustKey(t)
	res, err := VerifyWithKey(file, other)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Broken == nil || res.Broken.Line != 1 ||
		!strings.Contains(res.Broken.Reason, "the checkpoint names audit key "+KeyID(key)+", but the key given is "+KeyID(other)) {
		t.Errorf("verify with another key: %+v %v", res, res.Broken)
	}
}

// Without the key, verify checks the structure but never says OK.
func TestVerifyWithoutKeyIsUnproven(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 3)
	res, err := Verify(file)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Broken != nil || !strings.Contains(res.Unproven, "no audit key") || res.Records != 3 {
		t.Errorf("verify without key: %+v", res)
	}
}

// legacyLog writes n records as the pre-upgrade gateway did: unkeyed SHA-256
// hashes and, with ckSeq > 0, a format-1 checkpoint at that seq.
func legacyLog(t *testing.T, key []byte, n int, ckSeq uint64) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "audit.log")
	m := newLineMAC(nil)
	var buf []byte
	var prev [64]byte
	copy(prev[:], zeroHash)
	hashes := map[uint64]string{}
	for i := range n {
		rec := toolCall(i + 1)
		rec.Time = time.Now()
		enc, err := appendBody(nil, &rec)
		if err != nil {
			t.Fatal(err)
		}
		buf = appendLine(buf, m, uint64(i+1), &prev, enc[1:len(enc)-1])
		hashes[uint64(i+1)] = string(prev[:])
	}
	if err := os.WriteFile(file, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	if ckSeq > 0 {
		writeHeadFile(t, file, key, true, ckSeq, hashes[ckSeq])
	}
	return file
}

// Logs written before the chain was keyed stay readable, and verify says
// exactly what it can prove about them: all of them when a pre-upgrade
// checkpoint pins them, nothing beyond the links when none does. Once the
// gateway opens such a log it keys the rest, and the old records are proven
// unchanged from then on.
func TestVerifyPreUpgradeLog(t *testing.T) {
	key := MustKey(t)
	t.Run("checkpoint pins every record", func(t *testing.T) {
		file := legacyLog(t, key, 5, 5)
		res := mustVerify(t, file, key)
		if res.Legacy != 5 || res.Checkpoint != "pre-upgrade format, matched, MAC verified" ||
			!strings.Contains(strings.Join(res.Notes, "\n"), "pins them all") {
			t.Errorf("verify: %+v", res)
		}
	})
	t.Run("checkpoint pins some", func(t *testing.T) {
		file := legacyLog(t, key, 5, 3)
		res, err := VerifyWithKey(file, key)
		if err != nil || res.OK || res.Broken != nil || !strings.Contains(res.Unproven, "nothing pins seq 4..5") {
			t.Errorf("verify: %+v %v", res, err)
		}
	})
	t.Run("no checkpoint", func(t *testing.T) {
		file := legacyLog(t, key, 5, 0)
		res, err := VerifyWithKey(file, key)
		if err != nil || res.OK || res.Broken != nil || !strings.Contains(res.Unproven, "no checkpoint pins them") {
			t.Errorf("verify: %+v %v", res, err)
		}
	})
	t.Run("pre-upgrade checkpoint under another key", func(t *testing.T) {
		file := legacyLog(t, MustKey(t), 5, 5)
		res, err := VerifyWithKey(file, key)
		if err != nil || res.OK || res.Broken == nil || !strings.Contains(res.Broken.Reason, "checkpoint MAC mismatch") {
			t.Errorf("verify: %+v %v", res, err)
		}
	})
	for _, ck := range []uint64{0, 5} {
		t.Run(fmt.Sprintf("opened by the gateway, checkpoint at %d", ck), func(t *testing.T) {
			file := legacyLog(t, key, 5, ck)
			l := MustOpen(t, Config{File: file, DigestKey: key})
			if len(l.Anomalies()) != 0 {
				t.Errorf("anomalies: %q", l.Anomalies())
			}
			mustWrite(t, l, toolCall(6))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			_, recs := readRecords(t, file)
			if len(recs) != 7 || recs[5].Detail["event"] != EventChainKeyed || recs[5].Detail["legacy_through_seq"] != "5" {
				t.Fatalf("records: %+v", recs)
			}
			res, err := VerifyWithKey(file, key)
			if err != nil || res.Broken != nil || res.Legacy != 5 {
				t.Fatalf("verify: %+v %v", res, err)
			}
			const since = "seq 1..5 were written before the chain was keyed; the keyed record seq 6"
			if ck == 5 {
				// Pinned by the pre-upgrade checkpoint, then by the keyed chain.
				if notes := strings.Join(res.Notes, "\n"); !res.OK || !strings.Contains(notes, since) || !strings.Contains(notes, "the pre-upgrade checkpoint had pinned them (through seq 5)") {
					t.Errorf("verify: %+v", res)
				}
			} else if res.OK || !strings.Contains(res.Unproven, since) || !strings.Contains(res.Unproven, "nothing pinned seq 1..5") {
				// Unchanged since keyed, but nothing shows what came before.
				t.Errorf("verify: %+v", res)
			}
			// Rewriting the pre-upgrade part now breaks the keyed record after it.
			lines := fileLines(t, file)
			writeLines(t, file, append(rehash(t, lines[:5], 2, newLineMAC(nil), func(r *Record) { r.Principal = "mallory" }), lines[5:]...))
			res, err = VerifyWithKey(file, key)
			if err != nil || res.Broken == nil || res.Broken.Seq != 6 || !strings.Contains(res.Broken.Reason, "prev_hash") {
				t.Errorf("after rewriting a pre-upgrade record: %+v %v", res.Broken, err)
			}
		})
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
	// The chain from there on is sound, but verify keeps failing on the
	// recorded alarm: the gateway restarting must not launder the cut.
	res, err := VerifyWithKey(file, key)
	if err != nil || res.OK || res.Broken != nil || len(res.Alarms) != 1 || !strings.Contains(res.Alarms[0], "records were cut from the end") {
		t.Errorf("verify: %+v %v", res, err)
	}
}

// Open isolates half a line left by a crash: the next record starts on its own
// line and continues the chain; verify still reports the damaged line.
func TestOpenIsolatesIncompleteLine(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 5)
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
	res, err := VerifyWithKey(file, key)
	if err != nil || res.OK || res.Broken == nil || res.Broken.Line != 6 {
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
	call := Record{Seq: 8, Time: rec.Time, Type: TypeToolCall, PrincipalKind: "user", Principal: "alice", Provider: "fs",
		Tool: "read", Decision: DecisionAllow, Outcome: OutcomeOK, LatencyMS: 12, TraceID: "0af7651916cd43dd8448eb211c80319c"}
	if got := FormatRecord(&call); !strings.HasSuffix(got, "12ms  trace=0af7651916cd43dd8448eb211c80319c") {
		t.Errorf("FormatRecord of a traced call: %s", got)
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

// Opening a log checks the end of its chain against the checkpoint and the
// key, logs what is wrong at error level and records it; verify then fails on
// the recorded alarm (or on the damage itself) however sound the chain is
// after it.
func TestOpenDetectsTampering(t *testing.T) {
	otherKey := MustKey(t)
	tests := []struct {
		name    string
		tamper  func(t *testing.T, file string)
		openKey []byte // nil: the log's key
		anomaly string
	}{
		{
			name:    "delete the checkpoint",
			tamper:  func(t *testing.T, file string) { removeHead(t, file) },
			anomaly: "the checkpoint audit.log.head is missing although the log's records are keyed",
		},
		{
			name: "rewrite the chain unkeyed, delete the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 4, newLineMAC(nil), func(r *Record) { r.Principal = "mallory" }))
				removeHead(t, file)
			},
			anomaly: "record seq 1 (the first of audit.log) is keyed but the last record (seq 10) is not",
		},
		{
			name: "rewrite the chain under another key, delete the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 4, newLineMAC(deriveKeys(otherKey).chain), func(r *Record) { r.Principal = "mallory" }))
				removeHead(t, file)
			},
			anomaly: "the last record (seq 10) does not verify under the audit key",
		},
		{
			name: "rewrite the chain under another key, keep the checkpoint",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, rehash(t, fileLines(t, file), 4, newLineMAC(deriveKeys(otherKey).chain), func(r *Record) { r.Principal = "mallory" }))
			},
			anomaly: "the record at the checkpoint's seq 10 differs from the checkpoint",
		},
		{
			name: "rewrite the chain and the checkpoint under another key",
			tamper: func(t *testing.T, file string) {
				lines := rehash(t, fileLines(t, file), 4, newLineMAC(deriveKeys(otherKey).chain), func(r *Record) { r.Principal = "mallory" })
				writeLines(t, file, lines)
				seq, hash := lastChain(t, lines)
				writeHeadFile(t, file, otherKey, false, seq, hash)
			},
			anomaly: "the checkpoint was written under another audit key",
		},
		{
			name: "cut records off the end",
			tamper: func(t *testing.T, file string) {
				writeLines(t, file, fileLines(t, file)[:8])
			},
			anomaly: "the checkpoint records seq 10, but the log ends at seq 8: records were cut from the end",
		},
		{
			name: "garble the checkpoint",
			tamper: func(t *testing.T, file string) {
				if err := os.WriteFile(headFile(file), []byte("{nope"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			anomaly: "the checkpoint is unreadable",
		},
		{
			name:    "the audit key was replaced",
			tamper:  func(t *testing.T, file string) {},
			openKey: otherKey,
			anomaly: "set below",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := MustKey(t)
			file := cleanLog(t, key, 10)
			tt.tamper(t, file)
			openKey := key
			anomaly := tt.anomaly
			if tt.openKey != nil {
				openKey = tt.openKey
				anomaly = fmt.Sprintf("the checkpoint was written under another audit key (key id %s; the vault's key is %s)", KeyID(key), KeyID(openKey))
			}
			var logBuf syncBuffer
			l, err := Open(Config{File: file, DigestKey: openKey}, zerolog.New(&logBuf))
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Anomalies(); len(got) != 1 || !strings.Contains(got[0], anomaly) {
				t.Errorf("anomalies = %q, want one with %q", got, anomaly)
			}
			if !strings.Contains(logBuf.String(), `"level":"error"`) || !strings.Contains(logBuf.String(), "integrity check failed") {
				t.Errorf("not logged at error level:\n%s", logBuf.String())
			}
			mustWrite(t, l, toolCall(99))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			_, recs := readRecords(t, file)
			var found bool
			for _, r := range recs {
				found = found || (r.Detail["event"] == EventOpenAnomaly && strings.Contains(r.Error, anomaly))
			}
			if !found {
				t.Errorf("no open_anomaly record with %q", anomaly)
			}
			res, err := VerifyWithKey(file, openKey)
			if err != nil || res.OK || (res.Broken == nil && len(res.Alarms) == 0) {
				t.Errorf("verify after reopening: %+v %v", res, err)
			}
		})
	}
}

// What the chain cannot show: a copy of an earlier checkpoint, saved and put
// back after the log is cut back to it, looks like a log that ended there.
// Documented in the package comment and docs/configuration.md.
func TestReplayedCheckpointIsTheLimit(t *testing.T) {
	key := MustKey(t)
	file := cleanLog(t, key, 5)
	saved, err := os.ReadFile(headFile(file))
	if err != nil {
		t.Fatal(err)
	}
	before := fileLines(t, file)
	l := MustOpen(t, Config{File: file, DigestKey: key})
	mustWrite(t, l, toolCall(6), toolCall(7))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	writeLines(t, file, before)
	if err := os.WriteFile(headFile(file), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	res := mustVerify(t, file, key)
	if res.LastSeq != 5 {
		t.Errorf("verify: %+v", res)
	}
}
