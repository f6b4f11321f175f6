// Package skills parses, loads, validates and indexes the usage skill of every provider and the provider-addition meta-skill.
package skills

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-mcp/switchboard"
)

//go:embed */SKILL.md
var builtin embed.FS

// Builtin returns the skills compiled into the binary: every */SKILL.md under
// the skills/ directory of the repository.
func Builtin() fs.FS { return builtin }

// FileName is the name of a skill file inside its folder.
const FileName = "SKILL.md"

// MaxWords is the largest number of words a skill's body may have, not counting
// its front matter.
const MaxWords = 1000

// MaxDescription is the longest description, in characters, a skill may have.
const MaxDescription = 1024

// KindMeta marks a skill that belongs to no provider, such as adding-a-provider.
const KindMeta = "meta"

// KindProvider is the default kind: the usage skill of one provider.
const KindProvider = "provider"

// Skill is one parsed SKILL.md.
type Skill struct {
	Name        string // front matter "name"
	Description string // front matter "description"
	Provider    string // front matter "provider"; "" only for meta skills
	Kind        string // KindProvider or KindMeta
	Body        string // the whole file: markdown including the front matter
	Words       int    // words in the body after the front matter, as counted by strings.Fields
	Path        string // where the skill was read from, for messages
	Dir         string // the folder the skill was filed under: the provider prefix; set by Load
	Builtin     bool   // compiled into the binary rather than read from an operator's skills_dir

	content      string // Body without the front matter
	providerLine int    // line of the provider key, 0 when absent
}

// Meta reports whether s is a meta skill rather than a provider's usage skill.
func (s *Skill) Meta() bool { return s.Kind == KindMeta }

// Content returns the markdown after the front matter.
func (s *Skill) Content() string { return s.content }

// Prefix returns the provider prefix s serves: the folder it was filed under
// when it came from Load, its front matter provider otherwise.
func (s *Skill) Prefix() string {
	if s.Dir != "" {
		return s.Dir
	}
	return s.Provider
}

// ParseError is a skill file that cannot be used; it names the file and line.
type ParseError struct {
	Path string
	Line int // 1-based; 0 when the error concerns the whole file
	Msg  string
}

// Unwrap lets switchboard.ErrorCode report EINVALID and switchboard.ErrorMessage
// show the whole message, file and line included.
func (e *ParseError) Unwrap() error {
	return &switchboard.Error{Code: switchboard.EINVALID, Message: e.Error()}
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

var (
	namePattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	prefixPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	yamlLine      = regexp.MustCompile(`^line (\d+): `)
)

// URI returns the MCP resource URI under which the gateway serves the skill of prefix.
func URI(prefix string) string { return "skill://" + prefix + "/" + FileName }

// PromptName returns the name of the MCP prompt that carries the skill of prefix.
func PromptName(prefix string) string { return prefix + "__skill" }

// Parse parses one SKILL.md. The file starts with YAML front matter between two
// "---" lines holding name, description and provider (or kind: meta instead of
// provider); any other key is an error. Errors are *ParseError values naming path
// and the offending line.
func Parse(path string, data []byte) (*Skill, error) {
	perr := func(line int, format string, args ...any) error {
		return &ParseError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if !utf8.Valid(data) {
		return nil, perr(0, "file is not valid UTF-8")
	}
	text := strings.TrimPrefix(string(data), "\uFEFF")
	lines := strings.SplitAfter(text, "\n")
	if len(lines) == 0 || trimEOL(lines[0]) != "---" {
		return nil, perr(1, `missing front matter: the first line must be "---"`)
	}
	end := -1
	for i := 1; i < len(lines); i++ {
		if trimEOL(lines[i]) == "---" {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, perr(1, `front matter is not closed: no "---" line after line 1`)
	}
	front := strings.Join(lines[1:end], "")
	content := strings.Join(lines[end+1:], "")

	s := &Skill{
		Body:    text,
		Path:    path,
		Kind:    KindProvider,
		content: content,
		Words:   len(strings.Fields(content)),
	}
	// Front matter line n (1-based within front) is file line n+1.
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(front), &doc); err != nil {
		line := 0
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			line = n + 1
			msg = strings.TrimPrefix(msg, m[0])
		}
		if strings.Contains(msg, "mapping values are not allowed") {
			msg += ` (quote a value that contains ": ")`
		}
		return nil, perr(line, "invalid front matter: %s", msg)
	}
	var m *yaml.Node
	if len(doc.Content) > 0 {
		m = doc.Content[0]
	}
	if m == nil || (m.Kind == yaml.ScalarNode && m.Tag == "!!null") {
		return nil, perr(2, "front matter is empty: name, description and provider are required")
	}
	if m.Kind != yaml.MappingNode {
		return nil, perr(m.Line+1, "front matter must be a mapping of keys to values")
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		line := k.Line + 1
		if k.Kind != yaml.ScalarNode {
			return nil, perr(line, "front matter keys must be plain strings")
		}
		if prev, dup := seen[k.Value]; dup {
			return nil, perr(line, "key %q is already defined at line %d", k.Value, prev)
		}
		seen[k.Value] = line
		var dst *string
		switch k.Value {
		case "name":
			dst = &s.Name
		case "description":
			dst = &s.Description
		case "provider":
			dst = &s.Provider
			s.providerLine = line
		case "kind":
			dst = &s.Kind
		default:
			return nil, perr(line, "unknown key %q (allowed: name, description, provider, kind)", k.Value)
		}
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			*dst = ""
		case v.Kind == yaml.ScalarNode && v.Tag == "!!str":
			*dst = strings.TrimSpace(v.Value)
		default:
			return nil, perr(v.Line+1, "%s must be a string", k.Value)
		}
	}
	line := func(key string) int {
		if l, ok := seen[key]; ok {
			return l
		}
		return end + 1 // the closing "---": where a missing key would go
	}
	switch {
	case s.Name == "":
		return nil, perr(line("name"), "name is required")
	case len(s.Name) > 64 || !namePattern.MatchString(s.Name):
		return nil, perr(line("name"), "name %q must be 1-64 lowercase letters, digits and hyphens", s.Name)
	case s.Description == "":
		return nil, perr(line("description"), "description is required")
	case utf8.RuneCountInString(s.Description) > MaxDescription:
		return nil, perr(line("description"), "description is %d characters; the limit is %d",
			utf8.RuneCountInString(s.Description), MaxDescription)
	}
	switch s.Kind {
	case "":
		s.Kind = KindProvider
		fallthrough
	case KindProvider:
		if s.Provider == "" {
			return nil, perr(line("provider"), "provider is required (or kind: meta for a skill that belongs to no provider)")
		}
		if !prefixPattern.MatchString(s.Provider) {
			return nil, perr(line("provider"), "provider %q is not a valid prefix: want [a-z0-9][a-z0-9-]*", s.Provider)
		}
	case KindMeta:
		if s.Provider != "" {
			return nil, perr(line("provider"), "a kind: meta skill must not name a provider (got %q)", s.Provider)
		}
	default:
		return nil, perr(line("kind"), "kind %q is not valid: want %q or %q", s.Kind, KindProvider, KindMeta)
	}
	return s, nil
}

func trimEOL(l string) string {
	return strings.TrimRight(l, " \t\r\n")
}
