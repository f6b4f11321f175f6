package audit

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// writeLog writes n tool-call records (request ids prefix-0 …) into a log
// at file that rotates every few records, and closes it.
func writeLog(t *testing.T, file, prefix string, n int) {
	t.Helper()
	l := MustOpen(t, Config{File: file, MaxSizeBytes: 2048})
	for i := range n {
		if err := l.Write(Record{Type: TypeToolCall, RequestID: prefix + "-" + strconv.Itoa(i), Principal: "alice",
			PrincipalKind: "user", Provider: "fs", Tool: "read", Decision: DecisionAllow, Outcome: OutcomeOK, ReqBytes: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func readIDs(t *testing.T, files []string) (map[string]int, ReadStats) {
	t.Helper()
	ids := map[string]int{}
	st, err := ReadFiles(files, func(r *Record) error {
		if r.Type == TypeToolCall {
			ids[r.RequestID]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, st
}

func TestFilesAndReadFilesCoverEveryRetainedFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.log")
	writeLog(t, file, "a", 40)
	files, err := Files(file, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 || files[len(files)-1] != file {
		t.Fatalf("files %v: want the rotated files, then the current one", files)
	}
	ids, st := readIDs(t, files)
	if len(ids) != 40 || st.Skipped != 0 {
		t.Fatalf("read %d distinct calls (%d skipped), want 40", len(ids), st.Skipped)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s read %d times", id, n)
		}
	}
	// A torn last line (a crash mid-write) is skipped and counted.
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":999,"prev_hash":"00`)
	f.Close()
	if _, st := readIDs(t, files); st.Skipped != 1 {
		t.Errorf("skipped %d lines, want the torn one", st.Skipped)
	}
	// Rotated files rotated before since are left out.
	later, err := Files(file, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(later) != 1 || later[0] != file {
		t.Errorf("files since an hour ahead: %v, want the current file alone", later)
	}
}

func TestFilesOfAFolderOfReplicas(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, filepath.Join(dir, "replica-a.log"), "a", 25)
	writeLog(t, filepath.Join(dir, "replica-b.log"), "b", 15)
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := Files(dir, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if filepath.Ext(f) == ".head" || filepath.Base(f) == "notes.txt" {
			t.Errorf("%s is not an audit log", f)
		}
	}
	ids, _ := readIDs(t, files)
	if len(ids) != 40 {
		t.Errorf("read %d distinct calls from the folder, want 25 + 15", len(ids))
	}
	if _, err := Files(t.TempDir(), time.Time{}); err == nil {
		t.Error("an empty folder gave no error")
	}
	if _, err := Files(filepath.Join(dir, "missing.log"), time.Time{}); err == nil {
		t.Error("a missing log gave no error")
	}
}

func TestParseRotated(t *testing.T) {
	at := time.Date(2026, 2, 3, 4, 5, 6, 7e6, time.UTC)
	name := filepath.Base(backupName("/x/audit.log", at, 42))
	if cur, got, ok := parseRotated(name); !ok || !got.Equal(at) || cur != "audit.log" {
		t.Errorf("parseRotated(%q) = %q, %v, %v", name, cur, got, ok)
	}
	for _, n := range []string{"audit.log", "replica-a.log", "a-b-c.log"} {
		if _, _, ok := parseRotated(n); ok {
			t.Errorf("parseRotated(%q) found a rotated file", n)
		}
	}
}
