package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// testMsg is how the test peer decodes what the Conn sends.
type testMsg struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// peer is the far end of a Conn in memory: it reads the Conn's frames and
// writes whatever the test wants.
type peer struct {
	in  *bufio.Reader  // what the Conn wrote
	out *io.PipeWriter // what the Conn reads
	mu  sync.Mutex
}

func (p *peer) send(lines ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range lines {
		if _, err := io.WriteString(p.out, l+"\n"); err != nil {
			return
		}
	}
}

// next returns the next message the Conn sent.
func (p *peer) next(tb testing.TB) testMsg {
	tb.Helper()
	line, err := p.in.ReadBytes('\n')
	if err != nil {
		tb.Fatalf("peer reading: %v", err)
	}
	var e testMsg
	if err := json.Unmarshal(line, &e); err != nil {
		tb.Fatalf("peer decoding %q: %v", line, err)
	}
	return e
}

// MustConn returns a Conn wired to an in-memory peer; both are closed at the
// end of the test.
func MustConn(tb testing.TB, opts ConnOptions) (*Conn, *peer) {
	tb.Helper()
	toPeerR, toPeerW := io.Pipe()
	toConnR, toConnW := io.Pipe()
	c := NewConn(toConnR, toPeerW, opts)
	p := &peer{in: bufio.NewReader(toPeerR), out: toConnW}
	tb.Cleanup(func() {
		_ = c.Close()
		_ = toPeerR.Close()
		_ = toConnW.Close()
	})
	return c, p
}

// echoPeer answers every request with {"echo": params} until its input ends.
func echoPeer(p *peer) {
	for {
		line, err := p.in.ReadBytes('\n')
		if err != nil {
			return
		}
		var e testMsg
		if json.Unmarshal(line, &e) != nil || len(e.ID) == 0 {
			continue
		}
		p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"echo":%s}}`, e.ID, orNull(e.Params)))
	}
}

func orNull(r json.RawMessage) string {
	if len(r) == 0 {
		return "null"
	}
	return string(r)
}

func TestConnCallRoutesConcurrentResponses(t *testing.T) {
	c, p := MustConn(t, ConnOptions{})
	go echoPeer(p)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			want := fmt.Sprintf("msg-%d", i)
			res, err := c.CallParams(t.Context(), "tools/call", map[string]string{"text": want})
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			var got struct {
				Echo struct{ Text string } `json:"echo"`
			}
			if err := json.Unmarshal(res, &got); err != nil || got.Echo.Text != want {
				t.Errorf("call %d: got %s, want text %q", i, res, want)
			}
		})
	}
	wg.Wait()
	if g := c.Garbage(); g != 0 {
		t.Errorf("Garbage() = %d, want 0", g)
	}
}

func TestConnParams(t *testing.T) {
	tests := []struct {
		name   string
		params any
		want   string // the params member as sent, "" for absent
	}{
		{"nil", nil, ""},
		{"raw", json.RawMessage(`{"a":1}`), `{"a":1}`},
		{"raw with newlines is compacted", json.RawMessage("{\n  \"a\": 1\n}"), `{"a":1}`},
		{"empty raw", json.RawMessage(nil), ""},
		{"struct without html escaping", map[string]string{"q": "<a&b>"}, `{"q":"<a&b>"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := MustConn(t, ConnOptions{})
			go func() { _, _ = c.CallParams(t.Context(), "x/y", tt.params) }()
			e := p.next(t)
			if string(e.Params) != tt.want {
				t.Errorf("params = %s, want %s", e.Params, tt.want)
			}
			if e.Method != "x/y" || e.JSONRPC != "2.0" {
				t.Errorf("envelope = %+v", e)
			}
		})
	}
}

func TestConnRPCError(t *testing.T) {
	c, p := MustConn(t, ConnOptions{})
	go func() {
		e := p.next(t)
		p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":{"code":-32602,"message":"bad args","data":{"x":1}}}`, e.ID))
	}()
	_, err := c.CallParams(t.Context(), "tools/call", nil)
	var rpcErr *switchboard.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32602 || rpcErr.Message != "bad args" || string(rpcErr.Data) != `{"x":1}` {
		t.Fatalf("err = %#v, want RPCError -32602", err)
	}
}

func TestConnMalformedError(t *testing.T) {
	c, p := MustConn(t, ConnOptions{})
	go func() {
		e := p.next(t)
		p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":"oops"}`, e.ID))
	}()
	_, err := c.CallParams(t.Context(), "m", nil)
	var rpcErr *switchboard.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32603 {
		t.Fatalf("err = %v, want RPCError -32603", err)
	}
}

func TestConnGarbage(t *testing.T) {
	var seen atomic.Int64
	c, p := MustConn(t, ConnOptions{OnGarbage: func(line []byte, total int64) { seen.Store(total) }})
	go func() {
		e := p.next(t)
		p.send(
			"not json at all",
			`{"hello":"world"}`,
			`[1,2,3]`,
			`{"jsonrpc":"1.0","id":1,"result":{}}`,
			`{"jsonrpc":"2.0","id":424242,"result":{}}`, // unknown id
			`{"jsonrpc":"2.0","id":"abc","result":{}}`,
			"",
			"   ",
			fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"ok":true}}`+"\r", e.ID),
		)
	}()
	res, err := c.CallParams(t.Context(), "m", nil)
	if err != nil || string(res) != `{"ok":true}` {
		t.Fatalf("Call = %s, %v", res, err)
	}
	if g := c.Garbage(); g != 6 {
		t.Errorf("Garbage() = %d, want 6", g)
	}
	if seen.Load() != 6 {
		t.Errorf("OnGarbage total = %d, want 6", seen.Load())
	}
}

func TestConnLongLines(t *testing.T) {
	const limit = 1 << 20
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"fits the read buffer", 1000, false},
		{"spans many read buffers", 600 << 10, false},
		{"exactly the limit", limit, false},
		{"one over the limit", limit + 1, true},
		{"far over the limit", 8 * limit, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := MustConn(t, ConnOptions{MaxMessageBytes: limit})
			prefix := `{"jsonrpc":"2.0","id":1,"result":{"t":"`
			suffix := `"}}`
			text := strings.Repeat("x", tt.size-len(prefix)-len(suffix))
			go func() { // answer "m" with the long line, read everything else
				for {
					line, err := p.in.ReadBytes('\n')
					if err != nil {
						return
					}
					var e testMsg
					if json.Unmarshal(line, &e) == nil && e.Method == "m" {
						p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"t":"`, e.ID) + text + suffix) // ids are 1 digit, as in prefix
					}
				}
			}()
			// A second call must fail too when the first line kills the Conn.
			errs := make(chan error, 1)
			go func() {
				_, err := c.CallParams(t.Context(), "other", nil)
				errs <- err
			}()
			res, err := c.CallParams(t.Context(), "m", nil)
			if tt.wantErr {
				if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE || !errors.Is(c.Err(), ErrMessageTooLong) {
					t.Fatalf("err = %v, Conn.Err = %v; want EUNAVAILABLE and ErrMessageTooLong", err, c.Err())
				}
				select {
				case err := <-errs:
					if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
						t.Errorf("other call: err = %v, want EUNAVAILABLE", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("other call still pending after the Conn died")
				}
				return
			}
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if len(res) != len(text)+len(`{"t":""}`) {
				t.Errorf("result length %d, want %d", len(res), len(text)+8)
			}
		})
	}
}

func TestConnContextEnd(t *testing.T) {
	tests := []struct {
		name     string
		ctx      func(context.Context) (context.Context, context.CancelFunc)
		wantCode string
		reason   string
	}{
		{
			name: "deadline",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 50*time.Millisecond)
			},
			wantCode: switchboard.ETIMEOUT,
			reason:   "request timed out",
		},
		{
			name: "cancel",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantCode: switchboard.EINTERNAL,
			reason:   "request cancelled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := MustConn(t, ConnOptions{})
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := c.CallParams(ctx, "tools/call", nil)
				done <- err
			}()
			req := p.next(t)
			cancelled := p.next(t)
			if cancelled.Method != "notifications/cancelled" {
				t.Fatalf("second message = %+v, want notifications/cancelled", cancelled)
			}
			var cp struct {
				RequestID json.RawMessage `json:"requestId"`
				Reason    string          `json:"reason"`
			}
			if err := json.Unmarshal(cancelled.Params, &cp); err != nil {
				t.Fatal(err)
			}
			if string(cp.RequestID) != string(req.ID) || cp.Reason != tt.reason {
				t.Errorf("cancelled params = %s, want requestId %s reason %q", cancelled.Params, req.ID, tt.reason)
			}
			err := <-done
			if got := switchboard.ErrorCode(err); got != tt.wantCode {
				t.Errorf("code = %q (%v), want %q", got, err, tt.wantCode)
			}
			// The late answer is not garbage.
			p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, req.ID))
			go echoPeer(p)
			if _, err := c.CallParams(t.Context(), "ping", nil); err != nil {
				t.Fatal(err)
			}
			if c.Garbage() != 0 || c.LateResponses() != 1 {
				t.Errorf("Garbage = %d, LateResponses = %d; want 0, 1", c.Garbage(), c.LateResponses())
			}
		})
	}
}

func TestConnDeathFailsPendingAtOnce(t *testing.T) {
	toPeerR, toPeerW := io.Pipe()
	toConnR, toConnW := io.Pipe()
	c := NewConn(toConnR, toPeerW, ConnOptions{})
	defer c.Close()
	go func() { _, _ = io.Copy(io.Discard, toPeerR) }()
	const n = 50
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.CallParams(context.Background(), "tools/call", nil)
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them be sent; not a correctness wait
	_ = toConnW.Close()               // EOF from the child
	deadline := time.After(time.Second)
	for range n {
		select {
		case err := <-errs:
			if switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
				t.Errorf("err = %v, want EUNAVAILABLE", err)
			}
		case <-deadline:
			t.Fatal("pending calls not failed within 1s of EOF")
		}
	}
	<-c.Done()
	if !errors.Is(c.Err(), io.EOF) {
		t.Errorf("Err() = %v, want io.EOF in chain", c.Err())
	}
	if _, err := c.CallParams(context.Background(), "x", nil); switchboard.ErrorCode(err) != switchboard.EUNAVAILABLE {
		t.Errorf("call after death: %v", err)
	}
}

func TestConnNotificationsDoNotBlockReads(t *testing.T) {
	release := make(chan struct{})
	var got []string
	var mu sync.Mutex
	c, p := MustConn(t, ConnOptions{
		NotificationQueue: 4,
		OnNotification: func(method string, params json.RawMessage) {
			<-release
			mu.Lock()
			got = append(got, method)
			mu.Unlock()
		},
	})
	go func() {
		e := p.next(t)
		for i := range 10 {
			p.send(fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/n%d","params":{}}`, i))
		}
		p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, e.ID))
	}()
	if _, err := c.CallParams(t.Context(), "m", nil); err != nil {
		t.Fatal(err)
	}
	close(release)
	// At most one is in the handler and four queued; the rest were dropped.
	d := c.DroppedNotifications()
	if d != 5 && d != 6 {
		t.Fatalf("DroppedNotifications = %d, want 5 or 6", d)
	}
	kept := 10 - int(d)
	waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == kept }, "kept notifications handled")
	mu.Lock()
	defer mu.Unlock()
	for i, m := range got {
		if want := fmt.Sprintf("notifications/n%d", i); m != want {
			t.Errorf("handled[%d] = %s, want %s", i, m, want)
		}
	}
}

// testCaller records what the Conn relays to a client.
type testCaller struct {
	key      string
	mu       sync.Mutex
	notes    []string // "method params"
	requests []string // "method params"
	answer   func(method string, params json.RawMessage) (json.RawMessage, error)
}

func (tc *testCaller) Key() string { return tc.key }

func (tc *testCaller) Notify(method string, params json.RawMessage) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.notes = append(tc.notes, method+" "+string(params))
}

func (tc *testCaller) Request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	tc.mu.Lock()
	tc.requests = append(tc.requests, method+" "+string(params))
	answer := tc.answer
	tc.mu.Unlock()
	if answer == nil {
		return json.RawMessage(`{"ok":true}`), nil
	}
	return answer(method, params)
}

func (tc *testCaller) got() (notes, requests []string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return slices.Clone(tc.notes), slices.Clone(tc.requests)
}

func TestConnProgress(t *testing.T) {
	var other []string
	var mu sync.Mutex
	c, p := MustConn(t, ConnOptions{OnNotification: func(method string, params json.RawMessage) {
		mu.Lock()
		other = append(other, string(params))
		mu.Unlock()
	}})
	caller := &testCaller{key: "s1"}
	go func() {
		e := p.next(t)
		var params struct {
			Meta struct {
				ProgressToken string `json:"progressToken"`
			} `json:"_meta"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(e.Params, &params); err != nil || params.Name != "x" {
			t.Errorf("params %s: %v", e.Params, err)
		}
		token := params.Meta.ProgressToken
		if token != "sb-"+string(e.ID) {
			t.Errorf("token %q for id %s", token, e.ID)
		}
		p.send(
			fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%q,"progress":1}}`, token),
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"foreign","progress":1}}`,
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1}}`,
			fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":2,"progressToken":%q,"total":3}}`, token),
			fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, e.ID),
			fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%q,"progress":3}}`, token),
		)
	}()
	req := &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"x"}`), Progress: json.RawMessage(`"client-token"`), Caller: caller}
	if _, err := c.Call(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	// Progress sent before the response is delivered before Call returns,
	// with the client's own token; progress after it, or with another
	// token, is not.
	notes, _ := caller.got()
	want := []string{
		`notifications/progress {"progressToken":"client-token","progress":1}`,
		`notifications/progress {"progressToken":"client-token","progress":2,"total":3}`,
	}
	if !slices.Equal(notes, want) {
		t.Fatalf("caller got %q, want %q", notes, want)
	}
	waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(other) == 3 }, "unmatched progress to OnNotification")
	if notes, _ := caller.got(); len(notes) != 2 {
		t.Errorf("progress after the response reached the caller: %q", notes)
	}
}

func TestAppendCall(t *testing.T) {
	tests := []struct {
		name string
		req  switchboard.Request
		want string
	}{
		{"no params", switchboard.Request{Method: "ping"}, `{"jsonrpc":"2.0","id":9,"method":"ping"}`},
		{"null params", switchboard.Request{Method: "m", Params: json.RawMessage(`null`)}, `{"jsonrpc":"2.0","id":9,"method":"m"}`},
		{"params as they are", switchboard.Request{Method: "m", Params: json.RawMessage(`{"a":1}`)}, `{"jsonrpc":"2.0","id":9,"method":"m","params":{"a":1}}`},
		{"progress", switchboard.Request{Method: "m", Params: json.RawMessage(`{"a":1}`), Progress: json.RawMessage(`5`)},
			`{"jsonrpc":"2.0","id":9,"method":"m","params":{"a":1,"_meta":{"progressToken":"sb-9"}}}`},
		{"progress, empty params", switchboard.Request{Method: "m", Params: json.RawMessage(`{ }`), Progress: json.RawMessage(`5`)},
			`{"jsonrpc":"2.0","id":9,"method":"m","params":{ "_meta":{"progressToken":"sb-9"}}}`},
		{"meta, no params", switchboard.Request{Method: "m", Meta: []byte(`"traceparent":"00-x"`)},
			`{"jsonrpc":"2.0","id":9,"method":"m","params":{"_meta":{"traceparent":"00-x"}}}`},
		{"progress and meta", switchboard.Request{Method: "m", Params: json.RawMessage(`{"a":[1,{}]}`), Progress: json.RawMessage(`"t"`), Meta: []byte(`"k":1`)},
			`{"jsonrpc":"2.0","id":9,"method":"m","params":{"a":[1,{}],"_meta":{"progressToken":"sb-9","k":1}}}`},
		{"newlines compacted", switchboard.Request{Method: "m", Params: json.RawMessage("{\n\"a\": \"x\\ny\"\n}"), Progress: json.RawMessage(`1`)},
			`{"jsonrpc":"2.0","id":9,"method":"m","params":{"a":"x\ny","_meta":{"progressToken":"sb-9"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendCall(nil, 9, &tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want+"\n" {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
	if _, err := appendCall(nil, 1, &switchboard.Request{Method: "m", Params: json.RawMessage(`[1]`), Progress: json.RawMessage(`1`)}); err == nil {
		t.Error("array params with _meta accepted")
	}
}

func TestConnAnswersChildRequests(t *testing.T) {
	c, p := MustConn(t, ConnOptions{})
	_ = c
	p.send(
		`{"jsonrpc":"2.0","id":"a","method":"ping"}`,
		`{"jsonrpc":"2.0","id":7,"method":"roots/list","params":{}}`,
		`{"jsonrpc":"2.0","id":{"weird":1},"method":"sampling/createMessage","params":{}}`,
	)
	want := []string{
		`{"jsonrpc":"2.0","id":"a","result":{}}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"switchboard cannot relay roots/list: no client call is in flight on this provider"}}`,
		`{"jsonrpc":"2.0","id":{"weird":1},"error":{"code":-32603,"message":"switchboard cannot relay sampling/createMessage: no client call is in flight on this provider"}}`,
	}
	for _, w := range want {
		line, err := p.in.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(line) != w {
			t.Errorf("answer = %s, want %s", line, w)
		}
	}
}

// TestConnRelaysToTheOneCaller: a child's request and log message reach
// the client whose call is in flight, and the client's answer reaches the
// child; with calls of two clients in flight, neither client gets them.
func TestConnRelaysToTheOneCaller(t *testing.T) {
	c, p := MustConn(t, ConnOptions{OnNotification: func(string, json.RawMessage) {}})
	alice := &testCaller{key: "alice", answer: func(method string, params json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"role":"assistant","content":{"type":"text","text":"from alice"}}`), nil
	}}
	bob := &testCaller{key: "bob"}

	// One client: relayed both ways.
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(t.Context(), &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"a"}`), Caller: alice})
		done <- err
	}()
	call := p.next(t)
	p.send(
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hello"}}`,
		`{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[]}}`,
	)
	if answer, _ := p.in.ReadString('\n'); !strings.Contains(answer, `"id":"s1","result":`) || !strings.Contains(answer, "from alice") {
		t.Fatalf("child got %s", answer)
	}
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`, call.ID))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	notes, reqs := alice.got()
	if len(notes) != 1 || !strings.Contains(notes[0], `"hello"`) || len(reqs) != 1 || !strings.HasPrefix(reqs[0], "sampling/createMessage ") {
		t.Fatalf("alice got notes %q requests %q", notes, reqs)
	}

	// Two clients: refused, and neither hears of it.
	for _, who := range []*testCaller{alice, bob} {
		go func() {
			_, _ = c.Call(t.Context(), &switchboard.Request{Method: "tools/call", Params: json.RawMessage(`{"name":"b"}`), Caller: who})
		}()
	}
	first, second := p.next(t), p.next(t)
	p.send(`{"jsonrpc":"2.0","id":"s2","method":"elicitation/create","params":{"message":"?"}}`)
	if refusal, _ := p.in.ReadString('\n'); !strings.Contains(refusal, `"id":"s2","error"`) || !strings.Contains(refusal, "several clients") {
		t.Errorf("child got %s, want a refusal naming several clients", refusal)
	}
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, first.ID), fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, second.ID))
	if _, reqs := bob.got(); len(reqs) != 0 {
		t.Errorf("bob got %q", reqs)
	}
	if _, reqs := alice.got(); len(reqs) != 1 {
		t.Errorf("alice got %q", reqs)
	}
}

// TestConnChildCancelsRelay: the child's notifications/cancelled ends the
// relay's context, and no answer is sent for it.
func TestConnChildCancelsRelay(t *testing.T) {
	c, p := MustConn(t, ConnOptions{})
	started := make(chan struct{})
	cancelled := make(chan struct{})
	caller := &testCaller{key: "k", answer: func(string, json.RawMessage) (json.RawMessage, error) { return nil, nil }}
	caller.answer = nil
	blocking := &blockingCaller{started: started, cancelled: cancelled}
	go func() {
		_, _ = c.Call(t.Context(), &switchboard.Request{Method: "tools/call", Caller: blocking})
	}()
	call := p.next(t)
	p.send(`{"jsonrpc":"2.0","id":5,"method":"elicitation/create","params":{}}`)
	<-started
	p.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}`)
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("relay not cancelled")
	}
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, call.ID))
	p.send(`{"jsonrpc":"2.0","id":"a","method":"ping"}`)
	if line, _ := p.in.ReadString('\n'); !strings.Contains(line, `"id":"a"`) {
		t.Errorf("next frame to the child: %s, want only the ping answer", line)
	}
	_ = caller
}

type blockingCaller struct{ started, cancelled chan struct{} }

func (b *blockingCaller) Key() string                                  { return "b" }
func (b *blockingCaller) Notify(method string, params json.RawMessage) {}
func (b *blockingCaller) Request(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	close(b.started)
	<-ctx.Done()
	close(b.cancelled)
	return nil, ctx.Err()
}

func TestConnCloseIdempotent(t *testing.T) {
	c, _ := MustConn(t, ConnOptions{})
	for range 3 {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if switchboard.ErrorCode(c.Err()) != switchboard.EUNAVAILABLE {
		t.Errorf("Err() = %v", c.Err())
	}
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(tb testing.TB, d time.Duration, cond func() bool, what string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkConnCall measures one request/response round trip against an
// in-memory echo peer: the overhead the gateway adds over direct stdio (compare
// BenchmarkPipeBaseline, the same exchange of lines without a Conn).
func BenchmarkConnCall(b *testing.B) {
	params := json.RawMessage(`{"name":"echo","arguments":{"text":"hello world"}}`)
	b.Run("serial", func(b *testing.B) {
		c, p := MustConn(b, ConnOptions{})
		go echoPeer(p)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.CallParams(ctx, "tools/call", params); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c, p := MustConn(b, ConnOptions{})
		go echoPeer(p)
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.CallParams(ctx, "tools/call", params); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkPipeBaseline is the floor for BenchmarkConnCall/serial: the same
// peer and pipes, the client writing a request line and reading the answer
// line with no JSON-RPC layer.
func BenchmarkPipeBaseline(b *testing.B) {
	toPeerR, toPeerW := io.Pipe()
	toConnR, toConnW := io.Pipe()
	p := &peer{in: bufio.NewReader(toPeerR), out: toConnW}
	go echoPeer(p)
	defer toPeerW.Close()
	defer toConnR.Close()
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello world"}}}` + "\n")
	br := bufio.NewReaderSize(toConnR, readBufferSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := toPeerW.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := br.ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzConnHandle feeds arbitrary lines to the routing code: it must never
// panic, whatever the child writes.
func FuzzConnHandle(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		`{"jsonrpc":"2.0","id":"x","method":"ping"}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"sb-1"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":"x"}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}`,
		`{"jsonrpc":"2.0","id":null,"result":1}`,
		`{`, `[]`, `"x"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, _ := MustConn(t, ConnOptions{NotificationQueue: 1})
		var msg jsonrpc.Message
		c.handle(line, &msg)
	})
}

// TestConnAnswersRefusedRelays: a request the client side refuses gets the
// refusal as its answer, at once.
func TestConnAnswersRefusedRelays(t *testing.T) {
	c, p := MustConn(t, ConnOptions{})
	caller := &testCaller{key: "k", answer: func(string, json.RawMessage) (json.RawMessage, error) {
		return nil, &switchboard.RPCError{Code: -32601, Message: "the client did not declare the sampling capability"}
	}}
	go func() {
		_, _ = c.Call(t.Context(), &switchboard.Request{Method: "tools/call", Caller: caller})
	}()
	call := p.next(t)
	p.send(`{"method":"sampling/createMessage","params":{},"jsonrpc":"2.0","id":1}`)
	line, err := p.in.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the client did not declare the sampling capability"}}` {
		t.Fatalf("the child got %q, %v", line, err)
	}
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, call.ID))
}

// countingWriter counts the Write calls that reach the child's pipe.
type countingWriter struct {
	io.WriteCloser
	writes atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.WriteCloser.Write(p)
}

// Concurrent frames to the child share writes, and each arrives whole and
// in its sender's order, small (queued) and large (written from the
// caller's buffer) alike.
func TestConnWritesCombine(t *testing.T) {
	toPeerR, toPeerW := io.Pipe()
	toConnR, toConnW := io.Pipe()
	defer toConnW.Close()
	w := &countingWriter{WriteCloser: toPeerW}
	c := NewConn(toConnR, w, ConnOptions{})
	defer c.Close()

	const senders, per = 16, 200
	got := make(chan map[int][]int, 1)
	go func() {
		seen := map[int][]int{}
		sc := bufio.NewScanner(toPeerR)
		sc.Buffer(nil, 1<<20)
		for range senders * per {
			if !sc.Scan() {
				break
			}
			var m struct {
				Method string `json:"method"`
				Params struct {
					S, I int
					Pad  string
				}
			}
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.Method != "notifications/x" {
				t.Errorf("frame %q: %v", sc.Text(), err)
				break
			}
			seen[m.Params.S] = append(seen[m.Params.S], m.Params.I)
		}
		got <- seen
	}()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range per {
				params := map[string]any{"S": s, "I": i}
				if i%10 == 9 {
					params["Pad"] = strings.Repeat("x", maxQueuedFrame)
				}
				if err := c.Notify(context.Background(), "notifications/x", params); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	seen := <-got
	for s := range senders {
		if len(seen[s]) != per {
			t.Fatalf("sender %d: %d frames arrived, want %d", s, len(seen[s]), per)
		}
		for i, v := range seen[s] {
			if v != i {
				t.Fatalf("sender %d: frame %d arrived as number %d", s, v, i)
			}
		}
	}
	if n := w.writes.Load(); n >= senders*per {
		t.Errorf("%d writes for %d concurrent frames: none were combined", n, senders*per)
	} else {
		t.Logf("%d writes for %d frames", n, senders*per)
	}
}
