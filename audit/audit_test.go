package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/switchboard-mcp/switchboard"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// MustKey returns a fresh random digest key.
func MustKey(tb testing.TB) []byte {
	tb.Helper()
	k := make([]byte, DigestKeySize)
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustOpen opens a log in a temp dir with small test settings; cfg fields that
// are set override them.
func MustOpen(tb testing.TB, cfg Config) *Log {
	tb.Helper()
	if cfg.File == "" {
		cfg.File = filepath.Join(tb.TempDir(), "audit.log")
	}
	if cfg.DigestKey == nil {
		cfg.DigestKey = MustKey(tb)
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 20 * time.Millisecond
	}
	var logger zerolog.Logger
	if t, ok := tb.(*testing.T); ok {
		logger = zerolog.New(zerolog.NewTestWriter(t))
	} else {
		logger = zerolog.Nop()
	}
	l, err := Open(cfg, logger)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

func toolCall(i int) Record {
	return Record{
		Type:          TypeToolCall,
		RequestID:     fmt.Sprintf("req-%d", i),
		Session:       "session-abc",
		PrincipalKind: "user",
		Principal:     "alice",
		Endpoint:      "/mcp",
		Client:        "claude-code/1.0",
		Provider:      "fs",
		Tool:          "read_file",
		Decision:      DecisionAllow,
		Outcome:       OutcomeOK,
		LatencyMS:     12,
		ArgsDigest:    Digest(make([]byte, 32), []byte(`{"path":"/tmp/x"}`)),
	}
}

func mustWrite(tb testing.TB, l *Log, recs ...Record) {
	tb.Helper()
	for _, r := range recs {
		if err := l.Write(r); err != nil {
			tb.Fatalf("Write: %v", err)
		}
	}
}

// readRecords returns the lines of file and their parsed records.
func readRecords(t *testing.T, file string) ([]string, []Record) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", file)
	}
	var lines []string
	var recs []Record
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line is not JSON: %v: %q", err, line)
		}
		lines, recs = append(lines, line), append(recs, r)
	}
	return lines, recs
}

func mustVerify(t *testing.T, file string, key []byte) VerifyResult {
	t.Helper()
	res, err := VerifyWithKey(file, key)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !res.OK || res.Broken != nil {
		t.Fatalf("Verify: not OK: %v", res.Broken)
	}
	return res
}

func mode(t *testing.T, name string) os.FileMode {
	t.Helper()
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestWriteOneLinePerRecord(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	for i := range 5 {
		mustWrite(t, l, toolCall(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines, recs := readRecords(t, l.cfg.File)
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5", len(lines))
	}
	prev := zeroHash
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.PrevHash != prev || !isHash(r.Hash) {
			t.Errorf("record %d: seq %d prev %s hash %s", i, r.Seq, r.PrevHash, r.Hash)
		}
		if r.Time.Location() != time.UTC || time.Since(r.Time) > time.Minute {
			t.Errorf("record %d: time %v", i, r.Time)
		}
		if r.Session != Digest(key, []byte("session-abc")) {
			t.Errorf("record %d: session %q is not the digest of the session ID", i, r.Session)
		}
		if strings.Contains(lines[i], "session-abc") {
			t.Errorf("raw session ID in the log: %s", lines[i])
		}
		prev = r.Hash
	}
	if m := mode(t, l.cfg.File); m != 0o600 {
		t.Errorf("log mode %o, want 600", m)
	}
	if m := mode(t, headFile(l.cfg.File)); m != 0o600 {
		t.Errorf("checkpoint mode %o, want 600", m)
	}
	res := mustVerify(t, l.cfg.File, key)
	if res.Records != 5 || res.Checkpoint != "matched, MAC verified" {
		t.Errorf("verify: %+v", res)
	}
}

// The hash is HMAC-SHA256, under the chain key derived from the audit key,
// over encoding/json's encoding of the Record without hash, as the package
// documents.
func TestHashIsOverCanonicalJSON(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	rec := toolCall(1)
	rec.Detail = map[string]string{"z": "1", "a": "<&>"}
	rec.Error = "boom\n\"quoted\""
	mustWrite(t, l, rec)
	_, recs := readRecords(t, l.cfg.File)
	got := recs[0]
	want := got.Hash
	got.Hash = ""
	canonical, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	chainKey := hmac.New(sha256.New, []byte("switchboard audit chain v2"))
	chainKey.Write(key)
	m := hmac.New(sha256.New, chainKey.Sum(nil))
	m.Write(canonical)
	if hex.EncodeToString(m.Sum(nil)) != want {
		t.Errorf("hash %s is not the HMAC-SHA256 of %s under the chain key", want, canonical)
	}
	plain := sha256.Sum256(canonical)
	if hex.EncodeToString(plain[:]) == want {
		t.Error("the hash is the unkeyed SHA-256: anyone could recompute the chain")
	}
}

// body is Record without the fields the log assigns under its lock: the
// reference that appendBody's output must equal when encoding/json encodes it.
// Its fields and tags match Record's, in the same order.
type body struct {
	Time          time.Time         `json:"time"`
	Type          string            `json:"type"`
	Replica       string            `json:"replica,omitempty"`
	RequestID     string            `json:"request_id,omitempty"`
	TraceID       string            `json:"trace_id,omitempty"`
	Session       string            `json:"session,omitempty"`
	PrincipalKind string            `json:"principal_kind,omitempty"`
	Principal     string            `json:"principal,omitempty"`
	Endpoint      string            `json:"endpoint,omitempty"`
	Client        string            `json:"client,omitempty"`
	Provider      string            `json:"provider,omitempty"`
	Tool          string            `json:"tool,omitempty"`
	ToolHash      string            `json:"tool_hash,omitempty"`
	Decision      string            `json:"decision,omitempty"`
	Outcome       string            `json:"outcome,omitempty"`
	LatencyMS     int64             `json:"latency_ms,omitempty"`
	LatencyUS     int64             `json:"latency_us,omitempty"`
	ReqBytes      int64             `json:"req_bytes,omitempty"`
	RespBytes     int64             `json:"resp_bytes,omitempty"`
	ArgsDigest    string            `json:"args_digest,omitempty"`
	Error         string            `json:"error,omitempty"`
	Detail        map[string]string `json:"detail,omitempty"`
}

// newBody copies rec's caller fields the way appendBody reads them.
func newBody(rec *Record) *body {
	return &body{
		Time: rec.Time.UTC(), Type: limit(rec.Type), Replica: limit(rec.Replica), RequestID: limit(rec.RequestID), TraceID: limit(rec.TraceID),
		Session: limit(rec.Session), PrincipalKind: limit(rec.PrincipalKind), Principal: limit(rec.Principal),
		Endpoint: limit(rec.Endpoint), Client: limit(rec.Client), Provider: limit(rec.Provider),
		Tool: limit(rec.Tool), ToolHash: limit(rec.ToolHash), Decision: limit(rec.Decision),
		Outcome: limit(rec.Outcome), LatencyMS: rec.LatencyMS, LatencyUS: rec.LatencyUS, ReqBytes: rec.ReqBytes,
		RespBytes: rec.RespBytes, ArgsDigest: limit(rec.ArgsDigest),
		Error: limit(rec.Error), Detail: limitDetail(rec.Detail),
	}
}

// body must mirror Record without the fields the log assigns, in the same order
// with the same tags, or the splice in appendLine would not equal the Record's
// encoding (and TestAppendBodyMatchesJSON would compare against the wrong thing).
func TestBodyMirrorsRecord(t *testing.T) {
	rt, bt := reflect.TypeFor[Record](), reflect.TypeFor[body]()
	var want []reflect.StructField
	for i := range rt.NumField() {
		if f := rt.Field(i); f.Name != "Seq" && f.Name != "PrevHash" && f.Name != "Hash" {
			want = append(want, f)
		}
	}
	if bt.NumField() != len(want) {
		t.Fatalf("body has %d fields, want %d", bt.NumField(), len(want))
	}
	for i, f := range want {
		g := bt.Field(i)
		if g.Name != f.Name || g.Type != f.Type || g.Tag != f.Tag {
			t.Errorf("body field %d = %s %s %q, want %s %s %q", i, g.Name, g.Type, g.Tag, f.Name, f.Type, f.Tag)
		}
	}
	if rt.Field(0).Name != "Seq" || rt.Field(1).Name != "PrevHash" || rt.Field(rt.NumField()-1).Name != "Hash" {
		t.Error("Record must start with Seq, PrevHash and end with Hash")
	}
}

func TestDigest(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	value := []byte(`{"path":"/etc/passwd"}`)
	m := hmac.New(sha256.New, key)
	m.Write(value)
	want := "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
	if got := l.Digest(value); got != want {
		t.Errorf("Log.Digest = %s, want %s", got, want)
	}
	if got := Digest(key, value); got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
	if Digest(MustKey(t), value) == want {
		t.Error("digest does not depend on the key")
	}
}

func TestInjectionEscaped(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	evil := []string{
		"a\nb",
		"a\r\nb",
		"nul\x00byte",
		"\x1b[31mred\x1b[0m\x1b]0;title\x07",
		"bad\xff\xfeutf8",
		`x","seq":1,"hash":"` + zeroHash + `"}` + "\n" + `{"seq":2`,
		"line\u2028sep\u2029para",
		"bidi\u202eevil",
		"c1\u009bcsi",
	}
	for _, s := range evil {
		mustWrite(t, l, Record{
			Type: TypeToolCall, Principal: s, Provider: s, Tool: s, Error: s, Client: s,
			Detail: map[string]string{s: s},
		})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(l.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(data) {
		t.Error("log is not valid UTF-8")
	}
	for i, c := range data {
		if c < 0x20 && c != '\n' {
			t.Fatalf("raw control byte %#x at %d", c, i)
		}
	}
	if bytes.Contains(data, []byte("\u2028")) || bytes.Contains(data, []byte("\u2029")) {
		t.Error("raw line separator in the log")
	}
	lines, recs := readRecords(t, l.cfg.File)
	if len(lines) != len(evil) {
		t.Fatalf("%d lines for %d records", len(lines), len(evil))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Tool != string([]rune(evil[i])) {
			t.Errorf("record %d: seq %d tool %q", i, r.Seq, r.Tool)
		}
		text := FormatRecord(&r)
		for _, c := range text {
			if unsafeRune(c) && c != utf8.RuneError {
				t.Errorf("FormatRecord left %U in %q", c, text)
			}
		}
	}
	mustVerify(t, l.cfg.File, key)
}

func TestLongFieldsAreCut(t *testing.T) {
	l := MustOpen(t, Config{})
	detail := map[string]string{}
	for i := range 2 * maxDetails {
		detail[fmt.Sprint(i)] = "v"
	}
	mustWrite(t, l, Record{Type: TypeProvider, Error: strings.Repeat("e", 100_000), Detail: detail})
	lines, recs := readRecords(t, l.cfg.File)
	if len(lines[0]) > 2*maxField+maxDetails*16 {
		t.Errorf("line is %d bytes", len(lines[0]))
	}
	if len(recs[0].Error) != maxField || len(recs[0].Detail) > maxDetails+1 || recs[0].Detail["_truncated"] != "true" {
		t.Errorf("error %d bytes, %d details", len(recs[0].Error), len(recs[0].Detail))
	}
}

func TestChainAcrossRotationAndReopen(t *testing.T) {
	key := MustKey(t)
	dir := t.TempDir()
	cfg := Config{File: filepath.Join(dir, "audit.log"), DigestKey: key, MaxSizeBytes: 2000}
	l := MustOpen(t, cfg)
	for i := range 40 {
		mustWrite(t, l, toolCall(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = MustOpen(t, cfg)
	for i := range 40 {
		mustWrite(t, l, toolCall(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	backups, err := listBackups(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) < 5 {
		t.Fatalf("only %d rotated files", len(backups))
	}
	var all []Record
	for _, name := range append(backupPaths(backups), cfg.File) {
		if m := mode(t, name); m != 0o600 {
			t.Errorf("%s: mode %o, want 600", name, m)
		}
		lines, recs := readRecords(t, name)
		for _, line := range lines {
			if len(line)+1 > 2000 {
				t.Errorf("%s: line of %d bytes", name, len(line))
			}
		}
		if st, _ := os.Stat(name); st.Size() > 2000 {
			t.Errorf("%s: %d bytes, over the limit", name, st.Size())
		}
		all = append(all, recs...)
	}
	if len(all) != 80 {
		t.Fatalf("%d records, want 80", len(all))
	}
	for i, r := range all {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
	}
	res := mustVerify(t, cfg.File, key)
	if res.Records != 80 || res.FirstSeq != 1 || res.LastSeq != 80 || len(res.Files) != len(backups)+1 {
		t.Errorf("verify: %+v", res)
	}
}

func backupPaths(bs []backup) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.path)
	}
	return out
}

func TestReopenResumesFromNewestBackup(t *testing.T) {
	key := MustKey(t)
	cfg := Config{File: filepath.Join(t.TempDir(), "audit"), DigestKey: key}
	l := MustOpen(t, cfg)
	mustWrite(t, l, toolCall(1), toolCall(2), toolCall(3))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// As after a rotation whose new file got no record: the current file is
	// empty and the chain continues from the rotated one.
	if err := os.Rename(cfg.File, backupName(cfg.File, time.Now(), 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.File, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l = MustOpen(t, cfg)
	mustWrite(t, l, toolCall(4))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, cfg.File)
	if len(recs) != 1 || recs[0].Seq != 4 {
		t.Fatalf("current file: %+v", recs)
	}
	if m := mode(t, cfg.File); m != 0o600 {
		t.Errorf("mode %o: Open did not tighten it to 600", m)
	}
	if res := mustVerify(t, cfg.File, key); res.Records != 4 {
		t.Errorf("verify: %+v", res)
	}
}

func TestRetention(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key, MaxSizeBytes: 1500, MaxBackups: 2})
	for i := range 50 {
		mustWrite(t, l, toolCall(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	backups, err := listBackups(l.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) != 2 {
		t.Fatalf("%d rotated files kept, want 2", len(backups))
	}
	res := mustVerify(t, l.cfg.File, key)
	if res.FirstSeq == 1 || res.LastSeq != 50 || len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "rotated away") {
		t.Errorf("verify: %+v", res)
	}

	// Age: a rotated file named as if rotated long ago goes at the next Open.
	old := backupName(l.cfg.File, time.Now().AddDate(0, 0, -40), 1)
	if err := os.WriteFile(old, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := MustOpen(t, Config{File: l.cfg.File, DigestKey: key, MaxAgeDays: 30})
	_ = l2.Close()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old rotated file still there: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "plain")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.log")
	if err := os.WriteFile(garbage, []byte("not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := MustKey(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no file", Config{DigestKey: key}, "file is empty"},
		{"short key", Config{File: filepath.Join(dir, "a.log"), DigestKey: key[:16]}, "digest key is 16 bytes"},
		{"parent is a file", Config{File: filepath.Join(notDir, "audit.log"), DigestKey: key}, "not a directory"},
		{"path is a directory", Config{File: dir, DigestKey: key}, "directory"},
		{"unreadable last record", Config{File: garbage, DigestKey: key}, "unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(tt.cfg, zerolog.New(zerolog.NewTestWriter(t)))
			if err == nil {
				_ = l.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestWriteAfterClose(t *testing.T) {
	l := MustOpen(t, Config{FailOpen: true})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	err := l.Write(toolCall(1))
	if err == nil || switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Errorf("Write after Close: %v", err)
	}
}

// breakSink makes every write to the open file fail with ENOSPC, and keeps the
// log from reopening its file until the returned function is called.
func breakSink(t *testing.T, l *Log) (repair func()) {
	t.Helper()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	aside := l.cfg.File + ".aside"
	l.fmu.Lock()
	if err := os.Rename(l.cfg.File, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(l.cfg.File, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = l.file.Close()
	l.file = full
	l.fmu.Unlock()
	return func() {
		l.fmu.Lock() // keep a retry from creating a new file in between
		defer l.fmu.Unlock()
		if err := os.Remove(l.cfg.File); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(aside, l.cfg.File); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSinkFailureFailsClosedThenRecovers(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	mustWrite(t, l, toolCall(1), toolCall(2))
	repair := breakSink(t, l)

	err := l.Write(toolCall(3))
	if err == nil || switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Fatalf("Write to a full disk: %v", err)
	}
	if !strings.Contains(err.Error(), "no space left") {
		t.Errorf("error does not say why: %v", err)
	}
	if l.Err() == nil {
		t.Error("Err is nil while the sink is failing")
	}
	// Retries keep failing while the path is unusable, and Write fails fast;
	// the records stay queued.
	time.Sleep(100 * time.Millisecond)
	for i := range 3 {
		if err := l.Write(toolCall(4 + i)); err == nil {
			t.Fatal("Write succeeded while the sink is failing")
		}
	}
	if l.Err() == nil {
		t.Fatal("recovered while the path is still a directory")
	}

	repair()
	waitFor(t, "recovery", func() bool { return l.Err() == nil })
	mustWrite(t, l, toolCall(7))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, l.cfg.File)
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.RequestID)
	}
	if got := strings.Join(ids, ","); got != "req-1,req-2,req-3,req-4,req-5,req-6,,req-7" {
		t.Fatalf("request IDs in the log: %s; want the records kept through the outage, then recovery", got)
	}
	rec := recs[6]
	if rec.Type != TypeAudit || rec.Detail["event"] != "sink_recovered" || rec.Detail["lost_records"] != "0" ||
		rec.Detail["queued_records"] != "4" || !strings.Contains(rec.Error, "no space left") {
		t.Errorf("recovery record: %+v", rec)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d has seq %d", i, r.Seq)
		}
	}
	res := mustVerify(t, l.cfg.File, key)
	if len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "sink_recovered") {
		t.Errorf("verify notes: %q", res.Notes)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped = %d", l.Dropped())
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSinkFailureFailOpen(t *testing.T) {
	var logs syncBuffer
	cfg := Config{File: filepath.Join(t.TempDir(), "audit.log"), DigestKey: MustKey(t), FailOpen: true, RetryInterval: 20 * time.Millisecond}
	l, err := Open(cfg, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mustWrite(t, l, toolCall(1))
	repair := breakSink(t, l)
	for i := range 3 {
		if err := l.Write(toolCall(10 + i)); err != nil {
			t.Fatalf("Write with fail_open: %v", err)
		}
	}
	if l.Err() == nil {
		t.Error("Err is nil while the sink is failing")
	}
	out := logs.String()
	if !strings.Contains(out, `"level":"error"`) || !strings.Contains(out, "audit sink failed") {
		t.Errorf("sink failure not logged at error level:\n%s", out)
	}
	repair()
	waitFor(t, "recovery", func() bool { return l.Err() == nil })
	mustWrite(t, l, toolCall(2))
	_, recs := readRecords(t, cfg.File)
	if len(recs) != 6 || recs[3].RequestID != "req-12" || recs[4].Detail["lost_records"] != "0" || recs[4].Detail["fail_open"] != "true" {
		t.Errorf("records after fail-open outage: %+v", recs)
	}
}

// With fail_open, a queue that fills during an outage drops at once (the
// calls go on) and the recovery record counts what was dropped.
func TestFailOpenDropsWhenQueueFullDuringOutage(t *testing.T) {
	var logs syncBuffer
	key := MustKey(t)
	cfg := Config{File: filepath.Join(t.TempDir(), "audit.log"), DigestKey: key, FailOpen: true,
		QueueBytes: 4096, WriteTimeout: time.Hour, RetryInterval: 20 * time.Millisecond}
	l, err := Open(cfg, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mustWrite(t, l, toolCall(1))
	repair := breakSink(t, l)
	if err := l.Append(toolCall(2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sink to fail", func() bool { return l.Err() != nil })
	for i := range 20 { // far more than 4096 bytes
		if err := l.Append(toolCall(100 + i)); err != nil {
			t.Fatalf("Append with fail_open: %v", err)
		}
	}
	dropped := l.Dropped()
	if dropped == 0 || dropped == 20 {
		t.Fatalf("Dropped = %d, want some of the 20", dropped)
	}
	if out := logs.String(); !strings.Contains(out, "audit record dropped (fail_open)") || !strings.Contains(out, `"request_id":"req-119"`) {
		t.Errorf("drops not logged:\n%s", out)
	}
	repair()
	waitFor(t, "recovery", func() bool { return l.Err() == nil })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, cfg.File)
	last := recs[len(recs)-1]
	if last.Detail["event"] != "sink_recovered" || last.Detail["lost_records"] != strconv.FormatUint(dropped, 10) {
		t.Errorf("recovery record: %+v (dropped %d)", last, dropped)
	}
	if uint64(len(recs)) != 2+20-dropped+1 {
		t.Errorf("%d records, want %d", len(recs), 2+20-dropped+1)
	}
	mustVerify(t, cfg.File, key)
}

// A write that fails halfway is cut back off the file, so no half line stays
// and the chain is whole after recovery. RLIMIT_FSIZE makes the kernel accept
// only part of the write, then fail it with EFBIG.
func TestPartialWriteIsUndone(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	mustWrite(t, l, toolCall(1))
	l.fmu.Lock()
	size := l.size
	l.fmu.Unlock()

	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(size) + 100, Max: old.Max}); err != nil {
		t.Skip(err)
	}
	err := l.Write(toolCall(2))
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(err.Error(), "file too large") {
		t.Fatalf("Write past RLIMIT_FSIZE: %v", err)
	}
	if st, err := os.Stat(l.cfg.File); err != nil || st.Size() != size {
		t.Fatalf("file is %d bytes after the failed write, want %d (%v)", st.Size(), size, err)
	}
	waitFor(t, "recovery", func() bool { return l.Err() == nil })
	mustWrite(t, l, toolCall(3))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The failed record was kept and written after recovery.
	if res := mustVerify(t, l.cfg.File, key); res.Records != 4 {
		t.Errorf("verify: %+v", res)
	}
	if _, recs := readRecords(t, l.cfg.File); recs[1].RequestID != "req-2" || recs[2].Detail["event"] != "sink_recovered" {
		t.Errorf("records: %+v", recs)
	}
}

// readLines returns the complete lines of file (a line still being written
// is left out).
func readLines(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		return strings.Split(string(data[:i]), "\n")
	}
	return nil
}

// holdDisk blocks every commit until the returned function is called.
func holdDisk(t *testing.T, l *Log) (release func()) {
	t.Helper()
	l.fmu.Lock()
	var once sync.Once
	release = func() { once.Do(l.fmu.Unlock) }
	t.Cleanup(release)
	return release
}

// waiting reports whether a caller waits for the queue or the disk.
func waiting(l *Log) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed.ch != nil || l.trouble.ch != nil
}

// Concurrent Writes or Appends end up in the file in order, each once, with a
// valid chain, once Close returns: Close drains the queue.
func TestConcurrentThenClose(t *testing.T) {
	for _, method := range []string{"Write", "Append"} {
		t.Run(method, func(t *testing.T) { testConcurrentThenClose(t, method) })
	}
}

func testConcurrentThenClose(t *testing.T, method string) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key, MaxSizeBytes: 64 << 10})
	const writers, per = 16, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				write := l.Append
				if method == "Write" {
					write = l.Write
				}
				if err := write(toolCall(w*1000 + i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res := mustVerify(t, l.cfg.File, key)
	if res.Records != writers*per || res.LastSeq != writers*per || res.Checkpoint != "matched, MAC verified" {
		t.Fatalf("verify: %+v", res)
	}
	// Each writer's records appear once and in the order it appended them.
	next := map[int]int{}
	for _, name := range res.Files {
		_, recs := readRecords(t, name)
		for _, r := range recs {
			var n int
			fmt.Sscanf(r.RequestID, "req-%d", &n)
			w, i := n/1000, n%1000
			if next[w] != i {
				t.Fatalf("writer %d: record %d where %d was due", w, i, next[w])
			}
			next[w]++
		}
	}
	for w := range writers {
		if next[w] != per {
			t.Errorf("writer %d: %d records, want %d", w, next[w], per)
		}
	}
}

// Append returns while the disk is busy; Write returns only once its record
// is in the file.
func TestWriteWaitsForDiskAppendDoesNot(t *testing.T) {
	l := MustOpen(t, Config{})
	release := holdDisk(t, l)
	if err := l.Append(toolCall(1)); err != nil {
		t.Fatal(err)
	}
	if lines := readLines(t, l.cfg.File); len(lines) != 0 {
		t.Fatalf("lines on disk while the disk is held: %q", lines)
	}
	done := make(chan error, 1)
	go func() { done <- l.Write(toolCall(2)) }()
	waitFor(t, "Write to wait", func() bool { return waiting(l) })
	select {
	case err := <-done:
		t.Fatalf("Write returned (%v) before its record could be written", err)
	default:
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, l.cfg.File)
	if len(recs) != 2 || recs[0].RequestID != "req-1" || recs[1].RequestID != "req-2" {
		t.Fatalf("after Write returned: %+v", recs)
	}
}

// A full queue makes Append wait (backpressure) instead of dropping.
func TestAppendBackpressure(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key, QueueBytes: 4096, WriteTimeout: time.Minute})
	release := holdDisk(t, l)
	const n = 20 // about 700 bytes each: most must wait
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- l.Append(toolCall(i)) })
	}
	waitFor(t, "an Append to wait for room", func() bool { return waiting(l) })
	l.mu.Lock()
	queued := l.queued()
	l.mu.Unlock()
	if queued > 4096 {
		t.Errorf("%d bytes queued, over the 4096 limit", queued)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, l.cfg.File, key); res.Records != n {
		t.Errorf("verify: %+v", res)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped = %d", l.Dropped())
	}
}

// When the queue stays full past WriteTimeout, Append drops the record loudly:
// an error, the Dropped count, Err while the disk hangs, and a records_dropped
// record in the log once it moves again.
func TestAppendDropsWhenQueueStaysFull(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key, QueueBytes: 2048, WriteTimeout: 50 * time.Millisecond})
	release := holdDisk(t, l)
	if err := l.Append(toolCall(0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the writer to start a commit", func() bool { return l.commitStart.Load() != 0 })
	var err error
	appended := 1
	for i := 1; i < 20 && err == nil; i++ {
		if err = l.Append(toolCall(i)); err == nil {
			appended++
		}
	}
	if err == nil || switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE || !strings.Contains(err.Error(), "queue full") {
		t.Fatalf("Append to a full queue: %v", err)
	}
	if l.Dropped() != 1 {
		t.Errorf("Dropped = %d, want 1", l.Dropped())
	}
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "no answer from disk") {
		t.Errorf("Err while a commit hangs past WriteTimeout: %v", err)
	}
	release()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, l.cfg.File)
	if len(recs) != appended+1 {
		t.Fatalf("%d records, want %d appended + records_dropped", len(recs), appended)
	}
	last := recs[len(recs)-1]
	if last.Type != TypeAudit || last.Detail["event"] != "records_dropped" || last.Detail["lost_records"] != "1" {
		t.Errorf("last record: %+v", last)
	}
	mustVerify(t, l.cfg.File, key)
}

// Appends while the sink fails are kept, and written after recovery with no
// gap in seq and a valid chain.
func TestAppendKeepsRecordsWhileSinkFails(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	mustWrite(t, l, toolCall(1), toolCall(2))
	repair := breakSink(t, l)
	for i := 3; i <= 5; i++ {
		if err := l.Append(toolCall(i)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	waitFor(t, "the sink to fail", func() bool { return l.Err() != nil })
	for i := 6; i <= 8; i++ {
		if err := l.Append(toolCall(i)); err != nil {
			t.Fatalf("Append while failing: %v", err)
		}
	}
	repair()
	waitFor(t, "recovery", func() bool { return l.Err() == nil })
	if err := l.Append(toolCall(9)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, l.cfg.File)
	var ids []string
	for i, r := range recs {
		ids = append(ids, r.RequestID)
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d has seq %d", i, r.Seq)
		}
	}
	if got := strings.Join(ids, ","); got != "req-1,req-2,req-3,req-4,req-5,req-6,req-7,req-8,,req-9" {
		t.Fatalf("request IDs: %s", got)
	}
	if r := recs[8]; r.Detail["event"] != "sink_recovered" || r.Detail["lost_records"] != "0" || r.Detail["queued_records"] != "6" {
		t.Errorf("recovery record: %+v", r)
	}
	if res := mustVerify(t, l.cfg.File, key); res.Records != 10 {
		t.Errorf("verify: %+v", res)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped = %d", l.Dropped())
	}
}

// If the file was moved away during the outage, the kept records continue the
// chain of the new file, renumbered from its end.
func TestAppendRechainsOntoReplacedFile(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	mustWrite(t, l, toolCall(1), toolCall(2))
	breakSink(t, l)
	for i := 3; i <= 5; i++ {
		if err := l.Append(toolCall(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the sink to fail", func() bool { return l.Err() != nil })
	// The operator removes the directory in the way and keeps the old file
	// aside: the log starts a new chain.
	l.fmu.Lock()
	if err := os.Remove(l.cfg.File); err != nil {
		t.Fatal(err)
	}
	l.fmu.Unlock()
	waitFor(t, "recovery", func() bool { return l.Err() == nil })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs := readRecords(t, l.cfg.File)
	if len(recs) != 4 || recs[0].RequestID != "req-3" || recs[0].Seq != 1 || recs[0].PrevHash != zeroHash || recs[3].Detail["event"] != "sink_recovered" {
		t.Fatalf("new file: %+v", recs)
	}
	mustVerify(t, l.cfg.File, key)
}

// Close with a sink that stays broken reports the records it could not write.
func TestCloseReportsUnwrittenRecords(t *testing.T) {
	l := MustOpen(t, Config{})
	mustWrite(t, l, toolCall(1))
	breakSink(t, l)
	for i := range 3 {
		if err := l.Append(toolCall(i)); err != nil {
			t.Fatal(err)
		}
	}
	err := l.Close()
	if err == nil || !strings.Contains(err.Error(), "3 records not written") {
		t.Fatalf("Close: %v", err)
	}
	if l.Dropped() != 3 {
		t.Errorf("Dropped = %d", l.Dropped())
	}
	if err := l.Append(toolCall(9)); switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Errorf("Append after Close: %v", err)
	}
}

// A batch larger than the size limit is split across rotated files at line
// boundaries.
func TestBatchSplitsAcrossRotation(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key, MaxSizeBytes: 2000})
	release := holdDisk(t, l)
	for i := range 30 {
		if err := l.Append(toolCall(i)); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res := mustVerify(t, l.cfg.File, key)
	if res.Records != 30 || len(res.Files) < 5 {
		t.Fatalf("verify: %+v", res)
	}
	for _, name := range res.Files {
		if st, err := os.Stat(name); err != nil || st.Size() > 2000 {
			t.Errorf("%s: %v bytes (%v), over the limit", name, st.Size(), err)
		}
	}
}

// testChainKey keys the queues of the reconcile tests.
var testChainKey = deriveKeys(make([]byte, DigestKeySize)).chain

// queueOf builds n queued lines chained onto (seq, prev).
func queueOf(seq uint64, prev string, n int) []byte {
	m := newLineMAC(testChainKey)
	var h [64]byte
	copy(h[:], prev)
	var buf []byte
	for i := range n {
		rec := toolCall(i)
		rec.Time = time.Now()
		enc, _ := appendBody(nil, &rec)
		seq++
		buf = appendLine(buf, m, seq, &h, enc[1:len(enc)-1])
	}
	return buf
}

// checkQueue checks that buf is a valid chain of n lines onto (seq, prev).
func checkQueue(t *testing.T, buf []byte, seq uint64, prev string, n int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(buf), "\n"), "\n")
	if len(buf) == 0 {
		lines = nil
	}
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	for _, line := range lines {
		s, p, h, _, ok := parseLine([]byte(line))
		sum := newLineMAC(testChainKey).of([]byte(line[:len(line)-lineSuffix]))
		if !ok || s != seq+1 || string(p) != prev || string(h) != hex.EncodeToString(sum) {
			t.Fatalf("line %q: seq %d prev %s, want seq %d prev %s", line, s, p, seq+1, prev)
		}
		seq, prev = s, string(h)
	}
}

func TestReconcile(t *testing.T) {
	start := strings.Repeat("a", 64)
	full := queueOf(10, start, 4)
	lines := strings.SplitAfter(string(full), "\n")
	_, _, h2, _, _ := parseLine([]byte(strings.TrimSuffix(lines[1], "\n")))
	_, _, h4, _, _ := parseLine([]byte(strings.TrimSuffix(lines[3], "\n")))
	tests := []struct {
		name     string
		seq      uint64
		hash     string
		wantSeq  uint64 // where the queue must start from
		wantPrev string
		wantN    int
		closed   bool
	}{
		{"disk ends where the queue starts", 10, start, 10, start, 4, false},
		{"two records reached the disk", 12, string(h2), 12, string(h2), 2, false},
		{"all records reached the disk", 14, string(h4), 14, string(h4), 0, true},
		{"a new file", 0, zeroHash, 0, zeroHash, 4, false},
		{"another chain", 99, strings.Repeat("b", 64), 99, strings.Repeat("b", 64), 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			l := &Log{log: zerolog.New(zerolog.NewTestWriter(t)), mac: newLineMAC(testChainKey), pend: bytes.Clone(full), pendN: 4, seq: 14, dones: []chan struct{}{done}}
			copy(l.prev[:], h4)
			l.reconcile(tt.seq, tt.hash)
			checkQueue(t, l.pend, tt.wantSeq, tt.wantPrev, tt.wantN)
			if l.pendN != uint64(tt.wantN) || l.seq != tt.wantSeq+uint64(tt.wantN) {
				t.Errorf("pendN %d seq %d", l.pendN, l.seq)
			}
			if n := tt.wantN; n > 0 {
				_, _, last, _, _ := parseLine(bytes.TrimSuffix(l.pend[bytes.LastIndexByte(l.pend[:len(l.pend)-1], '\n')+1:], []byte("\n")))
				if string(last) != string(l.prev[:]) {
					t.Errorf("prev %s is not the last line's hash %s", l.prev[:], last)
				}
			}
			select {
			case <-done:
				if !tt.closed {
					t.Error("Writes released before their records were written")
				}
			default:
				if tt.closed {
					t.Error("Writes not released although every record is on disk")
				}
			}
		})
	}
}

// randString returns a string mixing ASCII, HTML, control bytes, invalid
// UTF-8, line separators and other runes, sometimes past maxField.
func randString(r *mrand.Rand) string {
	pieces := []string{"a", "Z", "0", " ", "<", ">", "&", `"`, `\`, "/", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1b", "\x7f",
		"\xff", "\xc3", "é", "€", "𝄞", "\u2028", "\u2029", "\u202e", "\ufffd", "…"}
	n := r.IntN(20)
	if r.IntN(50) == 0 {
		n = maxField + r.IntN(10)
	}
	var b strings.Builder
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// appendBody must produce exactly what encoding/json makes of the same body:
// the chain's hashes are defined over that encoding.
func TestAppendBodyMatchesJSON(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, uint64(time.Now().UnixNano())))
	zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+1800), time.Local}
	for i := range 3000 {
		rec := Record{
			Time:      time.Unix(r.Int64N(253402300799)-62135596800+r.Int64N(62135596800), r.Int64N(1e9)).In(zones[r.IntN(len(zones))]),
			LatencyMS: r.Int64N(1<<40) - 1<<20,
		}
		if r.IntN(4) == 0 {
			rec.LatencyMS = 0
		}
		for _, n := range []*int64{&rec.LatencyUS, &rec.ReqBytes, &rec.RespBytes} {
			if r.IntN(3) > 0 {
				*n = r.Int64N(1<<50) - 1<<10
			}
		}
		for _, f := range []*string{&rec.Type, &rec.Replica, &rec.RequestID, &rec.TraceID, &rec.Session, &rec.PrincipalKind, &rec.Principal, &rec.Endpoint,
			&rec.Client, &rec.Provider, &rec.Tool, &rec.ToolHash, &rec.Decision, &rec.Outcome, &rec.ArgsDigest, &rec.Error} {
			if r.IntN(3) > 0 {
				*f = randString(r)
			}
		}
		if n := r.IntN(6); n > 0 {
			rec.Detail = map[string]string{}
			for range n {
				rec.Detail[randString(r)] = randString(r)
			}
		}
		got, err := appendBody(nil, &rec)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want, err := json.Marshal(newBody(&rec))
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// Times encoding/json refuses are refused too.
	for _, y := range []int{-1, 10000} {
		rec := Record{Time: time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)}
		if _, err := json.Marshal(newBody(&rec)); err == nil {
			t.Fatalf("encoding/json accepts year %d", y)
		}
		if _, err := appendBody(nil, &rec); err == nil {
			t.Errorf("appendBody accepts year %d", y)
		}
	}
}

func TestSessionDigestCache(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	for i := range 2*sessionCacheSize + 10 {
		id := fmt.Sprintf("session-%d", i%(sessionCacheSize+5))
		if got, want := l.sessionDigest(id), Digest(key, []byte(id)); got != want {
			t.Fatalf("sessionDigest(%q) = %s, want %s", id, got, want)
		}
	}
	l.smu.Lock()
	n := len(l.sessions)
	l.smu.Unlock()
	if n > sessionCacheSize {
		t.Errorf("cache holds %d sessions, over %d", n, sessionCacheSize)
	}
}

// BenchmarkRecord measures what a tools/call pays for its record in each
// mode: Append (audit.wait_for_write: false: queued, written after), Write
// (the default: returns once the group commit holding it is written) and
// Write with Config.Fsync, from 1, 16 and 64 concurrent callers. ns/op is
// wall time per record, so with many callers its inverse is the records per
// second the log sustains.
func BenchmarkRecord(b *testing.B) {
	modes := []struct {
		name  string
		fsync bool
		wait  bool
	}{{"append", false, false}, {"write", false, true}, {"write-fsync", true, true}}
	for _, m := range modes {
		for _, callers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", m.name, callers), func(b *testing.B) {
				l := MustOpen(b, Config{Fsync: m.fsync})
				rec := toolCall(1)
				record := l.Append
				if m.wait {
					record = l.Write
				}
				b.ReportAllocs()
				if callers == 1 {
					for b.Loop() {
						if err := record(rec); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := record(rec); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.StopTimer()
				if err := l.Close(); err != nil { // Append's records too
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/float64(max(1, l.commits.Load())), "records/commit")
			})
		}
	}
}
