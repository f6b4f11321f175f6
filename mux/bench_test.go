package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// BenchmarkToolsCall measures the mux's own cost of a small tools/call over
// real loopback HTTP, against a floor: a bare net/http handler that parses
// the same body with the same scanner and answers with a fixed result. The
// provider is a function returning at once, so the difference is the mux:
// session lookup, filter, routing, the forwarded request and the answer.
//
//	go test -run '^$' -bench BenchmarkToolsCall -cpu 1,2 ./mux/
func BenchmarkToolsCall(b *testing.B) {
	result := json.RawMessage(`{"content":[{"type":"text","text":"hello world"}]}`)
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"hello world"}}}`

	b.Run("floor", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			buf, _ := io.ReadAll(r.Body)
			var m jsonrpc.Message
			if jsonrpc.Parse(buf, &m, jsonrpc.EdgeDepth) != nil {
				w.WriteHeader(400)
				return
			}
			writeJSONBody(w, 200, append(jsonrpc.AppendResult(nil, m.ID, result), '\n'))
		}))
		defer srv.Close()
		runCalls(b, srv.URL, "", body)
	})
	b.Run("mux", func(b *testing.B) {
		g := newTestGateway(b, Options{})
		g.obs.discard = true
		up := g.provider("echo", `[{"name":"echo","inputSchema":{"type":"object"}}]`, "", "", "", `{"tools":{}}`)
		up.call = func(context.Context, *switchboard.Request) (json.RawMessage, error) { return result, nil }
		c := g.client(b, "ann:echo").open(`{}`)
		runCalls(b, g.srv.URL+"/mcp", c.sid, body)
	})
}

func runCalls(b *testing.B, url, sid, body string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Test-User", "ann:echo")
			if sid != "" {
				req.Header.Set("Mcp-Session-Id", sid)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(out, []byte("hello world")) {
				b.Fatalf("answer %s", out)
			}
		}
	})
}
