// Package oauthtest runs the OAuth fixtures of Switchboard's tests: a real
// OAuth 2.1 authorization server on loopback (oidc-provider from npm, run by
// node from e2e/node_modules), a remote MCP server that demands its tokens
// (mcp-go's streamable HTTP server behind a bearer check that introspects
// every token at the authorization server), and a browser stand-in that
// follows redirects and fills in the login and consent forms.
package oauthtest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Accounts are the users the authorization server knows, with their
// passwords.
var Accounts = map[string]string{"alice": "alice-pw", "bob": "bob-pw"}

// RSClient is the protected MCP server's credential for introspection.
const (
	RSClientID     = "mcp-rs"
	RSClientSecret = "rs-secret-0123456789"
)

// AS is a running authorization server.
type AS struct {
	Issuer     string
	adminToken string
	cmd        *exec.Cmd
	meta       map[string]any
}

// ASOptions configure StartAS.
type ASOptions struct {
	// AccessTTL is the access tokens' lifetime (default 1 hour).
	AccessTTL time.Duration
}

// RepoRoot returns the repository's root (the folder with go.mod), found
// from the working directory of the test.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// skipOrFail skips the test when a fixture's prerequisite is missing, but
// fails it on CI, where .ci/run installs everything.
func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf(format, args...)
	}
	tb.Skipf(format, args...)
}

// StartAS starts the authorization server on a free loopback port and
// stops it when the test ends.
func StartAS(tb testing.TB, opts ASOptions) *AS {
	tb.Helper()
	root := RepoRoot(tb)
	script := filepath.Join(root, "e2e", "testdata", "oauth-as.mjs")
	if _, err := os.Stat(filepath.Join(root, "e2e", "node_modules", "oidc-provider")); err != nil {
		skipOrFail(tb, "oidc-provider is not installed: run `make npm` (npm ci in e2e/)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(tb, "node is not installed")
	}
	ttl := opts.AccessTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	accounts, _ := json.Marshal(Accounts)
	rs, _ := json.Marshal(map[string]string{"client_id": RSClientID, "client_secret": RSClientSecret})
	cmd := exec.Command(node, script)
	cmd.Env = append(os.Environ(),
		"AS_PORT=0",
		fmt.Sprintf("AS_ACCESS_TTL=%d", int(ttl.Seconds())),
		"AS_ACCOUNTS="+string(accounts),
		"AS_RS_CLIENT="+string(rs),
		"AS_ADMIN_TOKEN=admin-"+fmt.Sprint(time.Now().UnixNano()),
	)
	stdin, err := cmd.StdinPipe() // the server exits when it closes
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = io.Discard // oidc-provider's development warnings
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var hello struct {
		Issuer     string `json:"issuer"`
		AdminToken string `json:"admin_token"`
	}
	select {
	case line, ok := <-lines:
		if !ok || json.Unmarshal([]byte(line), &hello) != nil || hello.Issuer == "" {
			tb.Fatalf("the authorization server did not start (said %q)", line)
		}
	case <-time.After(30 * time.Second):
		tb.Fatal("the authorization server did not start in 30s")
	}
	as := &AS{Issuer: hello.Issuer, adminToken: hello.AdminToken, cmd: cmd}
	resp, err := http.Get(as.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&as.meta); err != nil {
		tb.Fatal(err)
	}
	return as
}

// Endpoint returns a member of the server's metadata ("introspection_endpoint", …).
func (as *AS) Endpoint(name string) string {
	s, _ := as.meta[name].(string)
	return s
}

func (as *AS) admin(tb testing.TB, method, path string) []byte {
	tb.Helper()
	req, _ := http.NewRequest(method, as.Issuer+path, nil)
	req.Header.Set("Authorization", "Bearer "+as.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("%s %s: HTTP %d %s", method, path, resp.StatusCode, b)
	}
	return b
}

// Revoke destroys every grant of account at the authorization server, with
// its refresh and access tokens.
func (as *AS) Revoke(tb testing.TB, account string) {
	tb.Helper()
	as.admin(tb, http.MethodPost, "/admin/revoke?account="+url.QueryEscape(account))
}

// Stats are the authorization server's counts of token grants.
type Stats struct {
	Codes           int `json:"codes"`
	Refreshes       int `json:"refreshes"`
	RefreshFailures int `json:"refreshFailures"`
}

// Stats returns the counts so far.
func (as *AS) Stats(tb testing.TB) Stats {
	tb.Helper()
	var s Stats
	if err := json.Unmarshal(as.admin(tb, http.MethodGet, "/admin/stats"), &s); err != nil {
		tb.Fatal(err)
	}
	return s
}

// Use is one request the protected MCP server accepted.
type Use struct {
	Sub       string // the user the token was issued for
	TokenHash string // SHA-256 of the token, hex
}

// RS is a remote MCP server that demands the authorization server's
// tokens, issued for it (audience), checked by introspection on every
// request.
type RS struct {
	URL string // the MCP endpoint
	srv *httptest.Server
	as  *AS

	mu       sync.Mutex
	uses     []Use
	refusals int
	tokens   map[string]bool // every token accepted, for leak checks
}

type subKey struct{}

// NewMCPServer returns the MCP server the RS serves: whoami says whose
// token the call came with; echo echoes.
func NewMCPServer() *server.MCPServer {
	s := server.NewMCPServer("protected", "1.0.0", server.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("whoami", mcp.WithDescription("Says whose token the call came with.")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		sub, _ := ctx.Value(subKey{}).(string)
		return mcp.NewToolResultText("you are " + sub), nil
	})
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("text", "")), nil
	})
	return s
}

// StartRS serves mcp (nil: NewMCPServer) at /mcp behind the bearer check,
// with its protected resource metadata (RFC 9728) at the well-known
// address and in every 401's challenge.
func StartRS(tb testing.TB, as *AS, mcpSrv *server.MCPServer) *RS {
	tb.Helper()
	if mcpSrv == nil {
		mcpSrv = NewMCPServer()
	}
	rs := &RS{as: as}
	mux := http.NewServeMux()
	handler := server.NewStreamableHTTPServer(mcpSrv, server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
		return context.WithValue(ctx, subKey{}, r.Context().Value(subKey{}))
	}))
	srv := httptest.NewUnstartedServer(mux)
	srv.Start()
	tb.Cleanup(srv.Close)
	rs.srv = srv
	rs.URL = srv.URL + "/mcp"
	metaURL := srv.URL + "/.well-known/oauth-protected-resource/mcp"
	mux.HandleFunc("GET /.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"resource":                 rs.URL,
			"authorization_servers":    []string{as.Issuer},
			"scopes_supported":         []string{"mcp:tools"},
			"bearer_methods_supported": []string{"header"},
		})
	})
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sub := ""
		if ok && tok != "" {
			sub = rs.introspect(r.Context(), tok)
		}
		if sub == "" {
			rs.mu.Lock()
			rs.refusals++
			rs.mu.Unlock()
			ch := fmt.Sprintf(`Bearer resource_metadata=%q, scope="mcp:tools"`, metaURL)
			if ok {
				ch += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", ch)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		sum := sha256.Sum256([]byte(tok))
		rs.mu.Lock()
		rs.uses = append(rs.uses, Use{Sub: sub, TokenHash: hex.EncodeToString(sum[:])})
		if rs.tokens == nil {
			rs.tokens = map[string]bool{}
		}
		rs.tokens[tok] = true
		rs.mu.Unlock()
		handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), subKey{}, sub)))
	})
	return rs
}

// introspect asks the authorization server about tok and returns its
// subject when it is active and issued for this server; "" otherwise.
func (rs *RS) introspect(ctx context.Context, tok string) string {
	form := url.Values{"token": {tok}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rs.as.Endpoint("introspection_endpoint"), strings.NewReader(form.Encode()))
	if err != nil {
		return ""
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(RSClientID, RSClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var r struct {
		Active bool            `json:"active"`
		Sub    string          `json:"sub"`
		Aud    json.RawMessage `json:"aud"`
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil || !r.Active {
		return ""
	}
	var auds []string
	if json.Unmarshal(r.Aud, &auds) != nil {
		var one string
		if json.Unmarshal(r.Aud, &one) != nil {
			return ""
		}
		auds = []string{one}
	}
	for _, a := range auds {
		if a == rs.URL {
			return r.Sub
		}
	}
	return "" // a token for another resource: refused (RFC 8707)
}

// Uses returns the requests accepted so far.
func (rs *RS) Uses() []Use {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]Use(nil), rs.uses...)
}

// Tokens returns every token value the server accepted, for tests that
// check no token leaked anywhere.
func (rs *RS) Tokens() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]string, 0, len(rs.tokens))
	for t := range rs.tokens {
		out = append(out, t)
	}
	return out
}

// Refusals returns how many requests got 401.
func (rs *RS) Refusals() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.refusals
}

// Browser stands in for a person's browser: it keeps cookies, follows
// redirects, and at the authorization server signs in and approves.
type Browser struct {
	Client *http.Client
}

// NewBrowser returns a Browser with an empty cookie jar.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{Client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

var (
	formRE  = regexp.MustCompile(`(?s)<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>(.*?)</form>`)
	inputRE = regexp.MustCompile(`<input[^>]*name="([^"]+)"`)
)

// Authorize opens start (an authorization URL, or the gateway's connect
// link), signs in as user with password, approves, and returns the last
// response: the redirect target's answer (the callback's page). The body
// is read and returned.
func (b *Browser) Authorize(tb testing.TB, start, user, password string) (*http.Response, string) {
	tb.Helper()
	resp, body := b.get(tb, start)
	for range 6 {
		m := formRE.FindStringSubmatch(body)
		if m == nil {
			return resp, body
		}
		action, err := resp.Request.URL.Parse(html.UnescapeString(m[1]))
		if err != nil {
			tb.Fatal(err)
		}
		form := url.Values{}
		for _, in := range inputRE.FindAllStringSubmatch(m[2], -1) {
			switch in[1] {
			case "username":
				form.Set("username", user)
			case "password":
				form.Set("password", password)
			}
		}
		resp, body = b.post(tb, action.String(), form)
	}
	tb.Fatalf("too many forms; last page: %s", body)
	return nil, ""
}

func (b *Browser) get(tb testing.TB, u string) (*http.Response, string) {
	tb.Helper()
	resp, err := b.Client.Get(u)
	if err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *Browser) post(tb testing.TB, u string, form url.Values) (*http.Response, string) {
	tb.Helper()
	resp, err := b.Client.PostForm(u, form)
	if err != nil {
		tb.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}
