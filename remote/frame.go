package remote

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// appendRequest appends the JSON-RPC request frame for req with the given
// id. meta holds extra _meta members (raw `"k":v` pairs) the era needs; the
// provider's progress token, when the caller asked for progress, is
// "sb-<id>".
func appendRequest(dst []byte, id int64, req *switchboard.Request, meta []byte) ([]byte, error) {
	params := bytes.TrimSpace(req.Params)
	if string(params) == "null" {
		params = nil
	}
	var members []byte
	if req.Progress != nil {
		members = jsonrpc.AppendProgressToken(members, id)
	}
	for _, m := range [][]byte{meta, req.Meta} {
		if len(m) == 0 {
			continue
		}
		if len(members) > 0 {
			members = append(members, ',')
		}
		members = append(members, m...)
	}
	if len(params) > 0 && len(members) > 0 && (params[0] != '{' || params[len(params)-1] != '}') {
		return nil, errors.New("params must be a JSON object to carry _meta")
	}
	idb := strconv.AppendInt(nil, id, 10)
	switch {
	case len(members) == 0:
		return jsonrpc.AppendRequest(dst, idb, req.Method, params), nil
	case len(params) == 0:
		p := append([]byte(`{"_meta":{`), members...)
		p = append(p, "}}"...)
		return jsonrpc.AppendRequest(dst, idb, req.Method, p), nil
	default:
		m := append([]byte(`"_meta":{`), members...)
		m = append(m, '}')
		p := jsonrpc.PrependMembers(nil, jsonrpc.DeleteMembers(nil, params, "_meta"), m)
		return jsonrpc.AppendRequest(dst, idb, req.Method, p), nil
	}
}

// nameOf returns the params.name or params.uri of a request the 2026-07-28
// transport mirrors into the Mcp-Name header, and whether it has one.
func nameOf(method string, params []byte) (string, bool) {
	var key string
	switch method {
	case "tools/call", "prompts/get":
		key = "name"
	case "resources/read":
		key = "uri"
	default:
		return "", false
	}
	raw, ok := jsonrpc.Member(params, key)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// headerValue encodes v for an Mcp-Name or Mcp-Param-* header: as it is
// when it is plain visible ASCII without surrounding whitespace, otherwise
// (or when it looks like the sentinel itself) as =?base64?…?=.
func headerValue(v string) string {
	plain := v == strings.TrimSpace(v)
	for i := 0; plain && i < len(v); i++ {
		c := v[i]
		if (c < 0x20 || c > 0x7e) && c != '\t' {
			plain = false
		}
	}
	if plain && strings.HasPrefix(v, "=?base64?") && strings.HasSuffix(v, "?=") {
		plain = false
	}
	if plain {
		return v
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(v)) + "?="
}

// paramHeader is one x-mcp-header annotation of a tool's input schema: the
// header Mcp-Param-<Name> carries the argument at Path.
type paramHeader struct {
	Name string
	Path []string
}

// maxSafeInteger is the largest integer JavaScript represents exactly.
const maxSafeInteger = 1<<53 - 1

// toolParamHeaders reads the x-mcp-header annotations of a tool definition
// (2026-07-28, "Custom Headers from Tool Parameters"). It returns an error
// when an annotation breaks the rules, in which case the client must not
// offer the tool.
func toolParamHeaders(tool json.RawMessage) ([]paramHeader, error) {
	if !bytes.Contains(tool, []byte("x-mcp-header")) {
		return nil, nil
	}
	raw, ok := jsonrpc.Member(tool, "inputSchema")
	if !ok {
		return nil, nil
	}
	var schema any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&schema); err != nil {
		return nil, errors.New("inputSchema is not valid JSON")
	}
	total := countAnnotations(schema)
	if total == 0 {
		return nil, nil
	}
	var out []paramHeader
	seen := map[string]bool{}
	var walk func(node any, path []string) error
	walk = func(node any, path []string) error {
		obj, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		props, ok := obj["properties"].(map[string]any)
		if !ok {
			return nil
		}
		for name, p := range props {
			po, ok := p.(map[string]any)
			if !ok {
				continue
			}
			sub := append(append([]string(nil), path...), name)
			if h, has := po["x-mcp-header"]; has {
				hs, ok := h.(string)
				if !ok || !validHeaderToken(hs) {
					return errors.New("x-mcp-header of " + strings.Join(sub, ".") + " is not a valid header name")
				}
				if seen[strings.ToLower(hs)] {
					return errors.New("x-mcp-header " + strconv.Quote(hs) + " is used twice")
				}
				seen[strings.ToLower(hs)] = true
				switch t, _ := po["type"].(string); t {
				case "string", "integer", "boolean":
				default:
					return errors.New("x-mcp-header of " + strings.Join(sub, ".") + " is on a parameter that is not a string, integer or boolean")
				}
				out = append(out, paramHeader{Name: hs, Path: sub})
			}
			if err := walk(po, sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(schema, nil); err != nil {
		return nil, err
	}
	if len(out) != total {
		return nil, errors.New("an x-mcp-header annotation is not reachable through properties alone")
	}
	return out, nil
}

// countAnnotations counts the x-mcp-header members anywhere in a schema.
func countAnnotations(node any) int {
	n := 0
	switch v := node.(type) {
	case map[string]any:
		for k, c := range v {
			if k == "x-mcp-header" {
				n++
			}
			n += countAnnotations(c)
		}
	case []any:
		for _, c := range v {
			n += countAnnotations(c)
		}
	}
	return n
}

// validHeaderToken reports whether s is an HTTP field-name token (RFC 9110
// §5.1: 1*tchar).
func validHeaderToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// paramHeaderValues returns the Mcp-Param-* headers of a tools/call's
// arguments: one per annotation whose argument is present and not null.
func paramHeaderValues(hs []paramHeader, arguments []byte) map[string]string {
	if len(hs) == 0 || len(arguments) == 0 {
		return nil
	}
	var args any
	dec := json.NewDecoder(bytes.NewReader(arguments))
	dec.UseNumber()
	if dec.Decode(&args) != nil {
		return nil
	}
	out := map[string]string{}
	for _, h := range hs {
		v := args
		for _, k := range h.Path {
			obj, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = obj[k]
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case bool:
			s = strconv.FormatBool(x)
		case json.Number:
			i, err := strconv.ParseInt(x.String(), 10, 64)
			if err != nil || i > maxSafeInteger || i < -maxSafeInteger {
				continue // not a safe integer: the server will refuse the call itself
			}
			s = strconv.FormatInt(i, 10)
		default:
			continue
		}
		out["Mcp-Param-"+h.Name] = headerValue(s)
	}
	return out
}
