//go:build unix && !linux

package supervisor

import "syscall"

// sysProcAttr puts the child in its own session and process group. Pdeathsig
// and cgroups are Linux-only.
func sysProcAttr(int, syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
