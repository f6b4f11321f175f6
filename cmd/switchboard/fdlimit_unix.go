//go:build unix

package main

import "syscall"

// defaultMaxConns is server.max_conns when it is 0: three quarters of the
// open-file limit, leaving the rest for providers' pipes, the vault and the
// audit log, so a flood of connections cannot make accept, spawn or the audit
// log fail with "too many open files". 0 (no cap) if the limit is unknown.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur / 4 * 3)
}
