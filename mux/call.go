package mux

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/switchboard-mcp/switchboard"
)

// callParams is what goes to the child for tools/call: the original tool name and
// the caller's arguments as raw bytes, never re-encoded.
type callParams struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	Meta      *callMeta       `json:"_meta,omitempty"`
}

type callMeta struct {
	ProgressToken string `json:"progressToken"`
}

func (s *Server) newCallInfo(ctx context.Context, exposed string) *CallInfo {
	ci := &CallInfo{
		RequestID: switchboard.RequestIDFromContext(ctx),
		Principal: principal(ctx),
		Exposed:   exposed,
		Start:     time.Now(),
		Decision:  "allow",
	}
	if sess := server.ClientSessionFromContext(ctx); sess != nil {
		ci.SessionID = sess.SessionID()
		if info := s.sessions.get(ci.SessionID); info != nil {
			ci.Client = info.client
			ci.Endpoint = info.endpoint
		}
	}
	if ci.Endpoint == "" {
		ci.Endpoint = endpointFromContext(ctx)
	}
	if rs := requestStateFrom(ctx); rs != nil {
		rs.call = ci
	}
	return ci
}

func (s *Server) finish(ctx context.Context, ci *CallInfo) {
	ci.Latency = time.Since(ci.Start)
	if s.opts.Observer != nil {
		s.opts.Observer.Done(ctx, ci)
	}
	if s.opts.SlowCall > 0 && ci.Latency > s.opts.SlowCall {
		s.log.Warn().Str("request_id", ci.RequestID).Str("provider", ci.Provider).Str("tool", ci.Tool).
			Dur("latency", ci.Latency).Dur("threshold", s.opts.SlowCall).Msg("slow tool call")
	}
}

// toolHandler forwards a call of e to its provider instance.
func (s *Server) toolHandler(e *toolEntry) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
		ci := s.newCallInfo(ctx, e.Exposed)
		ci.Provider, ci.Tool = e.Provider, e.Original
		ci.Args = rawArguments(req)
		defer func() { s.finish(ctx, ci) }()

		// Defense in depth: the filter already ran in mcp-go; check again here.
		if !s.toolVisible(ctx, ci.Principal, e) {
			ci.Decision, ci.Outcome = "deny", "denied"
			return nil, server.ErrToolNotFound
		}
		if s.opts.Observer != nil {
			if err := s.opts.Observer.Admit(ctx, ci); err != nil {
				ci.Outcome, ci.Err = "refused", err
				return mcp.NewToolResultError(switchboard.ErrorMessage(err)), nil
			}
		}
		up, err := s.upstream(ctx, e.Provider, ci.Principal)
		if err != nil {
			ci.Outcome, ci.Err = outcomeOf(err), err
			return mcp.NewToolResultError(switchboard.ErrorMessage(err)), nil
		}
		params := callParams{Name: e.Original, Arguments: ci.Args}
		if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
			tok, release := up.ProgressToken(s.progressForwarder(ctx, req.Params.Meta.ProgressToken))
			defer release()
			params.Meta = &callMeta{ProgressToken: tok}
		}
		raw, err := up.Call(ctx, "tools/call", params)
		if err != nil {
			var rpcErr *switchboard.RPCError
			if errors.As(err, &rpcErr) {
				ci.Outcome, ci.Err = "error", err
				return nil, rpcErr
			}
			ci.Outcome, ci.Err = outcomeOf(err), err
			return mcp.NewToolResultError(e.Provider + ": " + switchboard.ErrorMessage(err)), nil
		}
		res = &mcp.CallToolResult{}
		if err := json.Unmarshal(raw, res); err != nil {
			ci.Outcome, ci.Err = "error", err
			return mcp.NewToolResultError(e.Provider + ": the provider returned a result that is not a valid CallToolResult"), nil
		}
		ci.Outcome = "ok"
		if res.IsError {
			ci.Outcome = "tool_error"
		}
		return res, nil
	}
}

// rawArguments returns the call's arguments exactly as the client sent them:
// mcp-go keeps the original bytes, so key order, number spelling and
// precision (12345678901234567890) survive the trip to the child.
func rawArguments(req mcp.CallToolRequest) json.RawMessage {
	if len(req.Params.RawArguments) > 0 {
		return req.Params.RawArguments
	}
	switch a := req.Params.Arguments.(type) {
	case nil:
		return nil
	case json.RawMessage:
		return a
	default:
		b, err := json.Marshal(a)
		if err != nil {
			return nil
		}
		return b
	}
}

func outcomeOf(err error) string {
	switch switchboard.ErrorCode(err) {
	case switchboard.ETIMEOUT:
		return "timeout"
	case switchboard.EUNAVAILABLE:
		return "unavailable"
	case switchboard.EOVERLOADED:
		return "overloaded"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "cancelled"
	}
	return "error"
}

// upstream finds the instance that serves provider for p.
func (s *Server) upstream(ctx context.Context, provider string, p *switchboard.Principal) (switchboard.Upstream, error) {
	if s.opts.Instances == nil {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s is not running", provider)
	}
	key := switchboard.InstanceKey{Provider: provider}
	if s.opts.Instances.UserScoped(provider) {
		if p == nil || p.Kind != switchboard.PrincipalUser {
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "provider %s runs per user and needs a user", provider)
		}
		key.User = p.ID
	}
	return s.opts.Instances.Upstream(ctx, key)
}

// progressForwarder relays the child's progress for one call back to the caller,
// with the caller's own token.
func (s *Server) progressForwarder(ctx context.Context, token mcp.ProgressToken) func(json.RawMessage) {
	return func(params json.RawMessage) {
		var p map[string]any
		if err := json.Unmarshal(params, &p); err != nil {
			return
		}
		p["progressToken"] = token
		_ = s.mcp.SendNotificationToClient(ctx, "notifications/progress", p)
	}
}

func (s *Server) promptHandler(e *promptEntry) server.PromptHandlerFunc {
	return func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		up, err := s.upstream(ctx, e.Provider, principal(ctx))
		if err != nil {
			return nil, errors.New(switchboard.ErrorMessage(err))
		}
		params := map[string]any{"name": e.Original}
		if len(req.Params.Arguments) > 0 {
			params["arguments"] = req.Params.Arguments
		}
		raw, err := up.Call(ctx, "prompts/get", params)
		if err != nil {
			return nil, callError(err)
		}
		res, err := mcp.ParseGetPromptResult(&raw)
		if err != nil {
			return nil, errors.New(e.Provider + ": invalid prompts/get result")
		}
		return res, nil
	}
}

// resourceHandler reads from provider; original, when set, is the URI the
// child knows the resource by (it differs from the exposed URI on collisions).
func (s *Server) resourceHandler(provider, original string) server.ResourceHandlerFunc {
	return func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		up, err := s.upstream(ctx, provider, principal(ctx))
		if err != nil {
			return nil, errors.New(switchboard.ErrorMessage(err))
		}
		uri := req.Params.URI
		if original != "" {
			uri = original
		}
		raw, err := up.Call(ctx, "resources/read", map[string]any{"uri": uri})
		if err != nil {
			return nil, callError(err)
		}
		res, err := mcp.ParseReadResourceResult(&raw)
		if err != nil {
			return nil, errors.New(provider + ": invalid resources/read result")
		}
		if uri != req.Params.URI { // report the URI the client asked for
			for i, c := range res.Contents {
				switch v := c.(type) {
				case mcp.TextResourceContents:
					if v.URI == uri {
						v.URI = req.Params.URI
					}
					res.Contents[i] = v
				case mcp.BlobResourceContents:
					if v.URI == uri {
						v.URI = req.Params.URI
					}
					res.Contents[i] = v
				}
			}
		}
		return res.Contents, nil
	}
}

func callError(err error) error {
	var rpcErr *switchboard.RPCError
	if errors.As(err, &rpcErr) {
		return rpcErr
	}
	return errors.New(switchboard.ErrorMessage(err))
}
