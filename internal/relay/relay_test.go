package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

// client is a switchboard.Caller whose Request returns what reply says, or
// blocks until its context ends when reply is nil.
type client struct {
	reply func(method string) (json.RawMessage, error)

	mu      sync.Mutex
	started int
	ended   []error // the context errors of the requests that returned
}

func (*client) Key() string                    { return "k" }
func (*client) Notify(string, json.RawMessage) {}
func (c *client) Request(ctx context.Context, method string, _ json.RawMessage) (json.RawMessage, error) {
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
	if c.reply != nil {
		return c.reply(method)
	}
	<-ctx.Done()
	c.mu.Lock()
	c.ended = append(c.ended, ctx.Err())
	c.mu.Unlock()
	return nil, ctx.Err()
}

func (c *client) count() (started, ended int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started, len(c.ended)
}

// answers collects the frames a relay answers with.
type answers struct {
	mu     sync.Mutex
	frames []string
}

func (a *answers) add(frame []byte) {
	a.mu.Lock()
	a.frames = append(a.frames, string(frame))
	a.mu.Unlock()
}

func (a *answers) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.frames...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestAnswers(t *testing.T) {
	for _, tt := range []struct {
		name  string
		reply func(string) (json.RawMessage, error)
		want  string
	}{
		{"result", func(string) (json.RawMessage, error) { return json.RawMessage(`{"ok":true}`), nil }, `{"jsonrpc":"2.0","id":7,"result":{"ok":true}}`},
		{"empty result", func(string) (json.RawMessage, error) { return nil, nil }, `{"jsonrpc":"2.0","id":7,"result":{}}`},
		{"the client's JSON-RPC error", func(string) (json.RawMessage, error) {
			return nil, &switchboard.RPCError{Code: -1, Message: "declined"}
		}, `{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"declined"}}`},
		{"any other error", func(string) (json.RawMessage, error) { return nil, errors.New("gone") }, `"code":-32603`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			var a answers
			r.Start(json.RawMessage(`7`), "sampling/createMessage", nil, &client{reply: tt.reply}, a.add)
			r.Wait()
			if got := a.all(); len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Errorf("answered %q, want %s", got, tt.want)
			}
		})
	}
}

func TestTooManyAreRefused(t *testing.T) {
	r := New()
	c := &client{}
	var a answers
	for i := range Max {
		r.Start(json.RawMessage(fmt.Sprintf(`"r%d"`, i)), "elicitation/create", nil, c, a.add)
	}
	eventually(t, "every relay to reach the client", func() bool { s, _ := c.count(); return s == Max })
	r.Start(json.RawMessage(`"one-more"`), "elicitation/create", nil, c, a.add)
	if got := a.all(); len(got) != 1 || !strings.Contains(got[0], `"id":"one-more"`) || !strings.Contains(got[0], "too many requests in flight") {
		t.Errorf("answers %q, want one refusal", got)
	}
	r.Close()
	r.Wait()
	if _, ended := c.count(); ended != Max || len(a.all()) != 1 {
		t.Errorf("after Close: %d requests ended, answers %q; want %d and none more", ended, a.all(), Max)
	}
}

func TestCancel(t *testing.T) {
	r := New()
	c := &client{}
	var a answers
	r.Start(json.RawMessage(`1`), "sampling/createMessage", nil, c, a.add)
	r.Start(json.RawMessage(`2`), "sampling/createMessage", nil, c, a.add)
	eventually(t, "both relays to start", func() bool { s, _ := c.count(); return s == 2 })
	r.Cancel([]byte(` 1 `))
	eventually(t, "the cancelled request to end", func() bool { _, e := c.count(); return e == 1 })
	r.Cancel(nil)
	r.Cancel([]byte(`3`))
	if _, e := c.count(); e != 1 {
		t.Errorf("%d requests ended, want only the cancelled one", e)
	}
	r.Close()
	r.Wait()
	if got := a.all(); len(got) != 0 {
		t.Errorf("cancelled requests were answered: %q", got)
	}
	r.Start(json.RawMessage(`4`), "sampling/createMessage", nil, &client{reply: func(string) (json.RawMessage, error) { return nil, nil }}, a.add)
	r.Wait()
	if s, _ := c.count(); s != 2 || len(a.all()) != 0 {
		t.Errorf("Start after Close relayed: %q", a.all())
	}
}

func TestReusedIDVoidsTheFirst(t *testing.T) {
	r := New()
	c := &client{}
	var a answers
	r.Start(json.RawMessage(`5`), "roots/list", nil, c, a.add)
	eventually(t, "the first relay to start", func() bool { s, _ := c.count(); return s == 1 })
	r.Start(json.RawMessage(`5`), "roots/list", nil, c, a.add)
	eventually(t, "the first request to be void", func() bool { _, e := c.count(); return e == 1 })
	r.Close()
	r.Wait()
}

func TestRefusal(t *testing.T) {
	got := string(Refusal(json.RawMessage(`9`), "sampling/createMessage", "several clients have calls in flight"))
	if !strings.Contains(got, `"id":9`) || !strings.Contains(got, "switchboard cannot relay sampling/createMessage: several clients have calls in flight") {
		t.Errorf("Refusal = %s", got)
	}
}
