package providers

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
)

// fakeSecrets is a SecretStore over a map.
type fakeSecrets map[string]string

func (f fakeSecrets) Secret(_ context.Context, name string) (switchboard.Secret, error) {
	v, ok := f[name]
	if !ok {
		return "", switchboard.Errorf(switchboard.ENOTFOUND, "secret %q not found", name)
	}
	return switchboard.Secret(v), nil
}

func (f fakeSecrets) UserSecret(_ context.Context, user, provider, name string) (switchboard.Secret, error) {
	return f.Secret(context.Background(), user+"/"+provider+"/"+name)
}

func joined(s []string) string { return strings.Join(s, ",") }

func startState(t *testing.T, cfg *Config, r *Resolver) *State {
	t.Helper()
	return NewPlan(t.Context(), nil, cfg, r).Next()
}

func TestPlan(t *testing.T) {
	base := `
listen: 127.0.0.1:8080
providers:
  a: {command: ./a}
  b: {command: ./b, args: [x]}
  c: {command: ./c}
  d: {command: ./d, description: old}
  u: {command: ./u, scope: user, connection: {secrets: [T]}}
  v: {command: ./v, scope: user, connection: {secrets: [T]}}
`
	next := `
listen: 127.0.0.1:9090
server: {max_conns_per_client: 8}
providers:
  a: {command: ./a}
  b: {command: ./b, args: [y]}
  d: {command: ./d, description: new}
  e: {command: ./e}
  u: {command: ./u, scope: user, connection: {secrets: [T]}, description: changed}
  v: {command: ./v2, scope: user, connection: {secrets: [T]}}
roles:
  r: {providers: [a]}
`
	dir := t.TempDir()
	old := mustParse(t, dir, base)
	cur := startState(t, old, nil)
	p := NewPlan(t.Context(), cur, mustParse(t, dir, next), nil)
	check := func(name string, got []string, want ...string) {
		t.Helper()
		if joined(got) != joined(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("Added", p.Added, "e")
	check("Removed", p.Removed, "c")
	check("Start", instanceNames(p.Start), "e")
	check("Replace", p.Restarted(), "b")
	check("Stop", instanceNames(p.Stop), "c")
	check("StopUsers", p.StopUsers, "v")
	check("PolicyOnly", p.PolicyOnly, "d", "u")
	check("NeedsRestart", p.NeedsRestart, "listen", "server.max_conns_per_client")
	if !p.AccessChanged || !p.Disruptive() {
		t.Error("a new role is an access change, and disruptive")
	}
	// Restart-only settings keep their values in the state in force.
	if got := p.Next().Config; got.Listen != "127.0.0.1:8080" || got.Server.MaxConnsPerClient != old.Server.MaxConnsPerClient {
		t.Errorf("state in force: listen %s, max_conns_per_client %d; want the old values", got.Listen, got.Server.MaxConnsPerClient)
	}
	if !NewPlan(t.Context(), cur, mustParse(t, dir, base), nil).Empty() {
		t.Error("identical configs plan nothing")
	}
	start := NewPlan(t.Context(), nil, old, nil)
	check("startup Start", instanceNames(start.Start), "a", "b", "c", "d")
	if len(start.NeedsRestart) > 0 || start.AccessChanged {
		t.Errorf("startup plan: %+v", start)
	}
}

func TestPlanDisruptive(t *testing.T) {
	base := `
roles:
  r: {providers: [a]}
providers:
  a: {command: ./a}
  b: {command: ./b, args: [x], tools: {deny: [rm]}}
`
	tests := []struct {
		name       string
		next       string
		disruptive bool
	}{
		{"unchanged", base, false},
		{"provider added", base + "  c: {command: ./c}\n", false},
		{"log level", "log: {level: debug}\n" + base, false},
		{"provider removed", strings.Replace(base, "  b: {command: ./b, args: [x], tools: {deny: [rm]}}\n", "", 1), true},
		{"provider restarted", strings.Replace(base, "args: [x]", "args: [y]", 1), true},
		{"deny list dropped", strings.Replace(base, ", tools: {deny: [rm]}", "", 1), true},
		{"role dropped", strings.Replace(base, "  r: {providers: [a]}\n", "", 1), true},
		{"service added", "services:\n  s: {allowed_provider_prefixes: [a]}\n" + base, true},
	}
	dir := t.TempDir()
	cur := startState(t, mustParse(t, dir, base), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewPlan(t.Context(), cur, mustParse(t, dir, tt.next), nil).Disruptive(); got != tt.disruptive {
				t.Errorf("Disruptive() = %v, want %v", got, tt.disruptive)
			}
		})
	}
}

// TestPlanSecrets: the same config with other secret values replaces exactly
// the providers whose resolved environment changed, shared or per user; a
// provider whose secret is gone stops, while one whose new config names a
// missing secret keeps its running process.
func TestPlanSecrets(t *testing.T) {
	cfg := `
providers:
  gh: {command: ./gh, env: {TOKEN: "${secret:GH}"}}
  fs: {command: ./fs, env: {X: plain}}
  db: {command: ./db, env: {PW: "${secret:DB}"}}
  per: {command: ./per, scope: user, env: {ORG: "${secret:ORG}"}, connection: {secrets: [T]}}
`
	dir := t.TempDir()
	c := mustParse(t, dir, cfg)
	secrets := fakeSecrets{"GH": "one", "DB": "pw", "ORG": "acme"}
	r := &Resolver{Secrets: secrets}
	cur := startState(t, c, r)
	if len(cur.Shared) != 3 || cur.Shared["gh"].Env["TOKEN"] != "one" {
		t.Fatalf("state = %+v", cur.Shared)
	}

	secrets["GH"], secrets["ORG"] = "two", "other"
	delete(secrets, "DB")
	p := NewPlan(t.Context(), cur, c, r)
	if joined(p.Restarted()) != "gh" || joined(p.StopUsers) != "per" || joined(instanceNames(p.Stop)) != "db" || joined(instanceNames(p.Blocked)) != "db" {
		t.Fatalf("plan after secret changes: replace %v, stop users %v, stop %v, blocked %v", p.Restarted(), p.StopUsers, instanceNames(p.Stop), instanceNames(p.Blocked))
	}
	if b := p.Next().Shared["db"].Blocked; b != "missing secret DB" {
		t.Errorf("db blocked %q", b)
	}

	// A reload that names a missing secret: the old process's environment
	// is still current, so it keeps serving.
	secrets["DB"] = "pw"
	cur = startState(t, c, r)
	broken := mustParse(t, dir, strings.Replace(cfg, "${secret:DB}", "${secret:TYPO}", 1))
	p = NewPlan(t.Context(), cur, broken, r)
	if len(p.Stop) != 0 || joined(instanceNames(p.Blocked)) != "db" || p.Next().Shared["db"].Blocked != "" {
		t.Fatalf("typo plan: stop %v, blocked %v, next db %+v", instanceNames(p.Stop), instanceNames(p.Blocked), p.Next().Shared["db"])
	}

	// Keep: a failed replacement leaves the running instance in force.
	p = NewPlan(t.Context(), cur, mustParse(t, dir, strings.Replace(cfg, "./gh", "./gh2", 1)), r)
	p.Keep(cur, "gh")
	if p.Next().Shared["gh"].Provider.Command != cur.Shared["gh"].Provider.Command {
		t.Error("Keep did not keep the running instance")
	}
}

func TestCheckConnection(t *testing.T) {
	p := &Provider{Name: "gh", Connection: Connection{Secrets: []string{"A", "B"}}}
	if err := p.CheckConnection(map[string][]byte{"A": []byte("1"), "B": []byte("2")}); err != nil {
		t.Fatal(err)
	}
	err := p.CheckConnection(map[string][]byte{"A": []byte("1"), "C": []byte("3")})
	if err == nil || switchboard.ErrorCode(err) != switchboard.EINVALID || err.Error() != "provider gh needs exactly A, B; missing B; not expected C" {
		t.Fatalf("err = %v", err)
	}
}
