package jsonrpc

import (
	"encoding/json"
	"strings"
	"testing"
)

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

// BenchmarkParse compares Parse, which validates, with encoding/json's
// envelope decoding, which validates too, on a small response and a 1 MiB one.
func BenchmarkParse(b *testing.B) {
	small := []byte(`{"jsonrpc":"2.0","id":12345,"result":{"content":[{"type":"text","text":"hello world"}],"isError":false}}`)
	big := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"` + strings.Repeat(`lorem ipsum \"dolor\" `, 50000) + `"}]}}`)
	for _, c := range []struct {
		name string
		line []byte
	}{{"small", small}, {"1MiB", big}} {
		b.Run(c.name+"/parse", func(b *testing.B) {
			b.SetBytes(int64(len(c.line)))
			b.ReportAllocs()
			var m Message
			for b.Loop() {
				if err := Parse(c.line, &m, MaxNesting); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(c.line)))
			b.ReportAllocs()
			for b.Loop() {
				var s struct {
					JSONRPC json.RawMessage `json:"jsonrpc"`
					ID      json.RawMessage `json:"id"`
					Result  json.RawMessage `json:"result"`
				}
				if err := json.Unmarshal(c.line, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestObjectEditing(t *testing.T) {
	obj := []byte(`{ "a" : 1, "b":{"x":[1,"}"]}, "c":"\"}" }`)
	if v, ok := Member(obj, "b"); !ok || string(v) != `{"x":[1,"}"]}` {
		t.Errorf("Member b = %s %v", v, ok)
	}
	if _, ok := Member(obj, "z"); ok {
		t.Error("Member z found")
	}
	if got := string(SetMember(nil, obj, "b", []byte(`2`))); got != `{"b":2,"a" : 1,"c":"\"}"}` {
		t.Errorf("SetMember = %s", got)
	}
	if got := string(SetMember(nil, []byte(`{}`), "k", []byte(`true`))); got != `{"k":true}` {
		t.Errorf("SetMember on {} = %s", got)
	}
	if got := string(DeleteMembers(nil, obj, "a", "c")); got != `{"b":{"x":[1,"}"]}}` {
		t.Errorf("DeleteMembers = %s", got)
	}
	if got := string(DeleteMembers(nil, obj, "a", "b", "c")); got != `{}` {
		t.Errorf("DeleteMembers of all = %s", got)
	}
	if got := string(PrependMembers(nil, []byte(` { }`), []byte(`"k":1`))); got != `{"k":1}` {
		t.Errorf("PrependMembers on {} = %s", got)
	}
	if got := string(PrependMembers(nil, []byte(`{"a":1}`), []byte(`"k":1`))); got != `{"k":1,"a":1}` {
		t.Errorf("PrependMembers = %s", got)
	}
	for _, b := range [][]byte{SetMember(nil, obj, "b", []byte(`2`)), DeleteMembers(nil, obj, "a")} {
		if !json.Valid(b) {
			t.Errorf("invalid JSON %s", b)
		}
	}
}

// A token AppendProgressToken made gives its id back; any other does not.
func TestProgressToken(t *testing.T) {
	for _, id := range []int64{0, 7, 1 << 40} {
		member := AppendProgressToken(nil, id)
		token, ok := Member(append(append([]byte("{"), member...), '}'), "progressToken")
		if !ok {
			t.Fatalf("%s is not a member", member)
		}
		if got, ok := ProgressTokenID(token); !ok || got != id {
			t.Errorf("ProgressTokenID(%s) = %d, %v; want %d", token, got, ok, id)
		}
	}
	for _, token := range []string{`"sb-"`, `"sb-x1"`, `"sb-12`, `sb-12`, `"tok-12"`, `12`, `"sb-1234567890123456789"`, ``} {
		if id, ok := ProgressTokenID([]byte(token)); ok {
			t.Errorf("ProgressTokenID(%s) = %d, true; want false", token, id)
		}
	}
}
