package providers

import (
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-mcp/switchboard"
)

// FuzzLoadConfig feeds arbitrary bytes to the gateway.yaml parser. Parse must
// never panic; a refusal is a *ValidationError naming the file; an accepted
// config satisfies every invariant validation promises, and survives a
// marshal → Parse round trip with the same providers.
//
// `make test` runs only the seeds (testdata/fuzz/FuzzLoadConfig and
// testdata/*.yaml). A real run:
//
//	go test -run '^$' -fuzz '^FuzzLoadConfig$' -fuzztime 5m ./providers/
func FuzzLoadConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const abs, display = "/srv/switchboard/gateway.yaml", "gateway.yaml"
		cfg, err := Parse(data, abs, display)
		if err != nil {
			checkRefusal(t, err, display)
			return
		}
		checkAccepted(t, cfg)

		// Round trip: what the loader produced must load again, to the same
		// providers. (Paths are absolute by now, so they resolve the same.)
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshalling an accepted config: %v", err)
		}
		again, err := Parse(out, abs, display)
		if err != nil {
			t.Fatalf("an accepted config does not load after a round trip: %v\n--- input\n%s\n--- marshalled\n%s", err, data, out)
		}
		if again.Listen != cfg.Listen || again.DataDir != cfg.DataDir || again.Auth.Disabled != cfg.Auth.Disabled {
			t.Fatalf("round trip changed listen/data_dir/auth: %q %q %v → %q %q %v",
				cfg.Listen, cfg.DataDir, cfg.Auth.Disabled, again.Listen, again.DataDir, again.Auth.Disabled)
		}
		if len(again.Providers) != len(cfg.Providers) {
			t.Fatalf("round trip changed the providers: %v → %v", names(cfg), names(again))
		}
		for name, p := range cfg.Providers {
			q := again.Providers[name]
			if q == nil {
				t.Fatalf("round trip lost provider %q", name)
			}
			if p.Command != q.Command || !slices.Equal(p.Args, q.Args) ||
				!maps.Equal(p.Env, q.Env) || p.IsEnabled() != q.IsEnabled() ||
				p.Scope != q.Scope || p.Dir != q.Dir || p.Limits.CallTimeout != q.Limits.CallTimeout {
				t.Fatalf("round trip changed provider %q:\n%+v\n→\n%+v", name, *p, *q)
			}
		}
	})
}

func checkRefusal(t *testing.T, err error, display string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse refused with %T %v, want a *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatal("Parse refused with no problems")
	}
	for _, p := range ve.Problems {
		if p.File != display || strings.TrimSpace(p.Message) == "" || p.Line < 0 {
			t.Fatalf("bad problem %+v", p)
		}
	}
}

// checkAccepted asserts what an accepted config promises its users.
func checkAccepted(t *testing.T, cfg *Config) {
	t.Helper()
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		t.Fatalf("accepted listen %q: %v", cfg.Listen, err)
	}
	if cfg.Auth.Disabled && !IsLoopback(host) {
		t.Fatalf("accepted auth.disabled on non-loopback listen %q", cfg.Listen)
	}
	if !filepath.IsAbs(cfg.DataDir) || cfg.Hash == "" || cfg.Path == "" {
		t.Fatalf("data_dir %q, hash %q, path %q", cfg.DataDir, cfg.Hash, cfg.Path)
	}
	if cfg.Auth.MaxBodyMB <= 0 {
		t.Fatalf("accepted auth.max_body_mb %d: every request body would be refused", cfg.Auth.MaxBodyMB)
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"log.slow_call", cfg.Log.SlowCall}, {"sessions.idle_timeout", cfg.Sessions.IdleTimeout}} {
		if d.v < 0 {
			t.Fatalf("accepted a negative %s (%v)", d.name, d.v.D())
		}
	}
	for name, p := range cfg.Providers {
		if p == nil || p.Name != name {
			t.Fatalf("provider %q: %+v", name, p)
		}
		if !switchboard.ValidPrefix(name) {
			t.Fatalf("accepted provider prefix %q", name)
		}
		if strings.TrimSpace(p.Command) == "" {
			t.Fatalf("provider %q: accepted an empty command", name)
		}
		if p.Scope != ScopeShared && p.Scope != ScopeUser {
			t.Fatalf("provider %q: scope %q", name, p.Scope)
		}
		if !filepath.IsAbs(p.Dir) {
			t.Fatalf("provider %q: dir %q is not absolute", name, p.Dir)
		}
		l := p.Limits
		if l.MaxConcurrent < 0 || l.MaxQueue < 0 || l.MaxMemoryMB < 0 || l.CallTimeout < 0 || l.InitTimeout < 0 ||
			!(l.MaxCPU >= 0) || l.MaxMessageMB <= 0 || p.Connection.IdleTimeout < 0 {
			t.Fatalf("provider %q: accepted limits %+v, connection %+v", name, l, p.Connection)
		}
		for k, v := range p.Env {
			if _, err := ParseEnvValue(v); err != nil {
				t.Fatalf("provider %q: accepted env %s=%q: %v", name, k, v, err)
			}
		}
	}
	for name, r := range cfg.Roles {
		if r == nil {
			continue
		}
		for _, pf := range r.Providers {
			if pf != "*" && cfg.Providers[pf] == nil {
				t.Fatalf("role %q names unknown provider %q", name, pf)
			}
		}
	}
	if cfg.DefaultRole != "" && cfg.Roles[cfg.DefaultRole] == nil {
		t.Fatalf("default_role %q is not defined", cfg.DefaultRole)
	}
	for name, s := range cfg.Services {
		if s == nil {
			continue
		}
		for _, pf := range s.AllowedProviderPrefixes {
			if cfg.Providers[pf] == nil {
				t.Fatalf("service %q names unknown provider %q", name, pf)
			}
		}
	}
}

func names(c *Config) []string {
	var out []string
	for _, p := range c.SortedProviders() {
		out = append(out, p.Name)
	}
	return out
}
