package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// pager answers list methods from pages[method], one page per cursor ("" is
// the first), and records the requests it got.
type pager struct {
	pages map[string]map[string]string // method → cursor → result
	fail  map[string]error
	got   []string // method?cursor
}

func (p *pager) call(_ context.Context, req *Request) (json.RawMessage, error) {
	var params struct {
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal(req.Params, &params); err != nil {
		return nil, fmt.Errorf("params %s: %v", req.Params, err)
	}
	p.got = append(p.got, req.Method+"?"+params.Cursor)
	if err := p.fail[req.Method]; err != nil {
		return nil, err
	}
	res, ok := p.pages[req.Method][params.Cursor]
	if !ok {
		return nil, &RPCError{Code: -32601, Message: "no such page"}
	}
	return json.RawMessage(res), nil
}

func names(items []json.RawMessage) string {
	var out []string
	for _, it := range items {
		var v struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
		}
		_ = json.Unmarshal(it, &v)
		out = append(out, v.Name+v.URI)
	}
	return strings.Join(out, ",")
}

func TestFetchCatalogListsWhatIsAdvertisedAcrossPages(t *testing.T) {
	p := &pager{pages: map[string]map[string]string{
		"tools/list": {
			"":      `{"tools":[{"name":"a"}],"nextCursor":"p\"2"}`,
			`p"2`:   `{"tools":[{"name":"b"},{"name":"c"}],"nextCursor":"3"}`,
			"3":     `{"tools":[],"nextCursor":null}`,
			"never": `{}`,
		},
		"resources/list":           {"": `{"resources":[{"uri":"file:///x"}]}`},
		"resources/templates/list": {"": `{"resourceTemplates":[]}`},
		"prompts/list":             {"": `{"prompts":[{"name":"never asked"}]}`},
	}}
	caps := json.RawMessage(`{"tools":{"listChanged":true},"resources":{},"prompts":null}`)
	cat, err := FetchCatalog(context.Background(), p.call, caps, "be nice", func(string, *RPCError) { t.Error("nothing was refused") })
	if err != nil {
		t.Fatal(err)
	}
	if got := names(cat.Tools); got != "a,b,c" {
		t.Errorf("tools %q, want a,b,c", got)
	}
	if got := names(cat.Resources); got != "file:///x" {
		t.Errorf("resources %q", got)
	}
	if cat.Prompts != nil {
		t.Errorf("prompts listed though capabilities.prompts is null: %s", cat.Prompts)
	}
	if cat.Instructions != "be nice" || string(cat.Capabilities) != string(caps) {
		t.Errorf("instructions %q, capabilities %s", cat.Instructions, cat.Capabilities)
	}
	want := `tools/list?,tools/list?p"2,tools/list?3,resources/list?,resources/templates/list?`
	if got := strings.Join(p.got, ","); got != want {
		t.Errorf("requests\n got %s\nwant %s", got, want)
	}
}

func TestFetchCatalogOptionalListsMayBeRefused(t *testing.T) {
	p := &pager{
		pages: map[string]map[string]string{"tools/list": {"": `{"tools":[{"name":"a"}]}`}},
		fail:  map[string]error{"prompts/list": &RPCError{Code: -32603, Message: "prompts are broken"}},
	}
	var refused []string
	cat, err := FetchCatalog(context.Background(), p.call, json.RawMessage(`{"tools":{},"prompts":{},"resources":{}}`), "",
		func(method string, err *RPCError) { refused = append(refused, method+": "+err.Message) })
	if err != nil {
		t.Fatal(err)
	}
	// resources/list and resources/templates/list have no pages: the pager
	// answers -32601, which is a refusal too.
	want := "prompts/list: prompts are broken,resources/list: no such page,resources/templates/list: no such page"
	if got := strings.Join(refused, ","); got != want {
		t.Errorf("refused\n got %s\nwant %s", got, want)
	}
	if names(cat.Tools) != "a" || cat.Prompts != nil || cat.Resources != nil {
		t.Errorf("catalog %+v", cat)
	}
}

func TestFetchCatalogFails(t *testing.T) {
	down := Errorf(EUNAVAILABLE, "the provider died")
	for _, tc := range []struct {
		name  string
		pages map[string]map[string]string
		fail  map[string]error
		want  string
	}{
		{"tools refused", nil, map[string]error{"tools/list": &RPCError{Code: -32603, Message: "no"}}, "listing tools/list: no"},
		{"optional list's connection died", map[string]map[string]string{"tools/list": {"": `{"tools":[]}`}},
			map[string]error{"prompts/list": down}, "listing prompts/list: the provider died"},
		{"pagination loops", map[string]map[string]string{"tools/list": {"": `{"tools":[],"nextCursor":"x"}`, "x": `{"tools":[],"nextCursor":"x"}`}},
			nil, "listing tools/list: pagination loops"},
		{"not an object", map[string]map[string]string{"tools/list": {"": `[1]`}}, nil, "listing tools/list: decoding result"},
		{"items not an array", map[string]map[string]string{"tools/list": {"": `{"tools":{}}`}}, nil, "listing tools/list: decoding tools"},
		{"cursor not a string", map[string]map[string]string{"tools/list": {"": `{"tools":[],"nextCursor":7}`}}, nil, "listing tools/list: decoding nextCursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pager{pages: tc.pages, fail: tc.fail}
			_, err := FetchCatalog(context.Background(), p.call, json.RawMessage(`{"tools":{},"prompts":{}}`), "", func(string, *RPCError) {})
			if err == nil || !strings.HasPrefix(ErrorMessage(err), tc.want) && !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A provider whose cursors never repeat and never end is cut off.
func TestListAllBoundsThePages(t *testing.T) {
	n := 0
	call := func(_ context.Context, req *Request) (json.RawMessage, error) {
		n++
		return json.RawMessage(fmt.Sprintf(`{"tools":[{"name":"t%d"}],"nextCursor":"%d"}`, n, n)), nil
	}
	_, err := ListAll(context.Background(), call, "tools/list", "tools")
	if ErrorCode(err) != EUNAVAILABLE || !strings.Contains(err.Error(), "more than 1000 pages") || n != MaxCatalogPages {
		t.Fatalf("err = %v after %d pages", err, n)
	}
	var rpcErr *RPCError
	if errors.As(err, &rpcErr) {
		t.Error("a cut-off listing is not the provider's JSON-RPC error")
	}
}
