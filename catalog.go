package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// MaxCatalogPages bounds the pages one list of a provider's catalog may
// take: a provider whose cursors never end fails its listing.
const MaxCatalogPages = 1000

// CallFunc makes one request to a provider.
type CallFunc func(ctx context.Context, req *Request) (json.RawMessage, error)

// FetchCatalog lists what a provider advertises in caps, its server
// capabilities object, for the supervisor (a child on stdio) and the remote
// manager alike: its tools, its prompts, its resources and resource
// templates. A failing tools/list fails the fetch. The other lists are
// optional: a JSON-RPC error from one (a provider that advertises a
// capability and then refuses the method) is passed to refused and the list
// is empty; any other error fails the fetch.
func FetchCatalog(ctx context.Context, call CallFunc, caps json.RawMessage, instructions string, refused func(method string, err *RPCError)) (*Catalog, error) {
	cat := &Catalog{Instructions: instructions, Capabilities: caps}
	has := func(name string) bool {
		v, ok := jsonrpc.Member(caps, name)
		return ok && jsonrpc.Has(v)
	}
	var err error
	if has("tools") {
		if cat.Tools, err = ListAll(ctx, call, "tools/list", "tools"); err != nil {
			return nil, err
		}
	}
	optional := func(dst *[]json.RawMessage, method, field string) error {
		items, err := ListAll(ctx, call, method, field)
		var rpcErr *RPCError
		if errors.As(err, &rpcErr) {
			refused(method, rpcErr)
			return nil
		}
		*dst = items
		return err
	}
	if has("prompts") {
		if err := optional(&cat.Prompts, "prompts/list", "prompts"); err != nil {
			return nil, err
		}
	}
	if has("resources") {
		if err := optional(&cat.Resources, "resources/list", "resources"); err != nil {
			return nil, err
		}
		if err := optional(&cat.ResourceTemplates, "resources/templates/list", "resourceTemplates"); err != nil {
			return nil, err
		}
	}
	return cat, nil
}

// ListAll calls a paginated list method (tools/list, say) page after page
// and returns the raw items of field ("tools") from all of them. A cursor
// seen twice, or more than MaxCatalogPages pages, is an EUNAVAILABLE error.
func ListAll(ctx context.Context, call CallFunc, method, field string) ([]json.RawMessage, error) {
	var items []json.RawMessage
	cursor := ""
	seen := map[string]bool{}
	for range MaxCatalogPages {
		params := json.RawMessage(`{}`)
		if cursor != "" {
			params = append(append([]byte(`{"cursor":`), jsonrpc.AppendString(nil, cursor)...), '}')
		}
		raw, err := call(ctx, &Request{Method: method, Params: params})
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", method, err)
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, WrapError(EUNAVAILABLE, err, "listing %s: decoding result", method)
		}
		if f := page[field]; jsonrpc.Has(f) {
			var got []json.RawMessage
			if err := json.Unmarshal(f, &got); err != nil {
				return nil, WrapError(EUNAVAILABLE, err, "listing %s: decoding %s", method, field)
			}
			items = append(items, got...)
		}
		cursor = ""
		if nc := page["nextCursor"]; jsonrpc.Has(nc) {
			if err := json.Unmarshal(nc, &cursor); err != nil {
				return nil, WrapError(EUNAVAILABLE, err, "listing %s: decoding nextCursor", method)
			}
		}
		if cursor == "" {
			return items, nil
		}
		if seen[cursor] {
			return nil, Errorf(EUNAVAILABLE, "listing %s: pagination loops", method)
		}
		seen[cursor] = true
	}
	return nil, Errorf(EUNAVAILABLE, "listing %s: more than %d pages", method, MaxCatalogPages)
}
