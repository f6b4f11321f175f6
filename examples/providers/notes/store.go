package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Limits that keep one careless call from filling the disk or the caller's context.
const (
	maxSlugLen   = 64
	maxTitleLen  = 200
	maxTags      = 20
	maxTagLen    = 32
	maxNoteBytes = 1 << 20 // a note (front matter + body) is at most 1 MiB
	noteExt      = ".md"
)

// Errors a caller can cause. The MCP layer turns them into tool errors.
var (
	// errNotFound means no note has the requested slug.
	errNotFound = errors.New("note not found")
	// errInvalid means an argument is malformed (bad slug, tag, title, or an oversized body).
	errInvalid = errors.New("invalid argument")
)

var (
	slugRE = regexp.MustCompile(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)
	tagRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_/-]*$`)
)

// note is one markdown file: YAML front matter (title, tags, times) and a body.
type note struct {
	Slug    string    `json:"slug"`
	Title   string    `json:"title"`
	Tags    []string  `json:"tags"`
	Created time.Time `json:"created,omitzero"`
	Updated time.Time `json:"updated"`
	Body    string    `json:"body,omitempty"`
}

// frontMatter is the YAML header written at the top of every note file.
type frontMatter struct {
	Title   string    `yaml:"title"`
	Tags    []string  `yaml:"tags,flow,omitempty"`
	Created time.Time `yaml:"created,omitempty"`
	Updated time.Time `yaml:"updated,omitempty"`
}

// store keeps notes as <slug>.md files in one directory. It is safe for concurrent use
// within one process; writes are atomic (temp file + rename), so a crash never leaves
// a half-written note.
type store struct {
	dir string
	now func() time.Time

	mu sync.RWMutex
}

// openStore prepares dir (creating it if missing) and returns a store over it.
func openStore(dir string) (*store, error) {
	if dir == "" {
		return nil, errors.New("opening notes store: directory is empty")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("opening notes store: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("opening notes store: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("opening notes store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening notes store: %s is not a directory", abs)
	}
	return &store{dir: abs, now: func() time.Time { return time.Now().UTC().Truncate(time.Second) }}, nil
}

// slugify turns a title into a slug: lowercase ASCII letters and digits joined by
// single hyphens, at most maxSlugLen characters. Other characters become separators.
func slugify(title string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(title) {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
		if b.Len() >= maxSlugLen {
			break
		}
	}
	s := b.String()
	if len(s) > maxSlugLen {
		s = s[:maxSlugLen]
	}
	return strings.TrimRight(s, "-")
}

// checkSlug rejects anything that is not a plain slug. Since a valid slug contains no
// '/', '.', or '\\', it can never name a path outside the store's directory.
func checkSlug(slug string) error {
	if slug == "" {
		return fmt.Errorf("%w: slug is empty", errInvalid)
	}
	if len(slug) > maxSlugLen || !slugRE.MatchString(slug) {
		return fmt.Errorf("%w: slug %q must be lowercase letters, digits and single hyphens, at most %d characters", errInvalid, slug, maxSlugLen)
	}
	return nil
}

// normalizeTags lowercases, trims, validates, de-duplicates and sorts tags.
func normalizeTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		t = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "#")))
		if t == "" {
			continue
		}
		if len(t) > maxTagLen || !tagRE.MatchString(t) {
			return nil, fmt.Errorf("%w: tag %q must be lowercase letters, digits, '-', '_' or '/', at most %d characters", errInvalid, t, maxTagLen)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		return nil, fmt.Errorf("%w: at most %d tags per note", errInvalid, maxTags)
	}
	sort.Strings(out)
	return out, nil
}

// path returns the file for a validated slug and double-checks that it stays in dir.
func (s *store) path(slug string) (string, error) {
	if err := checkSlug(slug); err != nil {
		return "", err
	}
	p := filepath.Join(s.dir, slug+noteExt)
	if filepath.Dir(p) != s.dir {
		return "", fmt.Errorf("%w: slug %q escapes the notes directory", errInvalid, slug)
	}
	return p, nil
}

// get reads one note, including its body.
func (s *store) get(slug string) (note, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.load(slug)
}

// load reads and parses a note; the caller holds s.mu.
func (s *store) load(slug string) (note, error) {
	p, err := s.path(slug)
	if err != nil {
		return note{}, err
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return note{}, fmt.Errorf("reading note %q: %w", slug, errNotFound)
	}
	if err != nil {
		return note{}, fmt.Errorf("reading note %q: %w", slug, err)
	}
	if !fi.Mode().IsRegular() {
		// A symlink could point anywhere; only plain files are notes.
		return note{}, fmt.Errorf("reading note %q: %w: not a regular file", slug, errInvalid)
	}
	if fi.Size() > maxNoteBytes {
		return note{}, fmt.Errorf("reading note %q: %w: file is larger than %d bytes", slug, errInvalid, maxNoteBytes)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return note{}, fmt.Errorf("reading note %q: %w", slug, err)
	}
	return parseNote(slug, data, fi.ModTime()), nil
}

// parseNote splits optional front matter from the body. Files written by hand without
// front matter still work: the title is the first "# " heading, or the slug.
func parseNote(slug string, data []byte, mtime time.Time) note {
	n := note{Slug: slug, Updated: mtime.UTC().Truncate(time.Second)}
	body := data
	if fm, rest, ok := splitFrontMatter(data); ok {
		var h frontMatter
		if err := yaml.Unmarshal(fm, &h); err == nil {
			n.Title = strings.TrimSpace(h.Title)
			n.Tags, _ = normalizeTags(h.Tags)
			n.Created = h.Created.UTC()
			if !h.Updated.IsZero() {
				n.Updated = h.Updated.UTC()
			}
			body = rest
		}
	}
	n.Body = strings.TrimLeft(string(body), "\r\n")
	if n.Title == "" {
		n.Title = headingTitle(n.Body, slug)
	}
	if n.Tags == nil {
		n.Tags = []string{}
	}
	return n
}

// splitFrontMatter returns the YAML between a leading "---" line and the next "---" line.
func splitFrontMatter(data []byte) (fm, rest []byte, ok bool) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var first []byte
	switch {
	case bytes.HasPrefix(data, []byte("---\n")):
		first = data[4:]
	case bytes.HasPrefix(data, []byte("---\r\n")):
		first = data[5:]
	default:
		return nil, data, false
	}
	for off := 0; off <= len(first); {
		i := bytes.IndexByte(first[off:], '\n')
		line := first[off:]
		next := len(first)
		if i >= 0 {
			line = first[off : off+i]
			next = off + i + 1
		}
		if string(bytes.TrimRight(line, "\r")) == "---" {
			return first[:off], first[next:], true
		}
		if i < 0 {
			break
		}
		off = next
	}
	return nil, data, false
}

// headingTitle is the text of the first markdown "# " heading, or fallback.
func headingTitle(body, fallback string) string {
	for line := range strings.SplitSeq(body, "\n") {
		line = strings.TrimSpace(line)
		if t, ok := strings.CutPrefix(line, "# "); ok && strings.TrimSpace(t) != "" {
			return strings.TrimSpace(t)
		}
	}
	return fallback
}

// render produces the file contents for n.
func render(n note) ([]byte, error) {
	h := frontMatter{Title: n.Title, Tags: n.Tags, Created: n.Created, Updated: n.Updated}
	fm, err := yaml.Marshal(&h)
	if err != nil {
		return nil, fmt.Errorf("encoding front matter: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("---\n")
	b.Write(fm)
	b.WriteString("---\n\n")
	b.WriteString(n.Body)
	if !strings.HasSuffix(n.Body, "\n") {
		b.WriteByte('\n')
	}
	if b.Len() > maxNoteBytes {
		return nil, fmt.Errorf("%w: note would be %d bytes; the limit is %d", errInvalid, b.Len(), maxNoteBytes)
	}
	return b.Bytes(), nil
}

// writeFile replaces path atomically: a temp file in the same directory, fsync, rename.
func (s *store) writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// put creates or replaces a note. An empty slug is derived from the title. It keeps
// the original creation time when replacing and reports whether the note existed.
func (s *store) put(slug, title, body string, tags []string) (note, bool, error) {
	title = strings.TrimSpace(title)
	if title == "" {
		return note{}, false, fmt.Errorf("%w: title is empty", errInvalid)
	}
	if len(title) > maxTitleLen || strings.ContainsAny(title, "\r\n") {
		return note{}, false, fmt.Errorf("%w: title must be one line of at most %d characters", errInvalid, maxTitleLen)
	}
	if slug == "" {
		slug = slugify(title)
		if slug == "" {
			return note{}, false, fmt.Errorf("%w: title %q has no ASCII letters or digits to build a slug from; pass slug explicitly", errInvalid, title)
		}
	}
	p, err := s.path(slug)
	if err != nil {
		return note{}, false, err
	}
	tags, err = normalizeTags(tags)
	if err != nil {
		return note{}, false, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := note{Slug: slug, Title: title, Tags: tags, Created: now, Updated: now, Body: body}
	old, err := s.load(slug)
	existed := err == nil
	switch {
	case existed:
		if !old.Created.IsZero() {
			n.Created = old.Created
		}
	case !errors.Is(err, errNotFound):
		return note{}, false, err
	}
	data, err := render(n)
	if err != nil {
		return note{}, false, fmt.Errorf("writing note %q: %w", slug, err)
	}
	if err := s.writeFile(p, data); err != nil {
		return note{}, false, fmt.Errorf("writing note %q: %w", slug, err)
	}
	return n, existed, nil
}

// appendText adds text to the end of an existing note's body, separated by a blank line.
func (s *store) appendText(slug, text string) (note, error) {
	if strings.TrimSpace(text) == "" {
		return note{}, fmt.Errorf("%w: text is empty", errInvalid)
	}
	p, err := s.path(slug)
	if err != nil {
		return note{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.load(slug)
	if err != nil {
		return note{}, err
	}
	body := strings.TrimRight(n.Body, "\n")
	if body != "" {
		body += "\n\n"
	}
	n.Body = body + strings.TrimRight(text, "\n") + "\n"
	n.Updated = s.now()
	if n.Created.IsZero() {
		n.Created = n.Updated
	}
	data, err := render(n)
	if err != nil {
		return note{}, fmt.Errorf("appending to note %q: %w", slug, err)
	}
	if err := s.writeFile(p, data); err != nil {
		return note{}, fmt.Errorf("appending to note %q: %w", slug, err)
	}
	return n, nil
}

// remove deletes a note.
func (s *store) remove(slug string) error {
	p, err := s.path(slug)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting note %q: %w", slug, errNotFound)
	}
	if err != nil {
		return fmt.Errorf("deleting note %q: %w", slug, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("deleting note %q: %w: not a regular file", slug, errInvalid)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("deleting note %q: %w", slug, err)
	}
	return nil
}

// all loads every note in the directory, most recently updated first. Files whose
// names are not valid slugs (editor backups, temp files) are ignored.
func (s *store) all() ([]note, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing notes: %w", err)
	}
	notes := make([]note, 0, len(entries))
	for _, e := range entries {
		slug, ok := strings.CutSuffix(e.Name(), noteExt)
		if !ok || !e.Type().IsRegular() || checkSlug(slug) != nil {
			continue
		}
		n, err := s.load(slug)
		if errors.Is(err, errNotFound) || errors.Is(err, errInvalid) {
			continue // deleted meanwhile, or not a plain file
		}
		if err != nil {
			return nil, fmt.Errorf("listing notes: %w", err)
		}
		notes = append(notes, n)
	}
	sortNotes(notes)
	return notes, nil
}

// sortNotes orders notes by update time (newest first), then slug.
func sortNotes(notes []note) {
	sort.SliceStable(notes, func(i, j int) bool {
		if !notes[i].Updated.Equal(notes[j].Updated) {
			return notes[i].Updated.After(notes[j].Updated)
		}
		return notes[i].Slug < notes[j].Slug
	})
}

// list returns notes (without bodies) that carry tag, or all notes when tag is empty.
func (s *store) list(tag string) ([]note, error) {
	if tag != "" {
		tags, err := normalizeTags([]string{tag})
		if err != nil {
			return nil, err
		}
		if len(tags) == 1 {
			tag = tags[0]
		}
	}
	notes, err := s.all()
	if err != nil {
		return nil, err
	}
	out := notes[:0]
	for _, n := range notes {
		if tag != "" && !slices.Contains(n.Tags, tag) {
			continue
		}
		n.Body = ""
		out = append(out, n)
	}
	return out, nil
}

// hit is one search result.
type hit struct {
	Slug    string    `json:"slug"`
	Title   string    `json:"title"`
	Tags    []string  `json:"tags"`
	Updated time.Time `json:"updated"`
	Score   int       `json:"score"`
	Snippet string    `json:"snippet"`
}

// search finds notes containing every term of query (case-insensitive, in the title,
// tags or body), ranked by where and how often the terms occur, newest first on ties.
func (s *store) search(query string, limit int) ([]hit, error) {
	q := strings.ToLower(strings.TrimSpace(query))
	terms := strings.Fields(q)
	if len(terms) == 0 {
		return nil, fmt.Errorf("%w: query is empty", errInvalid)
	}
	notes, err := s.all()
	if err != nil {
		return nil, err
	}
	var hits []hit
	for _, n := range notes {
		title := strings.ToLower(n.Title)
		body := strings.ToLower(n.Body)
		tags := strings.Join(n.Tags, " ")
		score := 0
		all := true
		for _, t := range terms {
			ts := 5*strings.Count(title, t) + 3*strings.Count(tags, t) + min(strings.Count(body, t), 20)
			if ts == 0 {
				all = false
				break
			}
			score += ts
		}
		if !all {
			continue
		}
		if len(terms) > 1 && (strings.Contains(title, q) || strings.Contains(body, q)) {
			score += 10 // the exact phrase
		}
		hits = append(hits, hit{
			Slug: n.Slug, Title: n.Title, Tags: n.Tags, Updated: n.Updated,
			Score: score, Snippet: snippet(n.Body, q, terms),
		})
	}
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].Score > hits[j].Score })
	if limit > 0 && len(hits) > limit {
		hits = hits[:limit]
	}
	return hits, nil
}

// snippet is about 160 characters of body around the first match of the phrase (or the
// first term), on one line, with ellipses where it was cut.
func snippet(body, phrase string, terms []string) string {
	const radius = 70
	lower := strings.ToLower(body)
	at := strings.Index(lower, phrase)
	if at < 0 {
		for _, t := range terms {
			if i := strings.Index(lower, t); i >= 0 && (at < 0 || i < at) {
				at = i
			}
		}
	}
	// ToLower can change byte lengths for some runes; fall back to the start if so.
	if at < 0 || len(lower) != len(body) {
		at = 0
	}
	start, end := max(at-radius, 0), min(at+radius+len(phrase), len(body))
	for start > 0 && !utf8Start(body[start]) {
		start--
	}
	for end < len(body) && !utf8Start(body[end]) {
		end++
	}
	out := strings.Join(strings.Fields(body[start:end]), " ")
	if start > 0 {
		out = "…" + out
	}
	if end < len(body) {
		out += "…"
	}
	return out
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
