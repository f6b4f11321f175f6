package skills

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// maxFileSize bounds how much of a skill file Load reads; a skill is a page of
// markdown, so anything larger is a mistake.
const maxFileSize = 1 << 20

// Set is every skill the gateway knows: provider usage skills by prefix (the
// folder they are filed under) and meta skills by folder name. Invalid holds the
// files that failed to parse, so that Validate reports them. A Set is not
// changed after Load and is safe for concurrent reads.
type Set struct {
	Providers map[string]*Skill
	Meta      map[string]*Skill
	Invalid   []*ParseError
	Dir       string // the operator's skills_dir, "" when none

	builtin map[string]bool // folders of the built-in skills
}

// Get returns the usage skill of the provider with the given prefix, or nil.
func (s Set) Get(prefix string) *Skill { return s.Providers[prefix] }

// Visible returns the usage skills of the given prefixes that have one, sorted by
// prefix; it is what a caller who sees exactly those providers is served.
func (s Set) Visible(prefixes []string) []*Skill {
	var out []*Skill
	seen := map[string]bool{}
	for _, p := range prefixes {
		if sk := s.Providers[p]; sk != nil && !seen[p] {
			seen[p] = true
			out = append(out, sk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix() < out[j].Prefix() })
	return out
}

// Load reads the built-in skills (every <folder>/SKILL.md in builtin, which may
// be nil) and then, when dir is not "", the operator's skills from
// <dir>/<folder>/SKILL.md; an operator's skill replaces the built-in one filed
// under the same folder. A file that fails to parse is reported in the returned
// errors and in Set.Invalid, and a built-in it meant to replace stays in force.
// Load keeps going after an error, so the set holds every skill it could read.
func Load(builtin fs.FS, dir string) (Set, []error) {
	set := Set{Providers: map[string]*Skill{}, Meta: map[string]*Skill{}, Dir: dir, builtin: foldersOf(builtin)}
	var errs []error
	add := func(folder, p string, data []byte, isBuiltin bool) {
		sk, err := Parse(p, data)
		if err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				set.Invalid = append(set.Invalid, pe)
			}
			errs = append(errs, err)
			return
		}
		sk.Dir = folder
		sk.Builtin = isBuiltin
		if sk.Meta() {
			delete(set.Providers, folder)
			set.Meta[folder] = sk
		} else {
			delete(set.Meta, folder)
			set.Providers[folder] = sk
		}
	}
	if builtin != nil {
		files, err := fs.Glob(builtin, "*/"+FileName)
		if err != nil {
			errs = append(errs, fmt.Errorf("loading built-in skills: %w", err))
		}
		for _, f := range files {
			data, err := fs.ReadFile(builtin, f)
			if err != nil {
				errs = append(errs, fmt.Errorf("loading built-in skill %s: %w", f, err))
				continue
			}
			add(path.Dir(f), "builtin:"+f, data, true)
		}
	}
	if dir == "" {
		return set, errs
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return set, append(errs, fmt.Errorf("loading skills from %s: %w", dir, err))
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name(), FileName)
		data, err := readSmall(p)
		if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
			continue // a file or a folder without a skill: not ours
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("loading skill %s: %w", p, err))
			continue
		}
		add(e.Name(), p, data, false)
	}
	return set, errs
}

func readSmall(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("file is %d bytes; a skill may be at most %d", fi.Size(), maxFileSize)
	}
	return os.ReadFile(p)
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// Problem is one reason a skill set is not fit to serve. Path names the file,
// or where a missing skill should be written ("" when there is no skills_dir);
// Line is 0 when the problem concerns a whole file.
type Problem struct {
	Path    string
	Line    int
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.Path, p.Line, p.Message)
	}
	if p.Path != "" {
		return fmt.Sprintf("%s: %s", p.Path, p.Message)
	}
	return p.Message
}

// Validate checks set against the configured providers: the keys of providers
// are the prefixes declared in gateway.yaml, and a value is true when that
// provider is enabled. It reports every file that failed to parse; every skill
// over MaxWords words; every skill whose front matter provider differs from the
// folder it is filed under; every operator skill (from Set.Dir) filed under a
// folder that names no configured provider, unless it is a meta skill; and, when
// required is true, every enabled provider without a usage skill. Built-in
// skills for providers the config does not declare are a library, not an error.
// Problems are sorted by path, then line.
func Validate(set Set, providers map[string]bool, required bool) []Problem {
	var out []Problem
	invalidFolder := map[string]bool{}
	for _, pe := range set.Invalid {
		out = append(out, Problem{Path: pe.Path, Line: pe.Line, Message: pe.Msg})
		invalidFolder[folderOf(pe.Path)] = true
	}
	check := func(sk *Skill) {
		if sk.Words > MaxWords {
			out = append(out, Problem{Path: sk.Path, Message: fmt.Sprintf(
				"skill has %d words after its front matter; the limit is %d", sk.Words, MaxWords)})
		}
	}
	for folder, sk := range set.Providers {
		check(sk)
		if sk.Provider != folder {
			out = append(out, Problem{Path: sk.Path, Line: sk.providerLine, Message: fmt.Sprintf(
				"front matter provider %q differs from the folder it is filed under (%q); they must both be the provider's prefix",
				sk.Provider, folder)})
		}
		if _, ok := providers[folder]; !ok && !sk.Builtin {
			out = append(out, Problem{Path: sk.Path, Message: fmt.Sprintf(
				"skill folder %q names no provider in gateway.yaml (a typo in the prefix, or a removed provider?)", folder)})
		}
	}
	for _, sk := range set.Meta {
		check(sk)
	}
	if required {
		for prefix, enabled := range providers {
			if !enabled || set.Providers[prefix] != nil || invalidFolder[prefix] {
				continue
			}
			switch {
			case set.Meta[prefix] != nil:
				out = append(out, Problem{Path: set.Meta[prefix].Path, Message: fmt.Sprintf(
					"provider %q has no usage skill: the skill filed under its prefix is a kind: meta skill", prefix)})
			case set.Dir != "":
				where := filepath.Join(set.Dir, prefix, FileName)
				out = append(out, Problem{Path: where, Message: fmt.Sprintf(
					"provider %q has no usage skill: write %s", prefix, where)})
			default:
				out = append(out, Problem{Message: fmt.Sprintf(
					"provider %q has no usage skill: none is built in; set skills.dir in gateway.yaml and write %s/%s there",
					prefix, prefix, FileName)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Message < out[j].Message
	})
	return out
}

// folderOf returns the folder a skill path is filed under ("builtin:x/SKILL.md"
// and "dir/x/SKILL.md" both give "x").
func folderOf(p string) string {
	p = strings.TrimPrefix(p, "builtin:")
	return filepath.Base(filepath.Dir(filepath.FromSlash(p)))
}

// toolChars are the characters a tool name may contain after the prefix.
const toolChars = `[A-Za-z0-9_.-]`

// StaleTools returns the tools s mentions as <prefix>__<name>, in backticks or
// plain text, that are not in tools, the live provider's names (either as the
// provider names them or already namespaced). Prompts are namespaced the same
// way, so pass the provider's prompt names too; <prefix>__skill, the gateway's
// own prompt, never counts as stale. A mention followed by "*" is a glob and is
// ignored, and so is a longer prefix that merely ends in prefix ("alpha-fs__x"
// when checking "fs"). So is a quoted error text: a fenced block whose info
// string is "error", or a line carrying the comment <!-- quoted --> (a
// server's own message naming a tool that does not exist, written down as a
// pitfall). Names are returned namespaced, sorted, without duplicates.
func StaleTools(s *Skill, prefix string, tools []string) []string {
	if s == nil || prefix == "" {
		return nil
	}
	have := map[string]bool{}
	for _, t := range tools {
		have[strings.TrimPrefix(t, prefix+"__")] = true
	}
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_-])` + regexp.QuoteMeta(prefix) + `__(` + toolChars + `+)`)
	seen := map[string]bool{}
	var out []string
	body := checkable(s.Body)
	for _, m := range re.FindAllStringSubmatchIndex(body, -1) {
		name := body[m[4]:m[5]]
		if m[5] < len(body) && body[m[5]] == '*' {
			continue
		}
		// Sentence punctuation is not part of the name: "call fs__read_file."
		name = strings.TrimRight(name, ".-")
		if name == "" || name == "skill" || have[name] || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, prefix+"__"+name)
	}
	sort.Strings(out)
	return out
}

// IndexHeader is the first line of Index's output.
const IndexHeader = "Usage skills for your providers (read a provider's skill before its first use; resource or prompt):"

// Index renders the short skill index the gateway puts in the instructions of
// its initialize result: a header line, then one line per visible provider skill,
// sorted by prefix. Meta skills and nil entries are skipped. It returns "" when
// there is nothing to list.
func Index(visible []*Skill) string {
	byPrefix := map[string]*Skill{}
	var prefixes []string
	for _, sk := range visible {
		if sk == nil || sk.Meta() {
			continue
		}
		p := sk.Prefix()
		if p == "" || byPrefix[p] != nil {
			continue
		}
		byPrefix[p] = sk
		prefixes = append(prefixes, p)
	}
	if len(prefixes) == 0 {
		return ""
	}
	sort.Strings(prefixes)
	var b strings.Builder
	b.WriteString(IndexHeader + "\n")
	for _, p := range prefixes {
		desc := strings.Join(strings.Fields(byPrefix[p].Description), " ")
		fmt.Fprintf(&b, "- %s: %s (skill: %s, prompt: %s)\n", p, desc, URI(p), PromptName(p))
	}
	return b.String()
}
