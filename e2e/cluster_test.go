package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/haproxytest"
	"github.com/switchboard-mcp/switchboard/store/postgres/pgtest"
)

// The cluster test: a real PostgreSQL, a real HAProxy (the shipped
// examples/haproxy/haproxy.cfg) and three gateway processes on loopback with
// npm MCP servers, proving what docs/deploy.md promises of several replicas.
// It runs with `make test-cluster` (SWITCHBOARD_CLUSTER=1), which `make
// test` runs after the suite, and so CI. Without PostgreSQL or HAProxy it
// skips, but fails when $CI is set (.ci/run sets it): CI never skips it.

const clusterConfig = `
listen: 127.0.0.1:0
data_dir: ./data
replica: $REPLICA
log: {level: info}
auth:
  rate_limit: {rps: 1000000, burst: 1000000}
store:
  postgres:
    dsn: ${env:SB_CLUSTER_DSN}
sessions: {max_per_principal: 1000}
providers:
  everything:
    description: shared, uses the secret the test rotates
    command: $NPM/mcp-server-everything
    env: {ROTATED_TOKEN: "${secret:ROTATED_TOKEN}"}
  memory:
    description: shared, uses no secret
    command: $NPM/mcp-server-memory
    env: {MEMORY_FILE_PATH: $DIR/memory.json}
  notes:
    description: one process per connected user
    command: $NPM/mcp-server-memory
    scope: user
    env: {MEMORY_FILE_PATH: $DIR/notes.json}
    connection: {secrets: [NOTES_TOKEN], max_instances: 200, idle_timeout: 10m}
roles:
  user: {providers: [everything, memory, notes]}
`

// keepLog writes a log of the run into $CLUSTER_LOG_DIR, if set.
func keepLog(t *testing.T, name, text string) {
	if dir := os.Getenv("CLUSTER_LOG_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Log(err)
		}
	}
}

// clusterReplica is one `switchboard serve` of the cluster.
type clusterReplica struct {
	name string
	g    *gateway
}

type cluster struct {
	t        *testing.T
	pg       *pgtest.Server
	dsn      string
	env      []string
	replicas []*clusterReplica
	proxy    *haproxytest.Proxy
	admin    string // an admin's API key
	hc       *http.Client
	numbers  []string // measured, for docs/deploy.md
}

func (c *cluster) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.numbers = append(c.numbers, s)
	c.t.Log(s)
}

// startClusterReplica starts one replica with the cluster's shared
// environment (vault key, DSN).
func (c *cluster) startReplica(name string) *clusterReplica {
	t := c.t
	t.Helper()
	dir, err := os.MkdirTemp("", "sbc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := strings.NewReplacer("$NPM", npmBin, "$DIR", dir, "$REPLICA", name).Replace(clusterConfig)
	g := &gateway{t: t, dir: dir, cfg: filepath.Join(dir, "gateway.yaml"), log: newLineLog(), done: make(chan struct{})}
	if err := os.WriteFile(g.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.env = append(append([]string{}, c.env...), "HOME="+dir)
	g.cmd = exec.Command(filepath.Join(binDir, "switchboard"), "serve", "--config", g.cfg)
	g.cmd.Env, g.cmd.Dir = g.env, dir
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd.Stderr = pw
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go g.log.readFrom(pr)
	go func() { _ = g.cmd.Wait(); g.ps = g.cmd.ProcessState; close(g.done) }()
	t.Cleanup(func() {
		if !g.exited() {
			g.stop(syscall.SIGTERM, 30*time.Second)
		}
		if t.Failed() {
			t.Logf("replica %s log (last lines):\n%s", name, g.log.tail(40))
		}
		keepLog(t, "replica-"+name+".log", joinLines(g.log.lines()))
	})
	line, ok := g.log.waitFor(90*time.Second, g.done, func(l logLine) bool { return l.msg() == "switchboard serving" })
	if !ok {
		t.Fatalf("replica %s did not start serving; log:\n%s", name, g.log.tail(60))
	}
	var ll struct {
		Listen string `json:"listen"`
	}
	_ = json.Unmarshal([]byte(line.text), &ll)
	g.url = "http://" + ll.Listen
	return &clusterReplica{name: name, g: g}
}

// cli runs a switchboard command against replica r (through its admin
// socket), with stdin.
func (c *cluster) cli(r *clusterReplica, stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "switchboard"), append(args, "--config", r.g.cfg)...)
	cmd.Env, cmd.Dir = r.g.env, r.g.dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var apiKeyRe = regexp.MustCompile(`sb_[a-z2-7]{12}_[a-z2-7]{52}`)

func (c *cluster) addUser(r *clusterReplica, name, role string) string {
	c.t.Helper()
	out, err := c.cli(r, "", "user", "add", name, "--role", role)
	if err != nil {
		c.t.Fatalf("user add %s on %s: %v\n%s", name, r.name, err, out)
	}
	key := apiKeyRe.FindString(out)
	if key == "" {
		c.t.Fatalf("user add %s: no key in %s", name, out)
	}
	return key
}

// authStatus is the status of an authenticated GET /api/connections.
func (c *cluster) authStatus(url, key string) int {
	req, _ := http.NewRequest(http.MethodGet, url+"/api/connections", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// untilAll waits until cond holds for every replica, up to within after
// start, and returns how long after start each took.
func (c *cluster) untilAll(start time.Time, within time.Duration, cond func(r *clusterReplica) bool) (map[string]time.Duration, bool) {
	took := map[string]time.Duration{}
	for time.Since(start) < within {
		for _, r := range c.replicas {
			if _, done := took[r.name]; !done && cond(r) {
				took[r.name] = time.Since(start)
			}
		}
		if len(took) == len(c.replicas) {
			return took, true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return took, false
}

func maxDur(m map[string]time.Duration) time.Duration {
	var out time.Duration
	for _, d := range m {
		out = max(out, d)
	}
	return out
}

// instances returns the replica's provider instances from /status.
func (c *cluster) instances(r *clusterReplica) []switchboard.ProviderStatus {
	req, _ := http.NewRequest(http.MethodGet, r.g.url+"/status?format=json", nil)
	req.Header.Set("Authorization", "Bearer "+c.admin)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return st.Providers
}

func pidOf(ps []switchboard.ProviderStatus, provider string) int {
	for _, p := range ps {
		if p.Provider == provider && p.User == "" && p.State == switchboard.StateRunning {
			return p.PID
		}
	}
	return 0
}

// providerEnv returns the environment of a server-everything provider on
// replica r (its get-env tool), called as the admin directly on r.
func (c *cluster) providerEnv(r *clusterReplica, provider string) (map[string]string, error) {
	g := &gateway{t: c.t, url: r.g.url, key: c.admin}
	s, err := g.tryInit(c.hc)
	if err != nil {
		return nil, err
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"%s__get-env","arguments":{}}}`, provider)
	resp, b, err := s.try(http.MethodPost, body, nil)
	if err != nil {
		return nil, err
	}
	rep, ok := parseReply(resp, b)
	if !ok || rep.Error != nil {
		return nil, fmt.Errorf("get-env: %s: %.300s", resp.Status, b)
	}
	text, isErr := callText(rep.Result)
	if isErr {
		return nil, fmt.Errorf("get-env: tool error: %s", text)
	}
	env := map[string]string{}
	if err := json.Unmarshal([]byte(text), &env); err != nil {
		return nil, fmt.Errorf("get-env: %w: %.200s", err, text)
	}
	return env, nil
}

// auditRecord is the part of an audit record the cluster test reads.
type auditRecord struct {
	Type, Principal, Outcome, Replica, Provider, Tool string
}

// auditRecords returns the records in each replica's audit files (its
// current and rotated files), by replica name, and copies the files (with
// their checkpoints) into dir when it is not "".
func (c *cluster) auditRecords(dir string) map[string][]auditRecord {
	t := c.t
	t.Helper()
	out := map[string][]auditRecord{}
	for _, r := range c.replicas {
		files, _ := filepath.Glob(filepath.Join(r.g.dir, "data", "audit-*"))
		if len(files) == 0 {
			t.Fatalf("%s wrote no audit file", r.name)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if dir != "" {
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if strings.HasSuffix(f, ".head") {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				var rec auditRecord
				if line == "" {
					continue
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Errorf("%s: not a record: %v: %.200s", f, err, line)
					continue
				}
				out[r.name] = append(out[r.name], rec)
			}
		}
	}
	return out
}

// instancesOf returns, for every user with a running notes instance, the
// replicas running one.
func (c *cluster) instancesOf(among []*clusterReplica) map[string][]string {
	out := map[string][]string{}
	for _, r := range among {
		for _, p := range c.instances(r) {
			if p.Provider == "notes" && p.User != "" && p.State == switchboard.StateRunning {
				out[p.User] = append(out[p.User], r.name)
			}
		}
	}
	return out
}

// homes returns, for every user with a running notes instance, the replica
// running it; a user with instances on two replicas is an error.
func (c *cluster) homes(t *testing.T, among []*clusterReplica) map[string]string {
	t.Helper()
	home := map[string]string{}
	for user, rs := range c.instancesOf(among) {
		if len(rs) > 1 {
			t.Errorf("user %s has a notes instance on each of %v", user, rs)
		}
		home[user] = rs[0]
	}
	return home
}

// mcpUser is one principal calling through HAProxy.
type mcpUser struct {
	name, key string
	sess      *rawSession
	ok, fails atomic.Int64
}

// session opens a session for u through HAProxy as a client does:
// initialize, then tools/list (which starts the user's own instances on the
// replica that serves them), and checks that the user's notes tools are
// listed.
func (c *cluster) session(u *mcpUser) error {
	g := &gateway{t: c.t, url: c.proxy.URL(), key: u.key}
	s, err := g.tryInit(c.hc)
	if err != nil {
		return err
	}
	resp, b, err := s.try(http.MethodPost, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, nil)
	if err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"notes__read_graph"`) {
		return fmt.Errorf("tools/list: %s: notes__read_graph not listed: %.300s", resp.Status, b)
	}
	u.sess = s
	return nil
}

var callSeq atomic.Int64

// call runs tools/call in the user's session; it reports the HTTP status (0
// for a transport error) and the tool's error, if any.
func (u *mcpUser) call(tool string, args string) (int, error) {
	id := callSeq.Add(1)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, tool, args)
	resp, b, err := u.sess.try(http.MethodPost, body, nil)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, b)
	}
	rep, ok := parseReply(resp, b)
	switch {
	case !ok:
		return resp.StatusCode, fmt.Errorf("no JSON-RPC reply in %s", b)
	case rep.Error != nil:
		return resp.StatusCode, fmt.Errorf("rpc error %d: %s", rep.Error.Code, rep.Error.Message)
	}
	if text, isErr := callText(rep.Result); isErr {
		return resp.StatusCode, fmt.Errorf("tool error: %s", text)
	}
	return resp.StatusCode, nil
}

func TestCluster(t *testing.T) {
	if os.Getenv("SWITCHBOARD_CLUSTER") == "" {
		t.Skip("the cluster test runs with `make test-cluster` (PostgreSQL, HAProxy, three replicas)")
	}
	if _, err := os.Stat(filepath.Join(npmBin, "mcp-server-memory")); err != nil {
		t.Fatalf("npm MCP servers missing (make npm): %v", err)
	}
	haproxytest.Binary(t)
	pg, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrNoPostgres) && !pgtest.InCI() {
		t.Skipf("skipping the cluster test (under CI it fails instead): %v", err)
	}
	if err != nil {
		t.Fatalf("starting PostgreSQL (CI installs it from Debian's packages in .ci/run): %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })

	var vk [32]byte
	_, _ = rand.Read(vk[:])
	// A user's first list waits for their own node process to start. A
	// hundred of those at once on CI's two cores cost about a minute of CPU
	// in all, and the last user in the replicas' start queues waits for most
	// of it: the client is as patient as the users of such a machine must be.
	c := &cluster{t: t, pg: pg, dsn: pg.CreateDB(t), hc: &http.Client{Timeout: 3 * time.Minute}}
	c.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"SWITCHBOARD_VAULT_KEY=" + base64.StdEncoding.EncodeToString(vk[:]),
		"SB_CLUSTER_DSN=" + c.dsn,
	}
	start := time.Now()
	for _, name := range []string{"r1", "r2", "r3"} {
		c.replicas = append(c.replicas, c.startReplica(name))
	}
	c.note("three replicas serving %s after start, on one fresh PostgreSQL database", time.Since(start).Round(time.Millisecond))
	r1, r2, r3 := c.replicas[0], c.replicas[1], c.replicas[2]
	for _, sec := range []struct{ name, value string }{{"ROTATED_TOKEN", "v1"}} {
		if out, err := c.cli(r1, sec.value, "secret", "set", sec.name); err != nil {
			t.Fatalf("secret set %s: %v\n%s", sec.name, err, out)
		}
	}
	c.admin = c.addUser(r1, "admin", "admin")
	if took, ok := c.untilAll(time.Now(), 30*time.Second, func(r *clusterReplica) bool { return c.authStatus(r.g.url, c.admin) == http.StatusOK }); !ok {
		t.Fatalf("the admin added on r1 does not authenticate on every replica (only %v): the replicas do not share their store", took)
	}
	var servers []haproxytest.Server
	for _, r := range c.replicas {
		servers = append(servers, haproxytest.Server{Name: r.name, Addr: strings.TrimPrefix(r.g.url, "http://")})
	}
	c.proxy = haproxytest.Start(t, "../examples/haproxy/haproxy.cfg", servers)
	t.Cleanup(func() {
		if t.Failed() {
			var ls []string
			for _, l := range strings.Split(c.proxy.Output(), "\n") {
				if !strings.Contains(l, " 200 ") && !strings.Contains(l, " 202 ") && !strings.Contains(l, "<BADREQ>") { // not the successful requests, nor the clients' idle connections closed
					ls = append(ls, l)
				}
			}
			t.Logf("haproxy log (but successful requests):\n%s", strings.Join(ls[max(0, len(ls)-60):], "\n"))
		}
		keepLog(t, "haproxy.log", c.proxy.Output())
	})
	c.proxy.WaitServersUp(t, "/healthz", 30*time.Second)

	t.Run("UserAddedOnOneAuthenticatesEverywhere", func(t *testing.T) {
		// Times are measured from the start of the CLI command (its
		// process start included), on every replica directly.
		start := time.Now()
		key := c.addUser(r1, "alice", "user")
		took, ok := c.untilAll(start, 10*time.Second, func(r *clusterReplica) bool { return c.authStatus(r.g.url, key) == http.StatusOK })
		c.note("user added through r1 (switchboard user add) authenticated on r1/r2/r3 after %v", took)
		if !ok || maxDur(took) > time.Second {
			t.Errorf("user added on r1: authenticated after %v, want every replica within 1 s", took)
		}

		start = time.Now()
		out, err := c.cli(r2, "", "user", "rotate-key", "alice")
		if err != nil {
			t.Fatalf("rotate-key on r2: %v\n%s", err, out)
		}
		took, ok = c.untilAll(start, 10*time.Second, func(r *clusterReplica) bool { return c.authStatus(r.g.url, key) == http.StatusUnauthorized })
		c.note("key revoked through r2 (switchboard user rotate-key) refused on r1/r2/r3 after %v", took)
		if !ok || maxDur(took) > time.Second {
			t.Errorf("key revoked on r2: refused after %v, want every replica within 1 s", took)
		}
		if nk := apiKeyRe.FindString(out); nk == "" || c.authStatus(c.proxy.URL(), nk) != http.StatusOK {
			t.Errorf("alice's new key does not work through the proxy")
		}
	})

	t.Run("SecretRotationRestartsOnlyItsProviders", func(t *testing.T) {
		type pids struct{ everything, memory int }
		before := map[string]pids{}
		took, ok := c.untilAll(time.Now(), 60*time.Second, func(r *clusterReplica) bool {
			ps := c.instances(r)
			p := pids{pidOf(ps, "everything"), pidOf(ps, "memory")}
			before[r.name] = p
			return p.everything != 0 && p.memory != 0
		})
		if !ok {
			t.Fatalf("shared providers not running on every replica: %v", before)
		}
		_ = took
		start := time.Now()
		if out, err := c.cli(r3, "v2", "secret", "set", "ROTATED_TOKEN"); err != nil {
			t.Fatalf("secret set on r3: %v\n%s", err, out)
		}
		took, ok = c.untilAll(start, 60*time.Second, func(r *clusterReplica) bool {
			p := pidOf(c.instances(r), "everything")
			return p != 0 && p != before[r.name].everything
		})
		c.note("secret rotated through r3 (switchboard secret set): the provider using it replaced, the new process serving, on r1/r2/r3 after %v", took)
		if !ok {
			t.Fatalf("the provider using the rotated secret restarted only on %v", took)
		}
		for _, r := range c.replicas {
			if p := pidOf(c.instances(r), "memory"); p != before[r.name].memory {
				t.Errorf("%s: memory (no secret) restarted too: pid %d → %d", r.name, before[r.name].memory, p)
			}
			// The new process has the new value.
			if env, err := c.providerEnv(r, "everything"); err != nil || env["ROTATED_TOKEN"] != "v2" {
				t.Errorf("%s: everything's ROTATED_TOKEN after the rotation: %q (%v), want v2", r.name, env["ROTATED_TOKEN"], err)
			}
		}
	})

	// 100 users, each with a per-user instance, calling through HAProxy.
	const nUsers = 100
	users := make([]*mcpUser, nUsers)
	for i := range users {
		name := fmt.Sprintf("u%03d", i)
		users[i] = &mcpUser{name: name, key: c.addUser(r1, name, "user")}
	}
	if took, ok := c.untilAll(time.Now(), 10*time.Second, func(r *clusterReplica) bool {
		return c.authStatus(r.g.url, users[nUsers-1].key) == http.StatusOK
	}); !ok || maxDur(took) > time.Second {
		t.Errorf("the last of %d users added on r1 authenticated on every replica after %v, want within 1 s", nUsers, took)
	}
	home := map[string]string{} // user → the replica running its instance

	t.Run("HundredUsersThroughHAProxy", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, nUsers*10)
		lat := make([]time.Duration, 0, nUsers*10)
		var mu sync.Mutex
		start := time.Now()
		for _, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodPost, c.proxy.URL()+"/api/connections/notes", strings.NewReader(`{"secrets":{"NOTES_TOKEN":"t-`+u.name+`"}}`))
				req.Header.Set("Authorization", "Bearer "+u.key)
				resp, err := c.hc.Do(req)
				if err != nil || resp.StatusCode/100 != 2 {
					errs <- fmt.Errorf("%s: connect notes: %v %v", u.name, err, resp)
					return
				}
				resp.Body.Close()
				if err := c.session(u); err != nil {
					errs <- fmt.Errorf("%s: %w", u.name, err)
					return
				}
				for i := range 5 {
					tool, args := "notes__read_graph", `{}`
					if i%2 == 1 {
						tool, args = "everything__echo", `{"message":"hi"}`
					}
					t0 := time.Now()
					if _, err := u.call(tool, args); err != nil {
						errs <- fmt.Errorf("%s: %s: %w", u.name, tool, err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			if n++; n <= 10 {
				t.Error(err)
			}
		}
		if n > 0 {
			t.Fatalf("%d of %d users failed", n, nUsers)
		}
		slices.Sort(lat)
		c.note("%d users × 5 calls through HAProxy (per-user instances started on first call): %d calls in %s; call latency p50 %s, p99 %s",
			nUsers, len(lat), time.Since(start).Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond))

		// Each user's instance runs on exactly one replica, and that
		// replica answered every one of the user's calls (its audit file
		// holds them; no other replica's does).
		maps.Copy(home, c.homes(t, c.replicas))
		per := map[string]int{}
		for _, u := range users {
			h, ok := home[u.name]
			if !ok {
				t.Errorf("user %s called notes but no replica runs its instance", u.name)
			}
			per[h]++
		}
		c.note("per-user instances per replica: %v", per)
		for replica, recs := range c.auditRecords("") {
			for _, rec := range recs {
				if h, ok := home[rec.Principal]; ok && rec.Type == "tool_call" && h != replica {
					t.Errorf("a call of %s (%s) was answered by %s, but its instance runs on %s", rec.Principal, rec.Tool, replica, home[rec.Principal])
				}
			}
		}
	})

	t.Run("KillOneReplicaUnderLoad", func(t *testing.T) {
		victim := r2
		var victims, others []*mcpUser
		for _, u := range users {
			if home[u.name] == victim.name {
				victims = append(victims, u)
			} else {
				others = append(others, u)
			}
		}
		if len(victims) == 0 || len(others) == 0 {
			t.Fatalf("homes %v: need users on %s and elsewhere", home, victim.name)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var (
			wg        sync.WaitGroup
			killedAt  atomic.Int64
			told404   sync.Map // victim user → time its old session was first answered 404 after the kill
			recovered sync.Map // victim user → time to its first success in a new session
			firstErr  sync.Map // victim user → the HTTP status of its first failure after the kill (for the log)
			otherErrs = make(chan error, 1000)
		)
		since := func() time.Duration { return time.Since(time.Unix(0, killedAt.Load())) }
		for _, u := range users {
			isVictim := home[u.name] == victim.name
			wg.Add(1)
			go func() {
				defer wg.Done()
				reinitialized := false
				for ctx.Err() == nil {
					code, err := u.call("notes__read_graph", `{}`)
					if err == nil {
						u.ok.Add(1)
						if reinitialized {
							recovered.LoadOrStore(u.name, since())
						}
						continue
					}
					u.fails.Add(1)
					if isVictim && killedAt.Load() != 0 {
						firstErr.LoadOrStore(u.name, code)
					}
					if !isVictim {
						select {
						case otherErrs <- fmt.Errorf("%s (on %s): %w", u.name, home[u.name], err):
						default:
						}
						continue
					}
					// The killed replica's users. A request in flight at the
					// kill fails (HAProxy answers 502, or the connection
					// ends): the next one lands on another replica, which
					// does not know the session and answers 404; then the
					// client re-initializes, as the specification says.
					if code != http.StatusNotFound {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					told404.LoadOrStore(u.name, since())
					if err := c.session(u); err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					reinitialized = true
				}
			}()
		}
		okCalls := func() (n int64) {
			for _, u := range users {
				n += u.ok.Load()
			}
			return n
		}
		time.Sleep(time.Second) // every user is calling
		steadyFrom, before := time.Now(), okCalls()
		time.Sleep(3 * time.Second)
		steady, steadyFor := okCalls()-before, time.Since(steadyFrom)
		killedAt.Store(time.Now().UnixNano())
		if err := victim.g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Recovery is a node process start per victim on replicas that the
		// other users' loops keep busy: on two cores about 10 s, but a
		// slower CI machine has taken over a minute. The test asserts that
		// they recover, and reports how fast.
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			n := 0
			recovered.Range(func(any, any) bool { n++; return true })
			if n == len(victims) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The others keep calling a little longer: their replicas now run
		// the killed one's users too.
		time.Sleep(2 * time.Second)
		cancel()
		wg.Wait()
		close(otherErrs)
		for err := range otherErrs {
			t.Errorf("a user of a surviving replica saw an error: %v", err)
		}
		var times, notFound []time.Duration
		for _, u := range victims {
			if v, ok := told404.Load(u.name); ok {
				notFound = append(notFound, v.(time.Duration))
			} else {
				t.Errorf("user %s of the killed replica: its old session was never answered 404", u.name)
			}
			v, ok := recovered.Load(u.name)
			if !ok {
				t.Errorf("user %s of the killed replica never succeeded again", u.name)
				continue
			}
			times = append(times, v.(time.Duration))
		}
		// The survivors' users kept their one instance where it was; each
		// of the killed replica's users has one on a survivor.
		after := c.instancesOf([]*clusterReplica{r1, r3})
		for _, u := range others {
			if !slices.Equal(after[u.name], []string{home[u.name]}) {
				t.Errorf("user %s of %s has instances on %v after the kill, want only on %s", u.name, home[u.name], after[u.name], home[u.name])
			}
		}
		for _, u := range victims {
			switch n := len(after[u.name]); {
			case n == 0:
				t.Errorf("user %s of the killed replica has no instance on a survivor", u.name)
			case n > 1:
				t.Errorf("user %s of the killed replica has instances on %v: it was served by two replicas", u.name, after[u.name])
			}
		}
		kinds := map[string]int{}
		firstErr.Range(func(_, v any) bool { kinds[strconv.Itoa(v.(int))]++; return true })
		t.Logf("the killed replica's users' first failure after the kill, by HTTP status (0: transport error): %v", kinds)
		if len(times) > 0 && len(notFound) > 0 {
			slices.Sort(times)
			slices.Sort(notFound)
			c.note("kill -9 of %s under load: its %d users' old sessions answered 404 after p50 %s, max %s; their calls succeeded again on another replica (re-initialized, per-user instance started there) after p50 %s, max %s; the %d users of the other replicas saw no error",
				victim.name, len(victims), notFound[len(notFound)/2].Round(time.Millisecond), notFound[len(notFound)-1].Round(time.Millisecond),
				times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), len(others))
		}
		c.note("steady load before the kill: %d users calling notes__read_graph in a loop through HAProxy: %.0f calls/s", nUsers, float64(steady)/steadyFor.Seconds())
	})

	t.Run("NothingLost", func(t *testing.T) {
		// Users and keys: every key still authenticates on the survivors.
		for _, u := range users {
			for _, r := range []*clusterReplica{r1, r3} {
				if s := c.authStatus(r.g.url, u.key); s != http.StatusOK {
					t.Errorf("%s's key on %s after the kill: %d", u.name, r.name, s)
				}
			}
		}
		// Connections: every user's notes connection is still there.
		for _, u := range users {
			req, _ := http.NewRequest(http.MethodGet, c.proxy.URL()+"/api/connections", nil)
			req.Header.Set("Authorization", "Bearer "+u.key)
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Connections []struct{ User, Provider string } `json:"connections"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || len(body.Connections) != 1 || body.Connections[0].Provider != "notes" || body.Connections[0].User != u.name {
				t.Errorf("%s's connections after the kill: %+v (%v)", u.name, body, err)
			}
		}
		// Secrets.
		if out, err := c.cli(r1, "", "secret", "list"); err != nil || !strings.Contains(out, "ROTATED_TOKEN") {
			t.Errorf("secret list after the kill: %v\n%s", err, out)
		}
		// Audit: every call answered ok has its record, in the file of the
		// replica that answered (the killed one's too); every replica's
		// chain verifies.
		dir := t.TempDir()
		okRecords := map[string]int{}
		for replica, recs := range c.auditRecords(dir) {
			for _, rec := range recs {
				if rec.Replica != replica {
					t.Errorf("a record of replica %q in %s's file", rec.Replica, replica)
				}
				if rec.Type == "tool_call" && rec.Outcome == "ok" {
					okRecords[rec.Principal]++
				}
			}
		}
		for _, u := range users {
			if want := int(u.ok.Load()) + 5; okRecords[u.name] < want {
				t.Errorf("%s: %d calls answered ok, %d audit records of them", u.name, want, okRecords[u.name])
			}
		}
		out, err := c.cli(r1, "", "audit", "verify", dir)
		if err != nil {
			t.Errorf("audit verify of the three replicas' logs: %v\n%s", err, out)
		}
		for _, r := range c.replicas {
			if !strings.Contains(out, "audit-"+r.name+".log (replica "+r.name+"): ok: ") {
				t.Errorf("audit verify has no ok line for %s:\n%s", r.name, out)
			}
		}
		c.note("audit verify of the three replicas' logs, the killed one's included:\n    %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "\n    "))
	})

	t.Logf("measured:\n  %s", strings.Join(c.numbers, "\n  "))
}
