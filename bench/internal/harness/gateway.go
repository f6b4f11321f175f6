package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
)

// Bins are the binaries the benchmarks run.
type Bins struct {
	Root        string // repository root
	Switchboard string // bin/switchboard
	Echo        string // bin/echo
	ManyTools   string // the bench-only provider, built by BuildManyTools
}

// FindBins locates bin/switchboard and bin/echo under root (built by `make build`).
func FindBins(root string) (Bins, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return Bins{}, err
	}
	b := Bins{Root: abs, Switchboard: filepath.Join(abs, "bin", "switchboard"), Echo: filepath.Join(abs, "bin", "echo")}
	for _, p := range []string{b.Switchboard, b.Echo} {
		if _, err := os.Stat(p); err != nil {
			return b, fmt.Errorf("finding binaries: %s is missing; run `make build` first", p)
		}
	}
	return b, nil
}

// BuildManyTools builds bench/internal/manytools into dir and records its path.
func (b *Bins) BuildManyTools(ctx context.Context, dir string) error {
	out := filepath.Join(dir, "manytools")
	if err := goBuild(ctx, b.Root, out, "./bench/internal/manytools", nil); err != nil {
		return err
	}
	b.ManyTools = out
	return nil
}

// pprofOverlay is added to package main of cmd/switchboard, through
// `go build -overlay`, by BuildProfiling. It serves net/http/pprof on a loopback
// port of its own and writes the address to $SBBENCH_PPROF_FILE.
const pprofOverlay = `package main

import (
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	file := os.Getenv("SBBENCH_PPROF_FILE")
	if file == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	_ = os.WriteFile(file, []byte(ln.Addr().String()), 0o600)
	go func() { _ = http.Serve(ln, http.DefaultServeMux) }()
}
`

// BuildProfiling builds cmd/switchboard into dir with one extra file, added
// through a build overlay (the tree is not touched), that serves pprof on a
// loopback port when $SBBENCH_PPROF_FILE is set. It returns the binary's path.
func (b *Bins) BuildProfiling(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	src := filepath.Join(dir, "zz_sbbench_pprof.go")
	if err := os.WriteFile(src, []byte(pprofOverlay), 0o600); err != nil {
		return "", err
	}
	overlay := filepath.Join(dir, "overlay.json")
	virt := filepath.Join(b.Root, "cmd", "switchboard", "zz_sbbench_pprof.go")
	js := fmt.Sprintf(`{"Replace":{%s:%s}}`, strconv.Quote(virt), strconv.Quote(src))
	if err := os.WriteFile(overlay, []byte(js), 0o600); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "switchboard-pprof")
	if err := goBuild(ctx, b.Root, out, "./cmd/switchboard", []string{"-overlay", overlay, "-ldflags", "-X main.version=sbbench-pprof"}); err != nil {
		return "", err
	}
	return out, nil
}

func goBuild(ctx context.Context, root, out, pkg string, extra []string) error {
	args := append([]string{"build", "-trimpath"}, extra...)
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return nil
}

// Provider is one provider in a generated gateway.yaml.
type Provider struct {
	Name     string
	Command  string
	Args     []string
	ReadOnly bool
	Allow    []string
	// Protocol is the provider's protocol setting (the era the gateway
	// speaks to it in); empty leaves the default (auto).
	Protocol string
}

// Role is one role in a generated gateway.yaml.
type Role struct {
	Providers []string
	Tools     []string
}

// Config is what NewEnv writes into gateway.yaml. Authentication is on unless
// NoAuth; the rate limit is raised out of the way (the load generator is one
// principal); audit (unless NoAudit) and metrics are whatever the binary does
// by default.
type Config struct {
	Providers []Provider
	Roles     map[string]Role
	// LogLevel is log.level (default info, the shipped default).
	LogLevel string
	// MaxConcurrent and MaxQueue, when set, go under defaults.
	MaxConcurrent, MaxQueue int
	// NoAuth sets auth.disabled (loopback only: every caller is a local
	// admin) and NoAudit sets audit.disabled. Only sbbench -features uses
	// them, to measure what each feature costs.
	NoAuth, NoAudit bool
	// Audit lines go under audit: (e.g. "wait_for_write: false"), unless
	// NoAudit. sbbench -features-audit uses them to compare the log's modes.
	Audit []string
	// Tracing lines go under tracing: (e.g. "enabled: true").
	// sbbench -features-tracing uses them.
	Tracing []string
}

// FloorEnv is added to the environment of the bare HTTP floor's process
// (sbbench -floor-env), so the floor can be measured at the gateway's
// runtime settings too.
var FloorEnv []string

// GatewayEnv is added to the environment of every gateway process the
// harness starts (KEY=VALUE entries, e.g. GOMAXPROCS=1). Providers do not
// see it: the supervisor gives children only its base variables.
var GatewayEnv []string

// Env is a temp dir with a gateway.yaml, a data dir and a vault key.
type Env struct {
	Bins
	Dir      string
	Config   string
	VaultKey string
	// AuditFile is where the gateway's default audit log lives.
	AuditFile string
	// LogFile receives the gateway's stdout and stderr.
	LogFile string
}

// NewEnv writes cfg into dir/gateway.yaml and generates a vault key.
func NewEnv(bins Bins, dir string, cfg Config) (*Env, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	e := &Env{
		Bins:      bins,
		Dir:       dir,
		Config:    filepath.Join(dir, "gateway.yaml"),
		VaultKey:  base64.StdEncoding.EncodeToString(key[:]),
		AuditFile: filepath.Join(dir, "data", "audit.log"),
		// Not beside gateway.yaml: the gateway watches that folder for
		// edits, and a log written there would wake the watcher on every
		// line, work a deployment logging to its supervisor never does.
		LogFile: filepath.Join(dir, "log", "gateway.log"),
	}
	if err := os.MkdirAll(filepath.Dir(e.LogFile), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(e.Config, []byte(cfg.yaml()), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

func (c Config) yaml() string {
	var b strings.Builder
	q := strconv.Quote
	list := func(xs []string) string {
		qs := make([]string, len(xs))
		for i, x := range xs {
			qs[i] = q(x)
		}
		return "[" + strings.Join(qs, ", ") + "]"
	}
	lvl := c.LogLevel
	if lvl == "" {
		lvl = "info"
	}
	fmt.Fprintf(&b, "# generated by sbbench\nlisten: 127.0.0.1:0\ndata_dir: ./data\nlog:\n  level: %s\n", lvl)
	// One load-generator principal opens every session of the run.
	// SB_NO_SESSION_CAP=1 leaves the setting out, for gateway binaries from
	// before it existed (A/B runs against older commits).
	if os.Getenv("SB_NO_SESSION_CAP") == "" {
		b.WriteString("sessions:\n  max_per_principal: 1000000000\n")
	}
	b.WriteString("auth:\n  rate_limit: {rps: 1000000000, burst: 1000000000}\n")
	if c.NoAuth {
		b.WriteString("  disabled: true\n")
	}
	if c.NoAudit {
		b.WriteString("audit:\n  disabled: true\n")
	} else if len(c.Audit) > 0 {
		b.WriteString("audit:\n")
		for _, l := range c.Audit {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if len(c.Tracing) > 0 {
		b.WriteString("tracing:\n")
		for _, l := range c.Tracing {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if c.MaxConcurrent > 0 || c.MaxQueue > 0 {
		b.WriteString("defaults:\n")
		if c.MaxConcurrent > 0 {
			fmt.Fprintf(&b, "  max_concurrent: %d\n", c.MaxConcurrent)
		}
		if c.MaxQueue > 0 {
			fmt.Fprintf(&b, "  max_queue: %d\n", c.MaxQueue)
		}
	}
	b.WriteString("providers:\n")
	for _, p := range c.Providers {
		fmt.Fprintf(&b, "  %s:\n    command: %s\n", p.Name, q(p.Command))
		if len(p.Args) > 0 {
			fmt.Fprintf(&b, "    args: %s\n", list(p.Args))
		}
		if p.ReadOnly {
			b.WriteString("    read_only: true\n")
		}
		if p.Protocol != "" {
			fmt.Fprintf(&b, "    protocol: %s\n", q(p.Protocol))
		}
		if len(p.Allow) > 0 {
			fmt.Fprintf(&b, "    tools:\n      allow: %s\n", list(p.Allow))
		}
	}
	if len(c.Roles) > 0 {
		b.WriteString("roles:\n")
		names := make([]string, 0, len(c.Roles))
		for n := range c.Roles {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			r := c.Roles[n]
			fmt.Fprintf(&b, "  %s:\n    providers: %s\n", n, list(r.Providers))
			if len(r.Tools) > 0 {
				fmt.Fprintf(&b, "    tools: %s\n", list(r.Tools))
			}
		}
	}
	return b.String()
}

func (e *Env) environ() []string {
	env := append(os.Environ(), GatewayEnv...)
	return append(env, "SWITCHBOARD_VAULT_KEY="+e.VaultKey)
}

var keyRe = regexp.MustCompile(`(?m)^\s*(sb_\S+)\s*$`)

// AddUser runs `switchboard user add NAME --role ...` on the offline vault and
// returns the API key it prints.
func (e *Env) AddUser(ctx context.Context, name string, roles ...string) (string, error) {
	args := []string{"user", "add", name, "--config", e.Config}
	for _, r := range roles {
		args = append(args, "--role", r)
	}
	cmd := exec.CommandContext(ctx, e.Switchboard, args...)
	cmd.Env = e.environ()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("switchboard user add %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	// The key is the first non-empty line after "API key for ...".
	text := string(out)
	if i := strings.Index(text, "API key for"); i >= 0 {
		for _, line := range strings.Split(text[i:], "\n")[1:] {
			if line = strings.TrimSpace(line); line != "" {
				return line, nil
			}
		}
	}
	if m := keyRe.FindStringSubmatch(text); m != nil {
		return m[1], nil
	}
	return "", fmt.Errorf("switchboard user add %s: no key in its output", name)
}

// Gateway is a running `switchboard serve`.
type Gateway struct {
	Cmd *exec.Cmd
	// URL is the MCP endpoint, http://127.0.0.1:PORT/mcp.
	URL string
	// Started is when the binary was executed.
	Started time.Time
	// PprofAddr is the pprof listener of a BuildProfiling binary, or "".
	PprofAddr string
	done      chan struct{}
	once      sync.Once
	stopErr   error
	log       *os.File
}

// Start runs `binary serve --config` (binary defaults to e.Switchboard) and
// returns once it prints the URL it serves. Providers may still be starting.
func (e *Env) Start(ctx context.Context, binary string) (*Gateway, error) {
	if binary == "" {
		binary = e.Switchboard
	}
	logf, err := os.OpenFile(e.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	pprofFile := filepath.Join(e.Dir, "pprof.addr")
	_ = os.Remove(pprofFile)
	cmd := exec.Command(binary, "serve", "--config", e.Config)
	cmd.Env = append(e.environ(), "SBBENCH_PPROF_FILE="+pprofFile)
	cmd.Dir = e.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	g := &Gateway{Cmd: cmd, done: make(chan struct{}), log: logf}
	g.Started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	register(cmd.Process.Pid, g.Stop)
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if !sent {
				if i := strings.Index(line, "serving MCP at "); i >= 0 {
					urlCh <- strings.TrimSpace(line[i+len("serving MCP at "):])
					sent = true
				}
			}
		}
		_, _ = io.Copy(logf, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(g.done)
	}()
	select {
	case g.URL = <-urlCh:
	case <-g.done:
		_ = g.Stop()
		return nil, fmt.Errorf("gateway exited during startup; see %s", e.LogFile)
	case <-ctx.Done():
		_ = g.Stop()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		_ = g.Stop()
		return nil, fmt.Errorf("gateway did not start serving in 30s; see %s", e.LogFile)
	}
	if b, err := os.ReadFile(pprofFile); err == nil {
		g.PprofAddr = strings.TrimSpace(string(b))
	}
	return g, nil
}

// Pid returns the gateway's process id.
func (g *Gateway) Pid() int { return g.Cmd.Process.Pid }

// Done is closed when the gateway process has exited.
func (g *Gateway) Done() <-chan struct{} { return g.done }

// Base returns the gateway's base URL (without /mcp).
func (g *Gateway) Base() string { return strings.TrimSuffix(g.URL, "/mcp") }

// Stop sends SIGTERM and waits for a graceful stop (SIGKILL after 15 s). It is
// idempotent.
func (g *Gateway) Stop() error {
	g.once.Do(func() {
		defer unregister(g.Cmd.Process.Pid)
		g.stopErr = stopProcess(g.Cmd, g.done, syscall.SIGTERM, 15*time.Second)
		g.log.Close()
	})
	return g.stopErr
}

// WaitTools polls tools/list through s until it lists at least want tools, and
// returns when that first succeeded.
func WaitTools(ctx context.Context, s *mcpclient.Session, want int, deadline time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var last error
	for {
		res, err := s.Call(ctx, "tools/list", nil)
		if err == nil {
			n := bytes.Count(res, []byte(`"inputSchema"`))
			if n >= want {
				return time.Now(), nil
			}
			last = fmt.Errorf("tools/list lists %d tools, want %d", n, want)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for tools: %w (last: %v)", ctx.Err(), last)
		case <-time.After(time.Millisecond):
		}
	}
}

// OpenSession initializes a session, retrying while the listener is not yet
// accepting (it always is once Start returned, but be lenient).
func OpenSession(ctx context.Context, c *mcpclient.Client) (*mcpclient.Session, error) {
	var last error
	for range 50 {
		s, err := c.Open(ctx)
		if err == nil {
			return s, nil
		}
		last = err
		var se *mcpclient.StatusError
		if errors.As(err, &se) || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil, last
}

// FileSize returns the size of path, or 0 if it does not exist.
func FileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
