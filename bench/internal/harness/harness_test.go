package harness

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
	"github.com/switchboard-mcp/switchboard/providers"
)

const root = "../../.."

func TestConfigValidates(t *testing.T) {
	cfg := Config{
		Providers: []Provider{
			{Name: "echo", Command: "/bin/echo-provider"},
			{Name: "mt00", Command: "/bin/manytools", Args: []string{"-tools", "20"}, ReadOnly: true, Allow: []string{"tool_*1"}},
		},
		Roles: map[string]Role{
			"r0": {Providers: []string{"echo", "mt00"}},
			"r1": {Providers: []string{"mt00"}, Tools: []string{"*__tool_0*"}},
		},
		MaxConcurrent: 64,
		MaxQueue:      4096,
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := providers.LoadFile(path)
	if err != nil {
		t.Fatalf("generated config does not validate: %v\n%s", err, cfg.yaml())
	}
	if got.Listen != "127.0.0.1:0" || got.Auth.Disabled || got.Auth.RateLimit.RPS < 1e9 {
		t.Errorf("listen %q, auth disabled %v, rate %v", got.Listen, got.Auth.Disabled, got.Auth.RateLimit.RPS)
	}
	mt := got.Providers["mt00"]
	if mt == nil || !mt.ReadOnly || len(mt.Args) != 2 || mt.Limits.MaxQueue != 4096 || mt.Limits.MaxConcurrent != 64 {
		t.Errorf("mt00 = %+v", mt)
	}
	if r := got.Roles["r1"]; r == nil || len(r.Tools) != 1 {
		t.Errorf("r1 = %+v", r)
	}
	if got.Audit.Disabled {
		t.Error("audit disabled without NoAudit")
	}

	// The -features variants switch auth and audit off, and nothing else.
	cfg.NoAuth, cfg.NoAudit, cfg.LogLevel = true, true, "warn"
	if err := os.WriteFile(path, []byte(cfg.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	off, err := providers.LoadFile(path)
	if err != nil {
		t.Fatalf("config with auth and audit off does not validate: %v\n%s", err, cfg.yaml())
	}
	if !off.Auth.Disabled || !off.Audit.Disabled || off.Log.Level != "warn" || off.Auth.RateLimit.RPS < 1e9 {
		t.Errorf("auth disabled %v, audit disabled %v, log level %q, rate %v", off.Auth.Disabled, off.Audit.Disabled, off.Log.Level, off.Auth.RateLimit.RPS)
	}
}

func TestHandlerLatencies(t *testing.T) {
	e := &Env{LogFile: filepath.Join(t.TempDir(), "gateway.log")}
	log := strings.Join([]string{
		"Switchboard is serving MCP at http://127.0.0.1:1/mcp",
		`{"level":"info","component":"mux","method":"tools/list","principal":"user:u001","latency":1.5,"message":"mcp request"}`,
		`{"level":"info","component":"mux","method":"tools/list","principal":"user:bench","latency":9,"message":"mcp request"}`,
		`{"level":"info","component":"mux","method":"tools/call","principal":"user:u002","latency":7,"message":"mcp request"}`,
		`{"level":"info","method":"tools/list","principal":"user:u003","latency":8,"message":"something else"}`,
		`{"level":"info","component":"mux","method":"tools/list","principal":"user:u002","latency":0.25,"message":"mcp request"}`,
		"",
	}, "\n")
	if err := os.WriteFile(e.LogFile, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := e.HandlerLatencies("tools/list", "user:u")
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1500 * time.Microsecond, 250 * time.Microsecond}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("HandlerLatencies = %v, want %v", got, want)
	}
	bad := `{"component":"mux","method":"tools/list","principal":"user:u1","message":"mcp request"}` + "\n"
	if err := os.WriteFile(e.LogFile, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.HandlerLatencies("tools/list", "user:u"); err == nil {
		t.Fatal("a request line without a latency was accepted")
	}
}

// The gateway writes a request's access-log line just after the answer; the
// wait must see a line that lands a moment after it starts, and give up on
// one that never comes.
func TestWaitHandlerLatencies(t *testing.T) {
	e := &Env{LogFile: filepath.Join(t.TempDir(), "gateway.log")}
	line := `{"component":"mux","method":"tools/list","principal":"user:u1","latency":1,"message":"mcp request"}` + "\n"
	if err := os.WriteFile(e.LogFile, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		f, err := os.OpenFile(e.LogFile, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString(line)
			f.Close()
		}
		done <- err
	}()
	got, err := e.WaitHandlerLatencies(context.Background(), "tools/list", "user:u", 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("WaitHandlerLatencies = %v, %v; want the late second line", got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.WaitHandlerLatencies(ctx, "tools/list", "user:u", 3); err == nil {
		t.Fatal("waiting for a line that never comes succeeded")
	}
}

func TestProcHelpers(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("RSS = %d, %v", rss, err)
	}
	if _, err := CPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := RSS(-1); err == nil {
		t.Fatal("RSS of a missing process succeeded")
	}
	if _, err := Syscalls(-1); err == nil {
		t.Fatal("Syscalls of a missing process succeeded")
	}
}

// TestSyscalls counts the writes this process makes to a pipe.
func TestSyscalls(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	go func() { _, _ = io.Copy(io.Discard, r) }()
	before, err := Syscalls(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	const writes = 200
	for range writes {
		if _, err := w.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	after, err := Syscalls(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := after - before; got < writes {
		t.Fatalf("counted %d system calls over %d writes", got, writes)
	}
}

// TestGatewayAndDirect runs the real binaries end to end: a user, the gateway,
// a session, a call; the same call direct; then everything stops.
func TestGatewayAndDirect(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the gateway binary")
	}
	bins, err := FindBins(root)
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env, err := NewEnv(bins, t.TempDir(), Config{Providers: []Provider{{Name: "echo", Command: bins.Echo}}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := env.AddUser(ctx, "bench", "admin")
	if err != nil {
		t.Fatal(err)
	}
	const extra = "SBBENCH_TEST_GATEWAY_ENV=1"
	GatewayEnv = []string{extra}
	g, err := env.Start(ctx, "")
	GatewayEnv = nil
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	c := &mcpclient.Client{URL: g.URL, Key: key, HTTP: mcpclient.NewHTTPClient(2)}
	s, err := OpenSession(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WaitTools(ctx, s, 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := s.Call(ctx, "tools/call", []byte(`{"name":"echo__echo","arguments":{"text":"hello"}}`))
	if err != nil || !strings.Contains(string(res), "hello") {
		t.Fatalf("gateway call = %s, %v", res, err)
	}
	_, children := SplitChildren(g.Pid())
	if len(children) != 1 {
		t.Fatalf("gateway provider children %v, want one echo", children)
	}
	// -gateway-env reaches the gateway and not its provider.
	for pid, want := range map[int]bool{g.Pid(): true, children[0]: false} {
		environ, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(environ), extra); got != want {
			t.Errorf("pid %d has %s: %v, want %v", pid, extra, got, want)
		}
	}
	if m, err := MemOf(g.Pid()); err != nil || m.RSS <= 0 || m.PSS <= 0 || m.Anonymous <= 0 || m.File() <= 0 {
		t.Fatalf("MemOf = %+v, %v", m, err)
	}

	d, err := StartDirect(ctx, bins.Echo)
	if err != nil {
		t.Fatal(err)
	}
	res, err = d.Call(ctx, "tools/call", []byte(`{"name":"echo","arguments":{"text":"hello"}}`))
	if err != nil || !strings.Contains(string(res), "hello") {
		t.Fatalf("direct call = %s, %v", res, err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := Live(); n != 0 {
		t.Fatalf("%d processes still registered", n)
	}
	// The gateway's child is gone with it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(children[0]))); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo child %d outlived the gateway", children[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
