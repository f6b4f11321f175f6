package auth

import (
	"sort"
	"sync"
	"time"
)

// Aggregator defaults.
const (
	DefaultAggregateInterval = time.Minute
	DefaultAggregateKeys     = 32
	// maxAggregateLabels bounds the label counts kept per key; more distinct
	// labels are counted under "other".
	maxAggregateLabels = 8
	// maxOverflowKeys bounds the distinct keys the overflow remembers to
	// count them; past it Summary.Keys stops growing.
	maxOverflowKeys = 10_000
)

// OverflowKey is the Summary.Key of events of keys that found no free slot.
const OverflowKey = "*"

// AggregatorConfig configures an Aggregator.
type AggregatorConfig struct {
	// Interval is how long events of one key are summed before a Summary.
	// Default one minute.
	Interval time.Duration
	// MaxKeys is how many keys are tracked one by one; events of further keys
	// are summed into one Summary with Key OverflowKey. Default 32.
	MaxKeys int
}

// Aggregator turns a stream of repeated events, such as failed
// authentications of one address or 429s of one principal, into few records.
// The first event of a quiet key is reported at once (Observe returns true);
// the key's later events are counted and reported by Flush as one Summary per
// Interval, for as long as they go on. A key with no event for a whole Interval
// is forgotten, so its next event is reported at once again.
//
// The number of records is bounded whatever the traffic: per Interval at most
// MaxKeys immediate reports, MaxKeys summaries and one overflow summary.
// Nothing is lost: the counts of the reports and summaries of a key add up to
// its events.
type Aggregator struct {
	cfg AggregatorConfig
	now func() time.Time

	mu       sync.Mutex
	m        map[string]*aggEntry
	overflow *aggEntry
}

type aggEntry struct {
	start       time.Time // of the current interval
	count       int       // events not yet reported
	first, last time.Time // of those events
	labels      map[string]int
	keys        map[string]bool // overflow only
}

// Summary reports the events of one key that Observe did not report at once.
type Summary struct {
	Key string
	// Count is the number of events.
	Count int
	// First and Last are the times of the first and last of them.
	First, Last time.Time
	// Labels counts the events by the label Observe was given.
	Labels map[string]int
	// Keys is, for the overflow summary, how many distinct keys it covers.
	Keys int
}

// NewAggregator returns an Aggregator with cfg.
func NewAggregator(cfg AggregatorConfig) *Aggregator {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultAggregateInterval
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultAggregateKeys
	}
	return &Aggregator{cfg: cfg, now: time.Now, m: map[string]*aggEntry{}}
}

// Interval returns the configured interval; call Flush at least this often.
func (a *Aggregator) Interval() time.Duration { return a.cfg.Interval }

// Observe records one event of key with label (a reason, an endpoint). It
// reports whether the caller should record this event now, on its own: true
// for the first event of a key that was quiet, false when the event is counted
// for a later Summary.
func (a *Aggregator) Observe(key, label string) bool {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[key]
	if !ok {
		if len(a.m) < a.cfg.MaxKeys {
			a.m[key] = &aggEntry{start: now}
			return true
		}
		if a.overflow == nil {
			a.overflow = &aggEntry{start: now, keys: map[string]bool{}}
		}
		e = a.overflow
		if len(e.keys) < maxOverflowKeys {
			e.keys[key] = true
		}
	}
	e.add(now, label)
	return false
}

func (e *aggEntry) add(now time.Time, label string) {
	if e.count == 0 {
		e.first = now
	}
	e.count++
	e.last = now
	if e.labels == nil {
		e.labels = map[string]int{}
	}
	if _, ok := e.labels[label]; !ok && len(e.labels) >= maxAggregateLabels {
		label = "other"
	}
	e.labels[label]++
}

func (e *aggEntry) summary(key string) Summary {
	return Summary{Key: key, Count: e.count, First: e.first, Last: e.last, Labels: e.labels, Keys: len(e.keys)}
}

// Flush returns a Summary for every key whose interval has ended with events
// not yet reported, starting its next interval, and forgets the keys that had
// none. Summaries are sorted by key, the overflow last.
func (a *Aggregator) Flush() []Summary { return a.flush(false) }

// FlushAll returns a Summary for every key with events not yet reported,
// whether or not its interval has ended (at shutdown).
func (a *Aggregator) FlushAll() []Summary { return a.flush(true) }

func (a *Aggregator) flush(all bool) []Summary {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Summary
	for k, e := range a.m {
		if !all && now.Sub(e.start) < a.cfg.Interval {
			continue
		}
		if e.count == 0 {
			delete(a.m, k)
			continue
		}
		out = append(out, e.summary(k))
		a.m[k] = &aggEntry{start: now}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if e := a.overflow; e != nil && (all || now.Sub(e.start) >= a.cfg.Interval) {
		if e.count > 0 {
			out = append(out, e.summary(OverflowKey))
		}
		a.overflow = nil
	}
	return out
}
