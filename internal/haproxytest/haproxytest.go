// Package haproxytest runs the shipped HAProxy configuration
// (examples/haproxy/haproxy.cfg) in front of test servers: the same routing
// rules the documentation ships, with the bind address and the server lines
// replaced. Without haproxy installed, Start skips the test, except under CI,
// which installs it.
package haproxytest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proxy is a running haproxy.
type Proxy struct {
	Addr   string // host:port it listens on
	Config string // the configuration it runs
	cmd    *exec.Cmd
	out    *lockedBuffer
	done   chan struct{}
}

// Server is one replica line: its name and address.
type Server struct {
	Name, Addr string
}

var (
	bindRe   = regexp.MustCompile(`(?m)^(\s*bind\s+)\S+`)
	serverRe = regexp.MustCompile(`(?m)^\s*server\s+\S+\s+\S+.*\n`)
)

// Rewrite returns cfg with its frontend bound to listen and its server lines
// replaced by servers (ids 1, 2, … in order). It fails if cfg has not exactly
// one bind line or no server line.
func Rewrite(cfg, listen string, servers []Server) (string, error) {
	if n := len(bindRe.FindAllString(cfg, -1)); n != 1 {
		return "", fmt.Errorf("haproxy config has %d bind lines, want 1", n)
	}
	locs := serverRe.FindAllStringIndex(cfg, -1)
	if len(locs) == 0 {
		return "", errors.New("haproxy config has no server line")
	}
	cfg = bindRe.ReplaceAllString(cfg, "${1}"+listen)
	locs = serverRe.FindAllStringIndex(cfg, -1)
	var lines strings.Builder
	for i, s := range servers {
		fmt.Fprintf(&lines, "    server %s %s id %d\n", s.Name, s.Addr, i+1)
	}
	first, last := locs[0][0], locs[len(locs)-1][1]
	return cfg[:first] + lines.String() + cfg[last:], nil
}

// Binary finds haproxy, or skips tb (fails it under CI).
func Binary(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("haproxy")
	if err == nil {
		return p
	}
	if p := "/usr/sbin/haproxy"; fileExists(p) {
		return p
	}
	if ci := strings.ToLower(os.Getenv("CI")); ci != "" && ci != "0" && ci != "false" {
		tb.Fatal("haproxy is not installed; CI must install it (apt-get install haproxy)")
	}
	tb.Skip("skipping: haproxy is not installed (apt-get install haproxy)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Start runs the configuration at cfgPath rewritten for servers, on a free
// loopback port, until tb ends. It returns once haproxy accepts connections.
func Start(tb testing.TB, cfgPath string, servers []Server) *Proxy {
	tb.Helper()
	bin := Binary(tb)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cfg, err := Rewrite(string(raw), addr, servers)
	if err != nil {
		tb.Fatalf("%s: %v", cfgPath, err)
	}
	file := filepath.Join(tb.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", file).CombinedOutput(); err != nil {
		tb.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	p := &Proxy{Addr: addr, Config: cfg, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-db", "-f", file)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(p.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return p
		}
		select {
		case <-p.done:
			tb.Fatalf("haproxy exited at start:\n%s", p.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("haproxy did not listen on %s within 20 s:\n%s", addr, p.Output())
		}
	}
}

// URL returns the proxy's base URL.
func (p *Proxy) URL() string { return "http://" + p.Addr }

// Output returns what haproxy logged.
func (p *Proxy) Output() string { return p.out.String() }

// Stop stops haproxy.
func (p *Proxy) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// WaitServersUp waits until a request with each of keys gets an answer other
// than 503 (haproxy's "no server" while its first health checks run).
func (p *Proxy) WaitServersUp(tb testing.TB, path string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(p.URL() + path)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("haproxy has no server up after %s:\n%s", within, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
