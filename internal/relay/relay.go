// Package relay runs a provider's requests to a client (sampling,
// elicitation, roots) for one provider connection, a child on stdio
// (supervisor.Conn) and a remote server (the remote client) alike: each in a
// goroutine of its own, since a person may take minutes to answer an
// elicitation; at most Max at once; cancelled by the provider's
// notifications/cancelled or when the connection ends; and answered with the
// client's result or error. Which client a request goes to (the relay rule)
// is switchboard.SoleCaller's and the connection's; how the answer travels
// back is the connection's.
package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// Max bounds the requests of one connection being relayed at once; more are
// refused.
const Max = 64

// Relays are the requests of one provider connection being relayed. The
// zero value is not usable; use New.
type Relays struct {
	slots chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inflight map[string]context.CancelFunc // by the request's raw id
}

// New returns an empty set of relays.
func New() *Relays {
	return &Relays{slots: make(chan struct{}, Max), inflight: map[string]context.CancelFunc{}}
}

// Refusal is the error response to a request of the provider that cannot
// be relayed, and why.
func Refusal(id json.RawMessage, method, why string) []byte {
	return jsonrpc.AppendError(nil, id, jsonrpc.CodeInternalError, "switchboard cannot relay "+method+": "+why, nil)
}

// Start relays the provider's request id to caller and hands answer the
// response (a JSON-RPC frame without a newline): the client's result, its
// *switchboard.RPCError, or an internal error. With Max requests in flight
// answer gets a Refusal at once. A request cancelled (Cancel, Close) before
// the client answered gets no answer: nobody waits for one. A request that
// reuses the id of one in flight voids the earlier one. After Close, Start
// does nothing.
func (r *Relays) Start(id json.RawMessage, method string, params json.RawMessage, caller switchboard.Caller, answer func(frame []byte)) {
	select {
	case r.slots <- struct{}{}:
	default:
		answer(Refusal(id, method, "too many requests in flight"))
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	key := string(bytes.TrimSpace(id))
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		<-r.slots
		return
	}
	if old := r.inflight[key]; old != nil {
		old()
	}
	r.inflight[key] = cancel
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer func() { <-r.slots }()
		res, err := caller.Request(ctx, method, params)
		abandoned := ctx.Err() != nil // cancelled, or the connection ended
		r.mu.Lock()
		if !abandoned {
			delete(r.inflight, key)
		}
		r.mu.Unlock()
		cancel()
		if abandoned && err != nil {
			return
		}
		var rpcErr *switchboard.RPCError
		switch {
		case err == nil:
			if len(res) == 0 {
				res = []byte(`{}`)
			}
			answer(jsonrpc.AppendResult(nil, id, res))
		case errors.As(err, &rpcErr):
			answer(jsonrpc.AppendError(nil, id, rpcErr.Code, rpcErr.Message, rpcErr.Data))
		default:
			answer(jsonrpc.AppendError(nil, id, jsonrpc.CodeInternalError, switchboard.ErrorMessage(err), nil))
		}
	}()
}

// Cancel stops relaying the request with raw id (the provider's
// notifications/cancelled).
func (r *Relays) Cancel(id []byte) {
	key := string(bytes.TrimSpace(id))
	if key == "" {
		return
	}
	r.mu.Lock()
	cancel := r.inflight[key]
	delete(r.inflight, key)
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Close cancels every request being relayed, and makes Start do nothing
// from then on. Idempotent.
func (r *Relays) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, cancel := range r.inflight {
		cancel()
	}
}

// Wait waits for the goroutines of the requests relayed.
func (r *Relays) Wait() { r.wg.Wait() }
