package usage

import (
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Window keeps the usage of the last hours in memory, by principal and by
// provider, in hourly buckets: what the status page shows. Latency
// percentiles come from a log-linear histogram (within about 3%). Each
// bucket tracks at most MaxKeys principals and MaxKeys providers; calls of
// the others are counted under Other. It is safe for concurrent use and
// cheap enough for the call path.
type Window struct {
	hours   int
	maxKeys int

	mu      sync.Mutex
	buckets []*bucket // ring, by hour
}

// Other is the key under which calls past a Window's key cap are counted.
const Other = "_other"

// DefaultMaxKeys is a Window's default cap on distinct keys per bucket.
const DefaultMaxKeys = 1000

type bucket struct {
	hour       int64 // unix hour
	principals map[Key]*hgroup
	providers  map[string]*hgroup
}

type hgroup struct {
	Counts
	h hist
}

// NewWindow returns a Window over the last hours (24 for the status page);
// maxKeys <= 0 means DefaultMaxKeys.
func NewWindow(hours, maxKeys int) *Window {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Window{hours: hours, maxKeys: maxKeys, buckets: make([]*bucket, hours+1)}
}

// Add counts a call in the bucket of its hour; a call older than the
// window is ignored.
func (w *Window) Add(c *Call) {
	hour := c.Time.Unix() / 3600
	w.mu.Lock()
	defer w.mu.Unlock()
	i := int(hour % int64(len(w.buckets)))
	b := w.buckets[i]
	if b == nil || b.hour < hour {
		if newest := w.newest(); newest-hour >= int64(len(w.buckets)) {
			return
		}
		b = &bucket{hour: hour, principals: map[Key]*hgroup{}, providers: map[string]*hgroup{}}
		w.buckets[i] = b
	} else if b.hour > hour {
		return // older than the window
	}
	pk := Key{}
	if c.PrincipalKind == "service" {
		pk.Service = c.Principal
	} else {
		pk.User = c.Principal
	}
	pg := b.principals[pk]
	if pg == nil {
		if len(b.principals) >= w.maxKeys {
			pk = Key{User: Other}
			pg = b.principals[pk]
		}
		if pg == nil {
			pg = &hgroup{}
			b.principals[pk] = pg
		}
	}
	prov := c.Provider
	vg := b.providers[prov]
	if vg == nil {
		if len(b.providers) >= w.maxKeys {
			prov = Other
			vg = b.providers[prov]
		}
		if vg == nil {
			vg = &hgroup{}
			b.providers[prov] = vg
		}
	}
	for _, g := range []*hgroup{pg, vg} {
		g.Counts.add(c)
		if latencyCounts(c) {
			g.h.add(c.Latency)
		}
	}
}

// newest returns the latest hour held; the lock is held.
func (w *Window) newest() int64 {
	var n int64
	for _, b := range w.buckets {
		if b != nil && b.hour > n {
			n = b.hour
		}
	}
	return n
}

// Snapshot returns the usage of the last hours before now (the current
// hour included), by principal and by provider, each ordered by calls
// (most first), then by name, and the total.
func (w *Window) Snapshot(now time.Time) (principals, providers []Row, total Row) {
	cur := now.Unix() / 3600
	byP := map[Key]*hgroup{}
	byV := map[string]*hgroup{}
	var all hgroup
	w.mu.Lock()
	for _, b := range w.buckets {
		if b == nil || b.hour > cur || cur-b.hour >= int64(w.hours) {
			continue
		}
		for k, g := range b.principals {
			merge(byP, k, g)
			all.merge(g)
		}
		for k, g := range b.providers {
			merge(byV, k, g)
		}
	}
	w.mu.Unlock()
	for k, g := range byP {
		principals = append(principals, g.row(k))
	}
	for k, g := range byV {
		providers = append(providers, g.row(Key{Provider: k}))
	}
	order := func(x, y Row) int {
		if x.Calls != y.Calls {
			return int(y.Calls - x.Calls)
		}
		return x.Key.compare(y.Key)
	}
	slices.SortFunc(principals, order)
	slices.SortFunc(providers, order)
	return principals, providers, all.row(Key{})
}

func merge[K comparable](m map[K]*hgroup, k K, g *hgroup) {
	d := m[k]
	if d == nil {
		d = &hgroup{}
		m[k] = d
	}
	d.merge(g)
}

func (g *hgroup) merge(o *hgroup) {
	g.Calls += o.Calls
	g.OK += o.OK
	g.ToolErrors += o.ToolErrors
	g.Errors += o.Errors
	g.Denied += o.Denied
	g.Timeouts += o.Timeouts
	g.ReqBytes += o.ReqBytes
	g.RespBytes += o.RespBytes
	g.h.merge(&o.h)
}

func (g *hgroup) row(k Key) Row {
	return Row{Key: k, Counts: g.Counts, P50: g.h.quantile(0.50), P95: g.h.quantile(0.95)}
}

// hist is a sparse log-linear histogram of latencies in microseconds:
// exact below 16 µs, then 16 buckets per power of two (each under 6.3%
// wide; a quantile is reported at its bucket's middle).
type hist struct {
	n      int64
	counts map[uint16]int64
}

const histSub = 4 // log2 of the buckets per power of two

func histIndex(us int64) uint16 {
	if us < 1<<histSub {
		return uint16(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 1 // us in [2^e, 2^(e+1))
	sub := (us >> (e - histSub)) & (1<<histSub - 1)
	return uint16((e-histSub+1)<<histSub) + uint16(sub)
}

// histMiddle is the middle of bucket i, in microseconds.
func histMiddle(i uint16) int64 {
	if i < 1<<histSub {
		return int64(i)
	}
	e := int(i>>histSub) + histSub - 1
	sub := int64(i & (1<<histSub - 1))
	lo := (1<<histSub + sub) << (e - histSub)
	width := int64(1) << (e - histSub)
	return lo + width/2
}

func (h *hist) add(d time.Duration) {
	if h.counts == nil {
		h.counts = map[uint16]int64{}
	}
	h.counts[histIndex(d.Microseconds())]++
	h.n++
}

func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = map[uint16]int64{}
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile is the nearest-rank quantile q, at its bucket's middle.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	idx := make([]uint16, 0, len(h.counts))
	for i := range h.counts {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	want := int64(q*float64(h.n) + 0.999999)
	want = max(want, 1)
	var seen int64
	for _, i := range idx {
		seen += h.counts[i]
		if seen >= want {
			return time.Duration(histMiddle(i)) * time.Microsecond
		}
	}
	return time.Duration(histMiddle(idx[len(idx)-1])) * time.Microsecond
}
