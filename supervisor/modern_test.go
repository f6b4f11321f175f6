package supervisor

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
)

func modernSpec(tb testing.TB, name, protocol string) Spec {
	spec := testSpec(tb, name, "")
	spec.Command, spec.Env, spec.Protocol = modernBin, nil, protocol
	return spec
}

// TestModernChild: a child that speaks the stateless protocol is spoken to
// in it: calls carry the protocol's _meta, its input_required result is
// worked through with the caller, and list changes arrive on the listen
// stream the supervisor keeps open.
func TestModernChild(t *testing.T) {
	s, rec := MustSupervisor(t, Options{})
	spec := modernSpec(t, "modern", ProtocolAuto)
	up := MustReady(t, s, spec)
	if !up.(*limited).conn.Modern() {
		t.Fatal("the child is not spoken to in the stateless protocol")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := callUp(ctx, up, "tools/call", map[string]any{"name": "echo", "arguments": map[string]any{"text": "hi"}})
	if err != nil || !strings.Contains(string(res), "echo: hi") {
		t.Fatalf("echo: %s %v", res, err)
	}
	caller := &testCaller{key: "c", answer: func(method string, params json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"action":"accept","content":{"name":"Ada"}}`), nil
	}}
	res, err = up.Call(ctx, &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"ask"}`), Caller: caller})
	if err != nil || !strings.Contains(string(res), "hello map[name:Ada]") {
		t.Fatalf("ask: %s %v", res, err)
	}
	if _, reqs := caller.got(); len(reqs) != 1 || !strings.HasPrefix(reqs[0], "elicitation/create ") || !strings.Contains(reqs[0], "What is your name?") {
		t.Errorf("the caller was asked %q", reqs)
	}
	// Without a caller, input cannot be had: a clear error, not a hang.
	if _, err := callUp(ctx, up, "tools/call", map[string]any{"name": "ask"}); err == nil || !strings.Contains(err.Error(), "no client is there") {
		t.Errorf("ask without a caller: %v", err)
	}
	// A list change reaches the supervisor over the listen stream.
	if _, err := callUp(ctx, up, "tools/call", map[string]any{"name": "add_tool", "arguments": map[string]any{"name": "late"}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool {
		cat := rec.catalogFor(spec.Key)
		return cat != nil && slices.ContainsFunc(cat.Tools, func(raw json.RawMessage) bool { return strings.Contains(string(raw), `"late"`) })
	}, "the refreshed catalog with the added tool")
	// Resource subscriptions are the listen stream's, not methods.
	if res, err := callUp(ctx, up, "resources/subscribe", map[string]any{"uri": "modern://status"}); err != nil || string(res) != "{}" {
		t.Errorf("subscribe: %s %v", res, err)
	}
}

// TestSessionOnlyProtocolSkipsTheProbe: a provider pinned to the session
// era is initialized without server/discover, even if it could do more.
func TestSessionOnlyProtocolSkipsTheProbe(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	up := MustReady(t, s, modernSpec(t, "legacy", ProtocolSession))
	if up.(*limited).conn.Modern() {
		t.Fatal("a session-era provider is spoken to in the stateless protocol")
	}
	res, err := callUp(t.Context(), up, "tools/call", map[string]any{"name": "echo", "arguments": map[string]any{"text": "x"}})
	if err != nil || !strings.Contains(string(res), "echo: x") {
		t.Fatalf("echo: %s %v", res, err)
	}
}

// TestStatelessProtocolRequiresTheProbe: a provider pinned to the stateless
// era that does not answer server/discover does not start.
func TestStatelessProtocolRequiresTheProbe(t *testing.T) {
	s, _ := MustSupervisor(t, Options{})
	spec := testSpec(t, "old", "")
	spec.Protocol = ProtocolStateless
	spec.Backoff.MaxFailures = 1
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx, spec.Key); err == nil || !strings.Contains(err.Error(), "does not answer server/discover") {
		t.Fatalf("WaitReady: %v", err)
	}
}
