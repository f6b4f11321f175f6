package providers

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
)

// headerNameRe is an HTTP field name (RFC 9110 §5.1 token).
var headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// reservedHeaders are set by the gateway on every request to a remote
// provider; a provider may not set them.
var reservedHeaders = map[string]bool{
	"Authorization": true, "Content-Type": true, "Accept": true, "Host": true, "Content-Length": true,
	"Mcp-Session-Id": true, "Mcp-Protocol-Version": true, "Mcp-Method": true, "Mcp-Name": true,
}

// validURL checks an http(s) URL a provider names: absolute, https unless
// on a loopback address, with no credentials and no fragment.
func validURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an absolute http:// or https:// URL", raw)
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return fmt.Errorf("%q must use https (http only on a loopback address)", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q must not carry credentials: use headers with ${secret:NAME}, or oauth", raw)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%q must not have a fragment", raw)
	}
	return nil
}

// validateRemote checks a url: provider.
func (c *Config) validateRemote(file string, p *Provider) []Problem {
	var ps []Problem
	path := "providers." + p.Name
	add := func(at, format string, args ...any) {
		ps = append(ps, Problem{File: file, Line: c.Line(at), Message: fmt.Sprintf(format, args...)})
	}
	if p.Command != "" || len(p.Args) > 0 || len(p.Env) > 0 {
		add(path, "provider %q: set command (with args, env) or url, not both", p.Name)
	}
	if err := validURL(p.URL); err != nil {
		add(path+".url", "provider %q: url %v", p.Name, err)
	}
	switch p.Transport {
	case "", "auto", "streamable-http", "sse":
	default:
		add(path+".transport", "provider %q: transport %q must be auto, streamable-http or sse", p.Name, p.Transport)
	}
	if p.Transport == "sse" && p.Protocol == "2026-07-28" {
		add(path+".protocol", "provider %q: the sse transport speaks 2024-11-05; protocol 2026-07-28 needs streamable-http", p.Name)
	}
	if p.Limits.MaxMemoryMB != 0 || p.Limits.MaxCPU != 0 {
		add(path+".limits", "provider %q: max_memory_mb and max_cpu bound a process; a url provider has none here", p.Name)
	}
	if len(p.Connection.Secrets) > 0 {
		add(path+".connection.secrets", "provider %q: a url provider's users connect with oauth, not connection secrets", p.Name)
	}
	names := make([]string, 0, len(p.Headers))
	for k := range p.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		hpath := path + ".headers." + k
		switch {
		case !headerNameRe.MatchString(k):
			add(hpath, "provider %q: %q is not a valid header name", p.Name, k)
		case reservedHeaders[canonicalHeader(k)]:
			add(hpath, "provider %q: header %s is set by the gateway", p.Name, k)
		}
		ref, err := ParseEnvValue(p.Headers[k])
		switch {
		case err != nil:
			add(hpath, "provider %q: header %s: %v", p.Name, k, err)
		case ref.Kind == RefSecret && !secretNameRe.MatchString(ref.Name):
			add(hpath, "provider %q: header %s: secret name %q must match [A-Za-z_][A-Za-z0-9_]*", p.Name, k, ref.Name)
		}
	}
	return ps
}

// canonicalHeader is the canonical form of a header name.
func canonicalHeader(k string) string {
	b := []byte(k)
	upper := true
	for i, c := range b {
		switch {
		case upper && c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !upper && c >= 'A' && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return string(b)
}

// validateOAuth checks a provider's oauth connection.
func (c *Config) validateOAuth(file string, p *Provider) []Problem {
	var ps []Problem
	path := "providers." + p.Name + ".oauth"
	add := func(format string, args ...any) {
		ps = append(ps, Problem{File: file, Line: c.Line(path), Message: fmt.Sprintf("provider %q: oauth: ", p.Name) + fmt.Sprintf(format, args...)})
	}
	o := p.OAuth
	if p.Scope != ScopeUser {
		add("an oauth connection is a user's: it needs scope: user")
	}
	if len(p.Connection.Secrets) > 0 {
		add("set connection.secrets or oauth, not both")
	}
	for what, u := range map[string]string{"issuer": o.Issuer, "authorization_url": o.AuthorizationURL, "token_url": o.TokenURL, "revocation_url": o.RevocationURL} {
		if u == "" {
			continue
		}
		if err := validURL(u); err != nil {
			add("%s %v", what, err)
		}
	}
	if (o.AuthorizationURL == "") != (o.TokenURL == "") {
		add("authorization_url and token_url go together")
	}
	explicit := o.AuthorizationURL != ""
	if explicit && o.ClientID == "" {
		add("explicit endpoints need a client_id (there is no registration endpoint to use)")
	}
	if explicit && o.Issuer != "" {
		add("set issuer (discovery) or authorization_url and token_url, not both")
	}
	if o.ClientSecret != "" {
		ref, err := ParseEnvValue(o.ClientSecret)
		switch {
		case err != nil || ref.Kind != RefSecret:
			add("client_secret must be a ${secret:NAME} reference, never the value")
		case !secretNameRe.MatchString(ref.Name):
			add("client_secret: secret name %q must match [A-Za-z_][A-Za-z0-9_]*", ref.Name)
		}
		if o.ClientID == "" {
			add("client_secret without client_id")
		}
	}
	if p.URL != "" {
		if o.TokenEnv != "" || o.TokenFile != "" {
			add("token_env and token_file are for command providers; a url provider's requests carry the token")
		}
		return ps
	}
	if o.Issuer == "" && !explicit {
		add("a command provider needs the authorization server: issuer, or authorization_url and token_url")
	}
	switch {
	case o.TokenEnv == "" && o.TokenFile == "":
		add("say how the process gets the token: token_env (a new process on refresh) or token_file (rewritten on refresh)")
	case o.TokenEnv != "" && o.TokenFile != "":
		add("set token_env or token_file, not both")
	}
	for _, v := range []string{o.TokenEnv, o.TokenFile} {
		if v == "" {
			continue
		}
		if !envNameRe.MatchString(v) {
			add("%q is not a valid environment variable name", v)
		} else if _, clash := p.Env[v]; clash {
			add("%s is also set under env", v)
		}
	}
	return ps
}
