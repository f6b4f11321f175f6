package remote

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
)

func TestHeaderValue(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "us-west1", "us-west1"},
		{"non-ASCII", "Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="},
		{"padded", " padded ", "=?base64?IHBhZGRlZCA=?="},
		{"newline", "line1\nline2", "=?base64?bGluZTEKbGluZTI=?="},
		{"looks like the sentinel", "=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="},
		{"inner space", "a b", "a b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := headerValue(tc.in); got != tc.want {
				t.Errorf("headerValue(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestToolParamHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, schema string
		want         []paramHeader
		wantErr      string
	}{
		{"none", `{"type":"object","properties":{"a":{"type":"string"}}}`, nil, ""},
		{"top level", `{"type":"object","properties":{"r":{"type":"string","x-mcp-header":"Region"}}}`, []paramHeader{{"Region", []string{"r"}}}, ""},
		{"nested", `{"type":"object","properties":{"o":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}}}}`, []paramHeader{{"N", []string{"o", "n"}}}, ""},
		{"in items", `{"type":"object","properties":{"xs":{"type":"array","items":{"type":"string","x-mcp-header":"X"}}}}`, nil, "not reachable"},
		{"in oneOf", `{"type":"object","oneOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}`, nil, "not reachable"},
		{"number", `{"type":"object","properties":{"f":{"type":"number","x-mcp-header":"F"}}}`, nil, "not a string, integer or boolean"},
		{"bad token", `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A B"}}}`, nil, "not a valid header name"},
		{"duplicate", `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}`, nil, "used twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tool := json.RawMessage(`{"name":"t","inputSchema":` + tc.schema + `}`)
			got, err := toolParamHeaders(tool)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParamHeaderValues(t *testing.T) {
	hs := []paramHeader{{"S", []string{"s"}}, {"I", []string{"o", "i"}}, {"B", []string{"b"}}, {"Missing", []string{"m"}}, {"Null", []string{"n"}}, {"Big", []string{"big"}}}
	got := paramHeaderValues(hs, []byte(`{"s":"x y","o":{"i":42},"b":false,"n":null,"big":9007199254740993}`))
	want := map[string]string{"Mcp-Param-S": "x y", "Mcp-Param-I": "42", "Mcp-Param-B": "false"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestAppendRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  switchboard.Request
		meta string
		want string
	}{
		{"bare", switchboard.Request{Method: "ping"}, "", `{"jsonrpc":"2.0","id":7,"method":"ping"}`},
		{"params", switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"a"}`)}, "", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a"}}`},
		{"progress and meta", switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"a"}`), Progress: json.RawMessage(`"c"`), Meta: []byte(`"traceparent":"t"`)}, `"v":1`,
			`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken":"sb-7","v":1,"traceparent":"t"},"name":"a"}}`},
		{"meta without params", switchboard.Request{Method: "server/discover"}, `"v":1`, `{"jsonrpc":"2.0","id":7,"method":"server/discover","params":{"_meta":{"v":1}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendRequest(nil, 7, &tc.req, []byte(tc.meta))
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v\nwant %s", got, err, tc.want)
			}
			if !json.Valid(got) {
				t.Error("not valid JSON")
			}
		})
	}
}

func TestSSEReader(t *testing.T) {
	in := ": comment\r\nevent: endpoint\r\ndata: /msg\r\n\r\nid: 1\ndata: {\"a\":\ndata: 1}\n\nretry: 10\n\ndata: x"
	r := newSSEReader(strings.NewReader(in), 100)
	ev, err := r.next()
	if err != nil || ev.name != "endpoint" || string(ev.data) != "/msg" {
		t.Fatalf("first = %q %q, %v", ev.name, ev.data, err)
	}
	ev, err = r.next()
	if err != nil || ev.name != "" || string(ev.data) != "{\"a\":\n1}" {
		t.Fatalf("second = %q %q, %v", ev.name, ev.data, err)
	}
	if _, err := r.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("an unterminated event must be dropped at EOF: %v", err)
	}
	long := newSSEReader(strings.NewReader("data: "+strings.Repeat("x", 200)+"\n\n"), 100)
	if _, err := long.next(); !errors.Is(err, errEventTooLong) {
		t.Fatalf("long event: %v", err)
	}
}
