package jsonrpc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// stdlibEnvelope is the reference decoding: what json.Unmarshal sees.
func stdlibEnvelope(line []byte) (Envelope, bool) {
	var s struct {
		JSONRPC json.RawMessage `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  json.RawMessage `json:"method"`
		Params  json.RawMessage `json:"params"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(line, &s) != nil {
		return Envelope{}, false
	}
	return Envelope{s.JSONRPC, s.ID, s.Method, s.Params, s.Result, s.Error}, true
}

func TestEnvelopeDecode(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		want Envelope // for ok lines
	}{
		{"response", `{"jsonrpc":"2.0","id":7,"result":{"a":[1,"}",{"b":"\"]"}]}}`, true,
			Envelope{JSONRPC: []byte(`"2.0"`), ID: []byte(`7`), Result: []byte(`{"a":[1,"}",{"b":"\"]"}]}`)}},
		{"spaces everywhere", " { \"id\" : \"x\" , \"method\" : \"ping\" , \"jsonrpc\" : \"2.0\" } ", true,
			Envelope{JSONRPC: []byte(`"2.0"`), ID: []byte(`"x"`), Method: []byte(`"ping"`)}},
		{"unknown members skipped", `{"x":{"y":[true,false,null,-1.5e3]},"jsonrpc":"2.0","method":"m"}`, true,
			Envelope{JSONRPC: []byte(`"2.0"`), Method: []byte(`"m"`)}},
		{"duplicate member: last wins", `{"id":1,"id":2}`, true, Envelope{ID: []byte(`2`)}},
		{"escaped backslash before quote", `{"result":"a\\\\","id":1}`, true, Envelope{Result: []byte(`"a\\\\"`), ID: []byte(`1`)}},
		{"case variant member (encoding/json path)", `{"ID":3,"Result":{}}`, true, Envelope{ID: []byte(`3`), Result: []byte(`{}`)}},
		{"escaped member name (encoding/json path)", `{"\u0069d":4}`, true, Envelope{ID: []byte(`4`)}},
		{"empty object", `{}`, true, Envelope{}},
		{"not an object", `[1]`, false, Envelope{}},
		{"text", `hello`, false, Envelope{}},
		{"unterminated string", `{"id":"abc}`, false, Envelope{}},
		{"unbalanced", `{"result":{"a":1}`, false, Envelope{}},
		{"missing colon", `{"id" 1}`, false, Envelope{}},
		{"missing comma", `{"id":1 "x":2}`, false, Envelope{}},
		{"trailing data", `{"id":1} {"id":2}`, false, Envelope{}},
		{"bad literal", `{"id":tru}`, false, Envelope{}},
		{"bad number", `{"id":1.2.3}`, false, Envelope{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Envelope
			ok := e.Decode([]byte(tt.line))
			if ok != tt.ok {
				t.Fatalf("decode = %v, want %v", ok, tt.ok)
			}
			if ok && !sameEnvelope(e, tt.want) {
				t.Errorf("decode = %s, want %s", show(e), show(tt.want))
			}
		})
	}
}

func sameEnvelope(a, b Envelope) bool {
	eq := func(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) }
	return eq(a.JSONRPC, b.JSONRPC) && eq(a.ID, b.ID) && eq(a.Method, b.Method) &&
		eq(a.Params, b.Params) && eq(a.Result, b.Result) && eq(a.Error, b.Error)
}

func show(e Envelope) string {
	var b strings.Builder
	for _, f := range []struct {
		n string
		v []byte
	}{{"jsonrpc", e.JSONRPC}, {"id", e.ID}, {"method", e.Method}, {"params", e.Params}, {"result", e.Result}, {"error", e.Error}} {
		if f.v != nil {
			b.WriteString(f.n + "=" + string(f.v) + " ")
		}
	}
	return b.String()
}

// FuzzEnvelopeMatchesStdlib checks the fast path against encoding/json: on
// every valid JSON line both must find the same members, byte for byte.
func FuzzEnvelopeMatchesStdlib(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi \"there\" \\"}]}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"sb-1","progress":1}}`,
		`{"jsonrpc":"2.0","id":"a","method":"ping"}`,
		`{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"x","data":null}}`,
		`{"ID":1,"Id":2,"iD":3}`, `{"reſult":1}`, `{"\u0072esult":[]}`, `{"a":{"id":1},"id":[{"x":"]"}]}`,
		`{"id":-0}`, `{"id":1e400}`, `  {}  `, `{"id":"\\"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var e Envelope
		ok := e.Decode(line) // must not panic on anything
		if !json.Valid(line) {
			return
		}
		want, wantOK := stdlibEnvelope(line)
		if !wantOK { // valid JSON but not an object
			if ok {
				t.Fatalf("decode accepted a non-object %q", line)
			}
			return
		}
		if !ok {
			t.Fatalf("decode rejected valid object %q", line)
		}
		if !sameEnvelope(e, want) {
			t.Fatalf("decode(%q) = %s, encoding/json = %s", line, show(e), show(want))
		}
	})
}

func TestJSONString(t *testing.T) {
	tests := []struct {
		raw  string
		want string
		ok   bool
	}{
		{``, "", true},
		{`null`, "", true},
		{`"tools/call"`, "tools/call", true},
		{`"a\u0062c"`, "abc", true},
		{`"tab	inside"`, "", false},
		{`1`, "", false},
		{`{"a":1}`, "", false},
	}
	for _, tt := range tests {
		got, ok := String([]byte(tt.raw))
		if got != tt.want || ok != tt.ok {
			t.Errorf("String(%s) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		raw  string
		want int64
		ok   bool
	}{
		{`7`, 7, true}, {`-3`, -3, true}, {`"12"`, 12, true}, {`"abc"`, 0, false},
		{`1.5`, 0, false}, {`1e3`, 0, false}, {`12345678901234567890`, 0, false}, {`{"x":1}`, 0, false}, {`""`, 0, false},
	}
	for _, tt := range tests {
		if got, ok := ParseID([]byte(tt.raw)); got != tt.want || ok != tt.ok {
			t.Errorf("ParseID(%s) = %d, %v; want %d, %v", tt.raw, got, ok, tt.want, tt.ok)
		}
	}
}

// BenchmarkEnvelope compares the fast path with encoding/json on a small
// response and on a 1 MiB one.
func BenchmarkEnvelope(b *testing.B) {
	small := []byte(`{"jsonrpc":"2.0","id":12345,"result":{"content":[{"type":"text","text":"hello world"}],"isError":false}}`)
	big := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"` + strings.Repeat(`lorem ipsum \"dolor\" `, 50000) + `"}]}}`)
	for _, c := range []struct {
		name string
		line []byte
	}{{"small", small}, {"1MiB", big}} {
		b.Run(c.name+"/fast", func(b *testing.B) {
			b.SetBytes(int64(len(c.line)))
			b.ReportAllocs()
			var e Envelope
			for b.Loop() {
				if !e.Decode(c.line) {
					b.Fatal("decode failed")
				}
				_ = Clone(e.Result)
			}
		})
		b.Run(c.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(c.line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := stdlibEnvelope(c.line); !ok {
					b.Fatal("decode failed")
				}
			}
		})
	}
}
