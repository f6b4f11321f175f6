package switchboard

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

type keyCaller string

func (k keyCaller) Key() string                  { return string(k) }
func (keyCaller) Notify(string, json.RawMessage) {}
func (keyCaller) Request(context.Context, string, json.RawMessage) (json.RawMessage, error) {
	return nil, nil
}

func TestSoleCaller(t *testing.T) {
	tests := []struct {
		name    string
		callers []Caller
		want    string // the sole caller's key; "" for none
		why     string // part of the reason when there is none
	}{
		{name: "no calls", why: "no client call"},
		{name: "only calls no client can be asked about", callers: []Caller{nil, nil}, why: "no client call"},
		{name: "one client, several calls", callers: []Caller{keyCaller("a"), nil, keyCaller("a")}, want: "a"},
		{name: "two clients", callers: []Caller{keyCaller("a"), keyCaller("b")}, why: "several clients"},
		{name: "two clients after a nil", callers: []Caller{nil, keyCaller("b"), keyCaller("a"), keyCaller("b")}, why: "several clients"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := SoleCaller(slices.Values(tt.callers))
			switch {
			case tt.want != "" && (got == nil || got.Key() != tt.want || why != ""):
				t.Errorf("SoleCaller = %v, %q; want %s", got, why, tt.want)
			case tt.want == "" && (got != nil || !strings.Contains(why, tt.why)):
				t.Errorf("SoleCaller = %v, %q; want none because %q", got, why, tt.why)
			}
		})
	}
}

// askingCaller answers each request with the method it was asked.
type askingCaller struct{ asked []string }

func (*askingCaller) Key() string                    { return "k" }
func (*askingCaller) Notify(string, json.RawMessage) {}
func (c *askingCaller) Request(_ context.Context, method string, _ json.RawMessage) (json.RawMessage, error) {
	c.asked = append(c.asked, method)
	return json.RawMessage(`"` + method + `"`), nil
}

func TestGatherInput(t *testing.T) {
	asks := map[string]json.RawMessage{
		"b": json.RawMessage(`{"method":"sampling/createMessage","params":{}}`),
		"a": json.RawMessage(`{"method":"elicitation/create","params":{}}`),
	}
	if _, err := gatherInput(context.Background(), &Request{Method: "tools/call"}, asks); ErrorCode(err) != EUNAVAILABLE {
		t.Fatalf("no caller: %v, want EUNAVAILABLE", err)
	}
	c := &askingCaller{}
	got, err := gatherInput(context.Background(), &Request{Method: "tools/call", Caller: c}, asks)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["a"]) != `"elicitation/create"` || string(got["b"]) != `"sampling/createMessage"` || len(got) != 2 {
		t.Errorf("answers = %s", got)
	}
	if !slices.Equal(c.asked, []string{"elicitation/create", "sampling/createMessage"}) {
		t.Errorf("asked in order %v, want by key", c.asked)
	}
	bad := map[string]json.RawMessage{"a": json.RawMessage(`{"params":{}}`)}
	if _, err := gatherInput(context.Background(), &Request{Method: "tools/call", Caller: c}, bad); err == nil {
		t.Fatal("a request without a method was asked")
	}
}
