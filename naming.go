package switchboard

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
)

// MaxToolNameLen is the longest exposed tool name; the strictest clients allow 64.
const MaxToolNameLen = 64

var (
	prefixRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	toolNameRe = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
)

// ValidPrefix reports whether s can be a provider prefix: [a-z0-9][a-z0-9-]*, at
// most 32 characters, and never containing "__" (it cannot: '_' is not allowed).
func ValidPrefix(s string) bool { return len(s) <= 32 && prefixRe.MatchString(s) }

// ValidToolName reports whether name satisfies ^[a-zA-Z0-9_-]{1,64}$.
func ValidToolName(name string) bool { return toolNameRe.MatchString(name) }

// ExposedName returns the name a client sees for tool of provider prefix, and
// whether the plain "<prefix>__<tool>" had to be fixed. The fix is deterministic:
// every character outside [a-zA-Z0-9_-] becomes '_', and a name that is then
// longer than 64 characters, or had to be changed at all, keeps its first
// characters and ends in "_" plus the first 8 hex digits of the SHA-256 of the
// original "<prefix>__<tool>", so two different originals never share a name.
func ExposedName(prefix, tool string) (name string, fixed bool) {
	plain := prefix + ToolSeparator + tool
	if ValidToolName(plain) {
		return plain, false
	}
	var b strings.Builder
	for _, r := range plain {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(plain))
	suffix := "_" + hex.EncodeToString(sum[:4])
	s := b.String()
	if len(s) > MaxToolNameLen-len(suffix) {
		s = s[:MaxToolNameLen-len(suffix)]
	}
	return s + suffix, true
}
