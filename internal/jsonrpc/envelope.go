// Package jsonrpc splits JSON-RPC 2.0 messages into their members without
// decoding them. The supervisor reads its children's stdio with it, and the
// benchmark's load generator its answers, so both sides of a comparison do the
// same work per message.
package jsonrpc

import (
	"bytes"
	"encoding/json"
)

// Envelope is one JSON-RPC message split into its members, as raw JSON values
// (nil when absent). The slices may point into the line being read, so they
// are valid only as long as the line is.
type Envelope struct {
	JSONRPC, ID, Method, Params, Result, Error []byte
}

// Decode splits line, a whole message without surrounding space. It reports
// whether line is a JSON object with a well-formed top level.
//
// The usual message takes a fast path that walks the line once, finds the
// members it needs and skips the rest without decoding it: nested values are
// delimited (strings, brackets) but not validated, and nothing is copied: callers
// validate or decode the members they use. A member name with escapes or in another
// letter case takes the encoding/json path, so names are matched exactly as
// json.Unmarshal would.
func (e *Envelope) Decode(line []byte) bool {
	*e = Envelope{}
	switch scanEnvelope(line, e) {
	case scanOK:
		return true
	case scanBad:
		return false
	}
	*e = Envelope{}
	var s struct {
		JSONRPC json.RawMessage `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  json.RawMessage `json:"method"`
		Params  json.RawMessage `json:"params"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(line, &s) != nil {
		return false
	}
	e.JSONRPC, e.ID, e.Method, e.Params, e.Result, e.Error = s.JSONRPC, s.ID, s.Method, s.Params, s.Result, s.Error
	return true
}

type scanResult int

const (
	scanOK       scanResult = iota
	scanBad                 // not a JSON object, or a malformed top level
	scanFallback            // use encoding/json
)

// scanEnvelope is Decode's fast path.
func scanEnvelope(b []byte, e *Envelope) scanResult {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return scanBad
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return endOfObject(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return scanBad
		}
		end := skipString(b, i)
		if end < 0 {
			return scanBad
		}
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return scanFallback
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return scanBad
		}
		i = skipSpace(b, i+1)
		end = skipValue(b, i)
		if end < 0 {
			return scanBad
		}
		val := b[i:end]
		switch string(key) {
		case "jsonrpc":
			e.JSONRPC = val
		case "id":
			e.ID = val
		case "method":
			e.Method = val
		case "params":
			e.Params = val
		case "result":
			e.Result = val
		case "error":
			e.Error = val
		default:
			for _, name := range memberNames {
				if bytes.EqualFold(key, name) { // json.Unmarshal would take it
					return scanFallback
				}
			}
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return scanBad
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return endOfObject(b, i+1)
		default:
			return scanBad
		}
	}
}

var memberNames = [][]byte{[]byte("jsonrpc"), []byte("id"), []byte("method"), []byte("params"), []byte("result"), []byte("error")}

func endOfObject(b []byte, i int) scanResult {
	if skipSpace(b, i) != len(b) {
		return scanBad
	}
	return scanOK
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just after the string starting at b[i] (a
// quote), or -1 if it does not end.
func skipString(b []byte, i int) int {
	i++
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return -1
		}
		i += q
		n := 0 // backslashes right before the quote: odd means escaped
		for j := i - 1; j >= 0 && b[j] == '\\'; j-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
}

// skipValue returns the index just after the JSON value starting at b[i], or
// -1. Objects and arrays are delimited by their brackets, not validated.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	j := i // a number or a literal
	for j < len(b) && isScalarByte(b[j]) {
		j++
	}
	v := b[i:j]
	if _, ok := parseInt(v); ok {
		return j
	}
	switch {
	case len(v) == 0:
		return -1
	case string(v) == "true" || string(v) == "false" || string(v) == "null":
		return j
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		if !json.Valid(v) {
			return -1
		}
		return j
	}
	return -1
}

func isScalarByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// String returns the Go string of a raw JSON string value. ok is false if
// raw is not a JSON string; absent and null give "".
func String(raw []byte) (s string, ok bool) {
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", true
	case len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0:
		for _, c := range raw[1 : len(raw)-1] {
			if c < 0x20 {
				return "", false
			}
		}
		return string(raw[1 : len(raw)-1]), true
	}
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

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
