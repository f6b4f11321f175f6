//go:build unix && !linux

package supervisor

import "errors"

// detectTracking: without Linux cgroups and PR_SET_CHILD_SUBREAPER, a
// provider is tracked by its process group alone.
func detectTracking() trackMode {
	return trackMode{kind: trackGroup, note: "cgroups and child subreapers are Linux-only"}
}

func becomeSubreaper() error { return errors.New("becoming a child subreaper: Linux-only") }

func sweepAdopted() int { return 0 }

func trampoline(path string, argv, env []string, _ int64) (string, []string, []string) {
	return path, argv, env
}

func killSubtree(int) int { return 0 }
