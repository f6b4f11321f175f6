package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// legacyFake is a hand-written HTTP+SSE (2024-11-05) server for what
// mcp-go's cannot do: send the client requests of its own. tools/call of
// "hold" is answered only when the test says so.
type legacyFake struct {
	out     chan string // messages to write on the event stream
	answers chan string // the client's responses to the server's requests

	mu    sync.Mutex
	holds []json.RawMessage // ids of held calls
}

func newLegacyFake() *legacyFake {
	return &legacyFake{out: make(chan string, 64), answers: make(chan string, 16)}
}

func (f *legacyFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		fmt.Fprint(w, "event: endpoint\ndata: /msg?s=1\n\n")
		fl.Flush()
		for {
			select {
			case m := <-f.out:
				fmt.Fprintf(w, "event: message\ndata: %s\n\n", m)
				fl.Flush()
			case <-r.Context().Done():
				return
			}
		}
	case r.Method == http.MethodPost && r.URL.Path == "/msg":
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		var msg jsonrpc.Message
		if jsonrpc.Parse(body, &msg, 100) != nil {
			return
		}
		switch {
		case msg.IsResponse():
			f.answers <- string(body)
		case msg.Method == "initialize":
			f.out <- string(jsonrpc.AppendResult(nil, msg.ID, []byte(`{"protocolVersion":"2024-11-05","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}`)))
		case msg.Method == "tools/list":
			f.out <- string(jsonrpc.AppendResult(nil, msg.ID, []byte(`{"tools":[{"name":"hold","inputSchema":{"type":"object"}}]}`)))
		case msg.Method == "tools/call":
			f.mu.Lock()
			f.holds = append(f.holds, jsonrpc.Clone(msg.ID))
			f.mu.Unlock()
		case msg.IsRequest():
			f.out <- string(jsonrpc.AppendError(nil, msg.ID, -32601, "no", nil))
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *legacyFake) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.holds)
}

// finish answers every held call.
func (f *legacyFake) finish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range f.holds {
		f.out <- string(jsonrpc.AppendResult(nil, id, []byte(`{"content":[{"type":"text","text":"released"}]}`)))
	}
	f.holds = nil
}

// TestLegacyServerRequests: over HTTP+SSE, as over stdio, a server's
// request reaches a client only when every call in flight is that client's,
// and is refused with the reason otherwise.
func TestLegacyServerRequests(t *testing.T) {
	fake := newLegacyFake()
	srv := MustServe(t, fake)
	m := MustManager(t, Options{})
	key := switchboard.InstanceKey{Provider: "fx"}
	up := MustStart(t, m, Spec{Key: key, URL: srv.URL + "/sse"})
	if got := up.(*limited).cl.era; got != eraLegacy {
		t.Fatalf("era = %v", got)
	}
	alice := &testCaller{key: "alice", answer: func(method string, params json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"action":"accept","content":{"ok":true}}`), nil
	}}
	bob := &testCaller{key: "bob"}
	call := func(c *testCaller) chan string {
		ch := make(chan string, 1)
		go func() {
			got, err := callTool(t, up, c, nil, "hold", `{}`)
			if err != nil {
				got = "error: " + err.Error()
			}
			ch <- got
		}()
		return ch
	}
	ask := func(id string) string {
		fake.out <- `{"jsonrpc":"2.0","id":"` + id + `","method":"elicitation/create","params":{"message":"ok?","requestedSchema":{"type":"object"}}}`
		select {
		case a := <-fake.answers:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("no answer to the server's request")
			return ""
		}
	}

	first := call(alice)
	eventually(t, 5*time.Second, "the held call", func() bool { return fake.held() == 1 })
	if a := ask("srv-1"); !strings.Contains(a, `"id":"srv-1"`) || !strings.Contains(a, `"action":"accept"`) {
		t.Errorf("answer with one client in flight = %s, want alice's acceptance", a)
	}
	second := call(bob)
	eventually(t, 5*time.Second, "two held calls", func() bool { return fake.held() == 2 })
	if a := ask("srv-2"); !strings.Contains(a, `"error"`) || !strings.Contains(a, "several clients") {
		t.Errorf("answer with two clients in flight = %s, want a refusal naming the reason", a)
	}
	_, bobReqs := bob.snapshot()
	_, aliceReqs := alice.snapshot()
	if len(bobReqs) != 0 || len(aliceReqs) != 1 {
		t.Errorf("alice got %d requests, bob %d; want 1 and 0", len(aliceReqs), len(bobReqs))
	}
	fake.finish()
	for _, ch := range []chan string{first, second} {
		if got := <-ch; got != "released" {
			t.Errorf("held call = %q", got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Stop(ctx, key); err != nil {
		t.Fatal(err)
	}
}
