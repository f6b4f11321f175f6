//go:build linux

package supervisor

import "syscall"

// sysProcAttr puts the child in its own process group and asks the kernel to
// SIGKILL it when the thread that forked it dies (which, because spawn and wait
// run on one locked thread, is when the gateway dies). With cgroupFD >= 0 the
// child is created inside that cgroup v2 directory (clone3 CLONE_INTO_CGROUP,
// Linux 5.7+).
func sysProcAttr(cgroupFD int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cgroupFD >= 0 {
		a.UseCgroupFD = true
		a.CgroupFD = cgroupFD
	}
	return a
}
