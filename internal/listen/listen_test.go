package listen

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// opens records each stream opened: its params, and its context.
type opens struct {
	params []string
	ctxs   []context.Context
}

func (o *opens) open(ctx context.Context, params json.RawMessage) {
	o.params = append(o.params, string(params))
	o.ctxs = append(o.ctxs, ctx)
}

func req(method, uri string) *switchboard.Request {
	p, _ := json.Marshal(map[string]string{"uri": uri})
	return &switchboard.Request{Method: method, Params: p}
}

func TestStreamFollowsTheSubscriptions(t *testing.T) {
	var o opens
	s := New(context.Background(), o.open)
	s.Start()
	all := `{"notifications":{"promptsListChanged":true,"resourcesListChanged":true,"toolsListChanged":true}}`
	steps := []struct {
		name   string
		req    *switchboard.Request
		opened string // params of the stream opened by this step; "" for none
	}{
		{"first subscriber of b", req("resources/subscribe", "file:///b"), `{"notifications":{"promptsListChanged":true,"resourceSubscriptions":["file:///b"],"resourcesListChanged":true,"toolsListChanged":true}}`},
		{"second subscriber of b", req("resources/subscribe", "file:///b"), ""},
		{"first subscriber of a", req("resources/subscribe", "file:///a"), `{"notifications":{"promptsListChanged":true,"resourceSubscriptions":["file:///a","file:///b"],"resourcesListChanged":true,"toolsListChanged":true}}`},
		{"one of b's two leaves", req("resources/unsubscribe", "file:///b"), ""},
		{"b's last leaves", req("resources/unsubscribe", "file:///b"), `{"notifications":{"promptsListChanged":true,"resourceSubscriptions":["file:///a"],"resourcesListChanged":true,"toolsListChanged":true}}`},
		{"unsubscribing what nobody subscribed", req("resources/unsubscribe", "file:///c"), ""},
		{"a's last leaves", req("resources/unsubscribe", "file:///a"), all},
	}
	if len(o.params) != 1 || o.params[0] != all {
		t.Fatalf("Start opened %q", o.params)
	}
	for _, st := range steps {
		n := len(o.params)
		res, err := s.Serve(st.req)
		if err != nil || string(res) != `{}` {
			t.Fatalf("%s: Serve = %s, %v", st.name, res, err)
		}
		switch {
		case st.opened == "" && len(o.params) != n:
			t.Fatalf("%s: opened %s, want no new stream", st.name, o.params[n:])
		case st.opened != "" && (len(o.params) != n+1 || o.params[n] != st.opened):
			t.Fatalf("%s: opened %q, want %s", st.name, o.params[n:], st.opened)
		case st.opened != "" && o.ctxs[n-1].Err() == nil:
			t.Fatalf("%s: the stream before it is still open", st.name)
		}
	}
	s.Close()
	if o.ctxs[len(o.ctxs)-1].Err() == nil {
		t.Error("Close left the stream open")
	}
	n := len(o.params)
	s.Start()
	if _, err := s.Serve(req("resources/subscribe", "file:///d")); err != nil || len(o.params) != n {
		t.Errorf("after Close: %v, %d streams opened", err, len(o.params)-n)
	}
}

func TestServeNeedsAURI(t *testing.T) {
	s := New(context.Background(), func(context.Context, json.RawMessage) {})
	for _, params := range []string{``, `{}`, `{"uri":""}`, `[1]`} {
		_, err := s.Serve(&switchboard.Request{Method: "resources/subscribe", Params: json.RawMessage(params)})
		var re *switchboard.RPCError
		if !errors.As(err, &re) || re.Code != jsonrpc.CodeInvalidParams {
			t.Errorf("params %q: %v, want invalid params", params, err)
		}
	}
}

func TestServes(t *testing.T) {
	for m, want := range map[string]bool{"resources/subscribe": true, "resources/unsubscribe": true, "resources/read": false, Method: false} {
		if Serves(m) != want {
			t.Errorf("Serves(%q) = %v", m, !want)
		}
	}
}

func TestParentEndsTheStream(t *testing.T) {
	var o opens
	parent, cancel := context.WithCancel(context.Background())
	s := New(parent, o.open)
	s.Start()
	cancel()
	if o.ctxs[0].Err() == nil {
		t.Error("the stream outlived its parent")
	}
}
