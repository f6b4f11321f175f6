// Package supervisor runs MCP servers as child processes in their own process groups, restarting them with backoff.
//
// # Processes
//
// Each provider instance (a Spec, named by a switchboard.InstanceKey) is one
// child started from an argv array, never through a shell, in its own process
// group. Its environment is an allowlisted base copied from the gateway's
// (Options.BaseEnv) plus the Spec's own variables; nothing else of the
// gateway's environment leaks in. The supervisor owns the child's pipes: stdout
// carries JSON-RPC (see Conn), stderr is drained line by line into the log
// (rate limited) and a short tail shown in Status. The child never blocks on a
// full pipe.
//
// Children die with the gateway, however it dies. On Linux each child has
// Pdeathsig=SIGKILL; the spawn and the wait run on one goroutine locked to its
// OS thread, so the child is not killed when the Go runtime retires the thread
// that forked it (golang/go#27505). Pdeathsig reaches only the direct child, so
// a reaper helper (the gateway's own binary re-executed; a package init lets
// any binary importing this package act as it) is told of every process group
// over a pipe and SIGKILLs the groups still registered when that pipe reaches
// EOF. A descendant that leaves the group (setsid) escapes both; it cannot hang
// the supervisor, which stops reading the child's pipes shortly after the
// child is reaped.
//
// # Lifecycle
//
// After spawning, the supervisor runs initialize (under InitTimeout), sends
// notifications/initialized and fetches the catalog (tools, prompts, resources
// and resource templates, as advertised, following pagination). The instance
// is then running and Options.OnCatalog receives its limited Upstream and
// catalog; on a list_changed notification the catalog is refetched (debounced)
// and published again. The moment the child dies, pending calls fail with
// EUNAVAILABLE, OnCatalog receives (key, nil, nil), the rest of the group is
// SIGKILLed and a restart is scheduled after a jittered, growing delay. A start
// that fails, or a run shorter than Backoff.ResetAfter, is a quick failure;
// Backoff.MaxFailures consecutive quick failures leave the instance in
// StateFailed until Start or Restart. A child that floods stdout with invalid
// lines (GarbageLimit per minute) or sends a line over MaxMessageBytes is
// killed and restarted, which counts as a failure.
//
// # Contract
//
//   - Start returns at once; it is a no-op for a key already supervised with an
//     equal Spec and an ECONFLICT error for a different one.
//   - Stop blocks until the child is reaped and its group killed: close stdin,
//     StopGrace, SIGTERM to the group, KillGrace, SIGKILL to the group. It is
//     idempotent (unknown keys and repeated calls return nil) and returns at once
//     for an instance in backoff or failed. If ctx ends first, Stop returns its
//     error and the stop completes in the background. StopAll stops all in
//     parallel and, once nothing is supervised, ends the reaper.
//   - Restart is Stop then Start with the same Spec, resetting the failure count.
//   - WaitReady blocks until running, failed, stopped, or ctx ends.
//   - Upstream, Status, Has and Specs never block on a child.
//   - Calls through the Upstream of a running instance are limited to
//     MaxConcurrent in flight and MaxQueue waiting (beyond: EOVERLOADED at once),
//     each bounded by CallTimeout (ETIMEOUT; the child gets notifications/cancelled).
//   - OnCatalog, OnEvent and OnNotification are called synchronously from
//     supervisor goroutines and must not block for long.
//
// Secrets in Spec.Env are never logged; child output shown in logs, errors and
// Status passes through Options.Redact.
package supervisor
