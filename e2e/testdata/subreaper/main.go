// Command subreaper runs a command the way an init that reaps promptly does
// (systemd, tini, docker-init): it is a child subreaper, so the command's
// orphaned descendants are reparented to it rather than to PID 1, and it
// reaps every child as soon as it exits. It writes the command's pid to
// $SUBREAPER_PIDFILE, forwards SIGTERM, SIGINT and SIGHUP to it, and once the
// command has exited and every process it adopted is gone (or 10 s after the
// command exited) exits with the command's status (128+n for signal n).
//
// The end-to-end tests run the gateway under it so that a killed process
// disappears (kill(pid, 0) fails with ESRCH) as soon as it dies, as it does
// on a host whose init reaps at once; the sandbox's PID 1 reaps only every
// two seconds.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: subreaper command [args...]")
		os.Exit(2)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		os.Exit(1)
	}
	p, err := os.StartProcess(os.Args[1], os.Args[1:], &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		os.Exit(1)
	}
	if f := os.Getenv("SUBREAPER_PIDFILE"); f != "" {
		if err := os.WriteFile(f+".tmp", []byte(strconv.Itoa(p.Pid)), 0o644); err == nil {
			_ = os.Rename(f+".tmp", f)
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			_ = p.Signal(s)
		}
	}()
	status := 1
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil { // ECHILD: nothing left
			os.Exit(status)
		}
		if pid == p.Pid {
			switch {
			case ws.Exited():
				status = ws.ExitStatus()
			case ws.Signaled():
				status = 128 + int(ws.Signal())
			}
			code := status
			time.AfterFunc(10*time.Second, func() { os.Exit(code) })
		}
	}
}
