//go:build unix && !linux

package supervisor

import "errors"

// detectMechanism: without Linux cgroups and prlimit nothing is enforced.
func detectMechanism() mechanism {
	return mechanism{kind: kindNone, note: "resource limits are enforced on Linux only"}
}

// cgroup is Linux-only; this stub is never created.
type cgroup struct{ dirs []string }

func newCgroup(mechanism, limitKind, string, string, resourceLimits, bool) (*cgroup, error) {
	return nil, errors.New("creating a cgroup: cgroups are Linux-only")
}

func (c *cgroup) cloneFD() int { return -1 }
func (c *cgroup) closeDir()    {}

func (c *cgroup) joinThread() (bool, func()) { return false, func() {} }
func (c *cgroup) place(int) error            { return errors.New("placing in a cgroup: cgroups are Linux-only") }
func (c *cgroup) oomKilled() bool            { return false }
func (c *cgroup) killAll() int               { return 0 }
func (c *cgroup) remove() error              { return nil }

func releaseCgroupDirs([]string) {}

func limitData(int, int64) error { return errors.New("setting RLIMIT_DATA: Linux-only") }
