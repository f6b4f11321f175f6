// Package supervisor runs MCP servers as child processes in their own process groups, restarting them with backoff.
//
// # Processes
//
// Each provider instance (a Spec, named by a switchboard.InstanceKey) is one
// child started from an argv array, never through a shell, in a session and
// process group of its own. Its environment is an allowlisted base copied
// from the gateway's (Options.BaseEnv) plus the Spec's own variables; nothing
// else of the gateway's environment leaks in. The supervisor owns the
// child's pipes: stdout carries JSON-RPC (see Conn), stderr is drained line by
// line into the log (rate limited) and a short tail shown in Status. The
// child never blocks on a full pipe.
//
// # Process tracking
//
// Every process a provider starts is found and killed when the provider
// stops, crashes or is removed, and when the gateway exits or dies, whatever
// the process does: leaving the process group or the session (setsid),
// ignoring SIGTERM, or losing its parent (a double fork). How is chosen once
// per Supervisor, at its first Start, and logged ("process tracking:
// mechanism chosen"):
//
//  1. A cgroup per spawn, with or without resource limits, wherever the
//     gateway can create one: cgroup v2 below its own group (no controller
//     needs to be delegated for this, and nothing is moved), or cgroup v1 in
//     the first of the freezer, pids and memory hierarchies it can create
//     groups in. A cgroup holds all descendants; none can leave it unless it
//     is privileged. Once the child is reaped, everything left in its groups
//     is SIGKILLed (atomically with cgroup.kill on v2; a v1 freezer group is
//     frozen first) and the groups are removed.
//  2. Otherwise the subreaper way. Each provider is started through an exec
//     trampoline, the gateway's binary re-executed, which sets
//     PR_SET_CHILD_SUBREAPER (and RLIMIT_DATA, if limited) and execs the
//     provider in the same process: nothing stays in between, so it costs no
//     memory per instance, and the provider keeps its pid. As a child
//     subreaper the provider adopts its orphaned descendants, so that nothing
//     leaves its subtree while it lives. The gateway is a child subreaper
//     too: when a provider dies, what is left of its subtree is reparented to
//     the gateway, which kills and reaps it (it tells those processes from
//     children of its own by their session). A provider that never reaps
//     children it did not start keeps such adopted orphans as zombies until
//     it exits.
//  3. The process group only, on platforms other than Linux.
//
// SWITCHBOARD_PROCESS_TRACKING=subreaper forces the second way.
//
// Children die with the gateway, however it dies. On Linux each child has a
// parent-death signal; the spawn and the wait run on one goroutine locked to
// its OS thread, so it fires only when the gateway dies, not when the Go
// runtime retires the thread that forked the child (golang/go#27505). A reaper
// helper (the gateway's own binary re-executed; a package init lets any binary
// importing this package act as it) is told over a socket of every
// provider's process group, its cgroups or, in the subreaper way, its
// subtree, and kills all that is still registered when that socket reaches
// EOF; a helper that dies is restarted. The parent-death signal is SIGKILL,
// except in the subreaper way, where it is SIGSTOP: a stopped provider keeps
// its subtree together until the reaper has stopped every process in it and
// killed them all. There the helper also holds copies of the provider's
// pipes (released before a graceful stop closes its stdin), so that the
// provider cannot see EOF or EPIPE from the dead gateway and exit, leaving
// its orphans to init, before that signal stops it. Only if the reaper
// helper dies with the gateway (killed by the same hand) can processes be
// left behind: descendants outside the process group, or in the subreaper
// way the stopped provider too (docs/limits.md lists the narrower cases).
// Processes that are killed are reaped by whatever adopts them, normally
// init.
//
// # Lifecycle
//
// At most Options.MaxStarting instances start at once (default
// DefaultMaxStarting); the rest wait their turn in StateQueued, in order. A
// start is spawn, initialize and the first catalog fetch: a node or Python
// server spends a second or more of CPU on it, and a hundred of them started
// together on two cores would each take as long as all of them, past their
// init timeout. InitTimeout, and WaitReady's bound (InitTimeout plus a
// margin), run from an instance's turn, not from its Start.
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
// # Resource limits
//
// A Spec may cap memory (MaxMemoryBytes) and CPU (MaxCPU). How is chosen
// once per Supervisor, at the first Start of a Spec with limits, and logged:
//
//  1. cgroup v2, when /sys/fs/cgroup is a cgroup2 mount and the memory
//     controller (cpu too, if available) can be enabled below the gateway's
//     own cgroup: each spawn gets <own>/switchboard-providers/<name> with
//     memory.max, memory.swap.max=0, memory.oom.group=1 and cpu.max, and the
//     child is created inside it (clone3 CLONE_INTO_CGROUP; if that fails,
//     it is moved in by pid right after start). If the own cgroup holds
//     processes, the "no internal processes" rule forbids enabling
//     controllers for its children, so the gateway first moves every process
//     of it into the leaf <own>/gateway, provided they are all the gateway
//     and its descendants (else it falls back). Needs a delegated subtree
//     (systemd Delegate=yes, or root).
//  2. cgroup v1, when the gateway can create groups in its own group of the
//     memory hierarchy (and of the cpu one, for CPU): switchboard-providers/
//     <name> with memory.limit_in_bytes (and memory.memsw.limit_in_bytes when
//     swap is accounted), cpu.cfs_period_us and cpu.cfs_quota_us. The
//     spawning thread joins the groups just before forking, so the child is
//     born in them.
//  3. otherwise RLIMIT_DATA, set with prlimit(2) right after the child
//     starts (a short window runs unlimited), and no CPU limit. RLIMIT_DATA,
//     not RLIMIT_AS, because runtimes such as Go and V8 reserve far more
//     address space than they use: an RLIMIT_AS of 64 MiB stops both from
//     starting at all. It is per process, inherited by each descendant
//     separately, and counts private writable memory, not shared or file
//     mappings.
//
// With a cgroup, the memory limit covers the child and all its descendants
// together (page cache included), and the kernel OOM-kills the group when
// reclaim cannot keep it under; the supervisor then records LastError
// "killed: over memory limit (64 MiB)", an EventExit with Signal "killed"
// and that Err, and restarts it with the usual backoff. Under RLIMIT_DATA an
// allocation fails and the child usually crashes; its exit is recorded as
// any other. Other providers are untouched either way.
//
// Limits use the same cgroup as tracking when both are cgroups. Groups left
// behind by a gateway that was killed (if its reaper could not remove them)
// are swept at the next detection.
//
// ProviderStatus.Limits shows the mechanism and what it enforces, for
// example "cgroup v1: memory 64 MiB, cpu 0.50" or "rlimit: data 64 MiB (no
// cpu limit)", and is empty without limits. See docs/limits.md.
//
// # Contract
//
//   - Start returns at once; it is a no-op for a key already supervised with an
//     equal Spec and an ECONFLICT error for a different one.
//   - Stop blocks until the child is reaped and the rest of its processes
//     killed: close stdin, StopGrace, SIGTERM to the group, KillGrace, SIGKILL
//     to the group, then every process still tracked (see above). It is
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
//     After MaxConsecutiveTimeouts such timeouts in a row (no answer between
//     them), the child is killed and restarted as a failure, with an
//     EventUnhealthy.
//   - OnCatalog, OnEvent and OnNotification are called synchronously from
//     supervisor goroutines and must not block for long.
//
// Secrets in Spec.Env are never logged; child output shown in logs, errors and
// Status passes through Options.Redact.
package supervisor
