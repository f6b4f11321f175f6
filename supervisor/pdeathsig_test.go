package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
)

// miniGatewayEnv makes the test binary act as a tiny gateway (see miniGateway).
const miniGatewayEnv = "SB_SUPERVISOR_MINI_GATEWAY"

// miniGateway supervises one testprovider that forks a grandchild (path and
// pid file from the environment), then retires many OS threads by locking goroutines to them and
// returning, prints "ready", and waits to be killed.
func miniGateway() {
	s := New(zerolog.Nop(), Options{})
	spec := Spec{
		Key:     switchboard.InstanceKey{Provider: "mini"},
		Command: os.Getenv("SB_TP_BIN"),
		Env:     map[string]string{"TP_PIDFILE": os.Getenv("SB_TP_PIDFILE"), "TP_MODE": "fork"},
	}
	if err := s.Start(spec); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx, spec.Key); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	// The thread pitfall (golang/go#27505): if the child had been forked by a
	// thread the runtime may retire, retiring threads could kill it.
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			runtime.LockOSThread() // returning while locked terminates the thread
			time.Sleep(time.Millisecond)
		})
	}
	wg.Wait()
	fmt.Println("ready")
	select {}
}

func TestChildrenDieWithTheGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux-only")
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), miniGatewayEnv+"=1", "SB_TP_BIN="+tpBin, "SB_TP_PIDFILE="+pidFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("mini gateway said %q, %v", line, err)
	}
	child := readPID(t, pidFile)
	grandchild := readPID(t, pidFile+".grandchild")
	t.Cleanup(func() {
		_ = syscall.Kill(child, syscall.SIGKILL)
		_ = syscall.Kill(grandchild, syscall.SIGKILL)
	})

	// (b) Retired threads did not take the child with them.
	time.Sleep(500 * time.Millisecond)
	if !alive(child) {
		t.Fatal("child died when the gateway retired OS threads")
	}

	// (a) SIGKILL the gateway: Pdeathsig kills the child, the reaper kills
	// the rest of its group.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitUntil(t, 5*time.Second, func() bool { return !alive(child) }, "child to die with the gateway")
	waitUntil(t, 5*time.Second, func() bool { return !alive(grandchild) && groupGone(child) }, "grandchild to die with the gateway")
}

func TestReaperKillsRegisteredGroupsWhenClosed(t *testing.T) {
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "100")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	kept, gone := start(), start()
	r := newReaper(zerolog.New(zerolog.NewTestWriter(t)))
	r.add("+" + strconv.Itoa(kept.Process.Pid))
	r.add("+" + strconv.Itoa(gone.Process.Pid))
	r.remove("+" + strconv.Itoa(gone.Process.Pid)) // unregistered: must survive
	r.close()                                      // as the gateway dying would: EOF
	waitUntil(t, 5*time.Second, func() bool { return !alive(kept.Process.Pid) }, "registered group killed")
	if !alive(gone.Process.Pid) {
		t.Error("unregistered group was killed")
	}
	r.close() // idempotent
}
