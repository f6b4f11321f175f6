package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard/internal/oauthtest"
)

// connectAs opens an initialized MCP session with key.
func (g *gateway) connectAs(t testing.TB, key string) *client.Client {
	t.Helper()
	c, err := client.NewStreamableHttpClient(g.url+"/mcp",
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}),
		transport.WithHTTPTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = protocolVersion
	req.Params.ClientInfo = mcp.Implementation{Name: "e2e", Version: "1.0"}
	if _, err := c.Initialize(ctxT(t, 30*time.Second), req); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cli runs a switchboard command against the running gateway.
func (g *gateway) cli(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "switchboard"), append(args, "--config", g.cfg)...)
	cmd.Env = g.env
	cmd.Dir = g.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("switchboard %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestOAuthThroughTheBinary: the real binary, a real authorization server,
// a remote MCP server that demands its tokens. An admin prints a connect
// link with the CLI; the user's browser signs in at the authorization
// server and approves; the user's calls reach the remote server as the
// account they signed in as, across token refreshes. When the
// authorization server revokes the grant, the connection shows expired and
// the tools are gone for that user. No token is in the gateway's log (at
// debug), its audit log, or /status.
func TestOAuthThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an authorization server")
	}
	as := oauthtest.StartAS(t, oauthtest.ASOptions{AccessTTL: 6 * time.Second})
	rs := oauthtest.StartRS(t, as, nil)
	g := startGateway(t, `
roles:
  dev: {providers: [prot]}
providers:
  prot:
    url: `+rs.URL+`
    scope: user
    oauth: {}
`)
	ann := g.addUserRole("ann", "dev")
	out := g.cli(t, "connect", "prot", "--user", "ann", "--oauth")
	link := regexp.MustCompile(`http://\S+/connect/prot\?t=\S+`).FindString(out)
	if link == "" {
		t.Fatalf("no link in %q", out)
	}
	resp, page := oauthtest.NewBrowser().Authorize(t, link, "alice", "alice-pw")
	if resp.StatusCode != 200 || !strings.Contains(page, "ann is connected to prot") {
		t.Fatalf("the flow ended with %d %s", resp.StatusCode, page)
	}

	refused := rs.Refusals() // the discovery probe was one, by design
	c := g.connectAs(t, ann)
	waitFor(t, 20*time.Second, "ann's prot tools", func() bool { return strings.Contains(strings.Join(toolNames(t, c), ","), "prot__whoami") })
	for end := time.Now().Add(13 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if got := mustCall(t, c, "prot__whoami", map[string]any{}); got != "you are alice" {
			t.Fatalf("whoami = %q", got)
		}
	}
	if n := rs.Refusals() - refused; n != 0 {
		t.Errorf("%d requests were refused", n)
	}
	if s := as.Stats(t); s.Refreshes < 2 {
		t.Errorf("refreshes = %d", s.Refreshes)
	}

	as.Revoke(t, "alice")
	waitFor(t, 30*time.Second, "ann's connection to show expired", func() bool {
		req, _ := http.NewRequest(http.MethodGet, g.url+"/api/connections", nil)
		req.Header.Set("Authorization", "Bearer "+ann)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"expired": true`)
	})
	waitFor(t, 10*time.Second, "ann's prot tools to go", func() bool { return !strings.Contains(strings.Join(toolNames(t, c), ","), "prot__") })

	var st map[string]any
	g.getJSON("/status?format=json", true, &st)
	audit, err := os.ReadFile(filepath.Join(g.dir, "data", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	status, _ := json.Marshal(st)
	everywhere := g.log.tail(100000) + string(audit) + string(status)
	toks := rs.Tokens()
	if len(toks) < 3 {
		t.Fatalf("the remote server saw %d tokens", len(toks))
	}
	for _, tok := range toks {
		if strings.Contains(everywhere, tok) {
			t.Fatal("a token is in the gateway's log, audit log or status")
		}
	}
}
