package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultSearchLimit = 10
	maxSearchLimit     = 50
	// promptBudget caps how much note text summarize_notes puts into one prompt.
	promptBudget = 48 << 10
)

const instructions = `A markdown notes store. Find notes with search_notes (terms are ANDed,
case-insensitive) or list_notes (optionally by tag), read one with read_note or the
notes://{slug} resource, and keep knowledge current with write_note (create/replace),
append_note (add to the end) and delete_note. Slugs are lowercase-hyphenated and are
derived from the title when omitted.`

// newServer builds the MCP server for st.
func newServer(st *store) *server.MCPServer {
	s := server.NewMCPServer("notes", version,
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, false),
		server.WithPromptCapabilities(false),
		server.WithInstructions(instructions),
		server.WithRecovery(),
		server.WithResourceRecovery(),
	)
	h := handlers{st: st}

	s.AddTool(mcp.NewTool("list_notes",
		mcp.WithTitleAnnotation("List notes"),
		mcp.WithDescription("List notes, newest first: slug, title, tags and last update time. Filter by one tag with `tag`."),
		mcp.WithString("tag", mcp.Description("Only notes carrying this tag (case-insensitive).")),
		readOnly(),
	), h.list)

	s.AddTool(mcp.NewTool("search_notes",
		mcp.WithTitleAnnotation("Search notes"),
		mcp.WithDescription("Full-text search over titles, tags and bodies. Every whitespace-separated term must occur (case-insensitive substring match). Results are ranked (title > tags > body, exact phrase bonus) and carry a snippet."),
		mcp.WithString("query", mcp.Required(), mcp.MinLength(1), mcp.Description("Words to look for, e.g. `deploy checklist`.")),
		mcp.WithNumber("limit", mcp.Min(1), mcp.Max(maxSearchLimit), mcp.DefaultNumber(defaultSearchLimit), mcp.Description("Maximum number of results.")),
		readOnly(),
	), h.search)

	s.AddTool(mcp.NewTool("read_note",
		mcp.WithTitleAnnotation("Read a note"),
		mcp.WithDescription("Return one note as markdown: front matter (title, tags, created, updated) and body."),
		mcp.WithString("slug", mcp.Required(), mcp.Pattern(slugRE.String()), mcp.MaxLength(maxSlugLen), mcp.Description("The note's slug, as returned by list_notes or search_notes.")),
		readOnly(),
	), h.read)

	s.AddTool(mcp.NewTool("write_note",
		mcp.WithTitleAnnotation("Write a note"),
		mcp.WithDescription("Create a note, or replace the note with the same slug entirely (title, body and tags). The slug is derived from the title unless given. Use append_note to add to an existing note instead."),
		mcp.WithString("title", mcp.Required(), mcp.MinLength(1), mcp.MaxLength(maxTitleLen), mcp.Description("One-line title.")),
		mcp.WithString("body", mcp.Required(), mcp.Description("Markdown body.")),
		mcp.WithArray("tags", mcp.WithStringItems(mcp.MaxLength(maxTagLen)), mcp.MaxItems(maxTags), mcp.Description("Tags, e.g. [\"runbook\", \"client/alpha\"].")),
		mcp.WithString("slug", mcp.Pattern(slugRE.String()), mcp.MaxLength(maxSlugLen), mcp.Description("Explicit slug; defaults to the slugified title.")),
		mcp.WithReadOnlyHintAnnotation(false),
		mcp.WithDestructiveHintAnnotation(true), // replaces an existing note
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(false),
	), h.write)

	s.AddTool(mcp.NewTool("append_note",
		mcp.WithTitleAnnotation("Append to a note"),
		mcp.WithDescription("Append markdown to the end of an existing note's body (separated by a blank line) and bump its update time."),
		mcp.WithString("slug", mcp.Required(), mcp.Pattern(slugRE.String()), mcp.MaxLength(maxSlugLen), mcp.Description("The note to extend.")),
		mcp.WithString("text", mcp.Required(), mcp.MinLength(1), mcp.Description("Markdown to append.")),
		mcp.WithReadOnlyHintAnnotation(false),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithIdempotentHintAnnotation(false),
		mcp.WithOpenWorldHintAnnotation(false),
	), h.append)

	s.AddTool(mcp.NewTool("delete_note",
		mcp.WithTitleAnnotation("Delete a note"),
		mcp.WithDescription("Delete a note permanently."),
		mcp.WithString("slug", mcp.Required(), mcp.Pattern(slugRE.String()), mcp.MaxLength(maxSlugLen), mcp.Description("The note to delete.")),
		mcp.WithReadOnlyHintAnnotation(false),
		mcp.WithDestructiveHintAnnotation(true),
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(false),
	), h.delete)

	s.AddResourceTemplate(mcp.NewResourceTemplate("notes://{slug}", "note",
		mcp.WithTemplateTitle("Note"),
		mcp.WithTemplateDescription("One note as markdown with YAML front matter."),
		mcp.WithTemplateMIMEType("text/markdown"),
	), h.resource)

	s.AddPrompt(mcp.NewPrompt("summarize_notes",
		mcp.WithPromptTitle("Summarize notes"),
		mcp.WithPromptDescription("Summarize the notes that carry a tag or match a query (or the most recent notes), citing slugs."),
		mcp.WithArgument("tag", mcp.ArgumentDescription("Only notes with this tag.")),
		mcp.WithArgument("query", mcp.ArgumentDescription("Only notes matching this search.")),
	), h.prompt)

	return s
}

func readOnly() mcp.ToolOption {
	return func(t *mcp.Tool) {
		for _, o := range []mcp.ToolOption{
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
		} {
			o(t)
		}
	}
}

// handlers adapts the store to MCP tool, resource and prompt handlers.
type handlers struct{ st *store }

// toolError turns caller mistakes into tool errors the model can read and act on.
// Other errors are also reported as tool errors, without internal paths.
func toolError(err error) *mcp.CallToolResult {
	msg := err.Error()
	switch {
	case errors.Is(err, errNotFound):
		msg += " (use list_notes or search_notes to find slugs)"
	case errors.Is(err, errInvalid):
	default:
		msg = "internal error: " + msg
	}
	return mcp.NewToolResultError(msg)
}

// summary is a note without its body, for list results.
type summary struct {
	Slug    string    `json:"slug"`
	Title   string    `json:"title"`
	Tags    []string  `json:"tags"`
	Updated time.Time `json:"updated"`
}

func (h handlers) list(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	tag := req.GetString("tag", "")
	notes, err := h.st.list(tag)
	if err != nil {
		return toolError(err), nil
	}
	out := make([]summary, 0, len(notes))
	var b strings.Builder
	if len(notes) == 0 {
		if tag != "" {
			fmt.Fprintf(&b, "No notes tagged %q.", tag)
		} else {
			b.WriteString("No notes yet. Create one with write_note.")
		}
	} else {
		fmt.Fprintf(&b, "%d note(s):\n", len(notes))
	}
	for _, n := range notes {
		out = append(out, summary{Slug: n.Slug, Title: n.Title, Tags: n.Tags, Updated: n.Updated})
		fmt.Fprintf(&b, "- %s — %s", n.Slug, n.Title)
		if len(n.Tags) > 0 {
			fmt.Fprintf(&b, " [%s]", strings.Join(n.Tags, ", "))
		}
		fmt.Fprintf(&b, " (updated %s)\n", n.Updated.Format(time.RFC3339))
	}
	return mcp.NewToolResultStructured(map[string]any{"notes": out}, strings.TrimRight(b.String(), "\n")), nil
}

func (h handlers) search(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	query, err := req.RequireString("query")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	limit := req.GetInt("limit", defaultSearchLimit)
	limit = max(1, min(limit, maxSearchLimit))
	hits, err := h.st.search(query, limit)
	if err != nil {
		return toolError(err), nil
	}
	var b strings.Builder
	if len(hits) == 0 {
		fmt.Fprintf(&b, "No notes match %q.", query)
	}
	for i, x := range hits {
		fmt.Fprintf(&b, "%d. %s — %s (score %d)\n   %s\n", i+1, x.Slug, x.Title, x.Score, x.Snippet)
	}
	if hits == nil {
		hits = []hit{}
	}
	return mcp.NewToolResultStructured(map[string]any{"results": hits}, strings.TrimRight(b.String(), "\n")), nil
}

func (h handlers) read(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	slug, err := req.RequireString("slug")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	n, err := h.st.get(slug)
	if err != nil {
		return toolError(err), nil
	}
	text, err := render(n)
	if err != nil {
		return toolError(err), nil
	}
	return mcp.NewToolResultStructured(n, string(text)), nil
}

func (h handlers) write(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	title, err := req.RequireString("title")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	body, err := req.RequireString("body")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	tags := req.GetStringSlice("tags", nil)
	n, existed, err := h.st.put(req.GetString("slug", ""), title, body, tags)
	if err != nil {
		return toolError(err), nil
	}
	verb := "Created"
	if existed {
		verb = "Replaced"
	}
	n.Body = ""
	return mcp.NewToolResultStructured(map[string]any{"note": n, "created": !existed},
		fmt.Sprintf("%s note %s (notes://%s).", verb, n.Slug, n.Slug)), nil
}

func (h handlers) append(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	slug, err := req.RequireString("slug")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	text, err := req.RequireString("text")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	n, err := h.st.appendText(slug, text)
	if err != nil {
		return toolError(err), nil
	}
	size := len(n.Body)
	n.Body = ""
	return mcp.NewToolResultStructured(map[string]any{"note": n, "body_bytes": size},
		fmt.Sprintf("Appended to %s; the body is now %d bytes.", n.Slug, size)), nil
}

func (h handlers) delete(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	slug, err := req.RequireString("slug")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if err := h.st.remove(slug); err != nil {
		return toolError(err), nil
	}
	return mcp.NewToolResultStructured(map[string]any{"deleted": slug}, fmt.Sprintf("Deleted note %s.", slug)), nil
}

func (h handlers) resource(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	slug, _ := req.Params.Arguments["slug"].(string)
	if slug == "" {
		// uritemplate may hand back a list for exploded variables; notes use a plain one.
		slug = strings.TrimPrefix(req.Params.URI, "notes://")
	}
	n, err := h.st.get(slug)
	if err != nil {
		return nil, err
	}
	text, err := render(n)
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/markdown", Text: string(text)}}, nil
}

func (h handlers) prompt(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	tag := strings.TrimSpace(req.Params.Arguments["tag"])
	query := strings.TrimSpace(req.Params.Arguments["query"])

	var slugs []string
	if query != "" {
		hits, err := h.st.search(query, maxSearchLimit)
		if err != nil {
			return nil, err
		}
		for _, x := range hits {
			slugs = append(slugs, x.Slug)
		}
	} else {
		notes, err := h.st.list(tag)
		if err != nil {
			return nil, err
		}
		for _, n := range notes {
			slugs = append(slugs, n.Slug)
		}
	}

	var scope string
	switch {
	case query != "" && tag != "":
		scope = fmt.Sprintf("notes matching %q and tagged %q", query, tag)
	case query != "":
		scope = fmt.Sprintf("notes matching %q", query)
	case tag != "":
		scope = fmt.Sprintf("notes tagged %q", tag)
	default:
		scope = "the most recent notes"
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Summarize %s below. Group related points, call out decisions, open questions and action items, and cite each point with the note's slug in brackets, e.g. [deploy-checklist].\n", scope)
	included, omitted := 0, 0
	for _, slug := range slugs {
		n, err := h.st.get(slug)
		if err != nil {
			continue
		}
		if query != "" && tag != "" && !slices.Contains(n.Tags, strings.ToLower(tag)) {
			continue
		}
		text, err := render(n)
		if err != nil || b.Len()+len(text) > promptBudget {
			omitted++
			continue
		}
		fmt.Fprintf(&b, "\n=== [%s] ===\n%s", n.Slug, text)
		included++
	}
	if included == 0 {
		fmt.Fprintf(&b, "\n(There are no %s.)\n", scope)
	}
	if omitted > 0 {
		fmt.Fprintf(&b, "\n(%d more note(s) were left out to keep this prompt short; use search_notes to reach them.)\n", omitted)
	}
	return mcp.NewGetPromptResult(
		fmt.Sprintf("Summary request for %s (%d note(s))", scope, included),
		[]mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(b.String()))},
	), nil
}
