package audit

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ChainResult is what VerifyDir found for one log: one replica's chain.
type ChainResult struct {
	// File is the log's current file (it may be absent when only rotated
	// files were gathered).
	File string `json:"file"`
	VerifyResult
}

// DirResult is what VerifyDir found in a folder of logs.
type DirResult struct {
	// OK is true when there is at least one log and every one is proven.
	OK     bool          `json:"ok"`
	Chains []ChainResult `json:"chains"`
	// Notes are facts across logs that break nothing: a replica named by
	// several logs, a log whose records name several replicas.
	Notes []string `json:"notes,omitempty"`
}

// VerifyDir checks every audit log in dir, each on its own: replicas share
// the audit key but each keeps its own chain, in its own file
// ("audit-<replica>.log" by default with a shared store), with its rotated
// files and its checkpoint beside it. Gather the replicas' files (with their
// ".head" checkpoints) in one folder and verify them together. With a nil
// key only the structure is checked (as Verify does). Files in dir that are
// neither a log, a rotated file nor a checkpoint are verified as logs, so a
// stray file makes the result fail rather than pass unseen.
func VerifyDir(dir string, key []byte) (DirResult, error) {
	var res DirResult
	if key != nil && len(key) != DigestKeySize {
		return res, fmt.Errorf("verifying audit logs: audit key is %d bytes, want %d", len(key), DigestKeySize)
	}
	files, err := chainFiles(dir)
	if err != nil {
		return res, fmt.Errorf("verifying audit logs in %s: %w", dir, err)
	}
	if len(files) == 0 {
		return res, fmt.Errorf("verifying audit logs: no audit log in %s", dir)
	}
	byReplica := map[string][]string{}
	for _, f := range files {
		var (
			vr  VerifyResult
			err error
		)
		if key != nil {
			vr, err = VerifyWithKey(f, key)
		} else {
			vr, err = Verify(f)
		}
		if err != nil {
			return res, err
		}
		res.Chains = append(res.Chains, ChainResult{File: f, VerifyResult: vr})
		for _, r := range vr.Replicas {
			byReplica[r] = append(byReplica[r], filepath.Base(f))
		}
		if len(vr.Replicas) > 1 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: records name several replicas (%s): the replica was renamed, or one replica's log was continued by another", filepath.Base(f), strings.Join(vr.Replicas, ", ")))
		}
	}
	names := make([]string, 0, len(byReplica))
	for r := range byReplica {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, r := range names {
		if fs := byReplica[r]; len(fs) > 1 {
			res.Notes = append(res.Notes, fmt.Sprintf("replica %s is named by several logs (%s): each is a chain of its own (a copy, or a replica that started over with a new data directory)", r, strings.Join(fs, ", ")))
		}
	}
	res.OK = true
	for _, c := range res.Chains {
		res.OK = res.OK && c.OK
	}
	return res, nil
}

// chainFiles returns the current file of every log in dir, sorted: each file
// that is not a rotated file or a checkpoint, plus the current file of every
// rotated file and checkpoint found without it.
func chainFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") {
			continue
		}
		if cur, ok := strings.CutSuffix(name, ".head"); ok {
			set[cur] = true
			continue
		}
		if cur, ok := rotatedOf(name); ok {
			set[cur] = true
			continue
		}
		set[name] = true
	}
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, filepath.Join(dir, name))
	}
	slices.Sort(out)
	return out, nil
}

// rotatedOf reports whether name is a rotated file, "<stem>-<time>-<seq><ext>"
// (see backupName), and returns its current file's name.
func rotatedOf(name string) (string, bool) {
	ext := filepath.Ext(name)
	mid := strings.TrimSuffix(name, ext)
	i := strings.LastIndexByte(mid, '-')
	if i < 0 {
		return "", false
	}
	if _, err := strconv.ParseUint(mid[i+1:], 10, 64); err != nil {
		return "", false
	}
	j := strings.LastIndexByte(mid[:i], '-')
	if j < 0 {
		return "", false
	}
	if _, err := time.Parse(backupTime, mid[j+1:i]); err != nil {
		return "", false
	}
	return mid[:j] + ext, true
}

// Report writes what VerifyDir found: one line per log (the replica it
// names, its file, the verdict), the notes and alarms of each log indented
// under it, then the notes across logs. It returns the exit status `audit
// verify DIR` gives, the worst of the logs' (see VerifyResult.Report): 0
// every log is proven, 1 one is broken or has an alarm, 2 none is broken
// but one cannot be proven.
func (r DirResult) Report(w io.Writer) int {
	code := 0
	for _, c := range r.Chains {
		replica := "replica " + strings.Join(c.Replicas, ", ")
		if len(c.Replicas) == 0 {
			replica = "no replica named"
		}
		var line strings.Builder
		cc := c.Report(&line)
		lines := strings.Split(strings.TrimSuffix(line.String(), "\n"), "\n")
		fmt.Fprintf(w, "%s (%s): %s\n", filepath.Base(c.File), replica, lines[len(lines)-1])
		for _, l := range lines[:len(lines)-1] {
			fmt.Fprintf(w, "  %s\n", l)
		}
		switch {
		case cc == 1:
			code = 1
		case cc == 2 && code == 0:
			code = 2
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	return code
}
