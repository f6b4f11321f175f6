package jsonrpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParse feeds arbitrary bodies to the request edge's scanner. It
// must never panic and must answer exactly as the Decoder-based reference
// (refCheckMessage) does, code and message. Every refusal is a parse error or
// an invalid request; and a body it accepts is a single, valid, UTF-8 JSON
// object whose protocol keys (top level, params, params._meta) are unique and
// exactly spelled, so that the method and tool name a case-insensitive,
// last-key-wins decoder (mcp-go's encoding/json) sees are the ones an exact
// reading sees: the tool that is authorized is the tool that runs. The
// envelope the scanner reads matches exactly on keys; on an accepted body it
// must equal json.Unmarshal's, which matches case-insensitively.
//
// `make test` runs only the seeds (testdata/fuzz/FuzzParse and the
// f.Add calls below). A real run:
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 5m ./internal/jsonrpc/
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,-0,1e5,0.5E-3,true,false,null,"s"]},"_meta":{"progressToken":"t"}}}`,
		`{"para\u006ds":{"name":"a","n\u0061me":"b"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"\u0065cho","_meta":{"progressToken":null}}}`,
		`{"params":{"name":"\ud800","arguments":"\ud83d\ude00\udc00\ud800\u0041"}}`,
		`{"a":01}`, `{"a":-0}`, `{"a":1e5}`, `{"a":"\u00"}`, `{"a":"\ud800"}`, `{"a":"\x"}`,
		"{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}", `{"id":1,"id"`, `{"id":1x,"id":2}`,
		`{"paramſ":{}}`, `{"\u212aey":1,"key":2}`, `{"\u0130d":1}`, `{"Params":1}`, `{"_meta":{"a":1,"a":2}}`,
		`{"params":{"_meta":[1]}}`, `{"params":{"_meta":"x"}}`, `{"params":null,"id":null}`,
		"\v{\"id\":1}", "{\"id\":1}\u00a0", "\t{\"id\":1}\r\n", `{} x`, `{}}`, `{"a":[1,]}`,
		`{"a":` + strings.Repeat(`{"a":`, 199) + `1` + strings.Repeat("}", 200),
		`{"a":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat("}", 201),
		`{"a":` + strings.Repeat("[", 199) + "[]" + strings.Repeat("]", 199) + "}",
		`{"a":` + strings.Repeat("[", 200) + "]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		code, msg := checkMessage(body)
		if refCode, refMsg := refCheckMessage(body); code != refCode || msg != refMsg {
			t.Fatalf("%q: scanner says %d %q, the reference %d %q", body, code, msg, refCode, refMsg)
		}
		var fe fastEnvelope
		if c, m := scanMessage(body, &fe); c != code || m != msg {
			t.Fatalf("%q: scanMessage says %d %q, checkMessage %d %q", body, c, m, code, msg)
		}
		if code != 0 {
			if code != CodeParseError && code != CodeInvalidRequest {
				t.Fatalf("refused with code %d (%s), want -32700 or -32600", code, msg)
			}
			if msg == "" {
				t.Fatalf("refused with code %d and no message", code)
			}
			return
		}
		if d := diffEnvelope(fe, refEnvelope(body)); d != "" {
			t.Fatalf("accepted %q: envelope differs from json.Unmarshal: %s", body, d)
		}
		trimmed := bytes.TrimSpace(body)
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8: %q", body)
		}
		if !json.Valid(trimmed) || len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatalf("accepted something that is not one JSON object: %q", body)
		}
		exact, err := exactEnvelope(trimmed)
		if err != nil {
			t.Fatalf("accepted %q: %v", body, err)
		}
		var loose struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if json.Unmarshal(trimmed, &loose) == nil && (loose.Method != exact.method || loose.Params.Name != exact.name) {
			t.Fatalf("accepted %q: encoding/json reads method %q name %q, an exact reading %q %q",
				body, loose.Method, loose.Params.Name, exact.method, exact.name)
		}
	})
}

// FuzzValidJSON holds the result validator to json.Valid, and isErrorResult
// to the json.Unmarshal reading it replaced.
//
//	go test -run '^$' -fuzz '^FuzzValidJSON$' -fuzztime 5m ./internal/jsonrpc/
func FuzzValidJSON(f *testing.F) {
	for _, seed := range []string{
		`{"content":[{"type":"text","text":"hi"}],"isError":true}`,
		`{"isError":true,"isError":null}`, `{"ISERROR":true,"x":["isError"]}`, `{"is\u0045rror":false,"isError":true}`,
		`{"isError":"true"}`, `{"isError":true} x`, ` [1,2] `, `-0`, `01`, `1e5`, `1.`, `-`, `"\u00"`, `"\ud800"`,
		"\"\xff\"", "\"\x1f\"", `tru`, `{"a":}`, `[,]`, `{"a":1,}`, `[[[[{"a":[{}]}]]]]`,
	} { // TestValidJSON covers the 10,000-level nesting limit; seeds that big stall the fuzzer
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, want := validJSON(raw), json.Valid(raw); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", raw, got, want)
		}
		if got, want := isErrorResult(raw), refIsErrorResult(raw); got != want {
			t.Fatalf("isErrorResult(%q) = %v, json.Unmarshal reads %v", raw, got, want)
		}
	})
}

type exactFields struct{ method, name string }

// exactEnvelope reads the body case-sensitively and refuses duplicate or
// case-variant keys in the objects the edge promises to check.
func exactEnvelope(body []byte) (exactFields, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out exactFields
	if _, err := dec.Token(); err != nil {
		return out, err
	}
	err := walkObject(dec, "", &out)
	return out, err
}

func walkObject(dec *json.Decoder, path string, out *exactFields) error {
	seen := map[string]bool{}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		if seen[key] {
			return fmt.Errorf("duplicate key %q at %q", key, path)
		}
		for _, k := range keys {
			if strings.EqualFold(k, key) {
				return fmt.Errorf("keys %q and %q at %q differ only by case", k, key, path)
			}
		}
		for _, k := range knownKeys {
			if k != key && strings.EqualFold(k, key) {
				return fmt.Errorf("key %q at %q is a variant of %q", key, path, k)
			}
		}
		seen[key] = true
		keys = append(keys, key)
		child := path + "/" + key
		switch {
		case path == "" && key == "method", path == "/params" && key == "name":
			var v any
			if err := dec.Decode(&v); err != nil {
				return err
			}
			if s, ok := v.(string); ok {
				if key == "method" {
					out.method = s
				} else {
					out.name = s
				}
			}
		case path == "" && key == "params", path == "/params" && key == "_meta":
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			if d, ok := tok.(json.Delim); ok && d == '{' {
				if err := walkObject(dec, child, out); err != nil {
					return err
				}
			} else if ok {
				if err := skipRest(dec); err != nil {
					return err
				}
			}
		default:
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return err
			}
		}
	}
	_, err := dec.Token()
	return err
}

// skipRest skips the rest of an array whose '[' was read.
func skipRest(dec *json.Decoder) error {
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	if err == io.EOF {
		return nil
	}
	return err
}

// TestCheckMessageManyKeysIsLinear: the duplicate and case-variant key checks
// must not be quadratic in the number of keys, or one 4 MiB body of short keys
// in params (about 300,000 of them) pins a core for many minutes.
func TestCheckMessageManyKeysIsLinear(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"`)
	for i := range 20000 {
		fmt.Fprintf(&sb, `,"k%06d":0`, i)
	}
	sb.WriteString(`}}`)
	start := time.Now()
	code, msg := checkMessage([]byte(sb.String()))
	took := time.Since(start)
	t.Logf("20,000 keys in params (%d bytes): code %d %s in %v", sb.Len(), code, msg, took)
	// Linear takes well under a second even under the race detector; the
	// quadratic scan takes tens of seconds.
	if took > 2*time.Second {
		t.Errorf("checking 20,000 keys took %v: the key checks are quadratic", took)
	}
}
