package redact

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	r := New()
	canary := "canary-7f3a9c2e"
	r.Add(canary)
	r.Add("short") // too short to register
	tests := []struct{ in, mustNot string }{
		{"value=" + canary + " end", canary},
		{"b64 " + base64.StdEncoding.EncodeToString([]byte(canary)), base64.StdEncoding.EncodeToString([]byte(canary))},
		{`{"authorization":"Bearer abcdefghijklmnop"}`, "abcdefghijklmnop"},
		{"key sb_abcdefghijkl_ABCDEFGHIJKLMNOPQRSTUV", "ABCDEFGHIJKLMNOPQRSTUV"},
		{`{"password":"hunter2hunter2"}`, "hunter2hunter2"},
		{`{"PASSWORD":"hunter3hunter3"}`, "hunter3hunter3"},
		{"AUTHORIZATION: BEARER abcdefghijklmnop2", "abcdefghijklmnop2"},
	}
	for _, tt := range tests {
		got := r.String(tt.in)
		if strings.Contains(got, tt.mustNot) {
			t.Errorf("String(%q) = %q: still contains %q", tt.in, got, tt.mustNot)
		}
	}
	if got := r.String("a short word"); got != "a short word" {
		t.Errorf("short values must not be masked: %q", got)
	}
	if got := string(r.Bytes([]byte("line " + canary + "\n"))); strings.Contains(got, canary) || !strings.Contains(got, Mask) {
		t.Errorf("Bytes = %q", got)
	}
}

func BenchmarkRedactCleanLine(b *testing.B) {
	r := New()
	r.Add("canary-7f3a9c2e")
	line := []byte(`{"level":"info","component":"mux","request_id":"76191243-d893-4d42-9548-911f01ebe017","endpoint":"/mcp","http_method":"POST","status":200,"latency":0.78,"method":"tools/call","session":"sb-4jZOBP4n…","client":"e2e/1.0","principal":"user:abby","provider":"echo","tool":"echo","outcome":"ok","time":"2026-11-21T20:28:18Z","message":"mcp request"}`)
	b.ReportAllocs()
	for b.Loop() {
		r.Bytes(line)
	}
}

func TestMayMatchPattern(t *testing.T) {
	for _, n := range needles {
		upper := strings.ToUpper(n)
		mixed := strings.ToUpper(n[:1]) + n[1:]
		for _, line := range []string{n, "x " + upper + " y", `{"k":"` + mixed + `"}`} {
			if !mayMatchPattern([]byte(line)) {
				t.Errorf("%q: no match for needle %q", line, n)
			}
		}
		if cut := n[:len(n)-1]; mayMatchPattern([]byte("x " + cut)) {
			t.Errorf("%q matched, but holds only a needle's prefix", cut)
		}
	}
	for _, line := range []string{"", "s", `{"level":"info","status":200,"message":"mcp request"}`, "sb-", "SB-x"} {
		if mayMatchPattern([]byte(line)) {
			t.Errorf("%q matched no needle but was reported", line)
		}
	}
}
