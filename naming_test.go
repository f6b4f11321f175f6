package switchboard

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestExposedName(t *testing.T) {
	long := "a_very_long_tool_name_that_goes_on_and_on_and_on_beyond_the_limit"
	tests := []struct {
		name, prefix, tool string
		want               string
		fixed              bool
	}{
		{"plain", "notes", "read_note", "notes__read_note", false},
		{"dots", "fs", "read.file", "fs__read_file_" + hash8("fs__read.file"), true},
		{"unicode", "fs", "lé", "fs__l__" + hash8("fs__lé"), true},
		{"long", "notes", long, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fixed := ExposedName(tt.prefix, tt.tool)
			if fixed != tt.fixed {
				t.Fatalf("fixed = %v, want %v", fixed, tt.fixed)
			}
			if !ValidToolName(got) {
				t.Fatalf("ExposedName(%q, %q) = %q: invalid", tt.prefix, tt.tool, got)
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("ExposedName(%q, %q) = %q, want %q", tt.prefix, tt.tool, got, tt.want)
			}
			again, _ := ExposedName(tt.prefix, tt.tool)
			if again != got {
				t.Fatalf("not deterministic: %q then %q", got, again)
			}
		})
	}
	a, _ := ExposedName("p", long+"x")
	b, _ := ExposedName("p", long+"y")
	if a == b {
		t.Fatalf("distinct long names collide: %q", a)
	}
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

func TestValidPrefix(t *testing.T) {
	for _, ok := range []string{"a", "notes", "alpha-fs", "x1"} {
		if !ValidPrefix(ok) {
			t.Errorf("ValidPrefix(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "-a", "A", "a_b", "a__b", "a.b", "fѕ"} {
		if ValidPrefix(bad) {
			t.Errorf("ValidPrefix(%q) = true", bad)
		}
	}
}
