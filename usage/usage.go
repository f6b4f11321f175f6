// Package usage sums tool calls into usage per user, service, provider and
// tool: calls, tool errors, other errors, denials, timeouts, latency
// percentiles and bytes. Reports are computed from the audit log's
// tool-call records (switchboard usage); a Window keeps the last 24 hours
// in memory for the status page.
package usage

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Call is one tool call, as its audit record describes it.
type Call struct {
	Time          time.Time
	PrincipalKind string // "user" or "service"
	Principal     string // the principal's ID
	Provider      string
	Tool          string // the provider's own tool name
	Decision      string // "allow" or "deny"
	Outcome       string
	Latency       time.Duration
	ReqBytes      int64
	RespBytes     int64
}

// Dim is a dimension a report groups by.
type Dim string

// Dimensions. DimTool groups by provider and tool: a tool is named by its
// provider.
const (
	DimUser     Dim = "user"
	DimService  Dim = "service"
	DimProvider Dim = "provider"
	DimTool     Dim = "tool"
)

// Dims lists the dimensions in the order a report's columns show them.
var Dims = []Dim{DimUser, DimService, DimProvider, DimTool}

// ParseDims parses "user,provider" (or several such values) into
// dimensions, in column order, without repeats.
func ParseDims(values ...string) ([]Dim, error) {
	set := map[Dim]bool{}
	for _, v := range values {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if !slices.Contains(Dims, Dim(f)) {
				return nil, fmt.Errorf("unknown grouping %q: want user, service, provider or tool", f)
			}
			set[Dim(f)] = true
		}
	}
	if set[DimTool] {
		set[DimProvider] = true
	}
	var out []Dim
	for _, d := range Dims {
		if set[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

// Key is a row's identity: the value of each dimension it groups by, ""
// for the others. A user's call has no service and a service's no user.
type Key struct {
	User     string `json:"user,omitempty"`
	Service  string `json:"service,omitempty"`
	Provider string `json:"provider,omitempty"`
	Tool     string `json:"tool,omitempty"`
}

func keyOf(c *Call, by []Dim) Key {
	var k Key
	for _, d := range by {
		switch d {
		case DimUser:
			if c.PrincipalKind == "user" {
				k.User = c.Principal
			}
		case DimService:
			if c.PrincipalKind == "service" {
				k.Service = c.Principal
			}
		case DimProvider:
			k.Provider = c.Provider
		case DimTool:
			k.Tool = c.Tool
		}
	}
	return k
}

func (k Key) compare(o Key) int {
	return cmpStrings([]string{k.User, k.Service, k.Provider, k.Tool}, []string{o.User, o.Service, o.Provider, o.Tool})
}

// cmpStrings orders by the first differing string, "" (a dimension that
// does not apply, such as the user of a service's call) last.
func cmpStrings(a, b []string) int {
	for i := range a {
		switch {
		case a[i] == b[i]:
			continue
		case a[i] == "":
			return 1
		case b[i] == "":
			return -1
		}
		return strings.Compare(a[i], b[i])
	}
	return 0
}

// Counts are the sums of a group of calls. Calls = OK + ToolErrors +
// Errors + Denied + Timeouts.
type Counts struct {
	Calls int64 `json:"calls"`
	OK    int64 `json:"ok"`
	// ToolErrors are calls the tool answered with an error result.
	ToolErrors int64 `json:"tool_errors"`
	// Errors are the other failures: a JSON-RPC error, the provider
	// unavailable or overloaded, a call refused (audit log down) or
	// cancelled.
	Errors int64 `json:"errors"`
	// Denied are calls the policy refused (or of a tool that does not
	// exist, which the caller cannot tell apart).
	Denied   int64 `json:"denied"`
	Timeouts int64 `json:"timeouts"`
	// ReqBytes and RespBytes sum the sizes of arguments and answers.
	ReqBytes  int64 `json:"req_bytes"`
	RespBytes int64 `json:"resp_bytes"`
}

func (c *Counts) add(call *Call) {
	c.Calls++
	switch {
	case call.Decision == "deny" || call.Outcome == "denied":
		c.Denied++
	case call.Outcome == "ok":
		c.OK++
	case call.Outcome == "tool_error":
		c.ToolErrors++
	case call.Outcome == "timeout":
		c.Timeouts++
	default:
		c.Errors++
	}
	c.ReqBytes += call.ReqBytes
	c.RespBytes += call.RespBytes
}

// latencyCounts reports whether a call's latency enters the percentiles:
// those of calls the policy let through.
func latencyCounts(call *Call) bool {
	return call.Decision != "deny" && call.Outcome != "denied"
}

// Row is one group of a report.
type Row struct {
	Key
	Counts
	// P50 and P95 are latency percentiles (nearest rank) over the calls
	// the policy allowed; zero when there were none.
	P50 time.Duration `json:"-"`
	P95 time.Duration `json:"-"`
}

// Report is usage over a period, grouped.
type Report struct {
	// Since and Until bound the calls counted (Until excluded); zero means
	// unbounded.
	Since, Until time.Time
	By           []Dim
	Rows         []Row
	Total        Row
}

// Aggregator sums calls into a Report. Percentiles are exact: it keeps the
// latency of every counted call (4 bytes each).
type Aggregator struct {
	since, until time.Time
	by           []Dim
	groups       map[Key]*group
	total        group
}

type group struct {
	Counts
	lat []uint32 // microseconds, saturated
}

func (g *group) add(c *Call) {
	g.Counts.add(c)
	if latencyCounts(c) {
		us := c.Latency.Microseconds()
		g.lat = append(g.lat, uint32(min(max(us, 0), 1<<32-1)))
	}
}

func (g *group) row(k Key) Row {
	slices.Sort(g.lat)
	return Row{Key: k, Counts: g.Counts, P50: rank(g.lat, 50), P95: rank(g.lat, 95)}
}

// rank is the nearest-rank percentile p of sorted latencies (µs).
func rank(sorted []uint32, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted)+99)/100 - 1
	return time.Duration(sorted[max(i, 0)]) * time.Microsecond
}

// NewAggregator counts the calls in [since, until) (zero: unbounded),
// grouped by by (none: one total).
func NewAggregator(since, until time.Time, by []Dim) *Aggregator {
	var names []string
	for _, d := range by {
		names = append(names, string(d))
	}
	by, _ = ParseDims(names...) // known values only; tool brings provider
	return &Aggregator{since: since, until: until, by: by, groups: map[Key]*group{}}
}

// Add counts c when it falls in the period, and reports whether it did.
func (a *Aggregator) Add(c *Call) bool {
	if !a.since.IsZero() && c.Time.Before(a.since) || !a.until.IsZero() && !c.Time.Before(a.until) {
		return false
	}
	a.total.add(c)
	if len(a.by) == 0 {
		return true
	}
	k := keyOf(c, a.by)
	g := a.groups[k]
	if g == nil {
		g = &group{}
		a.groups[k] = g
	}
	g.add(c)
	return true
}

// Report returns the rows, ordered by their key, and the total.
func (a *Aggregator) Report() Report {
	r := Report{Since: a.since, Until: a.until, By: a.by, Total: a.total.row(Key{})}
	for k, g := range a.groups {
		r.Rows = append(r.Rows, g.row(k))
	}
	slices.SortFunc(r.Rows, func(x, y Row) int { return x.Key.compare(y.Key) })
	return r
}
