package vault_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/vault"
)

// Environment of the crash child (TestCrashChild re-executed by TestCrashConsistency).
const (
	envCrashPath = "VAULT_TEST_CRASH_PATH"
	envCrashKey  = "VAULT_TEST_CRASH_KEY"
	envCrashIter = "VAULT_TEST_CRASH_ITER"
)

// crashValue is the value the child writes for name: deterministic, so the
// parent can check it, and sometimes large enough to grow the file.
func crashValue(name string) []byte {
	sum := sha256.Sum256([]byte(name))
	v := hex.EncodeToString(sum[:])
	if sum[0]%4 == 0 {
		v = strings.Repeat(v, 64) // 4 KiB: forces page splits and file growth
	}
	return []byte(v)
}

// TestCrashConsistency SIGKILLs a child process at arbitrary points of a stream
// of vault writes and rotations, 20 times. After every kill the vault reopens
// with the same key, bbolt's consistency check is clean, every entry decrypts
// with exactly the one data key in the ring, and every write the child
// acknowledged is present with its value. SIGKILL loses no page cache, so this
// covers process crashes, not power loss (bbolt's own tests cover that).
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: re-executes the test binary 20 times")
	}
	key := vault.GenerateKey()
	path := filepath.Join(t.TempDir(), vault.DefaultFileName)
	acked := map[string]string{} // "secret/NAME" or "conn/user/gh/TOKEN" → value
	for iter := range 20 {
		runCrashChild(t, path, key, iter, acked)

		v, err := openVault(path, key, vault.Options{}, 5*time.Second)
		if err != nil {
			t.Fatalf("iteration %d: reopen after kill: %v", iter, err)
		}
		if err := v.Check(); err != nil {
			_ = v.Close()
			t.Fatalf("iteration %d: %v", iter, err)
		}
		ids, err := v.KeyIDs()
		if err != nil || len(ids) != 1 {
			_ = v.Close()
			t.Fatalf("iteration %d: keyring %v (err %v), want exactly one key", iter, ids, err)
		}
		for entry, want := range acked {
			var got string
			parts := strings.Split(entry, "/")
			if parts[0] == "secret" {
				s, err := v.Get(parts[1])
				if err != nil {
					t.Errorf("iteration %d: acknowledged %s: %v", iter, entry, err)
					continue
				}
				got = s.Reveal()
			} else {
				s, err := v.UserSecret(context.Background(), parts[1], parts[2], parts[3])
				if err != nil {
					t.Errorf("iteration %d: acknowledged %s: %v", iter, entry, err)
					continue
				}
				got = s.Reveal()
			}
			// A connection may hold a later write that committed but was not
			// acknowledged before the kill; values sort in write order.
			if got != want && !(parts[0] == "conn" && got > want && validConnValue(got)) {
				t.Errorf("iteration %d: acknowledged %s has the wrong value", iter, entry)
			}
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			return
		}
	}
	if len(acked) < 20 {
		t.Fatalf("only %d writes acknowledged in 20 iterations; the child is not doing work", len(acked))
	}
}

// connValue is a connection value that sorts in write order and checks itself.
func connValue(iter string, i int) []byte {
	prefix := fmt.Sprintf("%03s.%06d.", iter, i)
	sum := sha256.Sum256([]byte(prefix))
	return []byte(prefix + hex.EncodeToString(sum[:8]))
}

func validConnValue(v string) bool {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return false
	}
	sum := sha256.Sum256([]byte(v[:i+1]))
	return v[i+1:] == hex.EncodeToString(sum[:8])
}

// runCrashChild starts the child, lets it acknowledge a random number of
// operations, SIGKILLs it, and records everything it acknowledged.
func runCrashChild(t *testing.T, path string, key vault.Key, iter int, acked map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		envCrashPath+"="+path,
		envCrashKey+"="+key.Encode(),
		fmt.Sprintf("%s=%d", envCrashIter, iter),
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killAfter := 1 + rand.IntN(40)
	sc := bufio.NewScanner(stdout)
	n := 0
	killed := false
	for sc.Scan() {
		line := sc.Text()
		entry, value, ok := strings.Cut(strings.TrimPrefix(line, "ack "), " ")
		if !strings.HasPrefix(line, "ack ") || !ok {
			continue // the testing framework's own output
		}
		acked[entry] = value
		if n++; n == killAfter && !killed {
			_ = cmd.Process.Kill() // SIGKILL; keep reading what it already acknowledged
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("iteration %d: child exited before the kill (%v), after %d acks: %s", iter, err, n, stderr.String())
	}
}

// TestCrashChild is the child of TestCrashConsistency; it does nothing unless
// re-executed with envCrashPath set. It writes secrets, replaces connections and
// rotates, printing "ack <entry> <value>" after each write returns.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(envCrashPath)
	if path == "" {
		t.Skip("only runs as TestCrashConsistency's child")
	}
	key, err := vault.ParseKey(os.Getenv(envCrashKey))
	if err != nil {
		t.Fatal(err)
	}
	iter := os.Getenv(envCrashIter)
	v, err := openVault(path, key, vault.Options{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	deadline := time.Now().Add(30 * time.Second) // never outlive a broken parent for long
	for i := 0; time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("S%s_%d", iter, i)
		val := crashValue(name)
		if err := v.Set(name, val); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(os.Stdout, "ack secret/%s %s\n", name, val)
		switch i % 5 {
		case 2:
			user := fmt.Sprintf("u%d", i%3)
			val := connValue(iter, i)
			if err := v.SetConnection(user, "gh", map[string][]byte{"TOKEN": val, "EXTRA": []byte(name)}); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(os.Stdout, "ack conn/%s/gh/TOKEN %s\n", user, val)
		case 4:
			if _, err := v.Rotate(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
