package switchboard

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// Outcome's names are the audit log's, the metrics' and the traces'; a
// provider's JSON-RPC error is an answer, so "error", wherever it is wrapped.
func TestOutcome(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&RPCError{Code: -32602, Message: "bad"}, "error"},
		{fmt.Errorf("calling x: %w", &RPCError{Code: 1}), "error"},
		{CallContextError("tools/call", context.DeadlineExceeded), "timeout"},
		{context.DeadlineExceeded, "timeout"},
		{CallContextError("tools/call", context.Canceled), "cancelled"},
		{Errorf(EUNAVAILABLE, "gone"), "unavailable"},
		{Errorf(EOVERLOADED, "full"), "overloaded"},
		{Errorf(EINVALID, "no"), "error"},
		{errors.New("boom"), "error"},
	} {
		if got := Outcome(tt.err); got != tt.want {
			t.Errorf("Outcome(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if IsRPCError(nil) || IsRPCError(errors.New("x")) || !IsRPCError(fmt.Errorf("w: %w", &RPCError{})) {
		t.Error("IsRPCError is wrong")
	}
	err := CallContextError("prompts/get", context.DeadlineExceeded)
	if ErrorCode(err) != ETIMEOUT || !errors.Is(err, context.DeadlineExceeded) || ErrorMessage(err) != "calling prompts/get: provider did not answer in time" {
		t.Errorf("CallContextError(deadline) = %v (%s)", err, ErrorCode(err))
	}
}
