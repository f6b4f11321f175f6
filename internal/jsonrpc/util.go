package jsonrpc

import (
	"bytes"
	"encoding/json"
	"strconv"
)

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

// A provider connection (supervisor.Conn, the remote client) gives a call that
// asks for progress the token "sb-<id>", id being the call's request id, and
// finds the call again by it when the provider reports progress.

// AppendProgressToken appends the _meta member `"progressToken":"sb-<id>"`.
func AppendProgressToken(dst []byte, id int64) []byte {
	dst = append(dst, `"progressToken":"sb-`...)
	dst = strconv.AppendInt(dst, id, 10)
	return append(dst, '"')
}

// ProgressTokenID returns the request id in a token AppendProgressToken made
// (the raw JSON string "sb-<id>"), and false for any other token.
func ProgressTokenID(token []byte) (int64, bool) {
	rest, ok := bytes.CutPrefix(token, []byte(`"sb-`))
	if !ok || len(rest) < 2 || rest[len(rest)-1] != '"' {
		return 0, false
	}
	return parseInt(rest[:len(rest)-1])
}
