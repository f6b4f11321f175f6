package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binDir holds switchboard, echo, notes, testprovider, modernprovider,
// rawecho, subreaper and asker, built once.
var binDir string

// npmBin is e2e/node_modules/.bin, absolute.
var npmBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sb-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	if npmBin, err = filepath.Abs(filepath.Join("node_modules", ".bin")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The gateway is built with the race detector when the tests are, so a
	// data race under real load fails the test that provoked it (see
	// gateway.checkLog). E2E_RACE=0 builds it without.
	gwArgs := []string{"build", "-o", filepath.Join(dir, "switchboard")}
	if raceEnabled && os.Getenv("E2E_RACE") != "0" {
		gwArgs = append(gwArgs, "-race")
	}
	builds := [][]string{
		append(gwArgs, "./cmd/switchboard"),
		{"build", "-o", dir + string(filepath.Separator), "./examples/providers/echo", "./examples/providers/notes", "./internal/testprovider", "./internal/modernprovider", "./e2e/testdata/rawecho", "./e2e/testdata/subreaper", "./e2e/testdata/asker"},
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, out)
			return 1
		}
	}
	return m.Run()
}
