package switchboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// MaxInputRounds bounds how many times one call may ask its caller for
// input before it fails.
const MaxInputRounds = 10

// CallWithInput makes a 2026-07-28 request to a provider with call, and
// works an input_required result (a multi-round-trip request) through: it
// asks req's caller for each input the provider requested, then calls again
// with req's params, the answers and the provider's requestState, until the
// provider answers with anything else, or for MaxInputRounds rounds. It is
// the one owner of that loop for every provider client (a child on stdio
// and a remote server alike); call sends one request and returns its result.
func CallWithInput(ctx context.Context, req *Request, call func(*Request) (json.RawMessage, error)) (json.RawMessage, error) {
	r := *req
	for round := 0; ; round++ {
		raw, err := call(&r)
		if err != nil || !IsInputRequired(raw) {
			return raw, err
		}
		if round >= MaxInputRounds {
			return nil, Errorf(EUNAVAILABLE, "calling %s: the provider asked for input more than %d times", req.Method, MaxInputRounds)
		}
		var ir struct {
			InputRequests map[string]json.RawMessage `json:"inputRequests"`
			RequestState  *string                    `json:"requestState"`
		}
		if err := json.Unmarshal(raw, &ir); err != nil {
			return nil, WrapError(EUNAVAILABLE, err, "calling %s: decoding the provider's input_required result", req.Method)
		}
		answers, err := gatherInput(ctx, req, ir.InputRequests)
		if err != nil {
			return nil, err
		}
		params, err := jsonrpc.WithInput(req.Params, answers, ir.RequestState)
		if err != nil {
			return nil, WrapError(EINVALID, err, "calling %s: adding the input", req.Method)
		}
		r.Params = params
	}
}

// IsInputRequired reports whether a result is input_required.
func IsInputRequired(raw []byte) bool {
	if !bytes.Contains(raw, []byte(`"input_required"`)) {
		return false
	}
	v, ok := jsonrpc.Member(raw, "resultType")
	return ok && string(v) == `"input_required"`
}

// gatherInput asks req's caller for each input a provider requested in an
// input_required result (the 2026-07-28 multi-round-trip request), in the
// order of their keys, and returns the answers under the same keys.
func gatherInput(ctx context.Context, req *Request, asks map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	if req.Caller == nil {
		return nil, Errorf(EUNAVAILABLE, "calling %s: the provider asked for input, and no client is there to give it", req.Method)
	}
	out := make(map[string]json.RawMessage, len(asks))
	for _, id := range slices.Sorted(maps.Keys(asks)) {
		var r struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(asks[id], &r); err != nil || r.Method == "" {
			return nil, Errorf(EUNAVAILABLE, "calling %s: the provider's input request %q is malformed", req.Method, id)
		}
		res, err := req.Caller.Request(ctx, r.Method, r.Params)
		if err != nil {
			return nil, fmt.Errorf("calling %s: asking the client for %s: %w", req.Method, r.Method, err)
		}
		out[id] = res
	}
	return out, nil
}
