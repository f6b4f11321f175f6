package mux

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// Multi-round-trip requests (2026-07-28). A stateless-era client cannot be
// sent a request, so when a child asks for input in the middle of a call
// (elicitation, sampling, roots) the gateway answers the client's request
// with input_required, keeps the child's call running, and resumes it when
// the client retries with the input.
//
// The call lives on the replica that started it, in memory: a continuation.
// The client holds only its requestState, an HMAC-signed token naming the
// continuation, the principal, the method and name of the request, the
// replica and an expiry. A retry whose token fails any of these checks — a
// forged or altered token, another principal's, an expired one, one for a
// different request, or one whose call already ended — gets one and the
// same error. The token also names the replica: deployments route a
// principal's requests to one replica (see docs/deploy.md), so the retry
// reaches the continuation; a retry that lands elsewhere gets the same
// error, and the client starts the call again.

// callResult is the end of a forwarded call.
type callResult struct {
	raw json.RawMessage
	err error
}

// continuation is a stateless-era call that may ask its client for input.
type continuation struct {
	id        string
	owner     string // principal "kind:id" and endpoint
	method    string
	name      string
	fw        *forwarded
	f         *flight
	ctx       context.Context
	cancel    context.CancelFunc
	result    chan callResult
	suspend   chan struct{}
	principal *switchboard.Principal

	mu      sync.Mutex
	asks    map[string]*ask
	nextAsk int
	parked  bool // answered with input_required; waiting for the retry
	expires time.Time
}

// ask is a request of the child waiting for the client's input.
type ask struct {
	id       string
	method   string
	params   json.RawMessage
	answer   chan clientAnswer
	answered bool
}

// continuations holds the parked calls of this replica.
type continuations struct {
	key     []byte
	replica string

	mu      sync.Mutex
	m       map[string]*continuation
	byOwner map[string]int
}

func newContinuations(key []byte, replica string) *continuations {
	return &continuations{key: key, replica: replica, m: map[string]*continuation{}, byOwner: map[string]int{}}
}

// continuationOwner names who may resume a continuation.
func continuationOwner(p *switchboard.Principal, ep switchboard.Endpoint) string {
	return p.String() + "@" + string(ep)
}

// requestName is the name a retry must repeat: the tool or prompt, or the URI.
func requestName(m *jsonrpc.Message) string {
	if m.Method == "resources/read" {
		return m.P.URI
	}
	return m.P.Name
}

// newCall prepares the continuation of a call that x starts. It is not
// registered until the call first asks for input.
func (cs *continuations) newCall(x *exchange, fw *forwarded, f *flight) *continuation {
	var buf [18]byte
	if _, err := rand.Read(buf[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	ctx = switchboard.NewContextWithPrincipal(ctx, x.p)
	ctx = switchboard.NewContextWithRequestID(ctx, switchboard.RequestIDFromContext(x.ctx))
	c := &continuation{
		id: base64.RawURLEncoding.EncodeToString(buf[:]), owner: continuationOwner(x.p, x.ep),
		method: x.m.Method, name: requestName(x.m), fw: fw, f: f, ctx: ctx, cancel: cancel,
		result: make(chan callResult, 1), suspend: make(chan struct{}, 1), principal: x.p,
		asks: map[string]*ask{},
	}
	f.mu.Lock()
	f.c = c
	f.mu.Unlock()
	return c
}

// ask records a request of the child and waits for the client's answer,
// brought by a retry.
func (c *continuation) ask(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	c.mu.Lock()
	c.nextAsk++
	a := &ask{id: "input-" + strconv.Itoa(c.nextAsk), method: method, params: params, answer: make(chan clientAnswer, 1)}
	c.asks[a.id] = a
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.asks, a.id)
		c.mu.Unlock()
	}()
	select {
	case c.suspend <- struct{}{}:
	default:
	}
	select {
	case ans := <-a.answer:
		if ans.err != nil {
			return nil, ans.err
		}
		return ans.result, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "the client did not retry the request in time"}
	}
}

// pendingAsks returns the requests still waiting for input, in order.
func (c *continuation) pendingAsks() []*ask {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*ask, 0, len(c.asks))
	for _, a := range c.asks {
		if !a.answered {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return askNumber(out[i].id) < askNumber(out[j].id) })
	return out
}

func askNumber(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "input-"))
	return n
}

// give hands the client's inputResponses to the requests waiting for them;
// keys the gateway did not ask for are ignored.
func (c *continuation) give(responses map[string]json.RawMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, res := range responses {
		if a := c.asks[id]; a != nil && !a.answered && jsonrpc.Valid(res) {
			a.answered = true
			a.answer <- clientAnswer{result: jsonrpc.Clone(res)}
		}
	}
}

// await waits for the call of c to end, answering x with its result, or to
// ask for input, answering x with input_required.
func (s *Server) await(x *exchange, c *continuation) {
	// A retry that did not answer every request is asked again at once.
	if s.askAgain(x, c) {
		return
	}
	for {
		select {
		case r := <-c.result:
			s.conts.forget(c)
			c.cancel() // the call is over; release its context
			c.fw.finish(x, r.raw, r.err)
			return
		case <-c.suspend:
			if s.askAgain(x, c) {
				return
			}
		case <-x.ctx.Done():
			// Closing the stream is how a stateless-era client cancels.
			s.conts.forget(c)
			c.cancel()
			go s.abandon(c, "cancelled")
			x.finish(http499, nil)
			return
		}
	}
}

// http499 is the status recorded for a request whose client went away.
const http499 = 499

// refuse fails the requests waiting for input with msg.
func (c *continuation) refuse(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.asks {
		if !a.answered {
			a.answered = true
			a.answer <- clientAnswer{err: &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: msg}}
		}
	}
}

// inputRequired is the InputRequiredResult asking for asks.
func inputRequired(asks []*ask, token string) []byte {
	b := []byte(`{"resultType":"input_required","inputRequests":{`)
	for i, a := range asks {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonrpc.AppendString(b, a.id)
		b = append(b, `:{"method":`...)
		b = jsonrpc.AppendString(b, a.method)
		if len(a.params) > 0 {
			b = append(b, `,"params":`...)
			b = append(b, a.params...)
		}
		b = append(b, '}')
	}
	b = append(b, `},"requestState":`...)
	b = jsonrpc.AppendString(b, token)
	return append(b, '}')
}

// resume picks up a call that asked its client for input: x is the
// client's retry, carrying the requestState and the inputResponses.
func (s *Server) resume(x *exchange) {
	c := s.conts.claim(x)
	if c == nil {
		x.fail(jsonrpc.CodeInvalidParams, "invalid requestState: it is not this principal's, has expired, or its request has ended; send the request again without it", nil)
		return
	}
	if c.fw.ci != nil {
		x.acc.provider = c.fw.provider
	}
	c.f.attach(x)
	var responses map[string]json.RawMessage
	if len(x.m.P.InputResponses) > 0 && json.Unmarshal(x.m.P.InputResponses, &responses) != nil {
		responses = nil
	}
	c.give(responses)
	s.await(x, c)
}

// askAgain answers x with input_required for the requests that are still
// waiting, if any (a retry that left some unanswered), and reports whether
// it did.
func (s *Server) askAgain(x *exchange, c *continuation) bool {
	asks := c.pendingAsks()
	if len(asks) == 0 {
		return false
	}
	token, err := s.conts.park(c, s.opts.ContinuationTTL, s.opts.MaxContinuationsPerPrincipal)
	if err != nil {
		c.refuse(err.Error())
		return false
	}
	x.acc.outcome = "input_required"
	x.reply(inputRequired(asks, token))
	return true
}

// abandon waits for the end of a call nobody will answer and records it.
func (s *Server) abandon(c *continuation, outcome string) {
	<-c.result
	if ci := c.fw.ci; ci != nil {
		ci.Outcome, ci.Err = outcome, errors.New("the client did not retry the request")
		if outcome == "cancelled" {
			ci.Err = context.Canceled
		}
		s.done(context.WithoutCancel(c.ctx), ci)
	}
}

// token is what a requestState carries.
type token struct {
	C string `json:"c"` // the continuation
	O string `json:"o"` // the owner: principal and endpoint
	M string `json:"m"` // the method
	N string `json:"n"` // the tool, prompt or URI
	R string `json:"r"` // the replica
	E int64  `json:"e"` // expiry, unix seconds
}

func (cs *continuations) sign(t token) string {
	payload, _ := json.Marshal(t)
	mac := hmac.New(sha256.New, cs.key)
	mac.Write(payload)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// verify returns the token in state if its signature holds.
func (cs *continuations) verify(state string) (token, bool) {
	p, sig, ok := strings.Cut(state, ".")
	if !ok {
		return token{}, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return token{}, false
	}
	mac := hmac.New(sha256.New, cs.key)
	mac.Write(payload)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return token{}, false
	}
	var t token
	if json.Unmarshal(payload, &t) != nil {
		return token{}, false
	}
	return t, true
}

// park registers c as waiting for its client's retry and returns the
// requestState for it.
func (cs *continuations) park(c *continuation, ttl time.Duration, maxPerOwner int) (string, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m[c.id] == nil {
		if cs.byOwner[c.owner] >= maxPerOwner {
			return "", errors.New("switchboard: too many requests of this client are waiting for input")
		}
		cs.m[c.id] = c
		cs.byOwner[c.owner]++
	}
	c.mu.Lock()
	c.parked = true
	c.expires = time.Now().Add(ttl)
	exp := c.expires
	c.mu.Unlock()
	return cs.sign(token{C: c.id, O: c.owner, M: c.method, N: c.name, R: cs.replica, E: exp.Unix()}), nil
}

// claim returns the parked continuation x's retry names, if the retry may
// resume it, and marks it taken so that no second retry can.
func (cs *continuations) claim(x *exchange) *continuation {
	t, ok := cs.verify(x.m.P.RequestState)
	if !ok || t.O != continuationOwner(x.p, x.ep) || t.M != x.m.Method || t.N != requestName(x.m) ||
		t.R != cs.replica || time.Now().Unix() > t.E {
		return nil
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.m[t.C]
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.parked {
		return nil
	}
	c.parked = false
	return c
}

// forget removes c from the table.
func (cs *continuations) forget(c *continuation) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m[c.id] == c {
		delete(cs.m, c.id)
		if cs.byOwner[c.owner]--; cs.byOwner[c.owner] <= 0 {
			delete(cs.byOwner, c.owner)
		}
	}
}

// expire takes out, and cancels, the parked calls whose client did not
// retry in time; the caller records them (Server.abandon).
func (cs *continuations) expire(now time.Time) []*continuation {
	var gone []*continuation
	cs.mu.Lock()
	for _, c := range cs.m {
		c.mu.Lock()
		if c.parked && now.After(c.expires) {
			c.parked = false
			gone = append(gone, c)
		}
		c.mu.Unlock()
	}
	cs.mu.Unlock()
	for _, c := range gone {
		cs.forget(c)
		c.cancel()
	}
	return gone
}

// closeAll takes out and cancels every parked call (shutdown); the caller
// records them.
func (cs *continuations) closeAll() []*continuation {
	cs.mu.Lock()
	all := make([]*continuation, 0, len(cs.m))
	for _, c := range cs.m {
		all = append(all, c)
	}
	cs.mu.Unlock()
	for _, c := range all {
		cs.forget(c)
		c.cancel()
	}
	return all
}
