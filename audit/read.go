package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Reading logs for reports (switchboard usage): every retained file of one
// log, or of the logs of several replicas gathered in a folder.

// maxLine bounds one line read back: a record's fields are capped when it
// is written (maxField, maxDetails), so a longer line is not a record.
const maxLine = 1 << 20

// Files returns the files of the audit log at path, oldest first. For a
// log file, that is its rotated files that are still retained, then the
// file itself (which need not exist once rotated away). For a folder, it is
// every audit log in it, rotated files included, recognized by their first
// line being a record: the logs of several replicas can be gathered in one
// folder. A rotated file whose name says it was rotated before since holds
// only older records and is left out (zero since: none is).
func Files(path string, since time.Time) ([]string, error) {
	st, statErr := os.Stat(path)
	switch {
	case statErr == nil && st.IsDir():
		return dirFiles(path, since)
	case statErr != nil && !errors.Is(statErr, os.ErrNotExist):
		return nil, fmt.Errorf("listing audit files: %w", statErr)
	}
	bs, err := listBackups(path)
	if err != nil {
		return nil, fmt.Errorf("listing audit files: %w", err)
	}
	var out []string
	for _, b := range bs {
		if !since.IsZero() && b.rotated.Before(since) {
			continue
		}
		out = append(out, b.path)
	}
	if statErr == nil {
		out = append(out, path)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("listing audit files: %s: %w", path, os.ErrNotExist)
	}
	return out, nil
}

// dirFiles returns the audit logs in dir, by name.
func dirFiles(dir string, since time.Time) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing audit files: %w", err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(name, ".head") {
			continue
		}
		if _, t, ok := parseRotated(name); ok && !since.IsZero() && t.Before(since) {
			continue
		}
		p := filepath.Join(dir, name)
		if isLogFile(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("listing audit files: no audit log in %s", dir)
	}
	return out, nil
}

// isLogFile reports whether the file at p starts with an audit record.
func isLogFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 64<<10).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	var head struct {
		Seq      *uint64 `json:"seq"`
		PrevHash *string `json:"prev_hash"`
		Type     string  `json:"type"`
	}
	return json.Unmarshal(bytes.TrimSpace(line), &head) == nil && head.Seq != nil && head.PrevHash != nil && head.Type != ""
}

// ReadStats says what ReadFiles read.
type ReadStats struct {
	Files   int
	Records int
	// Skipped counts lines that are not records (a line torn by a crash,
	// or not JSON); Verify says whether the log is intact.
	Skipped int
	// First and Last are the times of the earliest and latest record.
	First, Last time.Time
}

// ReadFiles calls fn with every record of files, in file order. fn must not
// keep rec. An error from fn stops the reading and is returned.
func ReadFiles(files []string, fn func(rec *Record) error) (ReadStats, error) {
	var st ReadStats
	r := bufio.NewReaderSize(nil, 256<<10)
	for _, path := range files {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated away or removed since it was listed
		}
		if err != nil {
			return st, fmt.Errorf("reading audit file: %w", err)
		}
		st.Files++
		r.Reset(f)
		err = eachLine(r, func(line []byte) error {
			var rec Record
			if json.Unmarshal(line, &rec) != nil || rec.Type == "" {
				st.Skipped++
				return nil
			}
			st.Records++
			if st.First.IsZero() || rec.Time.Before(st.First) {
				st.First = rec.Time
			}
			if rec.Time.After(st.Last) {
				st.Last = rec.Time
			}
			return fn(&rec)
		})
		_ = f.Close()
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// eachLine calls fn for every non-empty line of r; a line longer than
// maxLine is passed on cut (and so fails to parse).
func eachLine(r *bufio.Reader, fn func([]byte) error) error {
	var long []byte
	for {
		chunk, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if len(long) < maxLine {
				long = append(long, chunk...)
			}
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return fmt.Errorf("reading audit file: %w", err)
		}
		line := chunk
		if long != nil {
			line = append(long, chunk...)
			long = nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if ferr := fn(line); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			return nil
		}
	}
}
