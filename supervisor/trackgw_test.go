package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// trackGatewayEnv makes the test binary act as the small gateway of the
// tracking tests (see trackGateway).
const trackGatewayEnv = "SB_SUPERVISOR_TRACK_GATEWAY"

// trackGateway is a gateway for the process-tracking tests, run as a child
// of the test binary so that the subreaper mode (which makes the whole
// process a child subreaper) stays out of the test process. It supervises
// one testprovider (SB_TP_BIN, TP_MODE from SB_TP_MODE, pid files at
// SB_TP_PIDFILE) with the real tracking detection (the test may set
// SWITCHBOARD_PROCESS_TRACKING), optionally with the rlimit mechanism and a
// memory limit (SB_LIMITS=rlimit, SB_MEMORY bytes), and a StopGrace other
// than 200ms (SB_STOP_GRACE, a duration). It also starts a child of
// its own, as other code in a gateway might ("sleep 60", in its session),
// which no sweep may touch. It prints "ready <provider pid> <foreign pid>
// <tracking>", then obeys lines on stdin, answering each: "stop" (Stop the
// provider), "crash" (make it crash and wait for its restart), "exit"
// (StopAll and exit 0). At EOF it exits without stopping anything.
func trackGateway() {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	s := New(zerolog.New(os.Stderr).With().Timestamp().Logger(), Options{})
	if os.Getenv("SB_LIMITS") == "rlimit" {
		s.limits.detect = func() mechanism { return mechanism{kind: kindRlimit} }
	}
	mem, _ := strconv.ParseInt(os.Getenv("SB_MEMORY"), 10, 64)
	grace, err := time.ParseDuration(os.Getenv("SB_STOP_GRACE"))
	if err != nil {
		grace = 200 * time.Millisecond
	}
	spec := Spec{
		Key:            switchboard.InstanceKey{Provider: "tracked"},
		Command:        os.Getenv("SB_TP_BIN"),
		Env:            map[string]string{"TP_PIDFILE": os.Getenv("SB_TP_PIDFILE"), "TP_MODE": os.Getenv("SB_TP_MODE")},
		StopGrace:      grace,
		KillGrace:      200 * time.Millisecond,
		Backoff:        BackoffPolicy{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		MaxMemoryBytes: mem,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(spec); err != nil {
		fail(err)
	}
	if err := s.WaitReady(ctx, spec.Key); err != nil {
		fail(err)
	}
	foreign := exec.Command("sleep", "60")
	if err := foreign.Start(); err != nil {
		fail(err)
	}
	pidOf := func() int {
		for _, st := range s.Status() {
			return st.PID
		}
		return 0
	}
	fmt.Println("ready", pidOf(), foreign.Process.Pid, s.limits.tracking().kind)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "stop":
			if err := s.Stop(ctx, spec.Key); err != nil {
				fail(err)
			}
			fmt.Println("stopped")
		case "crash":
			old := pidOf()
			up, ok := s.Running(spec.Key)
			if !ok {
				fail(errors.New("not running"))
			}
			_, _ = callUp(ctx, up, "tools/call", map[string]any{"name": "crash"})
			for pidOf() == old || s.WaitReady(ctx, spec.Key) != nil {
				if ctx.Err() != nil {
					fail(ctx.Err())
				}
				time.Sleep(10 * time.Millisecond)
			}
			fmt.Println("restarted", pidOf())
		case "exit":
			if err := s.StopAll(ctx); err != nil {
				fail(err)
			}
			_ = foreign.Process.Kill()
			os.Exit(0)
		}
	}
	os.Exit(0)
}
