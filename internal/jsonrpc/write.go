package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// The gateway writes JSON-RPC frames — answers to clients, requests to
// children — with these helpers. Raw members are copied as they are: a
// result is never decoded and encoded again on its way through.

// AppendString appends s as a JSON string. Plain printable ASCII is copied;
// anything else is escaped as encoding/json does (invalid UTF-8 becomes
// U+FFFD).
func AppendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// AppendResult appends the response {"jsonrpc":"2.0","id":id,"result":result}.
func AppendResult(dst, id, result []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = appendID(dst, id)
	dst = append(dst, `,"result":`...)
	dst = append(dst, result...)
	return append(dst, '}')
}

// AppendError appends an error response. data, if not nil, is raw JSON.
func AppendError(dst, id []byte, code int, msg string, data []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = appendID(dst, id)
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, msg)
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, "}}"...)
}

// AppendRequest appends a request; params is a raw object or nil.
func AppendRequest(dst, id []byte, method string, params []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"method":`...)
	dst = AppendString(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	return append(dst, '}')
}

// AppendNotification appends a notification; params is a raw object or nil.
func AppendNotification(dst []byte, method string, params []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":`...)
	dst = AppendString(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	return append(dst, '}')
}

func appendID(dst, id []byte) []byte {
	if len(id) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, id...)
}

// Member returns the raw value of the top-level member key of the JSON
// object obj, which must be valid JSON. ok is false when obj is not an
// object or has no such member; the last of several wins.
func Member(obj []byte, key string) (val []byte, ok bool) {
	s := scanner{b: obj, childLimit: 1 << 30, nestLimit: MaxNesting}
	s.ws()
	if s.i >= len(obj) || obj[s.i] != '{' {
		return nil, false
	}
	s.i++
	s.ws()
	if s.i < len(obj) && obj[s.i] == '}' {
		return nil, false
	}
	for {
		k, kok := s.key()
		if !kok || !s.colon() {
			return nil, false
		}
		start := s.i
		if !s.value(1) {
			return nil, false
		}
		if string(k) == key {
			val, ok = obj[start:s.i:s.i], true
		}
		closed, nok := s.next('}')
		if !nok {
			return nil, false
		}
		if closed {
			return val, ok
		}
	}
}

// SetMember appends to dst the JSON object obj with its top-level member key
// set to val: every member named key is dropped and key:val is written
// first. obj must be a valid JSON object; val is raw JSON.
func SetMember(dst, obj []byte, key string, val []byte) []byte {
	dst = append(dst, '{')
	dst = AppendString(dst, key)
	dst = append(dst, ':')
	dst = append(dst, val...)
	return appendMembersExcept(dst, obj, key)
}

// PrependMembers appends to dst the JSON object obj with members (raw text
// of the form `"k":v,"k2":v2`) inserted first. obj must be a valid JSON
// object; members must not name keys obj already has.
func PrependMembers(dst, obj, members []byte) []byte {
	i := 0
	for i < len(obj) && obj[i] != '{' {
		i++
	}
	dst = append(dst, '{')
	dst = append(dst, members...)
	rest := obj[i+1:]
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t' || rest[j] == '\n' || rest[j] == '\r') {
		j++
	}
	if j < len(rest) && rest[j] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, rest[j:]...)
}

// appendMembersExcept appends ,"k":v for every top-level member of obj not
// named skip, then the closing brace.
func appendMembersExcept(dst, obj []byte, skip string) []byte {
	s := scanner{b: obj, childLimit: 1 << 30, nestLimit: MaxNesting}
	s.ws()
	if s.i >= len(obj) || obj[s.i] != '{' {
		return append(dst, '}')
	}
	s.i++
	s.ws()
	if s.i < len(obj) && obj[s.i] == '}' {
		return append(dst, '}')
	}
	for {
		kstart := s.i
		k, ok := s.key()
		if !ok || !s.colon() {
			return append(dst, '}')
		}
		kend := s.i
		if !s.value(1) {
			return append(dst, '}')
		}
		if string(k) != skip {
			dst = append(dst, ',')
			dst = append(dst, obj[kstart:kend]...)
			dst = append(dst, obj[kend:s.i]...)
		}
		closed, ok := s.next('}')
		if !ok || closed {
			return append(dst, '}')
		}
	}
}

// DeleteMembers appends to dst the JSON object obj without its top-level
// members named in keys, keeping the order of the others. obj must be a
// valid JSON object.
func DeleteMembers(dst, obj []byte, keys ...string) []byte {
	s := scanner{b: obj, childLimit: 1 << 30, nestLimit: MaxNesting}
	s.ws()
	dst = append(dst, '{')
	if s.i >= len(obj) || obj[s.i] != '{' {
		return append(dst, '}')
	}
	s.i++
	s.ws()
	if s.i < len(obj) && obj[s.i] == '}' {
		return append(dst, '}')
	}
	first := true
	for {
		kstart := s.i
		k, ok := s.key()
		if !ok || !s.colon() {
			return append(dst, '}')
		}
		if !s.value(1) {
			return append(dst, '}')
		}
		skip := false
		for _, d := range keys {
			if string(k) == d {
				skip = true
				break
			}
		}
		if !skip {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, obj[kstart:s.i]...)
		}
		closed, ok := s.next('}')
		if !ok || closed {
			return append(dst, '}')
		}
	}
}

// WithInput returns a retried request's params: params (an object, or empty)
// without _meta and any earlier requestState, with inputResponses set to
// answers and requestState to *state when state is not nil (2026-07-28
// multi-round-trip requests).
func WithInput(params []byte, answers map[string]json.RawMessage, state *string) ([]byte, error) {
	p := []byte(`{}`)
	if t := bytes.TrimSpace(params); len(t) > 0 {
		if t[0] != '{' {
			return nil, errors.New("params are not a JSON object")
		}
		p = t
	}
	b, err := json.Marshal(answers)
	if err != nil {
		return nil, err
	}
	out := SetMember(nil, DeleteMembers(nil, p, "_meta", "requestState"), "inputResponses", b)
	if state != nil {
		out = SetMember(nil, out, "requestState", AppendString(nil, *state))
	}
	if !json.Valid(out) {
		return nil, errors.New("params are not a JSON object")
	}
	return out, nil
}
