package main

import (
	"os"
	"runtime"
)

// shareCPUs leaves half of the CPUs to the providers, unless GOMAXPROCS is
// set: the gateway runs at most ⌈n/2⌉ goroutines at once on an n-CPU host.
//
// The gateway's own work is small hand-offs: each call passes from the
// client's connection to a child's pipe, to the goroutine reading that pipe
// and back. With a P idle for every hand-off to wake, Go's scheduler wakes
// and spins a thread (futex, nanosleep, epoll_pwait) at each one, CPU its
// children, which run on the same host and do the calls' real work, then
// lack. On a 2-CPU host one P halves the gateway's CPU per call and raises
// its throughput (docs/performance.md, "Round 7"). GOMAXPROCS in the
// environment is the override (a host where the gateway terminates TLS for
// many clients of remote providers may want every CPU).
func shareCPUs() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(max(1, (runtime.GOMAXPROCS(0)+1)/2))
}
