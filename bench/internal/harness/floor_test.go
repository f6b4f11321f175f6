package harness

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
)

// The floor must speak enough streamable HTTP for the load generator's
// client: a session on initialize, 202 for notifications, the params echoed
// as the result, and 400 for a body that is not a JSON-RPC message.
func TestFloorHandler(t *testing.T) {
	srv := httptest.NewServer(floorHandler(floorAnswer))
	defer srv.Close()
	ctx := context.Background()
	c := &mcpclient.Client{URL: srv.URL + "/mcp", HTTP: mcpclient.NewHTTPClient(1)}
	s, err := c.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ID) != 32 {
		t.Errorf("session id %q, want 32 hex digits", s.ID)
	}
	res, err := s.Call(ctx, "tools/call", []byte(`{"name":"echo","arguments":{"text":"a \"}\" b"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"echo","arguments":{"text":"a \"}\" b"}}`; string(res) != want {
		t.Errorf("result %s, want the params %s", res, want)
	}
	if res, err = s.Call(ctx, "tools/list", nil); err != nil || string(res) != `{"tools":[]}` {
		t.Errorf("tools/list = %s, %v", res, err)
	}
	for _, body := range []string{`{"jsonrpc":"2.0","id":1,"method":"x"`, `[1]`, `{"jsonrpc":"2.0","id":1,"method":7}`} {
		resp, err := http.Post(srv.URL+"/mcp", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s: HTTP %d, want 400", body, resp.StatusCode)
		}
	}
}

// The relay floor passes each request to its child and the child's answer
// back: a result, or the child's JSON-RPC error as one.
func TestRelayHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bin/echo")
	}
	bins, err := FindBins(root)
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := StartDirect(ctx, bins.Echo)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	srv := httptest.NewServer(floorHandler(relayAnswer(d)))
	defer srv.Close()
	c := &mcpclient.Client{URL: srv.URL + "/mcp", HTTP: mcpclient.NewHTTPClient(1)}
	s, err := c.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Call(ctx, "tools/call", []byte(`{"name":"echo","arguments":{"text":"through the relay"}}`))
	if err != nil || !strings.Contains(string(res), `"text":"through the relay"`) || !strings.Contains(string(res), `"content"`) {
		t.Fatalf("tools/call = %s, %v; want the child's result", res, err)
	}
	if res, err = s.Call(ctx, "tools/list", nil); err != nil || !strings.Contains(string(res), `"name":"echo"`) {
		t.Errorf("tools/list = %s, %v; want the child's tools", res, err)
	}
	if _, err = s.Call(ctx, "no/such/method", nil); err == nil || !strings.Contains(err.Error(), "-32601") {
		t.Errorf("unknown method: %v, want the child's -32601", err)
	}
}
