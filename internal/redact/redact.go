// Package redact scrubs secrets from log output: registered secret values (and
// their base64 forms), bearer tokens and Switchboard API keys.
package redact

import (
	"bytes"
	"encoding/base64"
	"math/bits"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
)

// Mask replaces a redacted value.
const Mask = "<redacted>"

// MinLen is the shortest value that is registered: shorter ones would mask
// ordinary words.
const MinLen = 6

var patterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}`),
	regexp.MustCompile(`sb_[a-z2-7]{12}_[A-Za-z0-9]{16,}`),
	regexp.MustCompile(`(?i)("?(?:authorization|x-api-key|api_key|apikey|token|password|secret)"?\s*[:=]\s*"?)[^"\s,}]{8,}`),
}

// Redactor holds the registered values. The zero value is not usable; use New.
type Redactor struct {
	mu     sync.Mutex
	values atomic.Pointer[[][]byte] // longest first, so overlaps mask fully
}

// New returns an empty Redactor.
func New() *Redactor {
	r := &Redactor{}
	r.values.Store(&[][]byte{})
	return r
}

// Add registers a value (and its base64 forms) that must never be printed.
func (r *Redactor) Add(value string) {
	if len(value) < MinLen {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.values.Load()
	for _, v := range cur {
		if string(v) == value {
			return
		}
	}
	next := append([][]byte{}, cur...)
	next = append(next, []byte(value),
		[]byte(base64.StdEncoding.EncodeToString([]byte(value))),
		[]byte(base64.RawURLEncoding.EncodeToString([]byte(value))))
	sort.Slice(next, func(i, j int) bool { return len(next[i]) > len(next[j]) })
	r.values.Store(&next)
}

// Bytes returns p with every secret masked. It returns p itself when clean.
func (r *Redactor) Bytes(p []byte) []byte {
	out := p
	for _, v := range *r.values.Load() {
		if bytes.Contains(out, v) {
			out = bytes.ReplaceAll(out, v, []byte(Mask))
		}
	}
	if !mayMatchPattern(out) {
		return out
	}
	for _, re := range patterns {
		if re.Match(out) {
			out = re.ReplaceAll(out, []byte("${1}"+Mask))
		}
	}
	return out
}

// needles are literal parts every pattern match contains, lower case. A line
// without any of them cannot match, and most log lines have none: checking
// them is much cheaper than running the regexps (a quarter of the gateway's
// CPU on small calls went there).
var needles = [...]string{"bearer", "sb_", "authorization", "api_key", "apikey", "token", "password", "secret"}

// starts[c] has bit k set when needles[k] starts with c, in either case.
var starts = func() (t [256]uint8) {
	for k, n := range needles {
		t[n[0]] |= 1 << k
		if 'a' <= n[0] && n[0] <= 'z' {
			t[n[0]-'a'+'A'] |= 1 << k
		}
	}
	return t
}()

// mayMatchPattern reports whether p contains a needle, ignoring ASCII case,
// in one pass without copying p (every access-log line goes through it).
func mayMatchPattern(p []byte) bool {
	for i, c := range p {
		for m := starts[c]; m != 0; m &= m - 1 {
			if hasFoldPrefix(p[i:], needles[bits.TrailingZeros8(m)]) {
				return true
			}
		}
	}
	return false
}

// hasFoldPrefix reports whether p starts with needle (lower case), ignoring
// the case of p's ASCII letters.
func hasFoldPrefix(p []byte, needle string) bool {
	if len(p) < len(needle) {
		return false
	}
	for j := 1; j < len(needle); j++ {
		c := p[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != needle[j] {
			return false
		}
	}
	return true
}

// String is Bytes for strings.
func (r *Redactor) String(s string) string { return string(r.Bytes([]byte(s))) }
