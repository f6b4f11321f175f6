package mux

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

// FuzzCheckMessage feeds arbitrary bodies to the request edge's decoder. It
// must never panic; every refusal is a parse error or an invalid request; and
// a body it accepts is a single, valid, UTF-8 JSON object whose protocol keys
// (top level, params, params._meta) are unique and exactly spelled, so that
// the method and tool name a case-insensitive, last-key-wins decoder (mcp-go's
// encoding/json) sees are the ones an exact reading sees: the tool that is
// authorized is the tool that runs.
//
// `make test` runs only the seeds (testdata/fuzz/FuzzCheckMessage). A real run:
//
//	go test -run '^$' -fuzz '^FuzzCheckMessage$' -fuzztime 5m ./mux/
func FuzzCheckMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		code, msg := checkMessage(body)
		if code != 0 {
			if code != mcp.PARSE_ERROR && code != mcp.INVALID_REQUEST {
				t.Fatalf("refused with code %d (%s), want -32700 or -32600", code, msg)
			}
			if msg == "" {
				t.Fatalf("refused with code %d and no message", code)
			}
			return
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
