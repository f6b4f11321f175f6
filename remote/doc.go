// Package remote connects to MCP servers that run elsewhere, over HTTP, and
// offers each as a switchboard.Upstream: the provider kind given by `url:`
// in gateway.yaml instead of `command:`.
//
// A connection speaks the newest era the server does. It probes with
// server/discover and, when the server answers as a 2026-07-28 server,
// speaks the stateless protocol: every request carries its _meta and the
// MCP-Protocol-Version, Mcp-Method, Mcp-Name (and x-mcp-header Mcp-Param-*)
// headers; an input_required result is worked through with the client whose
// call it is; list changes and resource updates arrive on a
// subscriptions/listen stream. Otherwise it initializes a session
// (Mcp-Session-Id; a 404 makes a new session and the call is retried once),
// keeps the session's GET stream open, and relays the server's requests
// (sampling, elicitation, roots) that arrive on a call's own response stream
// to that call's client — over HTTP they are tied to their call without
// doubt. A server that refuses both as an old server does is spoken to over
// the legacy HTTP+SSE transport of 2024-11-05, where, as over stdio, a
// server's request reaches a client only when every call in flight is that
// client's.
//
// The Manager keeps each instance connected: it fetches the catalog (raw
// bytes), refreshes it on list_changed, checks an idle connection's health,
// reconnects with exponential backoff and jitter, and bounds each
// instance's concurrency, queue and call time, as the supervisor does for a
// child. A remote server is never given up on: after repeated quick
// failures an instance shows `failed` and keeps retrying at the slowest
// pace, so it comes back on its own. Credentials come from a
// switchboard.Authorizer (the oauth package), asked before every request and
// told of every 401; they are never logged.
package remote
