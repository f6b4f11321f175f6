package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/switchboard-mcp/switchboard"
)

// The tools/list fast path. mcp-go copies and sorts every tool, asks the
// filter about each one and encodes the survivors to JSON on every list; with
// a thousand tools that is milliseconds per request. The mux instead keeps,
// per principal view, the list of visible tools (computed once per
// generation) and each tool's JSON (computed once per table), so a list is a
// cache lookup and a byte copy. The answer is byte for byte mcp-go's: the
// same tools in the same (name) order, each encoded by json.Marshal as
// mcp-go's encoder does. Anything unusual goes through mcp-go unchanged.

// maxViews bounds the view cache; it is emptied when full. A view is small
// (one pointer per visible tool), so the bound is about the number of
// distinct principals, not memory.
const maxViews = 1024

// toolView is what one principal view sees in one generation.
type toolView struct {
	gen   uint64
	tools []*toolEntry // visible, in name order
	size  int          // bytes of the encoded tools array
}

// viewCache maps a view key to its toolView. It holds the views of one
// generation only: the first view of a newer one replaces them all, so stale
// views never pin old tables.
type viewCache struct {
	mu    sync.RWMutex
	gen   uint64
	views map[string]*toolView
	// fastLists counts the tools/lists answered by the fast path (tests).
	fastLists atomic.Uint64
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

// visibleTools returns the tools p can see now, from the cache when nothing
// changed since it was computed.
func (s *Server) visibleTools(ctx context.Context, p *switchboard.Principal) *toolView {
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
	c.mu.Lock()
	switch {
	case gen < c.gen:
		// Computed from state that changed meanwhile: serve it, do not keep it.
	case gen > c.gen || c.views == nil || len(c.views) >= maxViews && c.views[key] == nil:
		c.gen = gen
		c.views = map[string]*toolView{key: v}
	default:
		c.views[key] = v
	}
	c.mu.Unlock()
	return v
}

// computeView asks the filter about every tool of t, once per provider for
// the provider-level decision.
func (s *Server) computeView(ctx context.Context, p *switchboard.Principal, t *table, gen uint64) *toolView {
	v := &toolView{gen: gen, size: 2}
	f := s.filter.Load().f
	providers := map[string]bool{}
	for _, e := range t.sorted {
		if f != nil {
			ok, seen := providers[e.Provider]
			if !seen {
				ok = f.ProviderVisible(ctx, p, e.Provider)
				providers[e.Provider] = ok
			}
			if !ok || !f.ToolVisible(ctx, p, e.Provider, e.Original, e.ReadOnly) {
				continue
			}
		}
		if len(v.tools) > 0 {
			v.size++ // the comma
		}
		v.tools = append(v.tools, e)
		v.size += len(e.JSON)
	}
	return v
}

// filterVisible keeps the tools of a list that the view contains. tools come
// from mcp-go sorted by name, as the view's are, so one merge pass does; an
// out-of-order name restarts the scan rather than being dropped.
func filterVisible(tools []mcp.Tool, v *toolView) []mcp.Tool {
	out := make([]mcp.Tool, 0, min(len(tools), len(v.tools)))
	j := 0
	for i, tool := range tools {
		if i > 0 && tool.Name < tools[i-1].Name {
			j = 0
		}
		for j < len(v.tools) && v.tools[j].Exposed < tool.Name {
			j++
		}
		if j < len(v.tools) && v.tools[j].Exposed == tool.Name {
			out = append(out, tool)
		}
	}
	return out
}

// listBufs recycles answer buffers; ones grown past maxPooledBuf are dropped.
var listBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledBuf = 4 << 20

// tryFastList answers a tools/list itself if it can and reports whether it
// did. It takes the same requests tryFastCall does (a live session owned by
// the caller on this endpoint, a session-era protocol version) with no params
// beyond an empty object: a cursor, _meta or anything else goes to mcp-go.
// body is the request, already checked by the edge.
func (s *Server) tryFastList(ctx context.Context, ep switchboard.Endpoint, w http.ResponseWriter, r *http.Request, env *fastEnvelope, sid string) bool {
	if env.Method != "tools/list" || env.JSONRPC != "2.0" || sid == "" || !fastProtocol(r) || !isJSON(r.Header.Get("Content-Type")) || !emptyParams(env.params) {
		return false
	}
	id, ok := responseID(env.ID)
	if !ok {
		return false
	}
	p := switchboard.PrincipalFromContext(ctx)
	info := s.fastSession(sid, p, ep)
	if info == nil {
		return false // mcp-go answers 404, or delivers queued notifications
	}
	if s.opts.Instances != nil {
		s.opts.Instances.Warm(ctx, p) // as the BeforeListTools hook does
	}
	v := s.visibleTools(ctx, p)

	const head, mid, tail = `{"jsonrpc":"2.0","id":`, `,"result":{"tools":`, "}}\n"
	bp := listBufs.Get().(*[]byte)
	buf := slices.Grow((*bp)[:0], len(head)+len(id)+len(mid)+v.size+len(tail))
	buf = append(buf, head...)
	buf = append(buf, id...)
	buf = append(buf, mid...)
	buf = append(buf, '[')
	for i, e := range v.tools {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e.JSON...)
	}
	buf = append(buf, ']')
	buf = append(buf, tail...)
	writeAndFlush(w, buf)
	if cap(buf) <= maxPooledBuf {
		*bp = buf
		listBufs.Put(bp)
	}
	s.views.fastLists.Add(1)
	return true
}

// responseID returns the request ID as mcp-go echoes it: decoded into an
// interface (numbers become float64) and encoded again. Only strings and
// numbers qualify; null is a notification, anything else is mcp-go's to judge.
func responseID(raw json.RawMessage) ([]byte, bool) {
	var id any
	if len(raw) == 0 || json.Unmarshal(raw, &id) != nil {
		return nil, false
	}
	switch id.(type) {
	case string, float64:
	default:
		return nil, false
	}
	b, err := json.Marshal(id)
	return b, err == nil
}

// emptyParams reports whether a tools/list's params are absent, null or {}.
// raw has passed the edge's checks, so it is valid JSON.
func emptyParams(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return true
	case raw[0] == '{':
		return len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
	}
	return false
}

// isJSON reports whether a Content-Type is application/json, as mcp-go
// requires of a POST.
func isJSON(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
