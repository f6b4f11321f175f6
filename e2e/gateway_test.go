package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/switchboard-mcp/switchboard"
)

// baseConfig opens every gateway.yaml the tests write: a free loopback port,
// debug logs, and a rate limit high enough never to interfere.
const baseConfig = `
listen: 127.0.0.1:0
data_dir: ./data
log: {level: debug}
auth:
  rate_limit: {rps: 1000000, burst: 1000000}
`

// gateway is one `switchboard serve` subprocess.
type gateway struct {
	t    testing.TB
	dir  string // holds gateway.yaml; $DIR in configs
	base string // what every gateway.yaml it serves starts with
	cfg  string
	env  []string
	key  string // the admin user's API key
	url  string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	log  *lineLog
	done chan struct{} // closed when the process has exited
	ps   *os.ProcessState
	// inner is the gateway's pid when it runs under the subreaper init (cmd
	// is then that init); see underInit.
	inner int
}

// gatewayOption changes how startGateway runs the gateway.
type gatewayOption func(*gateway)

// underInit runs the gateway under testdata/subreaper, an init that reaps
// at once, as systemd or tini would: killed processes disappear as soon as
// they die instead of at the sandbox's PID 1's next sweep, and orphans are
// reparented to it rather than to PID 1. g.pid() and g.stop() address the
// gateway itself.
func underInit() gatewayOption { return func(g *gateway) { g.inner = -1 } }

// withEnv adds variables to the gateway's environment.
func withEnv(kv ...string) gatewayOption {
	return func(g *gateway) { g.env = append(g.env, kv...) }
}

// startGateway writes config (after baseConfig, with $BIN, $NPM and $DIR
// replaced by the binaries' folder, node_modules/.bin and the gateway's own
// temp folder), creates an admin user with the CLI, and serves it. Cleanup
// stops the gateway with SIGTERM and checks it left no provider behind.
func startGateway(t testing.TB, config string, opts ...gatewayOption) *gateway {
	t.Helper()
	return startGatewayBase(t, baseConfig, config, opts...)
}

// startGatewayBase is startGateway with base in place of baseConfig.
func startGatewayBase(t testing.TB, base, config string, opts ...gatewayOption) *gateway {
	t.Helper()
	// A short folder: the admin socket lives in data_dir and unix socket
	// paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "sbe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &gateway{t: t, dir: dir, base: base, cfg: filepath.Join(dir, "gateway.yaml"), log: newLineLog(), done: make(chan struct{})}
	config = g.expand(config)
	if err := os.WriteFile(g.cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	_, _ = rand.Read(key[:])
	g.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"LANG=C.UTF-8",
		"SWITCHBOARD_VAULT_KEY=" + base64.StdEncoding.EncodeToString(key[:]),
	}
	if raceEnabled {
		g.env = append(g.env, "GORACE=halt_on_error=0 exitcode=66 atexit_sleep_ms=0")
	}
	g.key = g.addUser("e2e")
	for _, o := range opts {
		o(g)
	}

	g.cmd = exec.Command(filepath.Join(binDir, "switchboard"), "serve", "--config", g.cfg)
	g.cmd.Env = g.env
	innerPIDFile := filepath.Join(dir, "gateway.pid")
	if g.inner != 0 {
		g.cmd = exec.Command(filepath.Join(binDir, "subreaper"), append([]string{filepath.Join(binDir, "switchboard")}, g.cmd.Args[1:]...)...)
		g.cmd.Env = append(g.env, "SUBREAPER_PIDFILE="+innerPIDFile)
	}
	g.cmd.Dir = dir
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd.Stderr = pw // an *os.File: Wait never waits for a copy
	g.cmd.Stdout = io.Discard
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go g.log.readFrom(pr)
	go func() {
		_ = g.cmd.Wait()
		g.ps = g.cmd.ProcessState
		close(g.done)
	}()
	t.Cleanup(g.cleanup)
	if g.inner != 0 {
		g.inner = readPID(t, innerPIDFile)
	}

	line, ok := g.log.waitFor(30*time.Second, g.done, func(l logLine) bool { return l.msg() == "switchboard serving" })
	if !ok {
		t.Fatalf("gateway did not start serving; log:\n%s", g.log.tail(100))
	}
	var ll struct {
		Listen string `json:"listen"`
	}
	_ = json.Unmarshal([]byte(line.text), &ll)
	if ll.Listen == "" {
		t.Fatalf("no listen address in %s", line.text)
	}
	g.url = "http://" + ll.Listen
	return g
}

// expand prepends the gateway's base config to config and replaces $BIN,
// $NPM and $DIR.
func (g *gateway) expand(config string) string {
	return strings.NewReplacer("$BIN", binDir, "$NPM", npmBin, "$DIR", g.dir).Replace(g.base + config)
}

// addUser creates an admin user with `switchboard user add` (offline before
// serving, through the admin socket after) and returns its API key.
func (g *gateway) addUser(name string) string {
	g.t.Helper()
	return g.addUserRole(name, "admin")
}

// addUserRole is addUser with a role of gateway.yaml in place of admin.
func (g *gateway) addUserRole(name, role string) string {
	g.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "switchboard"), "user", "add", name, "--role", role, "--config", g.cfg)
	cmd.Env = g.env
	cmd.Dir = g.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("switchboard user add: %v\n%s", err, out)
	}
	key := regexp.MustCompile(`sb_[A-Za-z0-9_]+`).FindString(string(out))
	if key == "" {
		g.t.Fatalf("no API key in:\n%s", out)
	}
	return key
}

func (g *gateway) pid() int {
	if g.inner > 0 {
		return g.inner
	}
	return g.cmd.Process.Pid
}

// exited reports whether the gateway process has ended.
func (g *gateway) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to d for the gateway to exit. It reports whether
// it exited in time.
func (g *gateway) stop(sig syscall.Signal, d time.Duration) bool {
	if !g.exited() {
		_ = syscall.Kill(g.pid(), sig)
	}
	select {
	case <-g.done:
		return true
	case <-time.After(d):
		return false
	}
}

// spawnedPIDs returns every provider process the gateway reported spawning.
func (g *gateway) spawnedPIDs() map[int]string {
	out := map[int]string{}
	for _, l := range g.log.lines() {
		if l.msg() != "provider spawned" {
			continue
		}
		var v struct {
			Provider string `json:"provider"`
			PID      int    `json:"pid"`
		}
		if json.Unmarshal([]byte(l.text), &v) == nil && v.PID > 0 {
			out[v.PID] = v.Provider
		}
	}
	return out
}

func (g *gateway) cleanup() {
	t := g.t
	var kids []int // every direct child: providers and helpers such as the reaper
	if !g.exited() {
		kids = childrenOf(g.pid())
	}
	// Idle keep-alive connections that never carried a request keep
	// http.Server.Shutdown waiting for 5s; close ours first.
	httpTransport.CloseIdleConnections()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if !g.stop(syscall.SIGTERM, 30*time.Second) {
		t.Errorf("gateway did not exit within 30s of SIGTERM; killing it")
		_ = syscall.Kill(g.pid(), syscall.SIGKILL)
		_ = g.cmd.Process.Kill()
		<-g.done
	}
	// Every provider process (and so its group) must be gone once the gateway
	// has exited, whether it stopped them or the parent-death signal did.
	deadline := time.Now().Add(5 * time.Second)
	for pid, prov := range g.spawnedPIDs() {
		for groupAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if groupAlive(pid) {
			t.Errorf("provider %s (pid %d) or its process group outlived the gateway: %s", prov, pid, describeGroup(pid))
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	for _, pid := range kids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("gateway child %d (%q) outlived the gateway", pid, strings.ReplaceAll(string(cmd), "\x00", " "))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	g.checkLog()
	if t.Failed() {
		t.Logf("gateway log (tail):\n%s", g.log.tail(150))
	}
}

// checkLog fails the test if the race-enabled gateway reported a data race or
// a panic.
func (g *gateway) checkLog() {
	for _, l := range g.log.lines() {
		if strings.Contains(l.text, "WARNING: DATA RACE") {
			g.t.Errorf("the gateway reported a data race:\n%s", g.log.around(l.n, 60))
			return
		}
		if strings.HasPrefix(l.text, "panic: ") || strings.HasPrefix(l.text, "fatal error: ") {
			g.t.Errorf("the gateway crashed:\n%s", g.log.around(l.n, 60))
			return
		}
	}
}

// status is /status, the admin view of health.
type status struct {
	Providers []switchboard.ProviderStatus `json:"providers"`
	// RawSessions is the open sessions: a count, or a list of them.
	RawSessions json.RawMessage `json:"sessions"`
}

func (g *gateway) status() status {
	g.t.Helper()
	var st status
	g.getJSON("/status?format=json", true, &st)
	return st
}

// sessions returns the number of open sessions /status reports.
func (st status) sessions() int {
	var n int
	if json.Unmarshal(st.RawSessions, &n) == nil {
		return n
	}
	var list []json.RawMessage
	if json.Unmarshal(st.RawSessions, &list) == nil {
		return len(list)
	}
	return -1
}

// provider returns the shared instance's status, or a zero status.
func (g *gateway) provider(name string) switchboard.ProviderStatus {
	for _, p := range g.status().Providers {
		if p.Provider == name && p.User == "" {
			return p
		}
	}
	return switchboard.ProviderStatus{}
}

// healthz returns the public provider states.
func (g *gateway) healthz() map[string]string {
	g.t.Helper()
	var h struct {
		Providers map[string]string `json:"providers"`
	}
	g.getJSON("/healthz", false, &h)
	return h.Providers
}

func (g *gateway) getJSON(path string, admin bool, v any) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.url+path, nil)
	req.Header.Set("Accept", "application/json")
	if admin {
		req.Header.Set("Authorization", "Bearer "+g.key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		g.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		g.t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// waitRunning polls /status until every named provider is running and
// returns their statuses.
func (g *gateway) waitRunning(names ...string) map[string]switchboard.ProviderStatus {
	g.t.Helper()
	var out map[string]switchboard.ProviderStatus
	waitFor(g.t, 60*time.Second, "providers "+strings.Join(names, ", ")+" to run", func() bool {
		out = map[string]switchboard.ProviderStatus{}
		for _, p := range g.status().Providers {
			if p.User == "" {
				out[p.Provider] = p
			}
		}
		for _, n := range names {
			if out[n].State != switchboard.StateRunning || out[n].PID == 0 || out[n].Tools == 0 {
				return false
			}
		}
		return true
	})
	return out
}

var (
	httpTransport = http.DefaultTransport.(*http.Transport).Clone()
	httpClient    = &http.Client{Transport: httpTransport, Timeout: 60 * time.Second}
)

// waitFor polls cond every 20ms until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lineLog collects the gateway's stderr, one line at a time, with arrival times.
type lineLog struct {
	mu    sync.Mutex
	cond  *sync.Cond
	ls    []logLine
	ended bool
}

type logLine struct {
	n    int
	at   time.Time
	text string
}

// msg returns the zerolog "message" of a JSON line, or "".
func (l logLine) msg() string {
	if !strings.HasPrefix(l.text, "{") {
		return ""
	}
	var v struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal([]byte(l.text), &v)
	return v.Message
}

// field returns a string field of a JSON line, or "".
func (l logLine) field(k string) string {
	var v map[string]any
	if json.Unmarshal([]byte(l.text), &v) != nil {
		return ""
	}
	s, _ := v[k].(string)
	return s
}

func newLineLog() *lineLog {
	l := &lineLog{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *lineLog) readFrom(r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			l.mu.Lock()
			l.ls = append(l.ls, logLine{n: len(l.ls), at: time.Now(), text: strings.TrimRight(s, "\n")})
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	l.mu.Lock()
	l.ended = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

func (l *lineLog) lines() []logLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]logLine(nil), l.ls...)
}

// waitFor returns the first line matching match, waiting up to d (or until
// stop is closed and the log has ended).
func (l *lineLog) waitFor(d time.Duration, stop <-chan struct{}, match func(logLine) bool) (logLine, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, ln := range l.lines() {
			if match(ln) {
				return ln, true
			}
		}
		select {
		case <-stop:
			l.mu.Lock()
			ended := l.ended
			l.mu.Unlock()
			if ended {
				for _, ln := range l.lines() {
					if match(ln) {
						return ln, true
					}
				}
				return logLine{}, false
			}
		default:
		}
		if time.Now().After(deadline) {
			return logLine{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// count returns how many lines match.
func (l *lineLog) count(match func(logLine) bool) int {
	n := 0
	for _, ln := range l.lines() {
		if match(ln) {
			n++
		}
	}
	return n
}

func (l *lineLog) tail(n int) string {
	ls := l.lines()
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return joinLines(ls)
}

func (l *lineLog) around(i, n int) string {
	ls := l.lines()
	end := min(len(ls), i+n)
	return joinLines(ls[i:end])
}

func joinLines(ls []logLine) string {
	var sb strings.Builder
	for _, ln := range ls {
		t := ln.text
		if len(t) > 600 {
			t = t[:600] + "…"
		}
		sb.WriteString(t)
		sb.WriteByte('\n')
	}
	return sb.String()
}

// --- processes ---

// procStat is the part of /proc/PID/stat the tests read.
type procStat struct {
	state byte
	ppid  int
	pgid  int
	start uint64 // start time in clock ticks since boot
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) S ppid pgrp session tty tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice threads itreal starttime"
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procStat{}, errors.New("short stat")
	}
	var st procStat
	st.state = f[0][0]
	fmt.Sscan(f[1], &st.ppid)
	fmt.Sscan(f[2], &st.pgid)
	fmt.Sscan(f[19], &st.start)
	return st, nil
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// groupAlive reports whether any live (not zombie) process is in process
// group pgid: kill(-pgid, 0) must fail with ESRCH, or every member found in
// /proc must be a zombie awaiting its reaper.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	return len(groupMembers(pgid)) > 0
}

// groupMembers lists the live processes in group pgid.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.pgid == pgid && st.state != 'Z' && st.state != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

// childrenOf lists the live processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var p int
		if _, err := fmt.Sscan(e.Name(), &p); err != nil {
			continue
		}
		if st, err := readStat(p); err == nil && st.ppid == pid && st.state != 'Z' && st.state != 'X' {
			out = append(out, p)
		}
	}
	return out
}

func describeGroup(pgid int) string {
	var parts []string
	for _, pid := range groupMembers(pgid) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		parts = append(parts, fmt.Sprintf("%d:%s", pid, strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// readPID reads a pid file written by the test provider, waiting for it.
func readPID(t testing.TB, path string) int {
	t.Helper()
	var pid int
	waitFor(t, 20*time.Second, "pid file "+filepath.Base(path), func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	})
	return pid
}

// killLater makes sure pid is gone when the test ends, whatever happened.
func killLater(t testing.TB, pid int) {
	t.Cleanup(func() {
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// openFDs counts the open file descriptors of pid.
func openFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// threads returns the Threads: line of /proc/PID/status.
func threads(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return -1
}

// ctxT returns a context that ends after d or when the test ends.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
