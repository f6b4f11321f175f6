package jsonrpc

import (
	"encoding/json"
	"testing"
)

func TestWithInput(t *testing.T) {
	state := "s2"
	answers := map[string]json.RawMessage{"input-1": json.RawMessage(`{"action":"accept"}`)}
	tests := []struct {
		name   string
		params string
		state  *string
		want   string // "" for an error
	}{
		{name: "drops _meta and the old state", params: `{"name":"t","_meta":{"x":1},"requestState":"s1"}`, state: &state,
			want: `{"name":"t","inputResponses":{"input-1":{"action":"accept"}},"requestState":"s2"}`},
		{name: "no state", params: `{"name":"t","requestState":"s1"}`,
			want: `{"name":"t","inputResponses":{"input-1":{"action":"accept"}}}`},
		{name: "empty params", params: ``, state: &state,
			want: `{"inputResponses":{"input-1":{"action":"accept"}},"requestState":"s2"}`},
		{name: "not an object", params: `[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WithInput([]byte(tt.params), answers, tt.state)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("WithInput(%s) = %s, want an error", tt.params, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			_ = json.Unmarshal(got, &g)
			_ = json.Unmarshal([]byte(tt.want), &w)
			if gb, _ := json.Marshal(g); string(gb) != string(must(json.Marshal(w))) {
				t.Errorf("WithInput(%s) = %s, want %s", tt.params, got, tt.want)
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
