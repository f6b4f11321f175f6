package supervisor

import (
	"fmt"
	"strings"

	"github.com/switchboard-mcp/switchboard"
)

// resourceLimits is what a Spec asks for; zero fields are unlimited.
type resourceLimits struct {
	memory int64   // bytes
	cpu    float64 // CPUs
}

func (r resourceLimits) none() bool { return r.memory <= 0 && r.cpu <= 0 }

// limitKind names a limit mechanism, as shown in ProviderStatus.Limits.
type limitKind string

// Limit mechanisms, best first.
const (
	kindCgroup2 limitKind = "cgroup v2" // memory.max, cpu.max in a delegated subtree
	kindCgroup1 limitKind = "cgroup v1" // memory.limit_in_bytes, cpu.cfs_quota_us
	kindRlimit  limitKind = "rlimit"    // RLIMIT_DATA per process; no CPU limit
	kindNone    limitKind = "none"      // nothing can be enforced on this platform
)

// cgroupSubtree is the group, under the gateway's own cgroup, that holds one
// child group per spawned provider instance.
const cgroupSubtree = "switchboard-providers"

// mechanism is how a Supervisor enforces resource limits. It is chosen once,
// when the first Spec with limits is started.
type mechanism struct {
	kind limitKind
	// memBase is the directory in which instance cgroups get their memory
	// controller (cgroup v2: the only directory; cgroup v1: in the memory
	// hierarchy). Empty for rlimit and none.
	memBase string
	// cpuBase is the same for the cpu controller; empty when CPU cannot be
	// limited. Under cgroup v2 it equals memBase when set.
	cpuBase string
	// note explains the choice for the log (why better mechanisms were not
	// usable).
	note string
}

func (m mechanism) limitsCPU() bool { return m.cpuBase != "" }

// describe returns the ProviderStatus.Limits text for r under m: "" when r
// asks for nothing, else the mechanism and what it enforces, e.g.
// "cgroup v1: memory 64 MiB, cpu 0.50" or "rlimit: data 64 MiB (no cpu limit)".
func (m mechanism) describe(r resourceLimits) string {
	if r.none() {
		return ""
	}
	var on, off []string
	switch m.kind {
	case kindCgroup1, kindCgroup2:
		if r.memory > 0 {
			on = append(on, "memory "+formatBytes(r.memory))
		}
		if r.cpu > 0 {
			if m.limitsCPU() {
				on = append(on, "cpu "+formatCPU(r.cpu))
			} else {
				off = append(off, "cpu "+formatCPU(r.cpu)+" not enforced: no cpu controller")
			}
		}
	case kindRlimit:
		if r.memory > 0 {
			on = append(on, "data "+formatBytes(r.memory))
		}
		if r.cpu > 0 {
			off = append(off, "cpu "+formatCPU(r.cpu)+" not enforced")
		} else {
			off = append(off, "no cpu limit")
		}
	default:
		if r.memory > 0 {
			off = append(off, "memory "+formatBytes(r.memory)+" not enforced")
		}
		if r.cpu > 0 {
			off = append(off, "cpu "+formatCPU(r.cpu)+" not enforced")
		}
	}
	s := string(m.kind) + ":"
	if len(on) > 0 {
		s += " " + strings.Join(on, ", ")
	}
	if len(off) > 0 {
		s += " (" + strings.Join(off, "; ") + ")"
	}
	return s
}

// maxCPULimit is the largest MaxCPU accepted (a CFS quota the kernel takes).
const maxCPULimit = 4096

// validateLimits rejects limits that cannot mean anything.
func validateLimits(spec Spec) error {
	if spec.MaxMemoryBytes < 0 {
		return switchboard.Errorf(switchboard.EINVALID, "starting provider %s: negative memory limit", spec.Key)
	}
	if !(spec.MaxCPU >= 0) || spec.MaxCPU > maxCPULimit { // also NaN and Inf
		return switchboard.Errorf(switchboard.EINVALID, "starting provider %s: cpu limit %v out of range", spec.Key, spec.MaxCPU)
	}
	return nil
}

// formatBytes renders a memory size for humans: "2 GiB", "64 MiB", "1.5 MiB",
// "1000 bytes".
func formatBytes(n int64) string {
	const mib, gib = 1 << 20, 1 << 30
	switch {
	case n >= gib && n%gib == 0:
		return fmt.Sprintf("%d GiB", n/gib)
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

func formatCPU(c float64) string { return fmt.Sprintf("%.2f", c) }

// cgroupName returns the name of the cgroup of one spawn of key: the key made
// safe for a path, the gateway's pid (so that groups left by a dead gateway can
// be recognized and swept) and a sequence number.
func cgroupName(key switchboard.InstanceKey, gatewayPID int, seq uint64) string {
	name := []byte(key.String())
	if len(name) > 160 {
		name = name[:160]
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '@' || c == '.'
		if !ok {
			name[i] = '_'
		}
	}
	if len(name) == 0 || name[0] == '.' {
		name = append([]byte("p"), name...)
	}
	return fmt.Sprintf("%s.%d.%d", name, gatewayPID, seq)
}

// cgroupOwner returns the gateway pid encoded in a name made by cgroupName.
func cgroupOwner(name string) (int, bool) {
	rest, seq, ok := cutLast(name, '.')
	if !ok || !allDigits(seq) {
		return 0, false
	}
	_, pid, ok := cutLast(rest, '.')
	if !ok || !allDigits(pid) || len(pid) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range pid {
		n = n*10 + int(c-'0')
	}
	return n, n > 0
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
