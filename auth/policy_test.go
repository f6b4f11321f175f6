package auth

import (
	"context"
	"testing"

	"github.com/switchboard-mcp/switchboard"
)

type fakeUsers struct{ connected, hidden map[string]bool }

func (f fakeUsers) Connected(u, p string) bool { return f.connected[u+"/"+p] }
func (f fakeUsers) Hidden(u, p string) bool    { return f.hidden[u+"/"+p] }

func TestPolicy(t *testing.T) {
	pol := &Policy{
		Providers: map[string]ProviderPolicy{
			"alpha-fs": {},
			"beta-fs":  {},
			"fs":       {},
			"fsx":      {},
			"ops":      {InternalOnly: true},
			"docs":     {Public: true},
			"gh":       {UserScoped: true},
			"notes":    {ReadOnly: true, Allow: []string{"append_note"}, Deny: []string{"delete_*"}},
		},
		Roles: map[string]RolePolicy{
			"alpha":  {Providers: []string{"alpha-fs", "gh", "notes"}},
			"reader": {Providers: []string{"fs"}, Tools: []string{"fs__read_*"}},
		},
		Services: map[string][]string{"cron": {"fs", "ops"}},
		Users:    fakeUsers{connected: map[string]bool{"ann/gh": true}, hidden: map[string]bool{"ann/docs": true}},
	}
	user := func(id string, roles ...string) *switchboard.Principal {
		return &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: id, Roles: roles, Endpoint: switchboard.EndpointPublic}
	}
	svc := func(id string, ep switchboard.Endpoint) *switchboard.Principal {
		return &switchboard.Principal{Kind: switchboard.PrincipalService, ID: id, Endpoint: ep}
	}
	tests := []struct {
		name     string
		p        *switchboard.Principal
		provider string
		want     Axis
	}{
		{"nil principal", nil, "fs", AxisUnknown},
		{"unknown provider", user("ann", "admin"), "nope", AxisUnknown},
		{"role grants", user("ann", "alpha"), "alpha-fs", AxisNone},
		{"role does not grant other client", user("ann", "alpha"), "beta-fs", AxisRole},
		{"no role sees nothing but public", user("bob"), "fs", AxisRole},
		{"public", user("bob"), "docs", AxisNone},
		{"hidden by preference", user("ann", "alpha"), "docs", AxisPreference},
		{"user-scoped, connected", user("ann", "alpha"), "gh", AxisNone},
		{"user-scoped, not connected", user("cat", "alpha"), "gh", AxisConnection},
		{"internal only on /mcp", user("ann", "admin"), "ops", AxisInternalOnly},
		{"admin", user("ann", "admin"), "beta-fs", AxisNone},
		{"user on internal endpoint", &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "ann", Roles: []string{"admin"}, Endpoint: switchboard.EndpointInternal}, "fs", AxisEndpoint},
		{"service allowed", svc("cron", switchboard.EndpointInternal), "fs", AxisNone},
		{"service internal-only allowed", svc("cron", switchboard.EndpointInternal), "ops", AxisNone},
		{"service prefix is exact: fsx", svc("cron", switchboard.EndpointInternal), "fsx", AxisServiceAllow},
		{"service unknown", svc("ghost", switchboard.EndpointInternal), "fs", AxisServiceAllow},
		{"service on public endpoint", svc("cron", switchboard.EndpointPublic), "fs", AxisEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pol.Why(tt.p, tt.provider); got != tt.want {
				t.Fatalf("Why = %q, want %q", got, tt.want)
			}
		})
	}

	ctx := context.Background()
	tools := []struct {
		name     string
		p        *switchboard.Principal
		provider string
		tool     string
		readOnly bool
		want     bool
	}{
		{"read-only provider, read tool", user("ann", "alpha"), "notes", "read_note", true, true},
		{"read-only provider, write tool", user("ann", "alpha"), "notes", "write_note", false, false},
		{"read-only provider, explicit allow", user("ann", "alpha"), "notes", "append_note", false, true},
		{"deny wins", user("ann", "admin"), "notes", "delete_note", true, false},
		{"role tool pattern allows", user("ann", "reader"), "fs", "read_file", false, true},
		{"role tool pattern refuses", user("ann", "reader"), "fs", "write_file", false, false},
		{"service sees all tools of allowed prefix", svc("cron", switchboard.EndpointInternal), "fs", "write_file", false, true},
	}
	for _, tt := range tools {
		t.Run(tt.name, func(t *testing.T) {
			exposed, _ := switchboard.ExposedName(tt.provider, tt.tool)
			if got := pol.ToolVisible(ctx, tt.p, tt.provider, tt.tool, exposed, tt.readOnly); got != tt.want {
				t.Fatalf("ToolVisible = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestServiceAllowlistIsExact: a service's allowed_provider_prefixes match
// byte for byte: a longer or shorter prefix, another letter case, a
// homoglyph, trailing space or a tool name never match, and an empty list
// allows nothing.
func TestServiceAllowlistIsExact(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		prefix  string
		want    bool
	}{
		{"exact", []string{"fs", "github"}, "fs", true},
		{"second", []string{"fs", "github"}, "github", true},
		{"longer", []string{"fs"}, "fsx", false},
		{"shorter", []string{"fsx"}, "fs", false},
		{"case", []string{"fs"}, "FS", false},
		{"homoglyph", []string{"fs"}, "fѕ", false}, // Cyrillic ѕ
		{"trailing space", []string{"fs"}, "fs ", false},
		{"with separator", []string{"fs"}, "fs__read", false},
		{"empty prefix", []string{"fs", ""}, "", false},
		{"empty allowlist", []string{}, "fs", false},
		{"nil allowlist", nil, "fs", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := &Policy{Providers: map[string]ProviderPolicy{}, Services: map[string][]string{"svc": tt.allowed}}
			for _, p := range []string{"fs", "fsx", "github", "FS", "fѕ", "fs ", "fs__read"} { // never "": no provider has an empty prefix
				pol.Providers[p] = ProviderPolicy{}
			}
			p := &switchboard.Principal{Kind: switchboard.PrincipalService, ID: "svc", Endpoint: switchboard.EndpointInternal}
			if got := pol.Why(p, tt.prefix) == AxisNone; got != tt.want {
				t.Fatalf("service allowed %q sees %q: %t, want %t", tt.allowed, tt.prefix, got, tt.want)
			}
		})
	}
}
