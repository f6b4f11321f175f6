package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Encoding. A record's line is built by appending, without reflection; the
// bytes must equal encoding/json's encoding of the Record (the hash is defined
// over that), which TestAppendBodyMatchesJSON checks for random records.

// Fixed parts of a line around the body the caller's fields make.
const (
	linePrefix = `{"seq":`
	prevPrefix = `,"prev_hash":"`
	hashPrefix = `,"hash":"`
	// lineSuffix is the length of `,"hash":"<64 hex>"}`.
	lineSuffix = len(hashPrefix) + 64 + len(`"}`)
	// lineOverhead bounds what a line adds to its body.
	lineOverhead = len(linePrefix) + 20 + len(prevPrefix) + 64 + len(`",`) + lineSuffix + 1
)

// appendBody appends rec's caller fields as a JSON object, exactly as
// encoding/json encodes the same fields of a Record with omitempty, after
// normalizing the time to UTC and capping sizes (limit, limitDetail).
func appendBody(dst []byte, rec *Record) ([]byte, error) {
	t := rec.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		// encoding/json refuses these too.
		return dst, errors.New("record time is outside the years 0 to 9999")
	}
	dst = append(dst, `{"time":"`...)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","type":`...)
	dst = appendString(dst, limit(rec.Type))
	dst = appendField(dst, `,"replica":`, rec.Replica)
	dst = appendField(dst, `,"request_id":`, rec.RequestID)
	dst = appendField(dst, `,"session":`, rec.Session)
	dst = appendField(dst, `,"principal_kind":`, rec.PrincipalKind)
	dst = appendField(dst, `,"principal":`, rec.Principal)
	dst = appendField(dst, `,"endpoint":`, rec.Endpoint)
	dst = appendField(dst, `,"client":`, rec.Client)
	dst = appendField(dst, `,"provider":`, rec.Provider)
	dst = appendField(dst, `,"tool":`, rec.Tool)
	dst = appendField(dst, `,"tool_hash":`, rec.ToolHash)
	dst = appendField(dst, `,"decision":`, rec.Decision)
	dst = appendField(dst, `,"outcome":`, rec.Outcome)
	if rec.LatencyMS != 0 {
		dst = append(dst, `,"latency_ms":`...)
		dst = strconv.AppendInt(dst, rec.LatencyMS, 10)
	}
	dst = appendField(dst, `,"args_digest":`, rec.ArgsDigest)
	dst = appendField(dst, `,"error":`, rec.Error)
	if d := limitDetail(rec.Detail); len(d) > 0 {
		keys := make([]string, 0, len(d))
		for k := range d {
			keys = append(keys, k)
		}
		slices.Sort(keys) // encoding/json sorts map keys by their bytes
		dst = append(dst, `,"detail":{`...)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, d[k])
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), nil
}

// appendField appends an omitempty string member.
func appendField(dst []byte, name, s string) []byte {
	if s == "" {
		return dst
	}
	return appendString(append(dst, name...), limit(s))
}

// limitDetail caps the number and size of detail entries.
func limitDetail(detail map[string]string) map[string]string {
	if len(detail) == 0 {
		return nil
	}
	out := make(map[string]string, min(len(detail), maxDetails))
	for k, v := range detail {
		if len(out) == maxDetails {
			out["_truncated"] = "true"
			break
		}
		out[limit(k)] = limit(v)
	}
	return out
}

func limit(s string) string {
	if len(s) <= maxField {
		return s
	}
	return s[:maxField-len("…")] + "…"
}

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes a JSON string holds as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendString appends s as a JSON string the way encoding/json does with HTML
// escaping on: <, > and & as \u00XX, control bytes escaped, invalid UTF-8 as
// \ufffd, and U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if plain[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendLine appends the full line of the record whose body (appendBody's
// output without its braces) is inner, as record seq chained onto prev with
// its hash computed by m, and sets prev to the line's hash.
func appendLine(dst []byte, m *lineMAC, seq uint64, prev *[64]byte, inner []byte) []byte {
	start := len(dst)
	dst = append(dst, linePrefix...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, prevPrefix...)
	dst = append(dst, prev[:]...)
	dst = append(dst, `",`...)
	dst = append(dst, inner...)
	hex.Encode(prev[:], m.of(dst[start:]))
	dst = append(dst, hashPrefix...)
	dst = append(dst, prev[:]...)
	return append(dst, "\"}\n"...)
}

// parseLine splits a line built by appendLine (without its newline) into its
// seq, prev_hash, hash and body. ok is false for any other text.
func parseLine(line []byte) (seq uint64, prev, hash, inner []byte, ok bool) {
	if !bytes.HasPrefix(line, []byte(linePrefix)) {
		return 0, nil, nil, nil, false
	}
	rest := line[len(linePrefix):]
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		seq = seq*10 + uint64(rest[i]-'0')
		i++
	}
	rest = rest[i:]
	if i == 0 || i > 19 || !bytes.HasPrefix(rest, []byte(prevPrefix)) {
		return 0, nil, nil, nil, false
	}
	rest = rest[len(prevPrefix):]
	if len(rest) < 64+len(`",`)+lineSuffix || string(rest[64:66]) != `",` {
		return 0, nil, nil, nil, false
	}
	prev, rest = rest[:64], rest[66:]
	tail := rest[len(rest)-lineSuffix:]
	if !bytes.HasPrefix(tail, []byte(hashPrefix)) || !bytes.HasSuffix(tail, []byte(`"}`)) {
		return 0, nil, nil, nil, false
	}
	return seq, prev, tail[len(hashPrefix) : len(hashPrefix)+64], rest[:len(rest)-lineSuffix], true
}

// rechain appends the lines of src to dst renumbered from seq+1 and chained
// onto prev with hashes computed by m, and returns the last seq. prev ends as the last line's hash.
// Lines that parseLine rejects (none: every queued line is built by
// appendLine) are skipped and counted in bad.
func rechain(dst, src []byte, m *lineMAC, seq uint64, prev *[64]byte) (out []byte, last uint64, n, bad uint64) {
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		line := src[:i]
		src = src[i+1:]
		_, _, _, inner, ok := parseLine(line)
		if !ok {
			bad++
			continue
		}
		seq++
		n++
		dst = appendLine(dst, m, seq, prev, inner)
	}
	return dst, seq, n, bad
}
