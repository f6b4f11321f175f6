package mux

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestBuildTable(t *testing.T) {
	schema := `{"type":"object","$schema":"http://json-schema.org/draft-07/schema#","title":"T","properties":{"n":{"type":"integer","x-custom":true}},"definitions":{"d":{}}}`
	cats := []provCatalog{
		{Provider: "b", Cat: &switchboard.Catalog{Tools: []json.RawMessage{
			raw(`{"name":"search","inputSchema":` + schema + `,"annotations":{"readOnlyHint":true}}`),
			raw(`{"name":"read.file","inputSchema":{"type":"object"}}`),
		}}},
		{Provider: "a", Cat: &switchboard.Catalog{
			Tools:   []json.RawMessage{raw(`{"name":"search","inputSchema":{"type":"object"}}`), raw(`not json`)},
			Prompts: []json.RawMessage{raw(`{"name":"hello"}`)},
			Resources: []json.RawMessage{
				raw(`{"uri":"test://x","name":"x"}`),
			},
		}},
		{Provider: "c", Cat: &switchboard.Catalog{Resources: []json.RawMessage{raw(`{"uri":"test://x","name":"dup"}`)}}},
	}
	tb := buildTable(cats)
	for _, name := range []string{"a__search", "b__search"} {
		if tb.tools[name] == nil {
			t.Errorf("missing %s; have %v", name, keys(tb.tools))
		}
	}
	e := tb.tools["b__search"]
	if e.Original != "search" || !e.ReadOnly {
		t.Errorf("b__search entry = %+v", e)
	}
	out, err := json.Marshal(e.Tool)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"inputSchema":`+schema) {
		t.Errorf("schema not byte-exact: %s", out)
	}
	fixed, _ := switchboard.ExposedName("b", "read.file")
	if tb.tools[fixed] == nil || tb.tools[fixed].Original != "read.file" {
		t.Errorf("read.file not exposed as %s", fixed)
	}
	if tb.prompts["a__hello"] == nil {
		t.Error("prompt not namespaced")
	}
	if r := tb.resources["test://x"]; r == nil || r.Provider != "a" {
		t.Errorf("resource collision should keep the first provider in sorted order: %+v", r)
	}
	if r := tb.resources[QualifiedURI("c", "test://x")]; r == nil || r.Provider != "c" || r.Original != "test://x" {
		t.Errorf("the second provider's copy should be exposed qualified: %+v", r)
	}
	if len(tb.problems) < 2 {
		t.Errorf("problems = %v, want the bad tool and the collision", tb.problems)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
