package mux

import (
	"context"
	"encoding/base64"
	"hash/fnv"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/switchboard-mcp/switchboard"
)

// A principal's view is everything it can see: the four lists, filtered.
// Views are computed once per generation and principal view key and cached,
// so a list is a cache lookup and a byte copy: each item's JSON is computed
// once per table.

// maxViews bounds the view cache; it is emptied when full. A view is small
// (one pointer per visible item), so the bound is about the number of
// distinct principals, not memory.
const maxViews = 1024

// view is what one principal view sees in one generation.
type view struct {
	gen   uint64
	lists [numKinds][]*entry // visible, in key order
	hash  [numKinds]uint64   // changes when a visible item is added, removed or changed
	// providers that p may see and that have a catalog or a gateway item.
	providers []string
}

// viewCache maps a view key to its view. It holds the views of one
// generation only: the first view of a newer one replaces them all, so stale
// views never pin old tables.
type viewCache struct {
	mu    sync.RWMutex
	gen   uint64
	views map[string]*view
	// computed counts the views computed (tests).
	computed atomic.Uint64
}

// viewKey identifies everything about p that a Filter may look at. Fields are
// length-prefixed so that no choice of IDs or roles makes two principals'
// keys equal.
func viewKey(p *switchboard.Principal) string {
	if p == nil {
		return "-"
	}
	n := len(p.Kind) + len(p.Endpoint) + len(p.ID) + len(p.Method) + 16
	for _, r := range p.Roles {
		n += len(r) + 4
	}
	b := make([]byte, 0, n)
	field := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	field(string(p.Kind))
	field(string(p.Endpoint))
	field(p.ID)
	field(p.Method)
	for _, r := range p.Roles {
		field(r)
	}
	return string(b)
}

// view returns what p can see now, from the cache when nothing changed
// since it was computed.
func (s *Server) view(ctx context.Context, p *switchboard.Principal) *view {
	gen := s.gen.Load() // before the state it covers: see Server.gen
	key := viewKey(p)
	c := &s.views
	c.mu.RLock()
	v := c.views[key]
	c.mu.RUnlock()
	if v != nil && v.gen == gen {
		return v
	}
	v = s.computeView(ctx, p, s.tbl.Load(), gen)
	c.computed.Add(1)
	c.mu.Lock()
	switch {
	case gen < c.gen:
		// Computed from state that changed meanwhile: serve it, do not keep it.
	case gen > c.gen || c.views == nil || len(c.views) >= maxViews && c.views[key] == nil:
		c.gen = gen
		c.views = map[string]*view{key: v}
	default:
		c.views[key] = v
	}
	c.mu.Unlock()
	return v
}

// computeView asks the filter about every item of t, once per provider for
// the provider-level decision.
func (s *Server) computeView(ctx context.Context, p *switchboard.Principal, t *table, gen uint64) *view {
	v := &view{gen: gen}
	f := s.filter.Load().f
	provs := map[string]bool{}
	visible := func(provider string) bool {
		if f == nil {
			return true
		}
		ok, seen := provs[provider]
		if !seen {
			ok = f.ProviderVisible(ctx, p, provider)
			provs[provider] = ok
		}
		return ok
	}
	for k := range t.sorted {
		h := fnv.New64a()
		var sum [8]byte
		for _, e := range t.sorted[k] {
			if !visible(e.provider) {
				continue
			}
			if k == int(kindTools) && f != nil && !f.ToolVisible(ctx, p, e.provider, e.original, e.key, e.readOnly) {
				continue
			}
			v.lists[k] = append(v.lists[k], e)
			for i := range sum {
				sum[i] = byte(e.sum >> (8 * i))
			}
			h.Write(sum[:])
		}
		v.hash[k] = h.Sum64()
	}
	seen := map[string]bool{}
	for prov := range t.instructions {
		seen[prov] = true
	}
	for k := range t.sorted {
		for _, e := range t.sorted[k] {
			seen[e.provider] = true
		}
	}
	for prov := range seen {
		if visible(prov) {
			v.providers = append(v.providers, prov)
		}
	}
	sort.Strings(v.providers)
	return v
}

// page returns the items of list k that a page starting after cursor holds,
// and the cursor of the next page ("" when this is the last). An invalid
// cursor reports ok false.
func (s *Server) page(v *view, k kind, cursor string, hasCursor bool) (items []*entry, next string, ok bool) {
	list := v.lists[k]
	start := 0
	if hasCursor {
		after, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(after) == 0 {
			return nil, "", false
		}
		start = sort.Search(len(list), func(i int) bool { return list[i].key > string(after) })
	}
	end := min(start+s.opts.PageSize, len(list))
	if end < len(list) {
		next = base64.RawURLEncoding.EncodeToString([]byte(list[end-1].key))
	}
	return list[start:end], next, true
}

// appendList appends a list result: the items as JSON and, when more
// follow, nextCursor. A stateless-era result also carries resultType and the
// caching hints; the cache scope is private because the list is filtered for
// the caller.
func (s *Server) appendList(dst []byte, k kind, items []*entry, next string, modern bool) []byte {
	dst = append(dst, '{')
	if modern {
		dst = append(dst, `"resultType":"complete",`...)
	}
	dst = append(dst, '"')
	dst = append(dst, listField[k]...)
	dst = append(dst, `":[`...)
	for i, e := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e.json...)
	}
	dst = append(dst, ']')
	if next != "" {
		dst = append(dst, `,"nextCursor":"`...)
		dst = append(dst, next...)
		dst = append(dst, '"')
	}
	if modern {
		dst = s.appendCacheHints(dst, s.opts.ListTTL.Milliseconds())
	}
	return append(dst, '}')
}

// appendCacheHints appends the stateless era's caching hints and the
// gateway's serverInfo, each member preceded by a comma.
func (s *Server) appendCacheHints(dst []byte, ttlMs int64) []byte {
	dst = append(dst, `,"ttlMs":`...)
	dst = strconv.AppendInt(dst, ttlMs, 10)
	dst = append(dst, `,"cacheScope":"private"`...)
	return appendServerInfoMeta(dst)
}

// appendServerInfoMeta appends ,"_meta":{serverInfo}.
func appendServerInfoMeta(dst []byte) []byte {
	dst = append(dst, `,"_meta":{"io.modelcontextprotocol/serverInfo":`...)
	dst = append(dst, serverInfo()...)
	return append(dst, '}')
}

// sizeOf returns the bytes the items' JSON takes, for preallocation.
func sizeOf(items []*entry) int {
	n := 0
	for _, e := range items {
		n += len(e.json) + 1
	}
	return n
}
