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
