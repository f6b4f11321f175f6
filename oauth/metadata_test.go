package oauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-mcp/switchboard/oauth"
)

func TestParseChallenge(t *testing.T) {
	for _, tc := range []struct {
		name, header string
		want         oauth.Challenge
		ok           bool
	}{
		{"quoted", `Bearer resource_metadata="https://a/.well-known/oauth-protected-resource", scope="files:read"`,
			oauth.Challenge{ResourceMetadata: "https://a/.well-known/oauth-protected-resource", Scope: "files:read"}, true},
		{"error and escapes", `Bearer error="insufficient_scope", scope="a \"b\""`, oauth.Challenge{Error: "insufficient_scope", Scope: `a "b"`}, true},
		{"token values", `Bearer error=invalid_token`, oauth.Challenge{Error: "invalid_token"}, true},
		{"after another scheme", `Basic realm="x", Bearer scope="s"`, oauth.Challenge{Scope: "s"}, true},
		{"case", `bearer Scope="s"`, oauth.Challenge{Scope: "s"}, true},
		{"none", `Basic realm="x"`, oauth.Challenge{}, false},
		{"empty", ``, oauth.Challenge{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := oauth.ParseChallenge(tc.header)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ParseChallenge(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// docServer serves fixed JSON documents by path and records what was asked.
type docServer struct {
	*httptest.Server
	mu    sync.Mutex
	asked []string
	docs  map[string]any
	// status answers a path with a status and header instead.
	status map[string]func(w http.ResponseWriter)
}

func newDocServer(t *testing.T) *docServer {
	d := &docServer{docs: map[string]any{}, status: map[string]func(http.ResponseWriter){}}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.asked = append(d.asked, r.Method+" "+r.URL.Path)
		doc, ok := d.docs[r.URL.Path]
		st := d.status[r.URL.Path]
		d.mu.Unlock()
		if st != nil {
			st(w)
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *docServer) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.asked, ", ")
}

func asMeta(issuer string) map[string]any {
	return map[string]any{
		"issuer": issuer, "authorization_endpoint": issuer + "/auth", "token_endpoint": issuer + "/token",
		"code_challenge_methods_supported": []string{"S256"},
	}
}

func TestDiscoverServer(t *testing.T) {
	t.Run("path insertion order, OIDC last", func(t *testing.T) {
		d := newDocServer(t)
		issuer := d.URL + "/tenant1"
		d.docs["/tenant1/.well-known/openid-configuration"] = asMeta(issuer)
		md, err := oauth.DiscoverServer(context.Background(), http.DefaultClient, issuer)
		if err != nil || md.TokenEndpoint != issuer+"/token" {
			t.Fatalf("md = %+v, %v", md, err)
		}
		want := "GET /.well-known/oauth-authorization-server/tenant1, GET /.well-known/openid-configuration/tenant1, GET /tenant1/.well-known/openid-configuration"
		if got := d.log(); got != want {
			t.Errorf("asked %s\nwant  %s", got, want)
		}
	})
	t.Run("RFC 8414 first at the root", func(t *testing.T) {
		d := newDocServer(t)
		d.docs["/.well-known/oauth-authorization-server"] = asMeta(d.URL)
		d.docs["/.well-known/openid-configuration"] = map[string]any{"issuer": "wrong"}
		if _, err := oauth.DiscoverServer(context.Background(), http.DefaultClient, d.URL); err != nil {
			t.Fatal(err)
		}
		if got := d.log(); got != "GET /.well-known/oauth-authorization-server" {
			t.Errorf("asked %s", got)
		}
	})
	for _, tc := range []struct {
		name    string
		mutate  func(md map[string]any)
		wantErr string
	}{
		{"another issuer", func(md map[string]any) { md["issuer"] = "https://honest.example" }, "names issuer"},
		{"no PKCE", func(md map[string]any) { delete(md, "code_challenge_methods_supported") }, "PKCE"},
		{"plain PKCE only", func(md map[string]any) { md["code_challenge_methods_supported"] = []string{"plain"} }, "PKCE"},
		{"http token endpoint elsewhere", func(md map[string]any) { md["token_endpoint"] = "http://evil.example/token" }, "must use https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDocServer(t)
			md := asMeta(d.URL)
			tc.mutate(md)
			d.docs["/.well-known/oauth-authorization-server"] = md
			_, err := oauth.DiscoverServer(context.Background(), http.DefaultClient, d.URL)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("https required off loopback", func(t *testing.T) {
		_, err := oauth.DiscoverServer(context.Background(), http.DefaultClient, "http://auth.example.com")
		if err == nil || !strings.Contains(err.Error(), "https") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDiscoverResource(t *testing.T) {
	challenge := func(meta, scope string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+meta+`", scope="`+scope+`"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	}
	t.Run("from the challenge", func(t *testing.T) {
		d := newDocServer(t)
		d.status["/mcp"] = challenge(d.URL+"/meta", "tools:run")
		d.docs["/meta"] = map[string]any{"resource": d.URL + "/mcp", "authorization_servers": []string{"https://as.example"}}
		md, scope, err := oauth.DiscoverResource(context.Background(), http.DefaultClient, d.URL+"/mcp")
		if err != nil || md.AuthorizationServers[0] != "https://as.example" || scope != "tools:run" {
			t.Fatalf("md = %+v, scope %q, %v", md, scope, err)
		}
	})
	t.Run("well-known at the path, then the root", func(t *testing.T) {
		d := newDocServer(t)
		d.status["/mcp"] = func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }
		d.docs["/.well-known/oauth-protected-resource"] = map[string]any{"resource": d.URL, "authorization_servers": []string{"https://as.example"}}
		md, _, err := oauth.DiscoverResource(context.Background(), http.DefaultClient, d.URL+"/mcp")
		if err != nil || md.Resource != d.URL {
			t.Fatalf("md = %+v, %v", md, err)
		}
		if got := d.log(); got != "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource" {
			t.Errorf("asked %s", got)
		}
	})
	for _, tc := range []struct {
		name    string
		setup   func(d *docServer)
		wantErr string
	}{
		{"challenge names metadata for another resource", func(d *docServer) {
			d.status["/mcp"] = challenge(d.URL+"/meta", "")
			d.docs["/meta"] = map[string]any{"resource": "https://victim.example/mcp", "authorization_servers": []string{"https://as.example"}}
		}, "is for"},
		{"challenge points to another origin", func(d *docServer) {
			d.status["/mcp"] = challenge("https://elsewhere.example/meta", "")
		}, "another origin"},
		{"well-known metadata for another path", func(d *docServer) {
			d.status["/mcp"] = func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }
			d.docs["/.well-known/oauth-protected-resource/mcp"] = map[string]any{"resource": d.URL + "/other", "authorization_servers": []string{"https://as.example"}}
		}, "is for"},
		{"no authorization server", func(d *docServer) {
			d.status["/mcp"] = challenge(d.URL+"/meta", "")
			d.docs["/meta"] = map[string]any{"resource": d.URL + "/mcp"}
		}, "names no authorization server"},
		{"no metadata", func(d *docServer) {}, "publishes no protected resource metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDocServer(t)
			tc.setup(d)
			_, _, err := oauth.DiscoverResource(context.Background(), http.DefaultClient, d.URL+"/mcp")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestEncodeToken(t *testing.T) {
	in := &oauth.Token{AccessToken: "access-value-1", RefreshToken: "refresh-value-1", ClientID: "c"}
	if b, _ := json.Marshal(in); strings.Contains(string(b), "value-1") {
		t.Fatalf("json.Marshal of a Token shows a token: %s", b)
	}
	b, err := oauth.EncodeToken(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := oauth.DecodeToken(b)
	if err != nil || out.AccessToken != in.AccessToken || out.RefreshToken != in.RefreshToken || out.ClientID != "c" {
		t.Fatalf("round trip = %+v, %v", out, err)
	}
	cb, _ := oauth.EncodeClient(&oauth.Client{ClientID: "id", ClientSecret: "secret-value-2"})
	c, err := oauth.DecodeClient(cb)
	if err != nil || c.ClientSecret != "secret-value-2" {
		t.Fatalf("client round trip = %+v, %v", c, err)
	}
}
