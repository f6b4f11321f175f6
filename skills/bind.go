package skills

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Binding says which skill one provider uses. A skill is written for a kind
// of server ("filesystem", "github") and names its tools with the kind as
// prefix (`filesystem__read_text_file`); every provider that runs that
// server (alpha-fs, beta-fs) uses it with its own prefix substituted, and a
// note of its own for what differs (whose files, which account).
type Binding struct {
	// Prefix is the provider's prefix.
	Prefix string
	// Skill names the skill it uses ("" : the skill filed under Prefix).
	Skill string
	// Note is added to the skill for this provider only.
	Note    string
	Enabled bool
}

// Name returns the name of the skill b uses.
func (b Binding) Name() string {
	if b.Skill != "" {
		return b.Skill
	}
	return b.Prefix
}

// For returns the skill provider b serves, or nil when it has none: the skill
// b names (filed under that name, the operator's copy before the built-in
// one) with its own prefix replaced by b's wherever it names a tool or
// prompt, and b's note appended.
func (s Set) For(b Binding) *Skill {
	sk := s.Providers[b.Name()]
	if sk == nil {
		return nil
	}
	if sk.Prefix() == b.Prefix && b.Note == "" {
		return sk
	}
	from := sk.Prefix()
	content := renamePrefix(sk.content, from, b.Prefix)
	if b.Note != "" {
		content = strings.TrimRight(content, "\n") + "\n\n## For " + b.Prefix + "\n\n" + strings.TrimSpace(b.Note) + "\n"
	}
	desc := sk.Description
	body := fmt.Sprintf("---\nname: %s\ndescription: %q\nprovider: %s\n---\n", b.Prefix, desc, b.Prefix) + content
	out := *sk
	out.Name, out.Provider, out.Dir = b.Prefix, b.Prefix, b.Prefix
	out.Body, out.content = body, content
	out.Words = len(strings.Fields(content))
	if from != b.Prefix {
		out.Path = sk.Path + " (as " + b.Prefix + ")"
	}
	return &out
}

// renamePrefix replaces "<from>__" by "<to>__" where it starts a name (not
// inside a longer prefix such as "alpha-<from>__").
func renamePrefix(text, from, to string) string {
	if from == to {
		return text
	}
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_-])` + regexp.QuoteMeta(from) + `__`)
	return re.ReplaceAllString(text, "${1}"+to+"__")
}

// ValidateBindings is Validate for providers that may name the skill they
// use: every enabled provider's skill must exist (a `skill:` that names no
// skill is a problem of its own), and an operator's skill filed under a name
// some provider's `skill:` uses, or that names a built-in kind, is a library
// skill, not an orphan.
func ValidateBindings(set Set, bindings []Binding, required bool) []Problem {
	providers := map[string]bool{}
	var out []Problem
	for _, b := range bindings {
		providers[b.Prefix] = b.Enabled
		if b.Skill == "" {
			continue
		}
		providers[b.Skill] = providers[b.Skill] || false // a folder in use is not an orphan
		if b.Enabled && set.Providers[b.Skill] == nil {
			out = append(out, Problem{Path: set.Dir, Message: fmt.Sprintf(
				"provider %q uses skill %q (skill: in gateway.yaml), but no skill of that name is built in or in skills.dir", b.Prefix, b.Skill)})
		}
	}
	for name, sk := range set.Providers {
		if _, ok := providers[name]; !ok && !sk.Builtin && set.builtin[name] {
			providers[name] = false // the operator's copy of a built-in kind
		}
	}
	for _, p := range Validate(set, providers, required) {
		// A provider whose skill: names a missing skill is reported above.
		if strings.Contains(p.Message, "has no usage skill") && usesNamedSkill(bindings, p.Message) {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func usesNamedSkill(bindings []Binding, msg string) bool {
	for _, b := range bindings {
		if b.Skill != "" && strings.Contains(msg, fmt.Sprintf("provider %q", b.Prefix)) {
			return true
		}
	}
	return false
}

// Hash returns a digest of every skill file under dir (its names, sizes and
// bytes), so that a reload can tell whether the operator's skills changed.
// It is "" when dir is "".
func Hash(dir string) string {
	if dir == "" {
		return ""
	}
	h := sha256.New()
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(h, "error %v", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name(), FileName)
		data, err := readSmall(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s %d\n", p, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// quotedRe finds what StaleTools does not check: fenced code blocks whose
// info string starts with "error" (a quoted error text) and lines marked
// with an HTML comment <!-- quoted -->.
var quotedRe = regexp.MustCompile("(?ms)^[ \t]*(```|~~~)[ \t]*error[^\n]*\n.*?^[ \t]*(```|~~~)[ \t]*$|^[^\n]*<!--[ \t]*quoted[ \t]*-->[^\n]*$")

// checkable returns the skill text StaleTools reads: without quoted error texts.
func checkable(body string) string {
	return quotedRe.ReplaceAllString(body, "")
}

// foldersOf returns the folders of fsys's skills.
func foldersOf(fsys fs.FS) map[string]bool {
	out := map[string]bool{}
	if fsys == nil {
		return out
	}
	files, _ := fs.Glob(fsys, "*/"+FileName)
	for _, f := range files {
		out[filepath.Dir(f)] = true
	}
	return out
}
