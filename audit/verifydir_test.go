package audit

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// replicaLogs writes n records from each replica into dir, each replica's log
// rotated every few records, as a folder gathered from three replicas.
func replicaLogs(t *testing.T, dir string, key []byte, n int, replicas ...string) {
	t.Helper()
	for _, r := range replicas {
		l := MustOpen(t, Config{File: filepath.Join(dir, "audit-"+r+".log"), DigestKey: key, Replica: r, MaxSizeBytes: 1500})
		for i := range n {
			mustWrite(t, l, toolCall(i+1))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecordsNameTheirReplica(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key, Replica: "gw-2"})
	rec := toolCall(1)
	rec.Replica = "someone-else" // the log's own replica wins
	mustWrite(t, l, rec)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, line := range fileLines(t, l.cfg.File) {
		if line != "" && !strings.Contains(line, `"replica":"gw-2"`) {
			t.Errorf("line %d does not name replica gw-2: %s", i+1, line)
		}
	}
	res, err := VerifyWithKey(l.cfg.File, key)
	if err != nil || !res.OK || !slices.Equal(res.Replicas, []string{"gw-2"}) {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

func TestVerifyDir(t *testing.T) {
	key := MustKey(t)
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		ok     bool
		broken []string // chains (base names) that must fail
		note   string
	}{
		{name: "three replicas, rotated", ok: true},
		{name: "one replica's record altered", mutate: func(t *testing.T, dir string) {
			f := filepath.Join(dir, "audit-gw-2.log")
			lines := fileLines(t, f)
			lines[0] = strings.Replace(lines[0], `"outcome":"ok"`, `"outcome":"error"`, 1)
			writeLines(t, f, lines)
		}, broken: []string{"audit-gw-2.log"}},
		{name: "one replica's checkpoint missing", mutate: func(t *testing.T, dir string) {
			removeHead(t, filepath.Join(dir, "audit-gw-3.log"))
		}, broken: []string{"audit-gw-3.log"}},
		{name: "a rotated file of one replica missing", mutate: func(t *testing.T, dir string) {
			rotated, _ := listBackups(filepath.Join(dir, "audit-gw-1.log"))
			if len(rotated) < 2 {
				t.Fatalf("gw-1 has %d rotated files, want at least 2", len(rotated))
			}
			if err := os.Remove(rotated[1].path); err != nil {
				t.Fatal(err)
			}
		}, broken: []string{"audit-gw-1.log"}},
		{name: "a stray file", mutate: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, broken: []string{"notes.txt"}},
		{name: "a copy under another name", mutate: func(t *testing.T, dir string) {
			for _, ext := range []string{"", ".head"} {
				b, err := os.ReadFile(filepath.Join(dir, "audit-gw-2.log"+ext))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "copy.log"+ext), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rotated, _ := listBackups(filepath.Join(dir, "audit-gw-2.log"))
			for _, r := range rotated {
				b, _ := os.ReadFile(r.path)
				name := "copy" + strings.TrimPrefix(filepath.Base(r.path), "audit-gw-2")
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}, ok: true, note: "replica gw-2 is named by several logs (audit-gw-2.log, copy.log)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			replicaLogs(t, dir, key, 12, "gw-1", "gw-2", "gw-3")
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			res, err := VerifyDir(dir, key)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%+v)", res.OK, tt.ok, res)
			}
			var names []string
			for _, c := range res.Chains {
				base := filepath.Base(c.File)
				names = append(names, base)
				wantBroken := slices.Contains(tt.broken, base)
				if wantBroken == c.OK {
					t.Errorf("%s: OK = %v, want %v (%+v)", base, c.OK, !wantBroken, c.VerifyResult)
				}
				if r, ok := strings.CutPrefix(strings.TrimSuffix(base, ".log"), "audit-"); ok && c.OK {
					if !slices.Equal(c.Replicas, []string{r}) {
						t.Errorf("%s: replicas %v, want [%s]", base, c.Replicas, r)
					}
					if len(c.Files) < 3 {
						t.Errorf("%s: %d files walked, want the rotated ones too", base, len(c.Files))
					}
				}
			}
			for _, want := range []string{"audit-gw-1.log", "audit-gw-2.log", "audit-gw-3.log"} {
				if !slices.Contains(names, want) {
					t.Errorf("chains %v lack %s", names, want)
				}
			}
			if tt.note != "" && !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, tt.note) }) {
				t.Errorf("notes %q lack %q", res.Notes, tt.note)
			}
			// The report: one line per log, then the notes; exit 1 when
			// one log is broken.
			var out strings.Builder
			wantCode := 0
			if !tt.ok {
				wantCode = 1
			}
			if code := res.Report(&out); code != wantCode {
				t.Errorf("Report = %d, want %d:\n%s", code, wantCode, out.String())
			}
			for _, c := range res.Chains {
				base := filepath.Base(c.File)
				verdict := "ok: "
				if slices.Contains(tt.broken, base) {
					verdict = "BROKEN"
				}
				if !slices.ContainsFunc(strings.Split(out.String(), "\n"), func(l string) bool {
					return strings.HasPrefix(l, base+" (") && strings.Contains(l, "): "+verdict)
				}) {
					t.Errorf("report has no line %q … %q:\n%s", base, verdict, out.String())
				}
			}
		})
	}
	if _, err := VerifyDir(t.TempDir(), key); err == nil || !strings.Contains(err.Error(), "no audit log") {
		t.Errorf("an empty folder: %v, want an error", err)
	}
	// Without the key only the structure is checked: never OK.
	dir := t.TempDir()
	replicaLogs(t, dir, key, 3, "gw-1")
	res, err := VerifyDir(dir, nil)
	if err != nil || res.OK || res.Chains[0].Unproven == "" {
		t.Errorf("without a key: %+v, %v; want unproven", res, err)
	}
	var out strings.Builder
	if code := res.Report(&out); code != 2 || !strings.Contains(out.String(), "audit-gw-1.log (replica gw-1): UNPROVEN") {
		t.Errorf("Report without a key = %d, want 2:\n%s", code, out.String())
	}
}

func TestRotatedOf(t *testing.T) {
	tests := []struct {
		name, in, cur string
		ok            bool
	}{
		{"rotated", "audit-gw-1-20260101T120000.000Z-17.log", "audit-gw-1.log", true},
		{"rotated without replica", "audit-20260101T120000.000Z-1.log", "audit.log", true},
		{"current file with a dash", "audit-gw-1.log", "", false},
		{"no time", "audit-gw-17.log", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, ok := rotatedOf(tt.in)
			if cur != tt.cur || ok != tt.ok {
				t.Errorf("rotatedOf(%q) = %q, %v; want %q, %v", tt.in, cur, ok, tt.cur, tt.ok)
			}
		})
	}
}
