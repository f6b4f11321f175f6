package mux

import "testing"

func TestAccepts(t *testing.T) {
	for _, c := range []struct {
		values   []string
		mcp, sse bool
	}{
		{nil, true, true},
		{[]string{"application/json, text/event-stream"}, true, true},
		{[]string{"application/json"}, true, false},
		{[]string{"Text/Event-Stream;q=0.9"}, true, true},
		{[]string{"text/html", " */* ; q=0.1"}, true, true},
		{[]string{"application/*"}, true, false},
		{[]string{"text/html, image/png"}, false, false},
		{[]string{""}, false, false},
	} {
		if got := acceptsMCP(c.values); got != c.mcp {
			t.Errorf("acceptsMCP(%q) = %v, want %v", c.values, got, c.mcp)
		}
		if got := acceptsSSE(c.values); got != c.sse {
			t.Errorf("acceptsSSE(%q) = %v, want %v", c.values, got, c.sse)
		}
	}
	if n := testing.AllocsPerRun(100, func() { acceptsMCP([]string{"application/json, text/event-stream"}) }); n != 0 {
		t.Errorf("acceptsMCP allocates %v times", n)
	}
}
