package providers

import (
	"context"
	"reflect"
	"testing"
)

func TestRemoteAndOAuthConfig(t *testing.T) {
	cfg, err := Parse([]byte(`
providers:
  docs:
    url: https://mcp.example.com/mcp
    headers: {X-Api-Key: "${secret:DOCS_KEY}", X-Team: blue}
  linear:
    url: https://mcp.linear.example/mcp
    scope: user
    oauth: {}
  gh:
    command: ./bin/gh
    scope: user
    oauth:
      authorization_url: https://github.example/login/oauth/authorize
      token_url: https://github.example/login/oauth/access_token
      client_id: Iv1.abc
      client_secret: ${secret:GH_OAUTH_SECRET}
      scopes: [repo]
      token_file: GH_TOKEN_FILE
  local:
    url: http://127.0.0.1:9000/mcp
    transport: sse
`), "/tmp/x/gateway.yaml", "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Providers["docs"]; !p.Remote() || p.Scope != ScopeShared {
		t.Errorf("docs = %+v", p)
	}
	if got := cfg.Providers["docs"].SecretRefs(); !reflect.DeepEqual(got, []string{"DOCS_KEY"}) {
		t.Errorf("docs secret refs = %v", got)
	}
	if got := cfg.Providers["gh"].SecretRefs(); !reflect.DeepEqual(got, []string{"GH_OAUTH_SECRET"}) {
		t.Errorf("gh secret refs = %v", got)
	}
	if o := cfg.Providers["linear"].OAuth; o == nil || o.Issuer != "" {
		t.Errorf("linear oauth = %+v", o)
	}
	if cfg.Providers["gh"].Remote() {
		t.Error("gh is a command provider")
	}

	next, err := Parse([]byte(`
providers:
  docs:
    url: https://mcp.example.com/v2/mcp
    headers: {X-Api-Key: "${secret:DOCS_KEY}", X-Team: blue}
  linear:
    url: https://mcp.linear.example/mcp
    scope: user
    oauth: {scopes: [read]}
  gh:
    command: ./bin/gh
    scope: user
    oauth:
      authorization_url: https://github.example/login/oauth/authorize
      token_url: https://github.example/login/oauth/access_token
      client_id: Iv1.abc
      client_secret: ${secret:GH_OAUTH_SECRET}
      scopes: [repo]
      token_file: GH_TOKEN_FILE
  local:
    url: http://127.0.0.1:9000/mcp
    transport: sse
`), "/tmp/x/gateway.yaml", "gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cur := NewPlan(context.Background(), nil, cfg, nil).Next()
	plan := NewPlan(context.Background(), cur, next, nil)
	if got := plan.Restarted(); !reflect.DeepEqual(got, []string{"docs"}) {
		t.Errorf("replaced = %v, want docs (its url changed)", got)
	}
	if !reflect.DeepEqual(plan.StopUsers, []string{"linear"}) {
		t.Errorf("users' instances stopped = %v, want linear's (its oauth changed)", plan.StopUsers)
	}
}
