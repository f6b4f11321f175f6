package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// directChild speaks JSON-RPC to a provider over its stdio, as the oracle:
// what the provider answers when nothing stands between it and the client.
type directChild struct {
	t   testing.TB
	in  io.WriteCloser
	out *bufio.Reader
	id  int
}

func startDirect(t testing.TB, bin string) *directChild {
	t.Helper()
	cmd := exec.Command(bin)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	d := &directChild{t: t, in: in, out: bufio.NewReaderSize(out, 1<<20)}
	d.request("initialize", `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"oracle","version":"1"}}`)
	fmt.Fprintln(in, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return d
}

// request sends one request and returns the raw reply (result or error).
func (d *directChild) request(method, params string) json.RawMessage {
	d.t.Helper()
	d.id++
	fmt.Fprintf(d.in, `{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`+"\n", d.id, method, params)
	for {
		line, err := d.out.ReadBytes('\n')
		if err != nil {
			d.t.Fatalf("reading the child: %v", err)
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if json.Unmarshal(line, &m) != nil || m.Method != "" || string(m.ID) != fmt.Sprint(d.id) {
			continue // a notification
		}
		if m.Error != nil {
			return m.Error
		}
		return m.Result
	}
}

// unprefix maps the gateway's names back to the provider's: every
// "prefix__name" string value becomes "name".
func unprefix(v any, prefix string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = unprefix(e, prefix)
		}
	case []any:
		for i, e := range x {
			x[i] = unprefix(e, prefix)
		}
	case string:
		return strings.TrimPrefix(x, prefix+"__")
	}
	return v
}

func decodeAny(t testing.TB, raw []byte) any {
	t.Helper()
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return v
}

// TestGatewayAnswersAsTheChildDoes holds the gateway to its children (mcp-go
// servers speaking each era): the same request sent to a child directly and
// through the gateway gets the same answer, once names are mapped — every
// method the gateway forwards, results and errors alike, nothing dropped
// or added.
func TestGatewayAnswersAsTheChildDoes(t *testing.T) {
	g := startGateway(t, `
providers:
  echo:
    command: $BIN/echo
  modern:
    command: $BIN/modernprovider
`)
	g.waitRunning("echo", "modern")
	s := g.rawInit(t, nil)
	id := 10
	viaGateway := func(method, params string) json.RawMessage {
		t.Helper()
		id++
		resp, body := s.do(t, "POST", fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params), nil)
		var r struct {
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		reply, ok := parseReply(resp, body)
		if !ok {
			t.Fatalf("%s through the gateway: %s %s", method, resp.Status, body)
		}
		if err := json.Unmarshal(body, &r); err != nil || r.Result == nil && r.Error == nil {
			// SSE: take the reply parseReply found.
			b, _ := json.Marshal(reply)
			_ = json.Unmarshal(b, &r)
		}
		if r.Error != nil {
			return r.Error
		}
		return r.Result
	}
	for _, p := range []struct{ prefix, bin string }{{"echo", "echo"}, {"modern", "modernprovider"}} {
		direct := startDirect(t, filepath.Join(binDir, p.bin))
		cases := []struct{ method, direct, gateway string }{
			{"tools/call", `{"name":"echo","arguments":{"text":"é \"x\" 12345678901234567890"}}`, `{"name":"` + p.prefix + `__echo","arguments":{"text":"é \"x\" 12345678901234567890"}}`},
			{"tools/call", `{"name":"echo","arguments":{}}`, `{"name":"` + p.prefix + `__echo","arguments":{}}`},
			{"tools/call", `{"name":"echo","arguments":{"text":7}}`, `{"name":"` + p.prefix + `__echo","arguments":{"text":7}}`},
		}
		if p.prefix == "modern" {
			cases = append(cases, struct{ method, direct, gateway string }{"resources/read", `{"uri":"modern://status"}`, `{"uri":"modern://status"}`})
		}
		for _, c := range cases {
			want := unprefix(decodeAny(t, direct.request(c.method, c.direct)), p.prefix)
			got := unprefix(decodeAny(t, viaGateway(c.method, c.gateway)), p.prefix)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s %s:\n gateway %v\n child   %v", p.prefix, c.method, c.gateway, got, want)
			}
		}
		// The tool list: the child's tools, each renamed and otherwise
		// unchanged.
		want := decodeAny(t, direct.request("tools/list", `{}`)).(map[string]any)["tools"].([]any)
		all := unprefix(decodeAny(t, viaGateway("tools/list", `{}`)), p.prefix).(map[string]any)["tools"].([]any)
		var got []any
		for _, tool := range all {
			for _, w := range want {
				if tool.(map[string]any)["name"] == w.(map[string]any)["name"] {
					got = append(got, tool)
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s tools/list:\n gateway %v\n child   %v", p.prefix, got, want)
		}
	}
	_ = time.Second
}
