package skills

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// skillMD returns a SKILL.md for provider with a body of words words.
func skillMD(provider string, words int) string {
	return "---\nname: " + provider + "\ndescription: Use " + provider + ".\nprovider: " + provider +
		"\n---\n" + strings.TrimSpace(strings.Repeat("word ", words)) + "\n"
}

const metaMD = "---\nname: adding-a-provider\nkind: meta\ndescription: How to add a provider.\n---\n# Adding\n"

// mustWriteDir writes files (relative path → content) under a new temp dir.
func mustWriteDir(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, content := range files {
		m[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return m
}

func TestLoad(t *testing.T) {
	builtin := mapFS(map[string]string{
		"notes/SKILL.md":             skillMD("notes", 10),
		"fs/SKILL.md":                skillMD("fs", 10),
		"adding-a-provider/SKILL.md": metaMD,
		"README.md":                  "not a skill",
		"deep/er/SKILL.md":           skillMD("er", 1), // only <folder>/SKILL.md counts
	})

	t.Run("built-ins only", func(t *testing.T) {
		set, errs := Load(builtin, "")
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if got := sortedKeys(set.Providers); !slices.Equal(got, []string{"fs", "notes"}) {
			t.Errorf("providers = %v", got)
		}
		if set.Meta["adding-a-provider"] == nil {
			t.Error("meta skill not loaded")
		}
		n := set.Get("notes")
		if n == nil || !n.Builtin || n.Dir != "notes" || n.Path != "builtin:notes/SKILL.md" {
			t.Errorf("notes = %+v", n)
		}
		if set.Get("nope") != nil {
			t.Error("Get(nope) != nil")
		}
	})

	t.Run("operator dir overrides", func(t *testing.T) {
		dir := mustWriteDir(t, map[string]string{
			"notes/SKILL.md":   strings.Replace(skillMD("notes", 3), "Use notes.", "Our notes.", 1),
			"crm/SKILL.md":     skillMD("crm", 3),
			"empty/README.md":  "no skill here",
			"loose-file.md":    "ignored",
			".hidden/SKILL.md": "---\nbroken",
		})
		set, errs := Load(builtin, dir)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		n := set.Get("notes")
		if n == nil || n.Builtin || n.Description != "Our notes." || n.Path != filepath.Join(dir, "notes", "SKILL.md") {
			t.Errorf("notes = %+v", n)
		}
		if set.Get("fs") == nil || !set.Get("fs").Builtin {
			t.Error("built-in fs skill lost")
		}
		if set.Get("crm") == nil || set.Dir != dir {
			t.Errorf("crm = %v, Dir = %q", set.Get("crm"), set.Dir)
		}
		if got := sortedKeys(set.Providers); !slices.Equal(got, []string{"crm", "fs", "notes"}) {
			t.Errorf("providers = %v", got)
		}
	})

	t.Run("invalid override keeps the built-in and reports", func(t *testing.T) {
		dir := mustWriteDir(t, map[string]string{
			"notes/SKILL.md": "---\nname: notes\nprovider: notes\n---\n",
		})
		set, errs := Load(builtin, dir)
		want := filepath.Join(dir, "notes", "SKILL.md") + ":4: description is required"
		if len(errs) != 1 || errs[0].Error() != want {
			t.Fatalf("errs = %v, want [%s]", errs, want)
		}
		if len(set.Invalid) != 1 || set.Invalid[0].Line != 4 {
			t.Errorf("Invalid = %v", set.Invalid)
		}
		if n := set.Get("notes"); n == nil || !n.Builtin {
			t.Errorf("notes = %+v, want the built-in", n)
		}
	})

	t.Run("meta skill replaces a provider skill in the same folder", func(t *testing.T) {
		dir := mustWriteDir(t, map[string]string{"fs/SKILL.md": strings.Replace(metaMD, "adding-a-provider", "fs", 1)})
		set, errs := Load(builtin, dir)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if set.Get("fs") != nil || set.Meta["fs"] == nil {
			t.Errorf("fs: provider %v, meta %v", set.Get("fs"), set.Meta["fs"])
		}
	})

	t.Run("missing dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		set, errs := Load(builtin, dir)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "loading skills from "+dir) {
			t.Errorf("errs = %v", errs)
		}
		if set.Get("notes") == nil {
			t.Error("built-ins lost when the dir is missing")
		}
	})

	t.Run("no builtin", func(t *testing.T) {
		set, errs := Load(nil, "")
		if len(errs) > 0 || len(set.Providers) != 0 {
			t.Errorf("set = %+v, errs = %v", set, errs)
		}
	})

	t.Run("SKILL.md that is a directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "odd", "SKILL.md"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, errs := Load(nil, dir)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "not a regular file") {
			t.Errorf("errs = %v", errs)
		}
	})
}

func TestVisible(t *testing.T) {
	set, errs := Load(mapFS(map[string]string{
		"a/SKILL.md": skillMD("a", 1),
		"b/SKILL.md": skillMD("b", 1),
	}), "")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got []string
	for _, s := range set.Visible([]string{"b", "zzz", "a", "b"}) {
		got = append(got, s.Prefix())
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Visible = %v", got)
	}
}

func TestValidate(t *testing.T) {
	builtin := map[string]string{
		"notes/SKILL.md":             skillMD("notes", 10),
		"fs/SKILL.md":                skillMD("fs", 10),
		"adding-a-provider/SKILL.md": metaMD,
	}
	tests := []struct {
		name      string
		builtin   map[string]string
		dir       map[string]string // nil: no operator skills_dir
		providers map[string]bool
		required  bool
		want      []string // Problem.String(), with DIR for the operator dir
	}{
		{
			name:      "all good; unconfigured built-ins are fine",
			builtin:   builtin,
			providers: map[string]bool{"notes": true},
			required:  true,
		},
		{
			name:      "enabled provider without a skill",
			builtin:   builtin,
			providers: map[string]bool{"notes": true, "crm": true},
			required:  true,
			want:      []string{`provider "crm" has no usage skill: none is built in; set skills.dir in gateway.yaml and write crm/SKILL.md there`},
		},
		{
			name:      "missing skill names the operator dir",
			builtin:   builtin,
			dir:       map[string]string{},
			providers: map[string]bool{"crm": true},
			required:  true,
			want:      []string{`DIR/crm/SKILL.md: provider "crm" has no usage skill: write DIR/crm/SKILL.md`},
		},
		{
			name:      "missing skill not required",
			builtin:   builtin,
			providers: map[string]bool{"crm": true},
		},
		{
			name:      "disabled provider needs no skill",
			builtin:   builtin,
			providers: map[string]bool{"crm": false},
			required:  true,
		},
		{
			name:      "operator skill names no configured provider",
			builtin:   builtin,
			dir:       map[string]string{"crn/SKILL.md": skillMD("crn", 1), "runbook/SKILL.md": strings.Replace(metaMD, "adding-a-provider", "runbook", 1)},
			providers: map[string]bool{"crm": false},
			required:  true,
			want:      []string{`DIR/crn/SKILL.md: skill folder "crn" names no provider in gateway.yaml (a typo in the prefix, or a removed provider?)`},
		},
		{
			name:      "operator skill for a disabled provider is not an orphan",
			builtin:   builtin,
			dir:       map[string]string{"crm/SKILL.md": skillMD("crm", 1)},
			providers: map[string]bool{"crm": false},
			required:  true,
		},
		{
			name:      "front matter provider differs from folder",
			builtin:   map[string]string{"alpha-fs/SKILL.md": skillMD("fs", 1)},
			providers: map[string]bool{"alpha-fs": true},
			required:  true,
			want:      []string{`builtin:alpha-fs/SKILL.md:4: front matter provider "fs" differs from the folder it is filed under ("alpha-fs"); they must both be the provider's prefix`},
		},
		{
			name:      "over the word limit",
			builtin:   map[string]string{"notes/SKILL.md": skillMD("notes", MaxWords+1), "adding-a-provider/SKILL.md": metaMD + strings.Repeat("w ", MaxWords)},
			providers: map[string]bool{"notes": true},
			required:  true,
			want: []string{
				`builtin:adding-a-provider/SKILL.md: skill has 1002 words after its front matter; the limit is 1000`,
				`builtin:notes/SKILL.md: skill has 1001 words after its front matter; the limit is 1000`,
			},
		},
		{
			name:      "exactly at the word limit",
			builtin:   map[string]string{"notes/SKILL.md": skillMD("notes", MaxWords)},
			providers: map[string]bool{"notes": true},
			required:  true,
		},
		{
			name:      "invalid front matter is reported once",
			builtin:   map[string]string{"notes/SKILL.md": "---\nname: notes\ndescription: x\nprovider: notes\nowner: me\n---\n"},
			providers: map[string]bool{"notes": true},
			required:  true,
			want:      []string{`builtin:notes/SKILL.md:5: unknown key "owner" (allowed: name, description, provider, kind)`},
		},
		{
			name:      "a meta skill filed under a provider's prefix",
			builtin:   map[string]string{"notes/SKILL.md": strings.Replace(metaMD, "adding-a-provider", "notes", 1)},
			providers: map[string]bool{"notes": true},
			required:  true,
			want:      []string{`builtin:notes/SKILL.md: provider "notes" has no usage skill: the skill filed under its prefix is a kind: meta skill`},
		},
		{
			name:     "several problems sorted by path",
			builtin:  map[string]string{"b/SKILL.md": skillMD("x", 1)},
			dir:      map[string]string{"zz/SKILL.md": skillMD("zz", 1)},
			required: true,
			providers: map[string]bool{
				"a": true, "b": true,
			},
			want: []string{
				`DIR/a/SKILL.md: provider "a" has no usage skill: write DIR/a/SKILL.md`,
				`DIR/zz/SKILL.md: skill folder "zz" names no provider in gateway.yaml (a typo in the prefix, or a removed provider?)`,
				`builtin:b/SKILL.md:4: front matter provider "x" differs from the folder it is filed under ("b"); they must both be the provider's prefix`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := ""
			if tt.dir != nil {
				dir = mustWriteDir(t, tt.dir)
			}
			set, _ := Load(mapFS(tt.builtin), dir)
			var got []string
			for _, p := range Validate(set, tt.providers, tt.required) {
				s := p.String()
				if dir != "" {
					s = strings.ReplaceAll(s, dir, "DIR")
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestStaleTools(t *testing.T) {
	body := "---\nname: fs\ndescription: d\nprovider: fs\n---\n" +
		"Use `fs__read_text_file` first, then fs__write_file.\n" +
		"Never `fs__delete_file`; fs__gone_tool, and again `fs__gone_tool`.\n" +
		"Client tools like `alpha-fs__read_text_file` and xfs__nope are not ours.\n" +
		"Globs are fine: `fs__read_*`, fs__*.\n" +
		"Hyphens: `fs__get-env`. End of sentence: fs__list_directory.\n" +
		"The gateway prompt `fs__skill` is ours too.\n" +
		"Placeholder: `<prefix>__<tool>`.\n"
	s, err := Parse("fs/SKILL.md", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		tools []string
		want  []string
	}{
		{
			name:  "plain names",
			tools: []string{"read_text_file", "write_file", "get-env", "list_directory"},
			want:  []string{"fs__delete_file", "fs__gone_tool"},
		},
		{
			name:  "namespaced names",
			tools: []string{"fs__read_text_file", "fs__write_file", "fs__get-env", "fs__list_directory", "fs__delete_file", "fs__gone_tool"},
		},
		{
			name:  "no live tools",
			tools: nil,
			want:  []string{"fs__delete_file", "fs__get-env", "fs__gone_tool", "fs__list_directory", "fs__read_text_file", "fs__write_file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StaleTools(s, "fs", tt.tools); !slices.Equal(got, tt.want) {
				t.Errorf("StaleTools = %q, want %q", got, tt.want)
			}
		})
	}
	if got := StaleTools(s, "alpha-fs", []string{"read_text_file"}); got != nil {
		t.Errorf("alpha-fs: %q", got)
	}
	if got := StaleTools(nil, "fs", nil); got != nil {
		t.Errorf("nil skill: %q", got)
	}
}

func TestIndex(t *testing.T) {
	mk := func(prefix, desc string) *Skill {
		s, err := Parse(prefix+"/SKILL.md", []byte("---\nname: "+prefix+"\ndescription: "+desc+"\nprovider: "+prefix+"\n---\n"))
		if err != nil {
			t.Fatal(err)
		}
		s.Dir = prefix
		return s
	}
	meta, err := Parse("m", []byte(metaMD))
	if err != nil {
		t.Fatal(err)
	}
	fs2 := mk("fs-x", "Second.")
	fsAgain := mk("fs", "Duplicate.")
	got := Index([]*Skill{mk("notes", "Team notes."), nil, meta, fs2, mk("fs", ">\n  Files in the\n  allowed dirs."), fsAgain})
	want := IndexHeader + "\n" +
		"- fs: Files in the allowed dirs. (skill: skill://fs/SKILL.md, prompt: fs__skill)\n" +
		"- fs-x: Second. (skill: skill://fs-x/SKILL.md, prompt: fs-x__skill)\n" +
		"- notes: Team notes. (skill: skill://notes/SKILL.md, prompt: notes__skill)\n"
	if got != want {
		t.Errorf("Index:\n got %q\nwant %q", got, want)
	}
	if got := Index(nil); got != "" {
		t.Errorf("Index(nil) = %q", got)
	}
	if got := Index([]*Skill{meta}); got != "" {
		t.Errorf("Index(meta only) = %q", got)
	}

	// The built-in set renders one line per provider skill.
	set, errs := Load(Builtin(), "")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	idx := Index(set.Visible([]string{"notes", "filesystem"}))
	if lines := strings.Split(strings.TrimSpace(idx), "\n"); len(lines) != 3 ||
		!strings.HasPrefix(lines[1], "- filesystem: ") || !strings.HasPrefix(lines[2], "- notes: ") {
		t.Errorf("Index(builtin notes, filesystem) = %q", idx)
	}
}

func sortedKeys(m map[string]*Skill) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestBindings: a provider that names the skill of the server it runs gets
// that skill with its own prefix wherever the skill names a tool or prompt,
// plus its note; a name no skill has is a problem; an operator's skill filed
// under such a name, or under a built-in kind, is a library, not an orphan.
func TestBindings(t *testing.T) {
	builtin := mapFS(map[string]string{
		"filesystem/SKILL.md": "---\nname: filesystem\ndescription: files\nprovider: filesystem\n---\n" +
			"Start with `filesystem__list_allowed_directories`; not `alpha-filesystem__x`. Prompt `filesystem__skill`.\n",
		"notes/SKILL.md": skillMD("notes", 5),
	})
	dir := mustWriteDir(t, map[string]string{
		"crm-kind/SKILL.md": skillMD("crm-kind", 3),
		"notes/SKILL.md":    skillMD("notes", 4),
	})
	set, errs := Load(builtin, dir)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	sk := set.For(Binding{Prefix: "alpha-fs", Skill: "filesystem", Note: "Client Alpha's files only.", Enabled: true})
	if sk == nil {
		t.Fatal("no skill for alpha-fs")
	}
	for _, want := range []string{"`alpha-fs__list_allowed_directories`", "`alpha-filesystem__x`", "`alpha-fs__skill`", "## For alpha-fs\n\nClient Alpha's files only.", "provider: alpha-fs"} {
		if !strings.Contains(sk.Body, want) {
			t.Errorf("alpha-fs skill lacks %q:\n%s", want, sk.Body)
		}
	}
	if sk.Prefix() != "alpha-fs" || set.Providers["filesystem"].Prefix() != "filesystem" {
		t.Error("For changed the set, or did not rename")
	}
	if got := StaleTools(sk, "alpha-fs", []string{"list_allowed_directories"}); got != nil {
		t.Errorf("StaleTools on the bound skill = %q", got)
	}
	if set.For(Binding{Prefix: "notes", Enabled: true}).Builtin {
		t.Error("the operator's notes skill does not replace the built-in one")
	}
	bindings := []Binding{
		{Prefix: "alpha-fs", Skill: "filesystem", Enabled: true},
		{Prefix: "crm", Skill: "crm-kind", Enabled: true},
		{Prefix: "notes", Enabled: true},
		{Prefix: "gh", Skill: "github", Enabled: true},
	}
	var got []string
	for _, p := range ValidateBindings(set, bindings, true) {
		got = append(got, strings.ReplaceAll(p.String(), dir, "DIR"))
	}
	want := []string{`DIR: provider "gh" uses skill "github" (skill: in gateway.yaml), but no skill of that name is built in or in skills.dir`}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

// TestQuotedErrorsAreNotStale: a server's error text quoted in a skill may
// name a tool that does not exist; an ```error block or a line marked
// <!-- quoted --> is not checked.
func TestQuotedErrorsAreNotStale(t *testing.T) {
	body := "---\nname: fs\ndescription: d\nprovider: fs\n---\n" +
		"Use `fs__read_text_file`.\n" +
		"```error\nMCP error -32602: tool not found: fs__read_file\n```\n" +
		"Calling the old name answers `tool not found: fs__read` <!-- quoted -->\n" +
		"But `fs__gone` is stale.\n"
	s, err := Parse("fs/SKILL.md", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := StaleTools(s, "fs", []string{"read_text_file"}); !slices.Equal(got, []string{"fs__gone"}) {
		t.Errorf("StaleTools = %q, want only fs__gone", got)
	}
}
