package providers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeExecutor records plans and fails the replacements it is told to.
type fakeExecutor struct {
	plans []*Plan
	fail  map[string]bool
}

func (f *fakeExecutor) Execute(ctx context.Context, p *Plan, background bool, commit func([]string)) ([]string, []ProviderFailure) {
	f.plans = append(f.plans, p)
	var failed []string
	var out []ProviderFailure
	var replaced []string
	for _, in := range p.Replace {
		if f.fail[in.Provider.Name] {
			failed = append(failed, in.Provider.Name)
			out = append(out, ProviderFailure{Provider: in.Provider.Name, Error: "no such file"})
			continue
		}
		replaced = append(replaced, in.Provider.Name)
	}
	commit(failed)
	return replaced, out
}

// TestReloader: a valid change is planned and committed; an invalid file
// changes nothing; an unchanged file plans nothing; a failed replacement
// keeps the old instance in force and is retried by the next reload even
// though the file did not change; a change to the skills reloads.
func TestReloader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "providers:\n  a: {command: ./a, args: [one]}\n"
	write(base)
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ex := &fakeExecutor{fail: map[string]bool{}}
	skills := "s1"
	var commits int
	var records []ReloadResult
	r := NewReloader(ReloaderOptions{Path: path, Logger: zerolog.Nop(), Executor: ex,
		Commit:     func(*State, []string) { commits++ },
		Record:     func(res ReloadResult) { records = append(records, res) },
		SkillsHash: func(string) string { return skills }})
	ctx := t.Context()
	r.Start(ctx, cfg)
	if len(ex.plans) != 1 || len(ex.plans[0].Start) != 1 || commits != 1 {
		t.Fatalf("startup: %d plans, %d commits", len(ex.plans), commits)
	}
	reload := func() ReloadResult {
		t.Helper()
		return r.apply(ctx, "test", "")
	}
	if res := reload(); !res.Unchanged {
		t.Fatalf("unchanged file: %+v", res)
	}
	write("providers:\n  a: [broken\n")
	if res := reload(); res.OK || res.Error == "" || r.Config().Hash != cfg.Hash {
		t.Fatalf("invalid file: %+v, in force %s", res, r.Config().Hash)
	}
	ex.fail["a"] = true
	write(strings.Replace(base, "one", "two", 1))
	res := reload()
	if res.OK || len(res.Failed) != 1 || !strings.Contains(res.Error, "provider a: no such file") {
		t.Fatalf("failed replacement: %+v", res)
	}
	if got := r.State().Shared["a"].Provider.Args[0]; got != "one" {
		t.Errorf("in force after the failed replacement: args %q, want the old one", got)
	}
	ex.fail["a"] = false
	if res := reload(); !res.OK || strings.Join(res.Restarted, ",") != "a" {
		t.Fatalf("retry of the same file: %+v", res)
	}
	if res := reload(); !res.Unchanged {
		t.Fatalf("after the retry: %+v", res)
	}
	skills = "s2"
	if res := reload(); res.Unchanged || !res.Skills || !res.OK {
		t.Fatalf("skills changed: %+v", res)
	}
	if r.Applied() != 3 || len(records) != 4 {
		t.Errorf("applied %d plans, recorded %d outcomes; want 3 and 4", r.Applied(), len(records))
	}
}

// TestRequestSecretsReplansOnRun: RequestSecrets returns at once; Run then
// re-plans with the secrets as they are, replacing only the provider whose
// environment changed.
func TestRequestSecretsReplansOnRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte("providers:\n  a: {command: ./a, env: {T: \"${secret:S}\"}}\n  b: {command: ./b}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	secrets := fakeSecrets{"S": "one"}
	done := make(chan ReloadResult, 4)
	r := NewReloader(ReloaderOptions{Path: path, Logger: zerolog.Nop(), Executor: &fakeExecutor{},
		Resolver: &Resolver{Secrets: secrets}, Record: func(res ReloadResult) { done <- res }})
	ctx, cancel := context.WithCancel(t.Context())
	r.Start(ctx, cfg)
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	secrets["S"] = "two" // read by Run after it receives the request
	r.RequestSecrets()
	r.RequestSecrets() // coalesces with the first, or finds nothing changed
	select {
	case res := <-done:
		if res.Trigger != "secret" || !res.OK || strings.Join(res.Restarted, ",") != "a" {
			t.Fatalf("re-plan: %+v, want a replaced", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no re-plan 10 s after RequestSecrets")
	}
}
