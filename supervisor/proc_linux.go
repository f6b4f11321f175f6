//go:build linux

package supervisor

import "syscall"

// sysProcAttr puts the child in its own session (and so its own process
// group, of the same id) and asks the kernel to send it deathSig when the
// thread that forked it dies (which, because spawn and wait run on one locked
// thread, is when the gateway dies). With cgroupFD >= 0 the child is created
// inside that cgroup v2 directory (clone3 CLONE_INTO_CGROUP, Linux 5.7+).
//
// A session of its own keeps the provider and all its descendants out of the
// gateway's session: none of them can join the gateway's process group, and
// the gateway tells them from children it forked itself (sweepAdopted).
func sysProcAttr(cgroupFD int, deathSig syscall.Signal) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setsid: true, Pdeathsig: deathSig}
	if cgroupFD >= 0 {
		a.UseCgroupFD = true
		a.CgroupFD = cgroupFD
	}
	return a
}
