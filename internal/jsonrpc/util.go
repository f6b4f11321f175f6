package jsonrpc

import "encoding/json"

// ParseID returns a response id as an integer id; a quoted integer is accepted
// too.
func ParseID(raw []byte) (int64, bool) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	return parseInt(raw)
}

// parseInt parses a decimal integer of at most 18 digits without allocating.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int64(ch-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// Clone copies b into a new json.RawMessage of exactly its size.
func Clone(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	c := make(json.RawMessage, len(b))
	copy(c, b)
	return c
}
