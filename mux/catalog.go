package mux

import (
	"encoding/json"
	"net/url"
	"sort"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard"
)

// toolEntry is one exposed tool: where it routes and what the client sees.
type toolEntry struct {
	Exposed  string
	Provider string
	Original string
	ReadOnly bool
	Tool     mcp.Tool
	// JSON is Tool as mcp-go encodes it in a tools/list answer, computed once
	// per table so a list only copies bytes.
	JSON []byte
}

// promptEntry is one exposed prompt.
type promptEntry struct {
	Exposed  string
	Provider string
	Original string
	Prompt   mcp.Prompt
}

// resourceEntry is one resource or template. URIs are kept as the child sent
// them unless two providers serve the same URI: then every provider after the
// first (in sorted order) exposes it as QualifiedURI(provider, uri), and
// Original is what the child is asked for.
type resourceEntry struct {
	Provider string
	Original string
	Resource *mcp.Resource
	Template *mcp.ResourceTemplate
}

// QualifiedURI is how a resource URI that another provider already serves is
// exposed: switchboard://<provider>/<the original URI, path-escaped>.
func QualifiedURI(provider, uri string) string {
	return "switchboard://" + provider + "/" + url.PathEscape(uri)
}

// table is an immutable snapshot of everything exposed, swapped atomically.
type table struct {
	tools map[string]*toolEntry
	// sorted holds the tools in name order, the order of a tools/list.
	sorted    []*toolEntry
	prompts   map[string]*promptEntry
	resources map[string]*resourceEntry // by URI
	templates []*resourceEntry
	// providers that expose anything, with their instructions.
	instructions map[string]string
	// problems found while building: invalid or colliding names, bad schemas.
	problems []string
	// parsed is every provider's raw tools as decoded for this table, so the
	// next table reuses what did not change.
	parsed map[string]map[string]parsedTool
}

func emptyTable() *table {
	return &table{
		tools:        map[string]*toolEntry{},
		prompts:      map[string]*promptEntry{},
		resources:    map[string]*resourceEntry{},
		instructions: map[string]string{},
	}
}

// rawTool is the part of a child's tool we read; the schemas stay raw.
type rawTool struct {
	Name         string          `json:"name"`
	InputSchema  json.RawMessage `json:"inputSchema"`
	OutputSchema json.RawMessage `json:"outputSchema"`
}

// parseTool decodes one raw tool from a child into an mcp.Tool that marshals the
// schemas byte-exact: the typed schemas are zeroed and the raw ones set.
func parseTool(raw json.RawMessage) (mcp.Tool, error) {
	var t mcp.Tool
	if err := json.Unmarshal(raw, &t); err != nil {
		return t, err
	}
	var r rawTool
	if err := json.Unmarshal(raw, &r); err != nil {
		return t, err
	}
	t.InputSchema = mcp.ToolInputSchema{}
	t.OutputSchema = mcp.ToolOutputSchema{}
	if len(r.InputSchema) > 0 {
		t.RawInputSchema = r.InputSchema
	} else {
		t.RawInputSchema = json.RawMessage(`{"type":"object"}`)
	}
	if len(r.OutputSchema) > 0 && string(r.OutputSchema) != "null" {
		t.RawOutputSchema = r.OutputSchema
	}
	return t, nil
}

// parsedTool is one raw tool of a provider, decoded, checked and encoded.
type parsedTool struct {
	src     string     // the raw tool as the provider sent it
	e       *toolEntry // nil when the tool is unusable
	problem string     // why it is unusable, or that it was renamed
}

// parseEntry turns one raw tool of provider p into its entry.
func parseEntry(p string, raw json.RawMessage) parsedTool {
	pt := parsedTool{src: string(raw)}
	tool, err := parseTool(raw)
	if err != nil || tool.Name == "" {
		pt.problem = "provider " + p + ": skipped a tool that does not decode"
		return pt
	}
	if err := mcp.ValidateParamHeaderAnnotations(&tool); err != nil {
		pt.problem = "provider " + p + ": tool " + tool.Name + ": " + err.Error()
		return pt
	}
	exposed, fixed := switchboard.ExposedName(p, tool.Name)
	orig := tool.Name
	tool.Name = exposed
	enc, err := json.Marshal(tool)
	if err != nil {
		pt.problem = "provider " + p + ": tool " + quote(orig) + " does not encode: " + err.Error()
		return pt
	}
	if fixed {
		pt.problem = "provider " + p + ": tool " + quote(orig) + " exposed as " + exposed
	}
	ro := tool.Annotations.ReadOnlyHint != nil && *tool.Annotations.ReadOnlyHint
	pt.e = &toolEntry{Exposed: exposed, Provider: p, Original: orig, ReadOnly: ro, Tool: tool, JSON: enc}
	return pt
}

// parsedTool returns what t made of provider p's raw tool, if it saw it.
func (t *table) parsedTool(p string, raw json.RawMessage) (parsedTool, bool) {
	if t == nil {
		return parsedTool{}, false
	}
	pt, ok := t.parsed[p][string(raw)]
	return pt, ok
}

// provCatalog is the catalog a provider contributes, from its shared instance or,
// for user-scoped providers, the most recent instance of any user.
type provCatalog struct {
	Provider string
	Cat      *switchboard.Catalog
}

// buildTable compiles provider catalogs into one namespaced table. Providers are
// processed in sorted order so collisions resolve deterministically.
func buildTable(cats []provCatalog) *table { return rebuildTable(nil, cats) }

// rebuildTable is buildTable reusing the tools prev already decoded and
// encoded: a catalog change usually touches one provider, and decoding plus
// encoding a thousand tools again would cost tens of milliseconds.
func rebuildTable(prev *table, cats []provCatalog) *table {
	t := emptyTable()
	t.parsed = make(map[string]map[string]parsedTool, len(cats))
	sort.Slice(cats, func(i, j int) bool { return cats[i].Provider < cats[j].Provider })
	for _, pc := range cats {
		p, cat := pc.Provider, pc.Cat
		if cat == nil {
			continue
		}
		t.instructions[p] = cat.Instructions
		parsed := make(map[string]parsedTool, len(cat.Tools))
		for _, raw := range cat.Tools {
			pt, ok := prev.parsedTool(p, raw)
			if !ok {
				pt = parseEntry(p, raw)
			}
			parsed[pt.src] = pt
			if pt.problem != "" {
				t.problems = append(t.problems, pt.problem)
			}
			e := pt.e
			if e == nil {
				continue
			}
			if _, dup := t.tools[e.Exposed]; dup {
				t.problems = append(t.problems, "provider "+p+": tool "+quote(e.Original)+" collides with "+e.Exposed+"; skipped")
				continue
			}
			t.tools[e.Exposed] = e
			t.sorted = append(t.sorted, e)
		}
		t.parsed[p] = parsed
		for _, raw := range cat.Prompts {
			var pr mcp.Prompt
			if err := json.Unmarshal(raw, &pr); err != nil || pr.Name == "" {
				t.problems = append(t.problems, "provider "+p+": skipped a prompt that does not decode")
				continue
			}
			exposed, _ := switchboard.ExposedName(p, pr.Name)
			if _, dup := t.prompts[exposed]; dup {
				continue
			}
			orig := pr.Name
			pr.Name = exposed
			t.prompts[exposed] = &promptEntry{Exposed: exposed, Provider: p, Original: orig, Prompt: pr}
		}
		for _, raw := range cat.Resources {
			var r mcp.Resource
			if err := json.Unmarshal(raw, &r); err != nil || r.URI == "" {
				continue
			}
			orig := r.URI
			if other, dup := t.resources[r.URI]; dup {
				r.URI = QualifiedURI(p, orig)
				t.problems = append(t.problems, "provider "+p+": resource "+orig+" is also served by "+other.Provider+"; exposed as "+r.URI)
				if _, again := t.resources[r.URI]; again {
					continue
				}
			}
			rc := r
			t.resources[r.URI] = &resourceEntry{Provider: p, Original: orig, Resource: &rc}
		}
		for _, raw := range cat.ResourceTemplates {
			var rt mcp.ResourceTemplate
			if err := json.Unmarshal(raw, &rt); err != nil || rt.URITemplate == nil {
				continue
			}
			rtc := rt
			t.templates = append(t.templates, &resourceEntry{Provider: p, Template: &rtc})
		}
	}
	sort.Slice(t.sorted, func(i, j int) bool { return t.sorted[i].Exposed < t.sorted[j].Exposed })
	return t
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
