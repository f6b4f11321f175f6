package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/auth"
	"github.com/switchboard-mcp/switchboard/mux"
	"github.com/switchboard-mcp/switchboard/providers"
	"github.com/switchboard-mcp/switchboard/skills"
)

// live is what the config in force decides about callers, swapped whole on
// every reload and read without a lock: the visibility policy and the
// skills served.
type live struct {
	cur atomic.Pointer[served]
}

// served is one config's policy and skills.
type served struct {
	cfg    *providers.Config
	policy *auth.Policy
	skills map[string]*skills.Skill // by provider prefix, as served
	set    skills.Set
	loaded time.Time // when the skills were read
}

var _ mux.Filter = (*auth.Policy)(nil)

// set compiles cfg: its policy (with users' connections and preferences from
// id) and the skills of its providers, read from skills.dir now.
func (l *live) set(cfg *providers.Config, id *identity) {
	set, errs := skills.Load(skills.Builtin(), cfg.Skills.Dir)
	for _, err := range errs {
		id.log.Warn().Err(err).Msg("skill problem")
	}
	sv := &served{cfg: cfg, policy: policyOf(cfg, id), skills: map[string]*skills.Skill{}, set: set, loaded: time.Now()}
	for _, b := range bindings(cfg) {
		if sk := set.For(b); sk != nil && b.Enabled {
			sv.skills[b.Prefix] = sk
		}
	}
	l.cur.Store(sv)
}

func (l *live) policy() *auth.Policy { return l.cur.Load().policy }

// usable returns the user-scoped providers p may use right now (connected
// and visible): the ones a user's first list starts.
func (l *live) usable(p *switchboard.Principal) []string {
	sv := l.cur.Load()
	var out []string
	for name, pp := range sv.policy.Providers {
		if pp.UserScoped && sv.policy.Why(p, name) == auth.AxisNone {
			out = append(out, name)
		}
	}
	return out
}

// instructions is the initialize instructions: an index of the skills of the
// providers the caller can see.
func (l *live) instructions(ctx context.Context, visible []string) string {
	sv := l.cur.Load()
	var sks []*skills.Skill
	for _, p := range visible {
		if sk := sv.skills[p]; sk != nil {
			sks = append(sks, sk)
		}
	}
	return "Switchboard gateway: tools are named <provider>__<tool>.\n\n" + skills.Index(sks)
}

// extras are the skills served for every configured provider that has one:
// a resource skill://<prefix>/SKILL.md and a prompt <prefix>__skill. They
// belong to their provider, so a caller who cannot see the provider cannot
// see its skill.
func (l *live) extras() mux.Extras {
	sv := l.cur.Load()
	var ex mux.Extras
	for _, p := range sv.cfg.SortedProviders() {
		sk := sv.skills[p.Name]
		if sk == nil {
			continue
		}
		ex.Resources = append(ex.Resources, mux.ExtraResource{Provider: p.Name, Text: sk.Body, URI: skills.URI(p.Name),
			Name: p.Name + " usage skill", Description: sk.Description, MIMEType: "text/markdown"})
		ex.Prompts = append(ex.Prompts, mux.ExtraPrompt{Provider: p.Name, Text: sk.Content(),
			Name: skills.PromptName(p.Name), Description: "How to use " + p.Name + ": " + sk.Description})
	}
	return ex
}

// staleReport is what `validate --live` learns from a running gateway: which
// copy of each skill it checked, and what is wrong.
type staleReport struct {
	LoadedAt time.Time         `json:"loaded_at"`
	Skills   map[string]string `json:"skills"` // provider → the file (or builtin:) served
	Problems []string          `json:"problems"`
}

// stale compares every served skill with its provider's live tools and
// prompts in m, and reports the items providers expose that clash with the
// gateway's names or each other's.
func (l *live) stale(m *mux.Server) staleReport {
	sv := l.cur.Load()
	rep := staleReport{LoadedAt: sv.loaded, Skills: map[string]string{}, Problems: []string{}}
	for _, p := range sv.cfg.SortedProviders() {
		sk := sv.skills[p.Name]
		if sk == nil {
			continue
		}
		rep.Skills[p.Name] = sk.Path
		names := m.ProviderTools(p.Name)
		if len(names) == 0 {
			if !p.UserScoped() { // a user-scoped one shows tools once a user's instance ran
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s: provider %s exposes no tools right now (is it running? see /status)", sk.Path, p.Name))
			}
			continue
		}
		names = append(names, m.ProviderPrompts(p.Name)...)
		if stale := skills.StaleTools(sk, p.Name, names); len(stale) > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: mentions tools %s has no longer: %s (quoting an error text that names a wrong tool? put it in an ```error block or end the line with <!-- quoted -->)",
				sk.Path, p.Name, strings.Join(stale, ", ")))
		}
	}
	for _, p := range m.Problems() {
		if strings.Contains(p, "gateway's") || strings.Contains(p, "collides") || strings.Contains(p, "also served") {
			rep.Problems = append(rep.Problems, sv.cfg.Path+": "+p)
		}
	}
	sort.Strings(rep.Problems)
	return rep
}

// bindings says which skill each provider of cfg uses.
func bindings(cfg *providers.Config) []skills.Binding {
	var out []skills.Binding
	for _, p := range cfg.SortedProviders() {
		out = append(out, skills.Binding{Prefix: p.Name, Skill: p.Skill, Note: p.SkillNote, Enabled: p.IsEnabled()})
	}
	return out
}

// skillProblems checks the skills of cfg's providers.
func skillProblems(cfg *providers.Config) []string {
	set, errs := skills.Load(skills.Builtin(), cfg.Skills.Dir)
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	required := cfg.Skills.Required == nil || *cfg.Skills.Required
	for _, p := range skills.ValidateBindings(set, bindings(cfg), required) {
		out = append(out, p.String())
	}
	return out
}

// policyOf compiles the visibility policy of cfg, over the users'
// connections and preferences in id.
func policyOf(cfg *providers.Config, id *identity) *auth.Policy {
	pol := &auth.Policy{
		Providers:   map[string]auth.ProviderPolicy{},
		Disabled:    map[string]bool{},
		Roles:       map[string]auth.RolePolicy{},
		DefaultRole: cfg.DefaultRole,
		Services:    map[string][]string{},
	}
	if id != nil {
		pol.Users = userState{prefs: id.prefs, vault: id.vault}
	}
	for name, p := range cfg.Providers {
		if !p.IsEnabled() {
			pol.Disabled[name] = true
			continue
		}
		pol.Providers[name] = auth.ProviderPolicy{
			InternalOnly: p.InternalOnly, Public: p.Public, UserScoped: p.UserScoped(),
			ReadOnly: p.ReadOnly, Allow: p.Tools.Allow, Deny: p.Tools.Deny,
		}
	}
	for name, r := range cfg.Roles {
		if r != nil {
			pol.Roles[name] = auth.RolePolicy{Providers: r.Providers, Tools: r.Tools}
		}
	}
	for name, s := range cfg.Services {
		if s != nil {
			pol.Services[name] = s.AllowedProviderPrefixes
		}
	}
	return pol
}
