package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mustStore opens a store in a fresh temp directory with a controllable clock.
func mustStore(tb testing.TB) (*store, *time.Time) {
	tb.Helper()
	st, err := openStore(filepath.Join(tb.TempDir(), "notes"))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st.now = func() time.Time { return now }
	return st, &now
}

func TestSlugify(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"simple", "Deploy Checklist", "deploy-checklist"},
		{"punctuation", "  Q3: plan / budget!! ", "q3-plan-budget"},
		{"traversal chars vanish", "../../etc/passwd", "etc-passwd"},
		{"non-ascii is a separator", "Café Olé 2", "caf-ol-2"},
		{"only symbols", "¿¡…!", ""},
		{"long", strings.Repeat("abc ", 40), strings.TrimRight(strings.Repeat("abc-", 16), "-")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slugify(tt.in)
			if got != tt.want {
				t.Fatalf("slugify(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got != "" {
				if err := checkSlug(got); err != nil {
					t.Fatalf("slugify produced an invalid slug: %v", err)
				}
			}
		})
	}
}

func TestCheckSlug(t *testing.T) {
	tests := []struct {
		slug string
		ok   bool
	}{
		{"deploy-checklist", true},
		{"a", true},
		{"2026-01-02", true},
		{"", false},
		{"..", false},
		{"../secret", false},
		{"a/b", false},
		{`a\b`, false},
		{"/etc/passwd", false},
		{".hidden", false},
		{"note.md", false},
		{"Upper", false},
		{"a--b", false},
		{"-a", false},
		{"a-", false},
		{"%2e%2e", false},
		{"a b", false},
		{"a\x00b", false},
		{strings.Repeat("a", maxSlugLen), true},
		{strings.Repeat("a", maxSlugLen+1), false},
	}
	for _, tt := range tests {
		err := checkSlug(tt.slug)
		if (err == nil) != tt.ok {
			t.Errorf("checkSlug(%q) = %v, want ok=%v", tt.slug, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errInvalid) {
			t.Errorf("checkSlug(%q) error %v is not errInvalid", tt.slug, err)
		}
	}
}

func TestNormalizeTags(t *testing.T) {
	got, err := normalizeTags([]string{" Runbook", "#ops", "runbook", "", "client/alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "client/alpha,ops,runbook"; strings.Join(got, ",") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	for _, bad := range []string{"has space", "../x", strings.Repeat("t", maxTagLen+1), "-lead"} {
		if _, err := normalizeTags([]string{bad}); !errors.Is(err, errInvalid) {
			t.Errorf("normalizeTags(%q) = %v, want errInvalid", bad, err)
		}
	}
}

func TestParseNote(t *testing.T) {
	mtime := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name      string
		data      string
		wantTitle string
		wantTags  string
		wantBody  string
		wantUpd   time.Time
	}{
		{
			name:      "front matter",
			data:      "---\ntitle: Deploy\ntags: [ops, Runbook]\nupdated: 2026-01-02T03:04:05Z\n---\n\nStep one.\n",
			wantTitle: "Deploy", wantTags: "ops,runbook", wantBody: "Step one.\n",
			wantUpd: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		},
		{
			name:      "crlf front matter",
			data:      "---\r\ntitle: Windows\r\n---\r\nBody\r\n",
			wantTitle: "Windows", wantBody: "Body\r\n", wantUpd: mtime,
		},
		{
			name:      "hand-written markdown",
			data:      "Intro\n# Real Title\ntext\n",
			wantTitle: "Real Title", wantBody: "Intro\n# Real Title\ntext\n", wantUpd: mtime,
		},
		{
			name:      "no heading falls back to slug",
			data:      "just text",
			wantTitle: "the-slug", wantBody: "just text", wantUpd: mtime,
		},
		{
			name:      "unterminated front matter is body",
			data:      "---\ntitle: x\n",
			wantTitle: "the-slug", wantBody: "---\ntitle: x\n", wantUpd: mtime,
		},
		{
			name:      "horizontal rule in body survives",
			data:      "---\ntitle: T\n---\nabove\n---\nbelow\n",
			wantTitle: "T", wantBody: "above\n---\nbelow\n", wantUpd: mtime,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := parseNote("the-slug", []byte(tt.data), mtime)
			if n.Title != tt.wantTitle || strings.Join(n.Tags, ",") != tt.wantTags || n.Body != tt.wantBody || !n.Updated.Equal(tt.wantUpd) {
				t.Fatalf("got title=%q tags=%v body=%q updated=%v", n.Title, n.Tags, n.Body, n.Updated)
			}
		})
	}
}

func TestStoreLifecycle(t *testing.T) {
	st, now := mustStore(t)
	created := *now

	n, existed, err := st.put("", "Deploy Checklist", "1. build\n2. ship", []string{"ops"})
	if err != nil || existed {
		t.Fatalf("put = %v, %v, %v", n, existed, err)
	}
	if n.Slug != "deploy-checklist" {
		t.Fatalf("slug = %q", n.Slug)
	}
	fi, err := os.Stat(filepath.Join(st.dir, "deploy-checklist.md"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("note mode = %v, want 0600", fi.Mode().Perm())
	}

	// Replace: the creation time stays, the update time moves.
	*now = now.Add(time.Hour)
	n, existed, err = st.put("", "Deploy Checklist", "rewritten", []string{"ops", "v2"})
	if err != nil || !existed {
		t.Fatalf("replace = %v, %v", existed, err)
	}
	got, err := st.get("deploy-checklist")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Created.Equal(created) || !got.Updated.Equal(*now) || got.Body != "rewritten\n" || strings.Join(got.Tags, ",") != "ops,v2" {
		t.Fatalf("after replace: %+v", got)
	}

	*now = now.Add(time.Hour)
	if _, err := st.appendText("deploy-checklist", "3. verify"); err != nil {
		t.Fatal(err)
	}
	got, _ = st.get("deploy-checklist")
	if got.Body != "rewritten\n\n3. verify\n" || !got.Updated.Equal(*now) {
		t.Fatalf("after append: %+v", got)
	}

	if _, err := st.appendText("missing", "x"); !errors.Is(err, errNotFound) {
		t.Fatalf("append to missing = %v", err)
	}
	if err := st.remove("deploy-checklist"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.get("deploy-checklist"); !errors.Is(err, errNotFound) {
		t.Fatalf("get after delete = %v", err)
	}
	if err := st.remove("deploy-checklist"); !errors.Is(err, errNotFound) {
		t.Fatalf("second delete = %v", err)
	}
	// No temp files are left behind.
	entries, _ := os.ReadDir(st.dir)
	if len(entries) != 0 {
		t.Fatalf("leftover files: %v", entries)
	}
}

func TestStoreRejectsBadInput(t *testing.T) {
	st, _ := mustStore(t)
	tests := []struct {
		name              string
		slug, title, body string
		tags              []string
	}{
		{"empty title", "", " ", "b", nil},
		{"multi-line title", "", "a\nb", "b", nil},
		{"no slug from title", "", "¿¡!", "b", nil},
		{"traversal slug", "../escape", "T", "b", nil},
		{"bad tag", "", "T", "b", []string{"a b"}},
		{"too big", "", "T", strings.Repeat("x", maxNoteBytes), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := st.put(tt.slug, tt.title, tt.body, tt.tags); !errors.Is(err, errInvalid) {
				t.Fatalf("put = %v, want errInvalid", err)
			}
		})
	}
	entries, _ := os.ReadDir(filepath.Dir(st.dir))
	if len(entries) != 1 {
		t.Fatalf("something was written outside the notes dir: %v", entries)
	}
}

func TestStoreIgnoresSymlinksAndStrayFiles(t *testing.T) {
	st, _ := mustStore(t)
	secret := filepath.Join(t.TempDir(), "secret.md")
	if err := os.WriteFile(secret, []byte("# Secret\ntop secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(st.dir, "link.md")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Bad Name.md", ".tmp-123", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(st.dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(st.dir, "plain.md"), []byte("# Plain\nhello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.get("link"); !errors.Is(err, errInvalid) {
		t.Fatalf("get(symlink) = %v, want errInvalid", err)
	}
	if err := st.remove("link"); !errors.Is(err, errInvalid) {
		t.Fatalf("remove(symlink) = %v, want errInvalid", err)
	}
	notes, err := st.list("")
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || notes[0].Slug != "plain" || notes[0].Title != "Plain" {
		t.Fatalf("list = %+v", notes)
	}
	if hits, _ := st.search("secret", 10); len(hits) != 0 {
		t.Fatalf("search reached through a symlink: %+v", hits)
	}
}

func TestSearchRanking(t *testing.T) {
	st, now := mustStore(t)
	put := func(title, body string, tags ...string) {
		t.Helper()
		*now = now.Add(time.Minute)
		if _, _, err := st.put("", title, body, tags); err != nil {
			t.Fatal(err)
		}
	}
	put("Kubernetes deploy", "How we deploy to the cluster.")
	put("Groceries", "milk, eggs; remember to deploy the shelf")
	put("Runbook", "Restart the gateway. Then deploy again.", "deploy")
	put("Unrelated", "nothing to see")

	hits, err := st.search("DEPLOY", 10)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, h := range hits {
		order = append(order, h.Slug)
	}
	if want := "kubernetes-deploy,runbook,groceries"; strings.Join(order, ",") != want {
		t.Fatalf("order = %v, want %s", order, want)
	}
	if !strings.Contains(strings.ToLower(hits[2].Snippet), "deploy the shelf") {
		t.Errorf("snippet = %q", hits[2].Snippet)
	}

	// Every term must match; the exact phrase ranks higher.
	hits, _ = st.search("deploy cluster", 10)
	if len(hits) != 1 || hits[0].Slug != "kubernetes-deploy" {
		t.Fatalf("AND search = %+v", hits)
	}
	hits, _ = st.search("deploy", 1)
	if len(hits) != 1 {
		t.Fatalf("limit ignored: %d hits", len(hits))
	}
	if _, err := st.search("   ", 10); !errors.Is(err, errInvalid) {
		t.Fatalf("empty query = %v", err)
	}
}

func TestSnippet(t *testing.T) {
	body := strings.Repeat("lorem ipsum ", 30) + "NEEDLE here" + strings.Repeat(" dolor sit", 30)
	s := snippet(body, "needle", []string{"needle"})
	if !strings.HasPrefix(s, "…") || !strings.HasSuffix(s, "…") || !strings.Contains(s, "NEEDLE here") {
		t.Fatalf("snippet = %q", s)
	}
	if len(s) > 200 {
		t.Fatalf("snippet too long: %d", len(s))
	}
	// Multi-byte text is never cut inside a rune.
	s = snippet(strings.Repeat("é", 200)+"x", "x", []string{"x"})
	if !strings.HasSuffix(s, "x") || strings.ContainsRune(s, '\uFFFD') {
		t.Fatalf("snippet = %q", s)
	}
}

func TestOpenStoreCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if _, err := openStore(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("dir not created: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := openStore(file); err == nil {
		t.Fatal("openStore on a file succeeded")
	}
	if _, err := openStore(""); err == nil {
		t.Fatal("openStore(\"\") succeeded")
	}
}
