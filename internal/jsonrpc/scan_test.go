package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refCheckMessage is the checkMessage that scanMessage replaced: a walk over
// json.Decoder tokens. It is slow but plainly right, so the tests and the
// fuzz targets hold the scanner to it, code and message.
func refCheckMessage(body []byte) (int, string) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return CodeParseError, "empty request body"
	}
	if !utf8.Valid(body) {
		return CodeParseError, "request body is not valid UTF-8"
	}
	if body[0] == '[' {
		return CodeInvalidRequest, "JSON-RPC batches are not supported"
	}
	if body[0] != '{' {
		return CodeInvalidRequest, "a JSON-RPC message must be an object"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // '{'
		return CodeParseError, "invalid JSON"
	}
	if err := refCheckObjectBody(dec, 0, true); err != nil {
		var ke keyError
		if errors.As(err, &ke) {
			return CodeInvalidRequest, ke.Error()
		}
		return CodeParseError, "invalid JSON"
	}
	if _, err := dec.Token(); err != io.EOF {
		return CodeParseError, "trailing data after the JSON-RPC message"
	}
	return 0, ""
}

type keyError string

func (e keyError) Error() string { return string(e) }

func refCheckValue(dec *json.Decoder, depth int, strictKeys bool) error {
	if depth > maxDepth {
		return keyError("JSON nesting is too deep")
	}
	if !dec.More() {
		return errors.New("missing value")
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		return refCheckObjectBody(dec, depth, strictKeys)
	case '[':
		for dec.More() {
			if err := refCheckValue(dec, depth+1, false); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return errors.New("unexpected delimiter")
}

func refCheckObjectBody(dec *json.Decoder, depth int, strictKeys bool) error {
	var seen map[string]string // canonical fold → key as sent
	if strictKeys {
		seen = map[string]string{}
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if strictKeys {
			fk := foldKey(key)
			if prev, ok := seen[fk]; ok {
				if prev == key {
					return keyError("duplicate key " + quote(key))
				}
				return keyError("keys " + quote(prev) + " and " + quote(key) + " differ only by case")
			}
			if k, ok := knownFolded[fk]; ok && k != key {
				return keyError("key " + quote(key) + " must be spelled " + quote(k))
			}
			seen[fk] = key
		}
		if err := refCheckValue(dec, depth+1, strictKeys && (key == "params" || key == "_meta")); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

// knownFolded maps the fold of each protocol key to its one correct spelling:
// the reference's table, which knownSpelling must agree with.
var knownFolded = func() map[string]string {
	m := make(map[string]string, len(knownKeys))
	for _, k := range knownKeys {
		m[foldKey(k)] = k
	}
	return m
}()

// refEnvelope is what the edge used to read: json.Unmarshal of the whole body.
func refEnvelope(body []byte) fastEnvelope {
	var fe fastEnvelope
	body = bytes.TrimSpace(body)
	_ = json.Unmarshal(body, &fe)
	fe.progress = refHasProgressToken(fe.Params.Meta)
	var top struct {
		Params json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(body, &top)
	fe.params = top.Params
	return fe
}

// refHasProgressToken is the old Unmarshal-based progress check.
func refHasProgressToken(meta json.RawMessage) bool {
	if len(meta) == 0 || string(meta) == "null" {
		return false
	}
	var m struct {
		ProgressToken json.RawMessage `json:"progressToken"`
	}
	if json.Unmarshal(meta, &m) != nil {
		return true
	}
	return len(m.ProgressToken) > 0 && string(m.ProgressToken) != "null"
}

// refIsErrorResult is the old isErrorResult, which decoded the whole result.
func refIsErrorResult(raw []byte) bool {
	if !bytes.Contains(raw, []byte(`"isError"`)) {
		return false
	}
	var r struct {
		IsError bool `json:"isError"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.IsError
}

// diffEnvelope describes how two envelopes differ, or returns "".
func diffEnvelope(got, want fastEnvelope) string {
	var d []string
	if got.JSONRPC != want.JSONRPC {
		d = append(d, fmt.Sprintf("jsonrpc %q, want %q", got.JSONRPC, want.JSONRPC))
	}
	if !bytes.Equal(got.ID, want.ID) {
		d = append(d, fmt.Sprintf("id %q, want %q", got.ID, want.ID))
	}
	if got.Method != want.Method {
		d = append(d, fmt.Sprintf("method %q, want %q", got.Method, want.Method))
	}
	if got.Params.Name != want.Params.Name {
		d = append(d, fmt.Sprintf("name %q, want %q", got.Params.Name, want.Params.Name))
	}
	if !bytes.Equal(got.Params.Arguments, want.Params.Arguments) {
		d = append(d, fmt.Sprintf("arguments %q, want %q", got.Params.Arguments, want.Params.Arguments))
	}
	if !bytes.Equal(got.Params.Meta, want.Params.Meta) {
		d = append(d, fmt.Sprintf("_meta %q, want %q", got.Params.Meta, want.Params.Meta))
	}
	if !bytes.Equal(got.params, want.params) {
		d = append(d, fmt.Sprintf("params %q, want %q", got.params, want.params))
	}
	if got.progress != want.progress {
		d = append(d, fmt.Sprintf("progress %v, want %v", got.progress, want.progress))
	}
	return strings.Join(d, "; ")
}

// nest wraps inner in n objects {"a":…} after the top-level one.
func nest(n int, inner string) string {
	return `{"a":` + strings.Repeat(`{"a":`, n-1) + inner + strings.Repeat("}", n)
}

func TestScanMessageRefusals(t *testing.T) {
	var many strings.Builder
	many.WriteString(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"`)
	for i := range 30 {
		fmt.Fprintf(&many, `,"k%02d":0`, i)
	}
	manyKeys := many.String()
	const (
		parse   = CodeParseError
		invalid = CodeInvalidRequest
		bad     = "invalid JSON"
		deep    = "JSON nesting is too deep"
	)
	tests := []struct {
		name string
		body string
		code int
		msg  string
	}{
		{"ok", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"Name":"free","name":"free"}}}`, 0, ""},
		{"ok whitespace", " \t\r\n{ \"id\" : 1 , \"params\" : { } } \n", 0, ""},
		{"ok unicode space around", "\u00a0\v{}\u3000", 0, ""},
		{"ok empty key", `{"":1}`, 0, ""},
		{"ok numbers", `{"a":[0,-0,1e5,1E+5,-1.5e-7,123456789012345678901234567890,0.0]}`, 0, ""},
		{"ok lone surrogate", `{"a":"\ud800","\udc00":"\ud800\u0041"}`, 0, ""},
		{"ok arguments not strict", `{"params":{"arguments":{"a":1,"a":2,"A":3}}}`, 0, ""},
		{"ok params array not strict", `{"params":[{"name":1,"name":2}]}`, 0, ""},
		{"ok depth 200", nest(200, "1"), 0, ""},
		{"ok empty array at depth 200", nest(200, "[]"), 0, ""},
		{"ok many keys", manyKeys + `}}`, 0, ""},

		{"empty", ``, parse, "empty request body"},
		{"only spaces", " \n\t\u00a0 ", parse, "empty request body"},
		{"invalid utf8", "{\"a\":\"\xff\"}", parse, "request body is not valid UTF-8"},
		{"invalid utf8 after syntax error", "{,\"\xc3\"}", parse, "request body is not valid UTF-8"},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, invalid, "JSON-RPC batches are not supported"},
		{"batch garbage", `[`, invalid, "JSON-RPC batches are not supported"},
		{"string", `"hello"`, invalid, "a JSON-RPC message must be an object"},
		{"number", `12`, invalid, "a JSON-RPC message must be an object"},
		{"bom", "\ufeff{}", invalid, "a JSON-RPC message must be an object"},

		{"truncated", `{"jsonrpc":"2.0",`, parse, bad},
		{"open brace", `{`, parse, bad},
		{"leading zero", `{"a":01}`, parse, bad},
		{"minus alone", `{"a":-}`, parse, bad},
		{"dot no digits", `{"a":1.}`, parse, bad},
		{"exponent no digits", `{"a":1e+}`, parse, bad},
		{"plus sign", `{"a":+1}`, parse, bad},
		{"short unicode escape", `{"a":"\u00"}`, parse, bad},
		{"bad escape", `{"a":"\x"}`, parse, bad},
		{"single quote escape", `{"a":"\'"}`, parse, bad},
		{"raw tab in string", "{\"a\":\"a\tb\"}", parse, bad},
		{"raw newline in key", "{\"a\nb\":1}", parse, bad},
		{"tru", `{"a":tru}`, parse, bad},
		{"nul", `{"a":nul}`, parse, bad},
		{"True", `{"a":True}`, parse, bad},
		{"missing colon", `{"a" 1}`, parse, bad},
		{"missing value", `{"a":}`, parse, bad},
		{"trailing comma", `{"a":1,}`, parse, bad},
		{"leading comma", `{,"a":1}`, parse, bad},
		{"bracket mismatch", `{"a":1]`, parse, bad},
		{"array trailing comma", `{"a":[1,]}`, parse, bad},
		{"array leading comma", `{"a":[,1]}`, parse, bad},
		{"array closed by brace", `{"a":[1}}`, parse, bad},
		{"key without value", `{"a":{"b"}}`, parse, bad},
		{"non-string key", `{1:2}`, parse, bad},
		{"vertical tab inside", "{\"a\":\v1}", parse, bad},
		{"missing comma", `{"a":1 "b":2}`, parse, bad},
		{"syntax before later duplicate", `{"id":1x,"id":2}`, parse, bad},

		{"trailing object", `{"id":1} {}`, parse, "trailing data after the JSON-RPC message"},
		{"trailing brace", `{}}`, parse, "trailing data after the JSON-RPC message"},
		{"trailing nbsp and garbage", "{}\u00a0x", parse, "trailing data after the JSON-RPC message"},

		{"too deep objects", nest(201, "1"), invalid, deep},
		{"too deep arrays", `{"a":` + strings.Repeat("[", 200) + "1" + strings.Repeat("]", 200) + `}`, invalid, deep},
		{"too deep before syntax error", nest(201, "}"), invalid, deep},
		{"too deep after key only", `{"a":` + strings.Repeat(`{"a":`, 199) + `{"k"`, invalid, deep},
		{"not too deep when empty", nest(200, "{}"), 0, ""},
		{"truncated at depth", nest(200, "[") + "x", parse, bad},
		{"too deep array before bad element", nest(200, "[,]"), invalid, deep},

		{"ok strict chain at depth 200", strings.Repeat(`{"params":`, 200) + `{}` + strings.Repeat("}", 200), 0, ""},
		{"too deep strict chain", strings.Repeat(`{"params":`, 201) + `1` + strings.Repeat("}", 201), invalid, deep},
		{"key checked before depth", strings.Repeat(`{"_meta":`, 200) + `{"Params":1}` + strings.Repeat("}", 200), invalid, `key "Params" must be spelled "params"`},

		{"duplicate id", `{"id":1,"id":2}`, invalid, `duplicate key "id"`},
		{"duplicate unknown", `{"x":1,"x":2}`, invalid, `duplicate key "x"`},
		{"duplicate before truncation", `{"id":1,"id"`, invalid, `duplicate key "id"`},
		{"duplicate before missing colon", `{"id":1,"id" 2}`, invalid, `duplicate key "id"`},
		{"escaped duplicate", `{"method":"a","metho\u0064":"b"}`, invalid, `duplicate key "method"`},
		{"escaped slash duplicate", `{"a/b":1,"a\/b":2}`, invalid, `duplicate key "a/b"`},
		{"case variant", `{"foo":1,"FOO":2}`, invalid, `keys "foo" and "FOO" differ only by case`},
		{"case variant Method", `{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`, invalid, `key "Method" must be spelled "method"`},
		{"escaped variant", `{"\u004dethod":"x"}`, invalid, `key "Method" must be spelled "method"`},
		{"unicode fold paramſ", `{"paramſ":{"name":"x"}}`, invalid, `key "paramſ" must be spelled "params"`},
		{"escaped params is strict", `{"para\u006ds":{"name":"a","name":"b"}}`, invalid, `duplicate key "name"`},
		{"kelvin fold", `{"params":{"\u212aey":1,"key":2}}`, invalid, "keys \"\u212aey\" and \"key\" differ only by case"},
		{"ascii then kelvin", `{"params":{"key":1,"\u212aey":2}}`, invalid, "keys \"key\" and \"\u212aey\" differ only by case"},
		{"dotted I folds to id", `{"\u0130d":1}`, invalid, "key \"\u0130d\" must be spelled \"id\""},
		{"params name case", `{"params":{"name":"a","Name":"b"}}`, invalid, `keys "name" and "Name" differ only by case`},
		{"meta case", `{"params":{"_meta":{"progressToken":1,"ProgressToken":2}}}`, invalid, `keys "progressToken" and "ProgressToken" differ only by case`},
		{"meta misspelt", `{"params":{"_meta":{"progresstoken":1}}}`, invalid, `key "progresstoken" must be spelled "progressToken"`},
		{"top meta strict", `{"_meta":{"a":1,"a":2}}`, invalid, `duplicate key "a"`},
		{"params in params strict", `{"params":{"params":{"a":1,"A":2}}}`, invalid, `keys "a" and "A" differ only by case`},
		{"many keys duplicate", manyKeys + `,"k03":1}}`, invalid, `duplicate key "k03"`},
		{"many keys case", manyKeys + `,"K29":1}}`, invalid, `keys "k29" and "K29" differ only by case`},
		{"many keys misspelt", manyKeys + `,"ARGUMENTS":1}}`, invalid, `key "ARGUMENTS" must be spelled "arguments"`},
		{"many keys then name again", manyKeys + `,"name":1}}`, invalid, `duplicate key "name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if code, msg := refCheckMessage(body); code != tt.code || msg != tt.msg {
				t.Errorf("reference: %d %q, want %d %q", code, msg, tt.code, tt.msg)
			}
			if code, msg := checkMessage(body); code != tt.code || msg != tt.msg {
				t.Errorf("checkMessage: %d %q, want %d %q", code, msg, tt.code, tt.msg)
			}
			var fe fastEnvelope
			if code, msg := scanMessage(body, &fe); code != tt.code || msg != tt.msg {
				t.Errorf("scanMessage: %d %q, want %d %q", code, msg, tt.code, tt.msg)
			}
		})
	}
}

// TestKnownSpelling: the scanner's switch knows exactly the protocol keys of
// knownKeys, under the same folding.
func TestKnownSpelling(t *testing.T) {
	for fold, want := range knownFolded {
		if got, ok := knownSpelling([]byte(fold)); !ok || got != want {
			t.Errorf("knownSpelling(%q) = %q %v, want %q", fold, got, ok, want)
		}
	}
	for _, k := range append(slices.Clone(knownKeys), "Params", "progressToken", "key", "", "paramſ", "paramss") {
		want, wantOK := knownFolded[k]
		if got, ok := knownSpelling([]byte(k)); got != want || ok != wantOK {
			t.Errorf("knownSpelling(%q) = %q %v, knownFolded has %q %v", k, got, ok, want, wantOK)
		}
	}
}

func TestScanMessageEnvelope(t *testing.T) {
	tests := []struct {
		name string
		body string
		want fastEnvelope // checked only where set; always compared with json.Unmarshal
	}{
		{name: "tools/call", body: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"hi"}}}`},
		{name: "progress", body: `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","_meta":{"progressToken":1}}}`},
		{name: "progress null", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":null}}}`},
		{name: "progress string", body: `{"id":1,"params":{"_meta":{"x":[],"progressToken":"t"}}}`},
		{name: "meta empty", body: `{"id":1,"params":{"_meta":{}}}`},
		{name: "meta null", body: `{"id":1,"params":{"_meta":null}}`},
		{name: "meta array", body: `{"id":1,"params":{"_meta":[1]}}`},
		{name: "meta string", body: `{"id":1,"params":{"_meta":"x"}}`},
		{name: "top meta not read", body: `{"id":1,"_meta":{"progressToken":1},"params":{}}`},
		{name: "escaped values", body: `{"jsonrpc":"2\u002e0","method":"tools\/call","params":{"name":"a\"b\\c\u00e9\ud83d\ude00\ud800x\udc00\n"}}`},
		{name: "escaped keys", body: `{"json\u0072pc":"2.0","\u0069d":3,"metho\u0064":"ping","para\u006ds":{"n\u0061me":"t","\u0061rguments":[1],"\u005fmeta":{"progress\u0054oken":0}}}`},
		{name: "id null", body: `{"id":null,"method":"ping"}`},
		{name: "id object", body: `{"id": { "a" : [ 1 , 2 ] } ,"method":"ping"}`},
		{name: "method not a string", body: `{"jsonrpc":2,"method":5,"params":{"name":{"a":1}}}`},
		{name: "method null", body: `{"jsonrpc":null,"method":null,"params":{"name":null,"arguments":null}}`},
		{name: "params null", body: `{"method":"tools/call","params":null}`},
		{name: "params array", body: `{"method":"tools/call","params":[{"name":"x"}]}`},
		{name: "params string", body: `{"method":"tools/call","params":"x"}`},
		{name: "arguments with spaces", body: `{"params":{"arguments" :  { "a" : 1 }  }}`},
		{name: "json whitespace around", body: " \r\n\t{\"method\":\"ping\",\"id\":1}\n"},
		{name: "vertical tab around", body: "\v{\"method\":\"ping\",\"id\":1}"},
		{name: "nbsp around", body: "{\"method\":\"ping\",\"id\":1}\u00a0"},
		{name: "unknown method", body: `{"jsonrpc":"2.0","id":1,"method":"x/y","params":{"name":"n"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			var got fastEnvelope
			if code, msg := scanMessage(body, &got); code != 0 {
				t.Fatalf("scanMessage refused: %d %s", code, msg)
			}
			if d := diffEnvelope(got, refEnvelope(body)); d != "" {
				t.Errorf("envelope differs from json.Unmarshal: %s", d)
			}
		})
	}
	// The raw members are subslices of the body, capped so that an append
	// cannot write into it.
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}`)
	var fe fastEnvelope
	if code, _ := scanMessage(body, &fe); code != 0 {
		t.Fatal(code)
	}
	if cap(fe.Params.Arguments) != len(fe.Params.Arguments) || &fe.Params.Arguments[0] != &body[bytes.Index(body, []byte(`{"a"`))] {
		t.Errorf("arguments are not a capped subslice of the body")
	}
	// A refused body leaves the envelope empty.
	fe.Method = "stale"
	if code, _ := scanMessage([]byte(`{"method":"tools/call","id":1,"id":2}`), &fe); code == 0 {
		t.Fatal("duplicate accepted")
	}
	if d := diffEnvelope(fe, fastEnvelope{}); d != "" {
		t.Errorf("envelope after a refusal: %s", d)
	}
}

// TestScanMessageAllocs: parsing an ordinary message allocates only the tool
// name (method names and versions are constants).
func TestScanMessageAllocs(t *testing.T) {
	body := benchBody(100)
	var m Message
	if n := testing.AllocsPerRun(100, func() { Parse(body, &m, EdgeDepth) }); n > 1 {
		t.Errorf("Parse: %v allocations, want at most 1 (the tool name)", n)
	}
	var fe fastEnvelope
	if n := testing.AllocsPerRun(100, func() { scanMessage(body, &fe) }); n > 1 {
		t.Errorf("scanMessage with envelope: %v allocations, want at most 1 (the tool name)", n)
	}
	result := benchResult(100)
	if n := testing.AllocsPerRun(100, func() { validJSON(result) }); n != 0 {
		t.Errorf("validJSON: %v allocations, want 0", n)
	}
}

func TestValidJSON(t *testing.T) {
	deep := func(n int, open, close string) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	tests := []string{
		``, ` `, `{}`, `[]`, `1`, `-0`, `-`, `01`, `1.5e3`, `1e`, `.5`, `"x"`, `"\ud800"`, `"\u00"`,
		"\"\xff\xfe\"", "\"a\x1fb\"", "\"a\x7fb\"", `"\/\b\f\n\r\t\"\\"`, `"\a"`, `true`, `tru`, `nulll`,
		` {"a" : [ 1 , { } , [ ] ] } `, `{"a":1,}`, `[1,]`, `[,]`, `{"a"}`, `{1:2}`, "\v{}", `{}{}`, `{} x`,
		`{"content":[{"type":"text","text":"hi"}],"isError":false}`,
		deep(10000, "[", "]"), deep(10001, "[", "]"), deep(10000, `{"a":`, "}"),
		`{"a":` + deep(9999, "[", "]") + `}`, `{"a":` + deep(10000, "[", "]") + `}`,
	}
	for _, in := range tests {
		if got, want := validJSON([]byte(in)), json.Valid([]byte(in)); got != want {
			name := in
			if len(name) > 40 {
				name = name[:40] + "…"
			}
			t.Errorf("validJSON(%q) = %v, json.Valid says %v", name, got, want)
		}
	}
}

func TestIsErrorResult(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{`{"content":[],"isError":true}`, true},
		{`{"isError":false}`, false},
		{`{"content":[{"type":"text","text":"\"isError\":true"}]}`, false},
		{`{"content":{"isError":true}}`, false},
		{`{"isError":true,"isError":false}`, false},
		{`{"isError":true,"isError":null}`, true},
		{`{"isError":true,"ISERROR":"yes"}`, true},
		{`{"ISERROR":true}`, false}, // no "isError" anywhere: the cheap check says no
		{`{"ISERROR":true,"x":"\"isError\""}`, false},
		{`{"ISERROR":true,"x":["isError"]}`, true},
		{`{"is\u0045rror":true,"x":["isError"]}`, true},
		{`{"isError":1}`, false},
		{`{"isError" : true }`, true},
		{`{"isError":true} x`, false},
		{`{"isError":true,}`, false},
		{`[{"isError":true}]`, false},
	}
	for _, tt := range tests {
		raw := []byte(tt.raw)
		if got := isErrorResult(raw); got != tt.want {
			t.Errorf("isErrorResult(%s) = %v, want %v", tt.raw, got, tt.want)
		}
		if ref := refIsErrorResult(raw); ref != tt.want {
			t.Errorf("reference isErrorResult(%s) = %v, want %v", tt.raw, ref, tt.want)
		}
	}
}

// benchBody is a tools/call whose argument text is n bytes.
func benchBody(n int) []byte {
	return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"` + strings.Repeat("x", n) + `"}}}`)
}

// benchResult is a CallToolResult whose text is n bytes.
func benchResult(n int) []byte {
	return []byte(`{"content":[{"type":"text","text":"` + strings.Repeat("x", n) + `"}],"structuredContent":{"n":1,"ok":true}}`)
}

var benchSizes = []struct {
	name string
	n    int
}{{"100B", 100}, {"64KiB", 64 << 10}}

// BenchmarkCheckMessage compares the edge's work on one request body: before,
// the token walk then json.Unmarshal of the envelope; now, one scan.
func BenchmarkCheckMessage(b *testing.B) {
	for _, sz := range benchSizes {
		body := benchBody(sz.n)
		b.Run(sz.name+"/old", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if code, _ := refCheckMessage(body); code != 0 {
					b.Fatal(code)
				}
				var fe fastEnvelope
				_ = json.Unmarshal(body, &fe)
			}
		})
		b.Run(sz.name+"/new", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var fe fastEnvelope
				if code, _ := scanMessage(body, &fe); code != 0 {
					b.Fatal(code)
				}
			}
		})
	}
}

// BenchmarkValidResult compares the check of a child's result.
func BenchmarkValidResult(b *testing.B) {
	for _, sz := range benchSizes {
		raw := benchResult(sz.n)
		b.Run(sz.name+"/old", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if !json.Valid(raw) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(sz.name+"/new", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if !validJSON(raw) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// BenchmarkIsErrorResult compares reading "isError" from a 64 KiB result.
func BenchmarkIsErrorResult(b *testing.B) {
	raw := []byte(`{"content":[{"type":"text","text":"` + strings.Repeat("x", 64<<10) + `"}],"isError":true}`)
	for _, impl := range []struct {
		name string
		fn   func([]byte) bool
	}{{"old", refIsErrorResult}, {"new", isErrorResult}} {
		b.Run("64KiB/"+impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if !impl.fn(raw) {
					b.Fatal("not an error")
				}
			}
		})
	}
}
