package skills

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
)

// builtinFolders is every skill folder that must ship in the binary.
var builtinFolders = []string{
	"adding-a-provider",
	"echo", "everything", "filesystem", "github", "memory", "notes",
}

func TestBuiltinSkills(t *testing.T) {
	files, err := fs.Glob(Builtin(), "*/"+FileName)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range files {
		folder := path.Dir(f)
		got[folder] = true
		t.Run(folder, func(t *testing.T) {
			data, err := fs.ReadFile(Builtin(), f)
			if err != nil {
				t.Fatal(err)
			}
			sk, err := Parse(f, data)
			if err != nil {
				t.Fatalf("front matter: %v", err)
			}
			if sk.Words >= MaxWords {
				t.Errorf("%d words after the front matter; must be under %d", sk.Words, MaxWords)
			}
			if total := len(strings.Fields(string(data))); total >= MaxWords {
				t.Errorf("%d words including the front matter (wc -w); keep the whole file under %d", total, MaxWords)
			}
			if sk.Meta() {
				if sk.Name != folder {
					t.Errorf("meta skill name %q differs from its folder %q", sk.Name, folder)
				}
				return
			}
			if sk.Provider != folder {
				t.Errorf("front matter provider %q differs from folder %q", sk.Provider, folder)
			}
			if !strings.Contains(sk.Content(), "`"+folder+"__") {
				t.Errorf("skill never names a tool as `%s__<tool>`", folder)
			}
			for _, heading := range []string{"## When to use it", "## Retry or escalate"} {
				if !strings.Contains(sk.Content(), heading) {
					t.Errorf("skill has no %q section", heading)
				}
			}
		})
	}
	for _, want := range builtinFolders {
		if !got[want] {
			t.Errorf("built-in skill %s/%s is missing", want, FileName)
		}
	}

	set, errs := Load(Builtin(), "")
	if len(errs) > 0 {
		t.Fatalf("Load(Builtin()): %v", errs)
	}
	enabled := map[string]bool{}
	for prefix := range set.Providers {
		enabled[prefix] = true
	}
	if ps := Validate(set, enabled, true); len(ps) > 0 {
		t.Errorf("Validate(builtin) = %v, want no problems", ps)
	}
	if set.Meta["adding-a-provider"] == nil {
		t.Error("adding-a-provider is not loaded as a meta skill")
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"bad-kind.bad.md", `testdata/bad-kind.bad.md:5: kind "tutorial" is not valid: want "provider" or "meta"`},
		{"bad-name.bad.md", `testdata/bad-name.bad.md:2: name "My Notes" must be 1-64 lowercase letters, digits and hyphens`},
		{"bad-provider.bad.md", `testdata/bad-provider.bad.md:4: provider "Notes_Store" is not a valid prefix: want [a-z0-9][a-z0-9-]*`},
		{"description-list.bad.md", `testdata/description-list.bad.md:4: description must be a string`},
		{"duplicate-key.bad.md", `testdata/duplicate-key.bad.md:5: key "name" is already defined at line 2`},
		{"empty-description.bad.md", `testdata/empty-description.bad.md:3: description is required`},
		{"empty-front-matter.bad.md", `testdata/empty-front-matter.bad.md:2: front matter is empty: name, description and provider are required`},
		{"meta-with-provider.bad.md", `testdata/meta-with-provider.bad.md:4: a kind: meta skill must not name a provider (got "notes")`},
		{"missing-description.bad.md", `testdata/missing-description.bad.md:4: description is required`},
		{"missing-name.bad.md", `testdata/missing-name.bad.md:4: name is required`},
		{"missing-provider.bad.md", `testdata/missing-provider.bad.md:4: provider is required (or kind: meta for a skill that belongs to no provider)`},
		{"no-front-matter.bad.md", `testdata/no-front-matter.bad.md:1: missing front matter: the first line must be "---"`},
		{"not-a-mapping.bad.md", `testdata/not-a-mapping.bad.md:2: front matter must be a mapping of keys to values`},
		{"unclosed.bad.md", `testdata/unclosed.bad.md:1: front matter is not closed: no "---" line after line 1`},
		{"unknown-key.bad.md", `testdata/unknown-key.bad.md:5: unknown key "version" (allowed: name, description, provider, kind)`},
		{"yaml-syntax.bad.md", `testdata/yaml-syntax.bad.md:3: invalid front matter: mapping values are not allowed in this context (quote a value that contains ": ")`},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			p := "testdata/" + tt.file
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sk, err := Parse(p, data)
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error %q", sk, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Path != p {
				t.Errorf("error %T does not carry the path %q", err, p)
			}
			if code, msg := switchboard.ErrorCode(err), switchboard.ErrorMessage(err); code != switchboard.EINVALID || msg != tt.want {
				t.Errorf("ErrorCode, ErrorMessage = %q, %q", code, msg)
			}
		})
	}
	files, err := filepath.Glob("testdata/*.bad.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no expected error in the table", f)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		check func(t *testing.T, s *Skill)
		err   string
	}{
		{
			name: "provider skill",
			data: "---\nname: notes\ndescription: Notes store.\nprovider: notes\n---\n\n# Notes\n\none two three\n",
			check: func(t *testing.T, s *Skill) {
				if s.Name != "notes" || s.Description != "Notes store." || s.Provider != "notes" || s.Kind != KindProvider {
					t.Errorf("got %+v", s)
				}
				if s.Words != 5 {
					t.Errorf("Words = %d, want 5 (front matter excluded)", s.Words)
				}
				if s.Content() != "\n# Notes\n\none two three\n" {
					t.Errorf("Content = %q", s.Content())
				}
				if !strings.HasPrefix(s.Body, "---\nname: notes\n") {
					t.Errorf("Body does not keep the front matter: %q", s.Body)
				}
				if s.Prefix() != "notes" || s.Meta() {
					t.Errorf("Prefix = %q, Meta = %v", s.Prefix(), s.Meta())
				}
			},
		},
		{
			name: "meta skill without provider",
			data: "---\nname: adding-a-provider\nkind: meta\ndescription: How.\n---\nbody\n",
			check: func(t *testing.T, s *Skill) {
				if !s.Meta() || s.Provider != "" {
					t.Errorf("got %+v", s)
				}
			},
		},
		{
			name: "meta skill with null provider",
			data: "---\nname: adding-a-provider\nkind: meta\nprovider:\ndescription: How.\n---\nbody\n",
			check: func(t *testing.T, s *Skill) {
				if !s.Meta() {
					t.Errorf("got %+v", s)
				}
			},
		},
		{
			name: "explicit kind provider",
			data: "---\nname: x\nkind: provider\ndescription: X.\nprovider: x\n---\n",
			check: func(t *testing.T, s *Skill) {
				if s.Kind != KindProvider || s.Words != 0 {
					t.Errorf("got %+v", s)
				}
			},
		},
		{
			name: "CRLF and BOM",
			data: "\uFEFF---\r\nname: notes\r\ndescription: >\r\n  Folded\r\n  text.\r\nprovider: notes\r\n---\r\nhello world\r\n",
			check: func(t *testing.T, s *Skill) {
				if s.Provider != "notes" || s.Description != "Folded text." || s.Words != 2 {
					t.Errorf("got %+v", s)
				}
			},
		},
		{
			name: "quoted values",
			data: "---\nname: \"notes\"\ndescription: 'Notes: the store'\nprovider: notes\n---\n",
			check: func(t *testing.T, s *Skill) {
				if s.Description != "Notes: the store" {
					t.Errorf("Description = %q", s.Description)
				}
			},
		},
		{
			name: "number is not a string",
			data: "---\nname: notes\ndescription: Notes.\nprovider: 42\n---\n",
			err:  "x.md:4: provider must be a string",
		},
		{
			name: "description too long",
			data: "---\nname: notes\ndescription: " + strings.Repeat("a", MaxDescription+1) + "\nprovider: notes\n---\n",
			err:  "x.md:3: description is 1025 characters; the limit is 1024",
		},
		{
			name: "name too long",
			data: "---\nname: " + strings.Repeat("a", 65) + "\ndescription: d\nprovider: notes\n---\n",
			err:  `x.md:2: name "` + strings.Repeat("a", 65) + `" must be 1-64 lowercase letters, digits and hyphens`,
		},
		{
			name: "invalid UTF-8",
			data: "---\nname: n\xff\n---\n",
			err:  "x.md: file is not valid UTF-8",
		},
		{
			name: "empty file",
			data: "",
			err:  `x.md:1: missing front matter: the first line must be "---"`,
		},
		{
			name: "key that is not a string",
			data: "---\n? [a, b]\n: c\nname: n\n---\n",
			err:  "x.md:2: front matter keys must be plain strings",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("x.md", []byte(tt.data))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Path != "x.md" {
				t.Errorf("Path = %q", s.Path)
			}
			tt.check(t, s)
		})
	}
}

func TestURIAndPromptName(t *testing.T) {
	if got := URI("alpha-fs"); got != "skill://alpha-fs/SKILL.md" {
		t.Errorf("URI = %q", got)
	}
	if got := PromptName("alpha-fs"); got != "alpha-fs__skill" {
		t.Errorf("PromptName = %q", got)
	}
}
