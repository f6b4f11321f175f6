package remote

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/switchboard-mcp/switchboard"
)

// TestStatelessSubscriptions: in the 2026-07-28 era a client's
// resources/subscribe is answered by the gateway and carried by the
// server's subscriptions/listen stream, which is opened again with the new
// set of resources whenever it changes.
func TestStatelessSubscriptions(t *testing.T) {
	var mu sync.Mutex
	var listens [][]string // resourceSubscriptions of each listen request, in order
	fx := server.NewStreamableHTTPServer(newFixtureServer())
	srv := MustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				Method string `json:"method"`
				Params struct {
					Notifications struct {
						ResourceSubscriptions []string `json:"resourceSubscriptions"`
					} `json:"notifications"`
				} `json:"params"`
			}
			if json.Unmarshal(body, &m) == nil && m.Method == "subscriptions/listen" {
				mu.Lock()
				listens = append(listens, m.Params.Notifications.ResourceSubscriptions)
				mu.Unlock()
			}
		}
		fx.ServeHTTP(w, r)
	}))
	last := func() ([]string, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(listens) == 0 {
			return nil, 0
		}
		return listens[len(listens)-1], len(listens)
	}
	m := MustManager(t, Options{})
	up := MustStart(t, m, Spec{Key: switchboard.InstanceKey{Provider: "fx"}, URL: srv.URL + "/mcp"})
	if got := up.(*limited).cl.era; got != eraStateless {
		t.Fatalf("era = %v, want stateless", got)
	}
	eventually(t, 5*time.Second, "the listen stream to open", func() bool { _, n := last(); return n >= 1 })
	call := func(method, uri string) {
		t.Helper()
		res, err := up.Call(t.Context(), &switchboard.Request{Method: method, Params: json.RawMessage(`{"uri":"` + uri + `"}`)})
		if err != nil || string(res) != `{}` {
			t.Fatalf("%s %s: %s, %v", method, uri, res, err)
		}
	}
	call("resources/subscribe", "fixture://a")
	eventually(t, 5*time.Second, "a listen with the subscribed resource", func() bool {
		uris, _ := last()
		return slices.Equal(uris, []string{"fixture://a"})
	})
	call("resources/unsubscribe", "fixture://a")
	eventually(t, 5*time.Second, "a listen without it", func() bool {
		uris, n := last()
		return n >= 3 && len(uris) == 0
	})
	if _, err := up.Call(t.Context(), &switchboard.Request{Method: "resources/subscribe", Params: json.RawMessage(`{}`)}); err == nil {
		t.Error("a subscribe without a uri was accepted")
	}
}
