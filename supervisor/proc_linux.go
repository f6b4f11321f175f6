//go:build linux

package supervisor

import "syscall"

// sysProcAttr puts the child in its own process group and asks the kernel to
// SIGKILL it when the thread that forked it dies (which, because spawn and wait
// run on one locked thread, is when the gateway dies).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
