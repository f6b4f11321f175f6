package harness

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
)

// The floor must speak enough streamable HTTP for the load generator's
// client: a session on initialize, 202 for notifications, the params echoed
// as the result, and 400 for a body that is not a JSON-RPC message.
func TestFloorHandler(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(floorHandler))
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
