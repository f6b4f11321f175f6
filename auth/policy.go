package auth

// AllowedPrefix reports whether prefix is exactly one of allowed. Matching is
// byte-for-byte: "fs" allows "fs" but not "fsx", "FS", "fs " or a homoglyph
// such as "fѕ". An empty or nil allowlist, or an empty prefix, allows nothing.
func AllowedPrefix(allowed []string, prefix string) bool {
	if prefix == "" {
		return false
	}
	for _, a := range allowed {
		if a == prefix {
			return true
		}
	}
	return false
}
