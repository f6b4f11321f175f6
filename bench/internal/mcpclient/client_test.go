package mcpclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeServer answers like a streamable-HTTP MCP server: initialize with a
// session id, notifications with 202, tools/call as SSE with a progress
// notification first (long data split across a huge line), tools/list as JSON,
// and anything else with a JSON-RPC error.
func fakeServer(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusOK)
			return
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &msg); err != nil {
			t.Errorf("bad request body %q: %v", body, err)
		}
		if msg.Method != "initialize" && r.Header.Get("Mcp-Session-Id") != "s1" {
			http.Error(w, "no session", http.StatusNotFound)
			return
		}
		switch msg.Method {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"%s"}}`, msg.ID, ProtocolVersion)
		case "notifications/initialized":
			w.WriteHeader(http.StatusAccepted)
		case "tools/call":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n")
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":%s}\n\n", msg.ID, msg.Params)
		case "tools/list":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[]}}`, msg.ID)
		case "bad/text":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `not json at all`)
		case "bad/version":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"1.0","id":%s,"result":{}}`, msg.ID)
		case "bad/id":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":999,"result":{}}`)
		case "bad/empty":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s}`, msg.ID)
		case "bad/unbalanced":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[}`, msg.ID)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found"}}`, msg.ID)
		}
	}))
}

func TestSession(t *testing.T) {
	srv := fakeServer(t)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &Client{URL: srv.URL + "/mcp", Key: "k", HTTP: NewHTTPClient(4)}
	s, err := c.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "s1" {
		t.Fatalf("session id %q", s.ID)
	}
	big := strings.Repeat("x", 200<<10) // longer than the SSE reader's buffer
	tests := []struct {
		name, method, params, want string
		wantErr                    bool
	}{
		{"json answer", "tools/list", "", `{"tools":[]}`, false},
		{"sse answer after a notification", "tools/call", `{"text":"hi"}`, `{"text":"hi"}`, false},
		{"sse answer longer than the buffer", "tools/call", `{"text":"` + big + `"}`, `{"text":"` + big + `"}`, false},
		{"json-rpc error", "nope", "", "", true},
		{"not json", "bad/text", "", "not a JSON-RPC 2.0 message", true},
		{"wrong version", "bad/version", "", "not a JSON-RPC 2.0 message", true},
		{"wrong id", "bad/id", "", "answer has id 999", true},
		{"neither result nor error", "bad/empty", "", "neither result nor error", true},
		{"unbalanced result", "bad/unbalanced", "", "not a JSON-RPC 2.0 message", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p []byte
			if tt.params != "" {
				p = []byte(tt.params)
			}
			res, err := s.Call(ctx, tt.method, p)
			if tt.wantErr && tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want one saying %q", err, tt.want)
				}
				return
			}
			if tt.wantErr {
				var rpc *RPCError
				if !errors.As(err, &rpc) || rpc.Code != -32601 {
					t.Fatalf("err = %v, want a -32601 RPCError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(res) != tt.want {
				t.Fatalf("result %.80q, want %.80q", res, tt.want)
			}
		})
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUnauthorized(t *testing.T) {
	srv := fakeServer(t)
	defer srv.Close()
	c := &Client{URL: srv.URL + "/mcp", HTTP: NewHTTPClient(1)}
	_, err := c.Open(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("err = %v, want HTTP 401", err)
	}
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.URL.Path, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL + "/mcp", Key: "k", HTTP: NewHTTPClient(1)}
	status, body, err := c.Get(context.Background(), "/metrics")
	if err != nil || status != 200 || string(body) != "/metrics Bearer k" {
		t.Fatalf("Get = %d %q %v", status, body, err)
	}
}
