package switchboard

import (
	"context"
	"errors"
	"fmt"
)

// Error codes. Packages return errors carrying one of these; the HTTP and MCP
// edge maps them to caller-facing errors, and shows "internal error" for EINTERNAL.
const (
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	ECONFLICT     = "conflict"
	EUNAVAILABLE  = "unavailable"
	ETIMEOUT      = "timeout"
	EOVERLOADED   = "overloaded"
	ERATELIMITED  = "rate_limited"
)

// Error is the gateway's application error: a code for the edge, a message safe to
// show a caller, and an optional wrapped cause that is logged but never shown.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		if e.Message == "" {
			return e.Err.Error()
		}
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with code and message that wraps cause.
func WrapError(code string, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any
// other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of the first *Error in err's chain,
// and "internal error" for any other error.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error"
}

// IsRPCError reports whether err is a provider's own JSON-RPC error (an
// *RPCError in its chain): an answer, not a failure to get one.
func IsRPCError(err error) bool {
	var rpcErr *RPCError // made only when there is an error to look at
	return err != nil && errors.As(err, &rpcErr)
}

// CallContextError is the error of a call whose context ended before the
// answer came: ETIMEOUT for a deadline, otherwise the context's error (a
// cancellation), both naming method.
func CallContextError(method string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return WrapError(ETIMEOUT, err, "calling %s: provider did not answer in time", method)
	}
	return fmt.Errorf("calling %s: %w", method, err)
}

// Outcome names how a call to a provider ended, in the words the audit log,
// the metrics and the traces share: "ok" for no error, "error" for the
// provider's JSON-RPC error (and any error not named below), "timeout",
// "unavailable", "overloaded" or "cancelled".
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case IsRPCError(err):
		return "error"
	}
	switch ErrorCode(err) {
	case ETIMEOUT:
		return "timeout"
	case EUNAVAILABLE:
		return "unavailable"
	case EOVERLOADED:
		return "overloaded"
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "error"
}
