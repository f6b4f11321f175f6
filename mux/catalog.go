package mux

import (
	"encoding/json"
	"hash/fnv"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/yosida95/uritemplate/v3"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// kind is one of the four lists a server exposes.
type kind int

const (
	kindTools kind = iota
	kindPrompts
	kindResources
	kindTemplates
	numKinds
)

// listField is each list's member in a list result, and its method.
var (
	listField  = [numKinds]string{"tools", "prompts", "resources", "resourceTemplates"}
	listMethod = [numKinds]string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
)

// entry is one exposed item: where it routes and what a client sees.
type entry struct {
	kind     kind
	key      string // the exposed name (tools, prompts), URI (resources) or URI template
	provider string
	original string // the provider's own name or URI
	readOnly bool   // a tool's readOnlyHint
	// json is the item as a list shows it: the provider's own bytes with
	// only the name (or URI) replaced, so schemas, annotations and members
	// unknown to the gateway pass through unchanged.
	json []byte
	sum  uint64 // a hash of json, for view hashes
	// tool is the decoded tool, kept only when its input schema binds
	// arguments to Mcp-Param-* headers (the edge checks them).
	tool *mcp.Tool
	tmpl *uritemplate.Template // a template's matcher
	// text is set for the gateway's own items (skills): the gateway answers
	// them itself.
	text     *string
	mimeType string
}

// table is an immutable snapshot of everything exposed, swapped atomically.
type table struct {
	byKey  [numKinds]map[string]*entry
	sorted [numKinds][]*entry // by key: the order of a list
	// instructions and capabilities of each provider with a catalog.
	instructions map[string]string
	caps         map[string]providerCaps
	// problems found while building: invalid, colliding or renamed items.
	problems []string
	// parsed is every provider's raw tools as decoded for this table, so the
	// next table reuses what did not change.
	parsed map[string]map[string]parsedTool
}

// providerCaps is what a provider's server capabilities offer.
type providerCaps struct {
	completions, logging, subscribe bool
}

func emptyTable() *table {
	t := &table{instructions: map[string]string{}, caps: map[string]providerCaps{}}
	for k := range t.byKey {
		t.byKey[k] = map[string]*entry{}
	}
	return t
}

// QualifiedURI is how a resource URI that the gateway reserves, or that
// another provider already serves, is exposed:
// switchboard://<provider>/<the original URI, path-escaped>.
func QualifiedURI(provider, uri string) string {
	return "switchboard://" + provider + "/" + url.PathEscape(uri)
}

// reservedScheme is the URI scheme of the gateway's own resources (skills):
// a provider's resource under it is exposed qualified, never as it is.
const reservedScheme = "skill://"

// provCatalog is the catalog a provider contributes, from its shared instance or,
// for user-scoped providers, the most recent instance of any user.
type provCatalog struct {
	Provider string
	Cat      *switchboard.Catalog
}

// parsedTool is one raw tool of a provider, decoded, checked and renamed.
type parsedTool struct {
	e       *entry // nil when the tool is unusable
	problem string // why it is unusable, or that it was renamed
}

// parseTool turns one raw tool of provider p into its entry.
func parseTool(p string, raw json.RawMessage) parsedTool {
	var tool mcp.Tool
	if err := json.Unmarshal(raw, &tool); err != nil || tool.Name == "" {
		return parsedTool{problem: "provider " + p + ": skipped a tool that does not decode"}
	}
	if err := mcp.ValidateParamHeaderAnnotations(&tool); err != nil {
		return parsedTool{problem: "provider " + p + ": tool " + quote(tool.Name) + ": " + err.Error()}
	}
	exposed, fixed := switchboard.ExposedName(p, tool.Name)
	e := &entry{kind: kindTools, key: exposed, provider: p, original: tool.Name,
		readOnly: tool.Annotations.ReadOnlyHint != nil && *tool.Annotations.ReadOnlyHint}
	e.json = renamed(raw, "name", exposed)
	if len(mcp.ExtractParamHeaderBindings(&tool)) > 0 {
		e.tool = &tool
	}
	pt := parsedTool{e: e}
	if fixed {
		pt.problem = "provider " + p + ": tool " + quote(tool.Name) + " exposed as " + exposed
	}
	return pt
}

// renamed returns the JSON object raw with member key set to value, or raw
// itself when it already has that value.
func renamed(raw []byte, key, value string) []byte {
	v := jsonrpc.AppendString(nil, value)
	if cur, ok := jsonrpc.Member(raw, key); ok && string(cur) == string(v) {
		return raw
	}
	return jsonrpc.SetMember(nil, raw, key, v)
}

// buildTable compiles the gateway's own items and the provider catalogs into
// one namespaced table, reusing the tools prev already decoded. The
// gateway's items come first, so their names are taken; providers follow in
// sorted order, so collisions resolve the same way every time.
func buildTable(prev *table, cats []provCatalog, ex *Extras) *table {
	t := emptyTable()
	t.parsed = make(map[string]map[string]parsedTool, len(cats))
	add := func(e *entry) bool {
		if _, dup := t.byKey[e.kind][e.key]; dup {
			return false
		}
		h := fnv.New64a()
		h.Write(e.json)
		e.sum = h.Sum64()
		t.byKey[e.kind][e.key] = e
		t.sorted[e.kind] = append(t.sorted[e.kind], e)
		return true
	}
	if ex != nil {
		for _, xp := range ex.Prompts {
			text := xp.Text
			b, _ := json.Marshal(map[string]string{"name": xp.Name, "description": xp.Description})
			add(&entry{kind: kindPrompts, key: xp.Name, provider: xp.Provider, original: xp.Name, json: b, text: &text})
		}
		for _, xr := range ex.Resources {
			text := xr.Text
			b, _ := json.Marshal(map[string]string{"uri": xr.URI, "name": xr.Name, "description": xr.Description, "mimeType": xr.MIMEType})
			add(&entry{kind: kindResources, key: xr.URI, provider: xr.Provider, original: xr.URI, json: b, text: &text, mimeType: xr.MIMEType})
		}
	}
	sort.Slice(cats, func(i, j int) bool { return cats[i].Provider < cats[j].Provider })
	for _, pc := range cats {
		p, cat := pc.Provider, pc.Cat
		if cat == nil {
			continue
		}
		t.instructions[p] = cat.Instructions
		t.caps[p] = parseCaps(cat.Capabilities)
		parsed := make(map[string]parsedTool, len(cat.Tools))
		for _, raw := range cat.Tools {
			pt, ok := prev.parsedTool(p, raw)
			if !ok {
				pt = parseTool(p, raw)
			}
			parsed[string(raw)] = pt
			if pt.problem != "" {
				t.problems = append(t.problems, pt.problem)
			}
			if pt.e == nil {
				continue
			}
			e := *pt.e // a table owns its entries
			if !add(&e) {
				t.problems = append(t.problems, "provider "+p+": tool "+quote(e.original)+" collides with "+e.key+"; skipped")
			}
		}
		t.parsed[p] = parsed
		for _, raw := range cat.Prompts {
			name, ok := stringMember(raw, "name")
			if !ok || name == "" {
				t.problems = append(t.problems, "provider "+p+": skipped a prompt that does not decode")
				continue
			}
			exposed, _ := switchboard.ExposedName(p, name)
			if other := t.byKey[kindPrompts][exposed]; other != nil && other.text != nil {
				alt, _ := switchboard.ExposedName(p, name+"#")
				t.problems = append(t.problems, "provider "+p+": prompt "+quote(name)+" exposed as "+alt+" because "+exposed+" is the gateway's")
				exposed = alt
			}
			if !add(&entry{kind: kindPrompts, key: exposed, provider: p, original: name, json: renamed(raw, "name", exposed)}) {
				t.problems = append(t.problems, "provider "+p+": prompt "+quote(name)+" collides with "+exposed+"; skipped")
			}
		}
		for _, raw := range cat.Resources {
			uri, ok := stringMember(raw, "uri")
			if !ok || uri == "" {
				t.problems = append(t.problems, "provider "+p+": skipped a resource that does not decode")
				continue
			}
			exposed := uri
			switch other := t.byKey[kindResources][uri]; {
			case strings.HasPrefix(uri, reservedScheme):
				exposed = QualifiedURI(p, uri)
				t.problems = append(t.problems, "provider "+p+": resource "+uri+" exposed as "+exposed+" because "+reservedScheme+" is the gateway's")
			case other != nil:
				exposed = QualifiedURI(p, uri)
				t.problems = append(t.problems, "provider "+p+": resource "+uri+" is also served by "+other.provider+"; exposed as "+exposed)
			}
			if !add(&entry{kind: kindResources, key: exposed, provider: p, original: uri, json: renamed(raw, "uri", exposed)}) {
				t.problems = append(t.problems, "provider "+p+": resource "+uri+" collides with "+exposed+"; skipped")
			}
		}
		for _, raw := range cat.ResourceTemplates {
			tpl, ok := stringMember(raw, "uriTemplate")
			if !ok || tpl == "" {
				t.problems = append(t.problems, "provider "+p+": skipped a resource template that does not decode")
				continue
			}
			m, err := uritemplate.New(tpl)
			switch {
			case err != nil:
				t.problems = append(t.problems, "provider "+p+": resource template "+quote(tpl)+" is invalid; skipped")
				continue
			case strings.HasPrefix(tpl, reservedScheme):
				t.problems = append(t.problems, "provider "+p+": resource template "+quote(tpl)+" uses "+reservedScheme+", the gateway's; skipped")
				continue
			}
			if !add(&entry{kind: kindTemplates, key: tpl, provider: p, original: tpl, json: raw, tmpl: m}) {
				t.problems = append(t.problems, "provider "+p+": resource template "+quote(tpl)+" is also served by "+t.byKey[kindTemplates][tpl].provider+"; skipped")
			}
		}
	}
	for k := range t.sorted {
		slices.SortFunc(t.sorted[k], func(a, b *entry) int { return strings.Compare(a.key, b.key) })
	}
	return t
}

// parsedTool returns what t made of provider p's raw tool, if it saw it.
func (t *table) parsedTool(p string, raw json.RawMessage) (parsedTool, bool) {
	if t == nil {
		return parsedTool{}, false
	}
	pt, ok := t.parsed[p][string(raw)]
	return pt, ok
}

func (t *table) hasProblem(p string) bool { return slices.Contains(t.problems, p) }

// names returns the keys of kind k that belong to provider, sorted.
func (t *table) names(k kind, provider string) []string {
	var out []string
	for _, e := range t.sorted[k] {
		if e.provider == provider {
			out = append(out, e.key)
		}
	}
	return out
}

// resource finds what serves uri: a listed resource, else the first
// template (in key order) that matches it.
func (t *table) resource(uri string) *entry {
	if e := t.byKey[kindResources][uri]; e != nil {
		return e
	}
	for _, e := range t.sorted[kindTemplates] {
		if e.tmpl != nil && e.tmpl.Match(uri) != nil {
			return e
		}
	}
	return nil
}

// stringMember returns the string member key of the JSON object raw.
func stringMember(raw []byte, key string) (string, bool) {
	v, ok := jsonrpc.Member(raw, key)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// parseCaps reads a provider's server capabilities.
func parseCaps(raw json.RawMessage) providerCaps {
	var c struct {
		Completions json.RawMessage `json:"completions"`
		Logging     json.RawMessage `json:"logging"`
		Resources   struct {
			Subscribe bool `json:"subscribe"`
		} `json:"resources"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &c) != nil {
		return providerCaps{}
	}
	return providerCaps{completions: jsonrpc.Has(c.Completions), logging: jsonrpc.Has(c.Logging), subscribe: c.Resources.Subscribe}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
