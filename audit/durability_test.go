package audit

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

// Concurrent Writes are group-committed, and each caller is released only
// once its own record is in the file: read back the moment Write returns.
func TestWriteReleasesEachCallerOnlyOnceItsRecordIsInTheFile(t *testing.T) {
	for _, fsync := range []bool{false, true} {
		t.Run(fmt.Sprintf("fsync=%v", fsync), func(t *testing.T) {
			l := MustOpen(t, Config{Fsync: fsync})
			const writers, per = 32, 10
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range per {
						rec := toolCall(i)
						rec.RequestID = fmt.Sprintf("writer-%d-record-%d", w, i)
						if err := l.Write(rec); err != nil {
							t.Error(err)
							return
						}
						data, err := os.ReadFile(l.cfg.File)
						if err != nil {
							t.Error(err)
							return
						}
						if !strings.Contains(string(data), `"request_id":"`+rec.RequestID+`"`) {
							t.Errorf("Write of %s returned before its record was in the file", rec.RequestID)
							return
						}
					}
				})
			}
			wg.Wait()
			t.Logf("%d records in %d commits", writers*per, l.commits.Load())
		})
	}
}

// Writes that arrive while a commit is in progress share the next one: one
// write (and one fsync) for all of them.
func TestWritesArrivingTogetherShareOneCommit(t *testing.T) {
	l := MustOpen(t, Config{Fsync: true})
	mustWrite(t, l, toolCall(0))
	before := l.commits.Load()
	release := holdDisk(t, l)
	const n = 20
	done := make(chan error, n)
	for i := range n {
		go func() { done <- l.Write(toolCall(i + 1)) }()
	}
	waitFor(t, "every Write to be queued", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.seq == n+1
	})
	release()
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// The writer may have taken the first record before the others came.
	if got := l.commits.Load() - before; got > 2 {
		t.Errorf("%d Writes queued together took %d commits, want 1 or 2", n, got)
	}
	if lines := readLines(t, l.cfg.File); len(lines) != n+1 {
		t.Errorf("%d lines in the file, want %d", len(lines), n+1)
	}
}

// The writer pins the end of the chain in the checkpoint shortly after each
// batch, without waiting for Close.
func TestCheckpointFollowsTheChain(t *testing.T) {
	key := MustKey(t)
	l := MustOpen(t, Config{DigestKey: key})
	for i := range 3 {
		mustWrite(t, l, toolCall(i))
		waitFor(t, "the checkpoint to pin the last record", func() bool {
			h, err := readHead(l.cfg.File)
			return err == nil && h != nil && h.Seq == uint64(i+1)
		})
	}
	res := mustVerify(t, l.cfg.File, key)
	if res.Checkpoint != "matched, MAC verified" || len(res.Notes) != 0 {
		t.Errorf("verify of the live log: %+v", res)
	}
}

// crashHelperEnv names the log file a crash helper writes to.
const crashHelperEnv = "AUDIT_CRASH_HELPER_FILE"

// TestCrashHelper is the child of TestRecordsSurviveSIGKILL: 8 goroutines
// Write records and print each one's request ID once Write has returned,
// until the parent kills the process.
func TestCrashHelper(t *testing.T) {
	file := os.Getenv(crashHelperEnv)
	if file == "" {
		t.Skip("only run as the child of TestRecordsSurviveSIGKILL")
	}
	key := make([]byte, DigestKeySize) // the parent verifies with the same
	l, err := Open(Config{File: file, DigestKey: key}, zerolog.Nop())
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec := toolCall(i)
				rec.RequestID = fmt.Sprintf("w%d-%d", w, i)
				if err := l.Write(rec); err != nil {
					fmt.Println("write:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintln(out, rec.RequestID)
				_ = out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// A record whose Write has returned survives the process being SIGKILLed at
// that instant: the parent kills the child as soon as it has read a few
// hundred "written" lines and finds every one of them in the file, which then
// verifies (a checkpoint that lags the last batch is only a note).
func TestRecordsSurviveSIGKILL(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.log")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+file)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var written []string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "open:") || strings.HasPrefix(line, "write:") {
			t.Fatalf("helper: %s", line)
		}
		if strings.HasPrefix(line, "w") {
			written = append(written, line)
		}
		if len(written) == 300 {
			break
		}
	}
	// Kill at once: everything reported as written must be in the file.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(written) < 300 {
		t.Fatalf("helper reported %d records before it stopped: %v", len(written), sc.Err())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range written {
		if !strings.Contains(string(data), `"request_id":"`+id+`"`) {
			t.Errorf("record %s was reported written but is not in the file after SIGKILL", id)
		}
	}
	res, err := VerifyWithKey(file, make([]byte, DigestKeySize))
	if err != nil || !res.OK {
		t.Errorf("verify after SIGKILL: %+v %v", res, err)
	}
	t.Logf("%d records in the file, %d reported before the kill; checkpoint %s; notes %q", res.Records, len(written), res.Checkpoint, res.Notes)
}
