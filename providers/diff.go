package providers

import (
	"reflect"
	"sort"
)

// Changes is what a reload must do to go from one config to the next.
type Changes struct {
	Added      []string // providers to start
	Removed    []string // providers to stop
	Restarted  []string // providers whose process-level spec changed
	PolicyOnly []string // providers whose policy changed; no process restarts
	// NeedsRestart names settings that changed but cannot apply without
	// restarting the gateway; they keep their old values until then.
	NeedsRestart []string
	// PolicyChanged is true if anything that affects visibility changed.
	PolicyChanged bool
	// AccessChanged is true if roles, default_role, services or auth changed.
	AccessChanged bool
}

// Disruptive reports whether applying the change stops or restarts a running
// provider, or changes what callers may see or do (a provider's policy, roles,
// default_role, services, auth). A valid prefix of a file that is still being
// written looks like such a change (trailing providers, env entries, deny
// lists or roles missing), so the file watcher applies a disruptive change
// written in place only once the file has been stable for longer.
func (c Changes) Disruptive() bool {
	return len(c.Removed)+len(c.Restarted)+len(c.PolicyOnly) > 0 || c.AccessChanged
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Restarted)+len(c.PolicyOnly)+len(c.NeedsRestart) == 0 && !c.PolicyChanged
}

// Diff compares two configs. A provider restarts when anything about its process
// changes (command or url, args, env, headers, oauth, dir, scope, connection,
// limits, enabled); changes to
// its policy (description, tools, read_only, internal_only, public) apply live.
// Secret values are not visible here: the caller restarts providers whose resolved
// secrets changed.
func Diff(old, cur *Config) Changes {
	var ch Changes
	for _, p := range cur.SortedProviders() {
		o, ok := old.Providers[p.Name]
		switch {
		case !ok || (!o.IsEnabled() && p.IsEnabled()):
			if p.IsEnabled() {
				ch.Added = append(ch.Added, p.Name)
			}
		case o.IsEnabled() && !p.IsEnabled():
			ch.Removed = append(ch.Removed, p.Name)
		case !p.IsEnabled():
		case !SameProcess(o, p):
			ch.Restarted = append(ch.Restarted, p.Name)
		case !samePolicy(o, p):
			ch.PolicyOnly = append(ch.PolicyOnly, p.Name)
		}
	}
	for name, o := range old.Providers {
		if _, ok := cur.Providers[name]; !ok && o.IsEnabled() {
			ch.Removed = append(ch.Removed, name)
		}
	}
	sort.Strings(ch.Removed)
	if old.Listen != cur.Listen {
		ch.NeedsRestart = append(ch.NeedsRestart, "listen")
	}
	if old.DataDir != cur.DataDir {
		ch.NeedsRestart = append(ch.NeedsRestart, "data_dir")
	}
	if old.Vault != cur.Vault {
		ch.NeedsRestart = append(ch.NeedsRestart, "vault")
	}
	if !reflect.DeepEqual(old.Audit, cur.Audit) {
		ch.NeedsRestart = append(ch.NeedsRestart, "audit")
	}
	if !reflect.DeepEqual(old.Store, cur.Store) {
		ch.NeedsRestart = append(ch.NeedsRestart, "store")
	}
	if old.Replica != cur.Replica {
		ch.NeedsRestart = append(ch.NeedsRestart, "replica")
	}
	if old.Sessions != cur.Sessions {
		ch.NeedsRestart = append(ch.NeedsRestart, "sessions")
	}
	if old.Server != cur.Server {
		ch.NeedsRestart = append(ch.NeedsRestart, "server")
	}
	ch.AccessChanged = !reflect.DeepEqual(old.Roles, cur.Roles) ||
		old.DefaultRole != cur.DefaultRole ||
		!reflect.DeepEqual(old.Services, cur.Services) ||
		!reflect.DeepEqual(old.Auth, cur.Auth)
	ch.PolicyChanged = len(ch.PolicyOnly) > 0 || ch.AccessChanged ||
		!reflect.DeepEqual(old.Skills, cur.Skills) ||
		old.Log != cur.Log
	return ch
}

// SameProcess reports whether two provider specs would run the same process.
func SameProcess(a, b *Provider) bool {
	return a.Command == b.Command &&
		reflect.DeepEqual(nilIfEmpty(a.Args), nilIfEmpty(b.Args)) &&
		reflect.DeepEqual(nilIfEmptyMap(a.Env), nilIfEmptyMap(b.Env)) &&
		a.Dir == b.Dir && a.Scope == b.Scope && a.Protocol == b.Protocol &&
		reflect.DeepEqual(a.Connection, b.Connection) &&
		a.Limits == b.Limits && a.IsEnabled() == b.IsEnabled() &&
		a.URL == b.URL && a.Transport == b.Transport &&
		reflect.DeepEqual(nilIfEmptyMap(a.Headers), nilIfEmptyMap(b.Headers)) &&
		reflect.DeepEqual(a.OAuth, b.OAuth)
}

func samePolicy(a, b *Provider) bool {
	return a.Description == b.Description && a.InternalOnly == b.InternalOnly &&
		a.Public == b.Public && a.ReadOnly == b.ReadOnly &&
		reflect.DeepEqual(a.Tools, b.Tools)
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
