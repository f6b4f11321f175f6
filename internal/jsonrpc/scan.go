package jsonrpc

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Every JSON-RPC message the gateway reads — a client's request body at the
// edge, a line a child writes on stdout — goes through Parse once. Parse
// validates the message (UTF-8, one object, JSON syntax, nesting depth, and
// exact, unique protocol keys) and, in the same pass, picks out the members
// the gateway routes by. The scanner walks the bytes by hand: it allocates
// nothing for an ordinary message beyond the strings it returns, and plain
// string bytes, the bulk of a large tool call or result, are skipped sixteen
// at a time.

// JSON-RPC error codes used for refusals.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Nesting limits for Parse.
const (
	// EdgeDepth is how deep a value may sit in a client's message (the
	// message object is at depth 0). Deeper bodies are refused without
	// recursion.
	EdgeDepth = 200
	// MaxNesting is encoding/json's limit on nested arrays and objects, the
	// limit for what children send.
	MaxNesting = 10000
)

// Error is a refusal: a JSON-RPC error code and a message that is safe to
// show the sender.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Message is one JSON-RPC message as Parse read it. Raw members are subslices
// of the parsed bytes (nil when absent), valid as long as those bytes are;
// strings are decoded. A member of the wrong JSON type is left out of the
// decoded fields (the raw one is still set).
type Message struct {
	JSONRPC string // "2.0" for a valid message
	ID      []byte // raw id, nil when absent
	Method  string
	Params  []byte
	Result  []byte
	Error   []byte
	// P holds the members of params the gateway reads, when params is an
	// object.
	P Params
}

// Params are the members of a message's params that the gateway reads.
type Params struct {
	Name            string // tools/call, prompts/get
	URI             string // resources/read, subscribe, notifications/resources/updated
	Cursor          string
	Level           string // logging/setLevel, notifications/message
	RequestState    string // a retried multi-round-trip request
	HasCursor       bool
	Arguments       []byte // raw tools/call arguments, prompts/get arguments
	InputResponses  []byte // a retried multi-round-trip request
	Notifications   []byte // subscriptions/listen filter
	RequestID       []byte // notifications/cancelled
	ProgressToken   []byte // notifications/progress
	Context         []byte // completion/complete context
	ProtocolVersion string // initialize
	ClientInfo      []byte // initialize
	Capabilities    []byte // initialize
	Meta            []byte // raw _meta
	M               Meta
	Ref             Ref    // completion/complete
	Argument        []byte // completion/complete argument, raw
}

// Ref is a completion/complete reference.
type Ref struct {
	Type, Name, URI string
}

// Meta are the members of params._meta the gateway reads.
type Meta struct {
	ProgressToken      []byte // raw; nil when absent or null
	ProtocolVersion    string // io.modelcontextprotocol/protocolVersion
	HasProtocolVersion bool
	ClientInfo         []byte // io.modelcontextprotocol/clientInfo
	ClientCapabilities []byte // io.modelcontextprotocol/clientCapabilities
	LogLevel           string // io.modelcontextprotocol/logLevel
	HasLogLevel        bool
	TraceParent        string
	TraceState         string
}

// Reserved _meta keys of the 2026-07-28 protocol.
const (
	MetaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	MetaLogLevel           = "io.modelcontextprotocol/logLevel"
	MetaServerInfo         = "io.modelcontextprotocol/serverInfo"
	MetaSubscriptionID     = "io.modelcontextprotocol/subscriptionId"
)

// IsRequest reports whether m is a request: a method and an id.
func (m *Message) IsRequest() bool { return m.Method != "" && Has(m.ID) }

// IsNotification reports whether m is a notification: a method, no id.
func (m *Message) IsNotification() bool { return m.Method != "" && !Has(m.ID) }

// IsResponse reports whether m is a response: an id, a result or an error,
// and no method.
func (m *Message) IsResponse() bool {
	return m.Method == "" && Has(m.ID) && (m.Result != nil || m.Error != nil)
}

// Has reports whether a raw member was present and not null.
func Has(raw []byte) bool { return len(raw) > 0 && string(raw) != "null" }

// Parse validates b as one JSON-RPC message, with values at most maxDepth
// deep, and fills m. Refusals are reported in the order a streaming decoder
// meets them. Whitespace around the message is allowed.
func Parse(b []byte, m *Message, maxDepth int) *Error {
	*m = Message{}
	msg := bytes.TrimSpace(b)
	if len(msg) == 0 {
		return &Error{CodeParseError, "empty request body"}
	}
	if !utf8.Valid(msg) {
		return &Error{CodeParseError, "request body is not valid UTF-8"}
	}
	if msg[0] == '[' {
		return &Error{CodeInvalidRequest, "JSON-RPC batches are not supported"}
	}
	if msg[0] != '{' {
		return &Error{CodeInvalidRequest, "a JSON-RPC message must be an object"}
	}
	nest := math.MaxInt
	if maxDepth >= MaxNesting {
		nest = MaxNesting
	}
	s := scanner{b: msg, childLimit: maxDepth, nestLimit: nest}
	if !s.object(0, roleTop, true, m) {
		*m = Message{}
		if s.keyErr != "" {
			return &Error{CodeInvalidRequest, s.keyErr}
		}
		return &Error{CodeParseError, "invalid JSON"}
	}
	s.ws()
	if s.i < len(msg) {
		*m = Message{}
		return &Error{CodeParseError, "trailing data after the JSON-RPC message"}
	}
	return nil
}

// Valid reports whether b is one JSON value, exactly as json.Valid does,
// including its limit of 10,000 nested arrays and objects.
func Valid(b []byte) bool {
	s := scanner{b: b, childLimit: math.MaxInt, nestLimit: MaxNesting}
	s.ws()
	if !s.value(0) {
		return false
	}
	s.ws()
	return s.i == len(b)
}

// ResultIsError reports what json.Unmarshal into struct{ IsError bool } would
// leave in IsError, reading only the top-level members of raw: the last member
// whose name folds to "isError" with a true or false value wins, and anything
// invalid gives false.
func ResultIsError(raw []byte) bool {
	if !bytes.Contains(raw, []byte(`"isError"`)) {
		return false
	}
	s := scanner{b: raw, childLimit: math.MaxInt, nestLimit: MaxNesting}
	s.ws()
	if s.i >= len(raw) || raw[s.i] != '{' {
		return false // json.Unmarshal fails (or refuses a non-object)
	}
	isErr := false
	s.i++
	s.ws()
	if s.i < len(raw) && raw[s.i] == '}' {
		s.i++
	} else {
		for {
			key, ok := s.key()
			if !ok || !s.colon() {
				return false
			}
			switch {
			case !bytes.EqualFold(key, []byte("isError")):
				if !s.value(1) {
					return false
				}
			case s.lit("true"):
				isErr = true
			case s.lit("false"):
				isErr = false
			default: // null or a type error: encoding/json leaves the field alone
				if !s.value(1) {
					return false
				}
			}
			closed, ok := s.next('}')
			if !ok {
				return false
			}
			if closed {
				break
			}
		}
	}
	s.ws()
	return s.i == len(raw) && isErr
}

// Roles of the strict objects whose members go into a Message.
const (
	roleNone   = iota // checked, not read
	roleTop           // the message
	roleParams        // its "params"
	roleMeta          // "params"."_meta"
	roleRef           // "params"."ref", read but not strict
)

// scanner is one pass over a JSON text. Its methods return false at the first
// error; keyErr then says why a well-formed body was refused, and is empty for
// a syntax error.
type scanner struct {
	b []byte
	i int
	// childLimit is the deepest a value may sit (the top-level object is at
	// depth 0). A deeper one sets keyErr.
	childLimit int
	// nestLimit is json.Valid's rule: an array or object at this depth or
	// deeper is invalid JSON.
	nestLimit int
	keyErr    string
}

// ws skips JSON whitespace.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// colon reads the ':' after a key and the whitespace around it.
func (s *scanner) colon() bool {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		return false
	}
	s.i++
	s.ws()
	return true
}

// next reads the whitespace after a member or element, then either ',' and
// the whitespace after it, or the closing delimiter (closed).
func (s *scanner) next(closer byte) (closed, ok bool) {
	s.ws()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case closer:
		s.i++
		return true, true
	case ',':
		s.i++
		s.ws()
		return false, true
	}
	return false, false
}

// key reads an object key at s.i and returns it decoded.
func (s *scanner) key() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i
	esc, ok := s.str()
	if !ok {
		return nil, false
	}
	k := s.b[start+1 : s.i-1]
	if esc {
		k = unescape(k)
	}
	return k, true
}

// skipKey reads an object key at s.i that nobody looks at.
func (s *scanner) skipKey() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	_, ok := s.str()
	return ok
}

// lit reads the literal word if it is at s.i.
func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// object reads an object whose '{' is at s.i and whose depth is depth. In a
// strict object (the message, and the objects under its "params" and
// "_meta" keys, recursively) keys are checked as soon as they are read,
// before the ':' after them. Members of an object with a role go into m.
func (s *scanner) object(depth, role int, strict bool, m *Message) bool {
	b := s.b
	s.i++
	s.ws()
	if s.i >= len(b) {
		return false
	}
	if b[s.i] == '}' {
		s.i++
		return true
	}
	var keys keySet
	for {
		key, ok := s.key()
		if !ok {
			return false
		}
		if strict {
			if msg := keys.add(key); msg != "" {
				s.keyErr = msg
				return false
			}
		}
		if depth+1 > s.childLimit {
			s.keyErr = "JSON nesting is too deep"
			return false
		}
		if !s.colon() || s.i >= len(b) {
			return false
		}
		start, esc := s.i, false
		cr := childRole(role, key)
		childStrict := strict && (string(key) == "params" || string(key) == "_meta")
		switch {
		case b[s.i] == '{' && (childStrict || cr != roleNone):
			if !s.object(depth+1, cr, childStrict, m) {
				return false
			}
		case b[s.i] == '"':
			if esc, ok = s.str(); !ok {
				return false
			}
		default:
			if !s.value(depth + 1) {
				return false
			}
		}
		if role != roleNone {
			record(m, role, key, b[start:s.i:s.i], esc)
		}
		if closed, ok := s.next('}'); !ok || closed {
			return ok
		}
	}
}

// childRole is the role of the strict object under key in an object of role.
func childRole(role int, key []byte) int {
	switch role {
	case roleTop:
		if string(key) == "params" {
			return roleParams
		}
	case roleParams:
		switch string(key) {
		case "_meta":
			return roleMeta
		case "ref":
			return roleRef
		}
	}
	return roleNone
}

// record copies a member of a strict object into m. Keys match exactly: a
// strict object has already refused every case or fold variant of the names
// the gateway reads. Like encoding/json, a string field takes only a string
// value.
func record(m *Message, role int, key, raw []byte, esc bool) {
	str := raw[0] == '"'
	p := &m.P
	switch role {
	case roleTop:
		switch string(key) {
		case "jsonrpc":
			if str {
				m.JSONRPC = text(raw, esc)
			}
		case "id":
			m.ID = raw
		case "method":
			if str {
				m.Method = text(raw, esc)
			}
		case "params":
			m.Params = raw
		case "result":
			m.Result = raw
		case "error":
			m.Error = raw
		}
	case roleParams:
		switch string(key) {
		case "name":
			if str {
				p.Name = text(raw, esc)
			}
		case "uri":
			if str {
				p.URI = text(raw, esc)
			}
		case "cursor":
			if str {
				p.Cursor, p.HasCursor = text(raw, esc), true
			}
		case "level":
			if str {
				p.Level = text(raw, esc)
			}
		case "requestState":
			if str {
				p.RequestState = text(raw, esc)
			}
		case "protocolVersion":
			if str {
				p.ProtocolVersion = text(raw, esc)
			}
		case "arguments":
			p.Arguments = raw
		case "inputResponses":
			p.InputResponses = raw
		case "notifications":
			p.Notifications = raw
		case "requestId":
			p.RequestID = raw
		case "progressToken":
			p.ProgressToken = raw
		case "context":
			p.Context = raw
		case "clientInfo":
			p.ClientInfo = raw
		case "capabilities":
			p.Capabilities = raw
		case "_meta":
			p.Meta = raw
		case "argument":
			p.Argument = raw
		}
	case roleMeta:
		mt := &p.M
		switch string(key) {
		case "progressToken":
			if string(raw) != "null" {
				mt.ProgressToken = raw
			}
		case MetaProtocolVersion:
			mt.HasProtocolVersion = true
			if str {
				mt.ProtocolVersion = text(raw, esc)
			}
		case MetaClientInfo:
			mt.ClientInfo = raw
		case MetaClientCapabilities:
			mt.ClientCapabilities = raw
		case MetaLogLevel:
			mt.HasLogLevel = true
			if str {
				mt.LogLevel = text(raw, esc)
			}
		case "traceparent":
			if str {
				mt.TraceParent = text(raw, esc)
			}
		case "tracestate":
			if str {
				mt.TraceState = text(raw, esc)
			}
		}
	case roleRef:
		switch string(key) {
		case "type":
			if str {
				p.Ref.Type = text(raw, esc)
			}
		case "name":
			if str {
				p.Ref.Name = text(raw, esc)
			}
		case "uri":
			if str {
				p.Ref.URI = text(raw, esc)
			}
		}
	}
}

// value reads any JSON value at s.i, whose depth is depth, without recursion:
// a bit stack remembers which containers are open.
func (s *scanner) value(depth int) bool {
	b := s.b
	base := depth
	var open bitStack
value:
	for {
		if s.i >= len(b) {
			return false
		}
		switch c := b[s.i]; c {
		case '"':
			if _, ok := s.str(); !ok {
				return false
			}
		case '{', '[':
			if depth >= s.nestLimit {
				return false
			}
			s.i++
			s.ws()
			if s.i >= len(b) {
				return false
			}
			closer := byte(']')
			if c == '{' {
				closer = '}'
			}
			if b[s.i] == closer {
				s.i++
				break
			}
			if c == '{' {
				if !s.skipKey() {
					return false
				}
			} else if b[s.i] == '}' {
				return false
			}
			// The old token walk checked the depth when it met the first
			// member (after its key) or element.
			if depth+1 > s.childLimit {
				s.keyErr = "JSON nesting is too deep"
				return false
			}
			if c == '{' && !s.colon() {
				return false
			}
			open.push(c == '{')
			depth++
			continue value
		case 't':
			if !s.lit("true") {
				return false
			}
		case 'f':
			if !s.lit("false") {
				return false
			}
		case 'n':
			if !s.lit("null") {
				return false
			}
		default:
			if !s.num() {
				return false
			}
		}
		// A value ended; close what ends with it.
		for depth > base {
			inObject := open.top()
			closer := byte(']')
			if inObject {
				closer = '}'
			}
			closed, ok := s.next(closer)
			if !ok {
				return false
			}
			if !closed {
				if inObject && (!s.skipKey() || !s.colon()) {
					return false
				}
				continue value
			}
			open.pop()
			depth--
		}
		return true
	}
}

// num reads a number (RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?).
// Whatever follows it is the caller's business, as in encoding/json: "01" is
// the number 0 followed by a stray 1.
func (s *scanner) num() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) || !isDigit(b[i]) {
		return false
	}
	if b[i] == '0' {
		i++
	} else {
		i = digits(b, i)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = digits(b, i)
	}
	s.i = i
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the index of the first non-digit at or after i.
func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// strStop marks the bytes that end a run of plain string bytes: the quote,
// the backslash and the control characters, which JSON refuses raw. Bytes
// from 0x80 up are plain; json.Valid does not check UTF-8 (the edge checks
// the whole request body first).
var strStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// SWAR constants: one in every byte, and the top bit of every byte.
const (
	ones = 0x0101010101010101
	tops = 0x8080808080808080
)

// stops is non-zero if any of the eight bytes in x is a quote, a backslash
// or below 0x20. It uses the less-than and zero-byte tests of "Bit Twiddling
// Hacks", which are exact as to whether some byte matches. Flipping bit 1
// maps the quote (0x22) to 0x20 and keeps every control character below
// 0x20, so one less-than-0x21 test finds both.
func stops(x uint64) uint64 {
	q := x ^ (ones * 0x02)
	bs := x ^ (ones * '\\')
	return ((q-ones*0x21)&^q | (bs-ones)&^bs) & tops
}

// str reads the string whose opening quote is at s.i and reports whether it
// holds escapes.
func (s *scanner) str() (esc, ok bool) {
	b := s.b
	i := s.i + 1
	for {
		for i+16 <= len(b) && stops(binary.LittleEndian.Uint64(b[i:]))|stops(binary.LittleEndian.Uint64(b[i+8:])) == 0 {
			i += 16
		}
		if i+8 <= len(b) && stops(binary.LittleEndian.Uint64(b[i:])) == 0 {
			i += 8
		}
		for i < len(b) && !strStop[b[i]] {
			i++
		}
		if i >= len(b) {
			return esc, false
		}
		switch b[i] {
		case '"':
			s.i = i + 1
			return esc, true
		case '\\':
			esc = true
			if i+1 >= len(b) {
				return esc, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return esc, false
				}
				i += 6
			default:
				return esc, false
			}
		default: // a raw control character
			return esc, false
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// text returns the string value raw (quotes included) as encoding/json decodes
// it. The protocol version and the method names the edge sees all the time
// come from constants, so an ordinary message costs no allocation for them.
func text(raw []byte, esc bool) string {
	in := raw[1 : len(raw)-1]
	if esc {
		return string(unescape(in))
	}
	switch string(in) {
	case "2.0":
		return "2.0"
	case "tools/call":
		return "tools/call"
	case "tools/list":
		return "tools/list"
	case "initialize":
		return "initialize"
	case "notifications/initialized":
		return "notifications/initialized"
	case "ping":
		return "ping"
	case "resources/read":
		return "resources/read"
	case "prompts/get":
		return "prompts/get"
	case "notifications/progress":
		return "notifications/progress"
	case "notifications/message":
		return "notifications/message"
	case "2026-07-28":
		return "2026-07-28"
	case "2025-11-25":
		return "2025-11-25"
	}
	return string(in)
}

// unescape decodes the inside of a valid JSON string as encoding/json does: a
// lone or reversed surrogate becomes U+FFFD, and so does invalid UTF-8.
func unescape(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		c := in[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				out = append(out, c)
				i++
				continue
			}
			r, n := utf8.DecodeRune(in[i:])
			out = utf8.AppendRune(out, r)
			i += n
			continue
		}
		e := in[i+1]
		i += 2
		switch e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(in[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 <= len(in) && in[i] == '\\' && in[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(in[i+2:])); d != unicode.ReplacementChar {
						out = utf8.AppendRune(out, d)
						i += 6
						continue
					}
				}
				r = unicode.ReplacementChar
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, e)
		}
	}
	return out
}

// hex4 decodes four hex digits that the scanner has already checked.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// bitStack records, for each open container, whether it is an object. The
// first 256 levels need no allocation.
type bitStack struct {
	n     int
	small [4]uint64
	big   []uint64
}

func (st *bitStack) word(n int) *uint64 {
	w := n / 64
	if w < len(st.small) {
		return &st.small[w]
	}
	for len(st.big) <= w-len(st.small) {
		st.big = append(st.big, 0)
	}
	return &st.big[w-len(st.small)]
}

func (st *bitStack) push(obj bool) {
	w, bit := st.word(st.n), uint64(1)<<(st.n%64)
	if obj {
		*w |= bit
	} else {
		*w &^= bit
	}
	st.n++
}

func (st *bitStack) pop() { st.n-- }

func (st *bitStack) top() bool {
	return *st.word(st.n - 1)&(uint64(1)<<((st.n-1)%64)) != 0
}

// keySet is the keys of one strict object. A key is refused if it repeats an
// earlier one, differs from one only by case or Unicode folding (foldKey), or
// is a variant spelling of a protocol key. The first keys are compared
// pairwise without allocating; past smallKeys a map keeps the check linear.
type keySet struct {
	n     int
	small [smallKeys]seenKey
	big   map[string]string // foldKey → key as sent
}

const smallKeys = 16

// seenKey is a key as sent (decoded). fold is foldKey(key) for a key with
// non-ASCII bytes; an ASCII key's fold is its lower case.
type seenKey struct {
	key   []byte
	fold  string
	ascii bool
}

// add records key and returns why it is refused, or "".
func (ks *keySet) add(key []byte) string {
	k := seenKey{key: key, ascii: isASCII(key)}
	if !k.ascii {
		k.fold = foldKey(string(key))
	}
	if ks.big != nil {
		if prev, ok := ks.big[k.folded()]; ok {
			return keyClash([]byte(prev), key)
		}
	} else {
		for i := range ks.n {
			if sameFold(ks.small[i], k) {
				return keyClash(ks.small[i].key, key)
			}
		}
	}
	if known, ok := k.known(); ok && known != string(key) {
		return "key " + quote(string(key)) + " must be spelled " + quote(known)
	}
	switch {
	case ks.big == nil && ks.n < len(ks.small):
		ks.small[ks.n] = k
		ks.n++
	default:
		if ks.big == nil {
			ks.big = make(map[string]string, 2*smallKeys)
			for _, e := range ks.small[:ks.n] {
				ks.big[e.folded()] = string(e.key)
			}
		}
		ks.big[k.folded()] = string(key)
	}
	return ""
}

// keyClash is the refusal for key after prev, which folds alike.
func keyClash(prev, key []byte) string {
	if bytes.Equal(prev, key) {
		return "duplicate key " + quote(string(key))
	}
	return "keys " + quote(string(prev)) + " and " + quote(string(key)) + " differ only by case"
}

// folded returns foldKey(k.key).
func (k seenKey) folded() string {
	if k.ascii {
		return string(lowerASCII(nil, k.key))
	}
	return k.fold
}

// known returns the protocol key that k is a spelling of, if any.
func (k seenKey) known() (string, bool) {
	if !k.ascii {
		return knownSpelling([]byte(k.fold))
	}
	var buf [64]byte // longer than any protocol key
	if len(k.key) > len(buf) {
		return "", false
	}
	return knownSpelling(lowerASCII(buf[:0], k.key))
}

// knownSpelling maps the fold (foldKey) of each of knownKeys to its one
// correct spelling. A switch rather than a map: it runs for every key of
// every strict object.
func knownSpelling(fold []byte) (string, bool) {
	switch string(fold) {
	case "jsonrpc":
		return "jsonrpc", true
	case "id":
		return "id", true
	case "method":
		return "method", true
	case "params":
		return "params", true
	case "result":
		return "result", true
	case "error":
		return "error", true
	case "name":
		return "name", true
	case "arguments":
		return "arguments", true
	case "_meta":
		return "_meta", true
	case "uri":
		return "uri", true
	case "cursor":
		return "cursor", true
	case "progresstoken":
		return "progressToken", true
	case "protocolversion":
		return "protocolVersion", true
	case "capabilities":
		return "capabilities", true
	case "clientinfo":
		return "clientInfo", true
	case "ref":
		return "ref", true
	case "argument":
		return "argument", true
	case "level":
		return "level", true
	case "requestid":
		return "requestId", true
	case "reason":
		return "reason", true
	case "requeststate":
		return "requestState", true
	case "inputresponses":
		return "inputResponses", true
	case "notifications":
		return "notifications", true
	case "context":
		return "context", true
	case "type":
		return "type", true
	case "io.modelcontextprotocol/protocolversion":
		return MetaProtocolVersion, true
	case "io.modelcontextprotocol/clientinfo":
		return MetaClientInfo, true
	case "io.modelcontextprotocol/clientcapabilities":
		return MetaClientCapabilities, true
	case "io.modelcontextprotocol/loglevel":
		return MetaLogLevel, true
	case "traceparent":
		return "traceparent", true
	case "tracestate":
		return "tracestate", true
	}
	return "", false
}

// sameFold reports whether foldKey(a.key) == foldKey(b.key).
func sameFold(a, b seenKey) bool {
	switch {
	case a.ascii && b.ascii:
		return equalLowerASCII(a.key, b.key)
	case a.ascii:
		return equalLowerASCII(a.key, []byte(b.fold))
	case b.ascii:
		return equalLowerASCII(b.key, []byte(a.fold))
	}
	return a.fold == b.fold
}

// equalLowerASCII reports whether the ASCII lower case of a equals b's.
func equalLowerASCII(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, lowerByte(c))
	}
	return dst
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// KnownKeys are the protocol keys whose spelling must be exact: a key that
// differs from one of them only by case (or Unicode folding, as "paramſ") is
// refused, because a decoder such as encoding/json would match it
// case-insensitively and read a different member than the gateway did.
// knownSpelling lists them again, by fold, without hashing (TestKnownSpelling
// keeps the two in step).
var KnownKeys = []string{"jsonrpc", "id", "method", "params", "result", "error", "name", "arguments", "_meta", "uri", "cursor",
	"progressToken", "protocolVersion", "capabilities", "clientInfo", "ref", "argument", "level", "requestId", "reason",
	"requestState", "inputResponses", "notifications", "context", "type",
	MetaProtocolVersion, MetaClientInfo, MetaClientCapabilities, MetaLogLevel, "traceparent", "tracestate"}

// foldKey maps every rune to the lower case of the smallest rune of its
// Unicode simple-fold orbit, so two strings are EqualFold exactly when their
// folds are equal ("paramſ", "PARAMS" and "params" all fold alike).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	for _, r := range s {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(unicode.ToLower(min)) // agrees with the ASCII path
	}
	return b.String()
}

// quote quotes s for an error message.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
