package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File handling. Everything here runs with l.fmu held.

// backupTime is the UTC rotation time in a rotated file's name.
const backupTime = "20060102T150405.000Z"

// openCurrent opens (creating if needed) the current file, isolates an
// incomplete last line, and returns the chain state on disk: the seq and hash of
// the last record in the current file or, if it has none, the newest rotated one.
func (l *Log) openCurrent() (seq uint64, hash string, anomalies []string, err error) {
	name := l.cfg.File
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return 0, "", nil, err
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, "", nil, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return 0, "", nil, err
	}
	if !st.Mode().IsRegular() {
		return 0, "", nil, fmt.Errorf("%s is not a regular file", name)
	}
	if err := f.Chmod(0o600); err != nil {
		return 0, "", nil, err
	}
	size := st.Size()
	fragment := int64(-1) // offset of an isolated incomplete line
	if size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err != nil {
			return 0, "", nil, err
		}
		if last[0] != '\n' {
			// A crash or a cut left half a line. Keep it (verify reports it)
			// but end it, so the next record starts on a line of its own.
			if _, err := f.Write([]byte{'\n'}); err != nil {
				return 0, "", nil, err
			}
			if fragment, err = lineStart(f, size); err != nil {
				return 0, "", nil, err
			}
			anomalies = append(anomalies, fmt.Sprintf("incomplete last line at byte %d of %s", fragment, filepath.Base(name)))
			size++
		}
	}

	var first uint64
	found := false
	if size > 0 {
		lines, offs, err := lastLines(f, size, 2)
		if err != nil {
			return 0, "", nil, err
		}
		for i := len(lines) - 1; i >= 0 && !found; i-- {
			if offs[i] == fragment {
				continue
			}
			seq, hash, err = parseChain(lines[i])
			if err != nil {
				return 0, "", nil, fmt.Errorf("last record of %s is unreadable (%w); run verify and move the file aside", name, err)
			}
			found = true
		}
		if found {
			first = seq
			if line, err := firstLine(f); err == nil {
				if s, _, err := parseChain(line); err == nil && s <= seq {
					first = s
				}
			}
		}
	}
	if !found {
		if seq, hash, err = l.lastBackupRecord(); err != nil {
			return 0, "", nil, err
		}
	}
	l.file, l.size, l.fileFirst = f, size, first
	l.durableSeq, l.durableHash = seq, hash
	return seq, hash, anomalies, nil
}

// lastBackupRecord returns the chain state at the end of the newest rotated
// file, or the start of a new chain if there is none.
func (l *Log) lastBackupRecord() (uint64, string, error) {
	backups, err := listBackups(l.cfg.File)
	if err != nil {
		return 0, "", err
	}
	for i := len(backups) - 1; i >= 0; i-- {
		f, err := os.Open(backups[i].path)
		if err != nil {
			return 0, "", err
		}
		st, err := f.Stat()
		if err == nil && st.Size() == 0 {
			_ = f.Close()
			continue
		}
		var lines [][]byte
		if err == nil {
			lines, _, err = lastLines(f, st.Size(), 1)
		}
		_ = f.Close()
		if err != nil {
			return 0, "", err
		}
		if len(lines) == 0 {
			continue
		}
		seq, hash, err := parseChain(lines[len(lines)-1])
		if err != nil {
			return 0, "", fmt.Errorf("last record of %s is unreadable (%w); run verify", backups[i].path, err)
		}
		return seq, hash, nil
	}
	return 0, zeroHash, nil
}

// parseChain reads the seq and hash of one line.
func parseChain(line []byte) (uint64, string, error) {
	var r struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return 0, "", err
	}
	if r.Seq == 0 || !isHash(r.Hash) {
		return 0, "", errors.New("no seq or hash")
	}
	return r.Seq, r.Hash, nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// lastLines returns up to n complete lines (without newlines) before offset
// size, which must end a line, and the offset each starts at.
func lastLines(f *os.File, size int64, n int) ([][]byte, []int64, error) {
	for chunk := int64(64 << 10); ; chunk *= 2 {
		off := max(size-chunk, 0)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, nil, err
		}
		buf = buf[:len(buf)-1] // the final newline
		var lines [][]byte
		var offs []int64
		end := len(buf)
		for len(lines) < n {
			i := bytes.LastIndexByte(buf[:end], '\n')
			if i < 0 {
				if off > 0 {
					break // the line may start before this chunk
				}
				lines, offs = append(lines, buf[:end]), append(offs, off)
				end = -1
				break
			}
			lines, offs = append(lines, buf[i+1:end]), append(offs, off+int64(i+1))
			end = i
		}
		if len(lines) == n || off == 0 || end < 0 {
			slices.Reverse(lines)
			slices.Reverse(offs)
			return lines, offs, nil
		}
	}
}

// lineStart returns the offset of the line that ends at size (exclusive).
func lineStart(f *os.File, size int64) (int64, error) {
	var buf [4096]byte
	for end := size; end > 0; {
		off := max(end-int64(len(buf)), 0)
		b := buf[:end-off]
		if _, err := f.ReadAt(b, off); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return off + int64(i) + 1, nil
		}
		end = off
	}
	return 0, nil
}

// firstLine returns the file's first line, up to 1 MiB.
func firstLine(f *os.File) ([]byte, error) {
	buf := make([]byte, 1<<20)
	n, err := f.ReadAt(buf, 0)
	if n == 0 {
		return nil, err
	}
	if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
		return buf[:i], nil
	}
	return nil, errors.New("first line too long")
}

// commit writes whole lines to the file. Before a write would take the file
// past the size limit it writes the lines that fit and rotates, so a large
// batch may span files (a single line longer than the limit gets a file of its
// own). A failed write is cut back off the file; lines written before it, in
// this file or a rotated one, stay, and the retry finds them on disk.
func (l *Log) commit(buf []byte) error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	for len(buf) > 0 {
		if l.file == nil {
			return fmt.Errorf("writing audit log %s: file is not open", l.cfg.File)
		}
		n := len(buf)
		if l.size+int64(n) > l.maxBytes {
			n = 0
			if room := l.maxBytes - l.size; room > 0 {
				n = bytes.LastIndexByte(buf[:min(int64(len(buf)), room)], '\n') + 1
			}
			if n == 0 && l.size > 0 {
				if err := l.rotate(); err != nil {
					return fmt.Errorf("rotating audit log %s: %w", l.cfg.File, err)
				}
				continue
			}
			if n == 0 {
				n = bytes.IndexByte(buf, '\n') + 1
			}
		}
		if err := l.writeLines(buf[:n]); err != nil {
			return err
		}
		buf = buf[n:]
	}
	return nil
}

// writeLines writes chunk, which ends a line, to the current file.
func (l *Log) writeLines(chunk []byte) error {
	n, err := l.file.Write(chunk)
	if err == nil && l.cfg.Fsync {
		err = l.file.Sync()
	}
	if err != nil {
		if n > 0 {
			if terr := l.file.Truncate(l.size); terr != nil {
				// Reopening isolates whatever half line is left.
				_ = l.file.Close()
				l.file = nil
			}
		}
		return fmt.Errorf("writing audit log %s: %w", l.cfg.File, err)
	}
	first, _, _, _, _ := parseLine(chunk[:bytes.IndexByte(chunk, '\n')])
	last, _, hash, _, _ := parseLine(chunk[bytes.LastIndexByte(chunk[:len(chunk)-1], '\n')+1 : len(chunk)-1])
	if l.fileFirst == 0 {
		l.fileFirst = first
	}
	l.size += int64(n)
	l.durableSeq, l.durableHash = last, string(hash)
	// A chain resumed from a replaced file can end below the checkpoint.
	if l.durableSeq < l.ckSeq || l.durableSeq-l.ckSeq >= uint64(l.cfg.CheckpointEvery) {
		if err := l.writeHead(); err != nil {
			l.log.Warn().Err(err).Msg("audit checkpoint not written")
		}
	}
	return nil
}

// rotate moves the current file aside and starts a new one.
func (l *Log) rotate() error {
	name := l.cfg.File
	backup := backupName(name, time.Now(), l.fileFirst)
	if _, err := os.Lstat(backup); err == nil {
		return fmt.Errorf("rotated file %s already exists", backup)
	}
	err := l.file.Sync()
	if cerr := l.file.Close(); err == nil {
		err = cerr
	}
	l.file = nil // a failure from here on is repaired by reopening
	if err != nil {
		return err
	}
	if err := os.Rename(name, backup); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	l.file, l.size, l.fileFirst = f, 0, 0
	if l.cfg.Fsync {
		syncDir(filepath.Dir(name))
	}
	l.removeOld()
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// backup is one rotated file.
type backup struct {
	path    string
	first   uint64 // seq of its first record
	rotated time.Time
}

func backupName(file string, t time.Time, first uint64) string {
	ext := filepath.Ext(file)
	stem := strings.TrimSuffix(file, ext)
	return stem + "-" + t.UTC().Format(backupTime) + "-" + strconv.FormatUint(first, 10) + ext
}

// listBackups returns file's rotated files, oldest first.
func listBackups(file string) ([]backup, error) {
	dir := filepath.Dir(file)
	base := filepath.Base(file)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext) + "-"
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []backup
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ext) || len(name) < len(prefix)+len(ext) {
			continue
		}
		mid := name[len(prefix) : len(name)-len(ext)]
		i := strings.LastIndexByte(mid, '-')
		if i < 0 {
			continue
		}
		t, err := time.Parse(backupTime, mid[:i])
		if err != nil {
			continue
		}
		first, err := strconv.ParseUint(mid[i+1:], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, backup{path: filepath.Join(dir, name), first: first, rotated: t})
	}
	slices.SortFunc(out, func(a, b backup) int {
		if a.first != b.first {
			return cmpUint(a.first, b.first)
		}
		return a.rotated.Compare(b.rotated)
	})
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// removeOld applies MaxBackups and MaxAgeDays to the rotated files.
func (l *Log) removeOld() {
	if l.cfg.MaxBackups == 0 && l.cfg.MaxAgeDays == 0 {
		return
	}
	backups, err := listBackups(l.cfg.File)
	if err != nil {
		l.log.Warn().Err(err).Msg("listing rotated audit files")
		return
	}
	cutoff := time.Now().Add(-time.Duration(l.cfg.MaxAgeDays) * 24 * time.Hour)
	for i, b := range backups {
		tooMany := l.cfg.MaxBackups > 0 && i < len(backups)-l.cfg.MaxBackups
		tooOld := l.cfg.MaxAgeDays > 0 && b.rotated.Before(cutoff)
		if !tooMany && !tooOld {
			continue
		}
		if err := os.Remove(b.path); err != nil {
			l.log.Warn().Err(err).Str("file", b.path).Msg("removing rotated audit file")
			continue
		}
		l.log.Info().Str("file", b.path).Msg("removed rotated audit file")
	}
}

// head is the checkpoint in "<file>.head".
type head struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	MAC  string    `json:"mac"`
}

func headFile(file string) string { return file + ".head" }

func headMAC(key []byte, seq uint64, hash string) string {
	return Digest(key, []byte(strconv.FormatUint(seq, 10)+"\n"+hash))
}

// writeHead records the last written record in the checkpoint file.
func (l *Log) writeHead() error {
	h := head{Seq: l.durableSeq, Hash: l.durableHash, Time: time.Now().UTC()}
	h.MAC = headMAC(l.ckKey, h.Seq, h.Hash)
	data, _ := json.Marshal(h)
	data = append(data, '\n')
	name := headFile(l.cfg.File)
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing audit checkpoint: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil && l.cfg.Fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		return fmt.Errorf("writing audit checkpoint: %w", err)
	}
	l.ckSeq = h.Seq
	return nil
}

// readHead reads the checkpoint file; it returns nil, nil if there is none.
func readHead(file string) (*head, error) {
	data, err := os.ReadFile(headFile(file))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h head
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", headFile(file), err)
	}
	return &h, nil
}

// checkHead compares the checkpoint with the chain state found on disk.
func (l *Log) checkHead(seq uint64, hash string) []string {
	h, err := readHead(l.cfg.File)
	switch {
	case err != nil:
		return []string{err.Error()}
	case h == nil:
		return nil
	case h.MAC != headMAC(l.ckKey, h.Seq, h.Hash):
		return []string{"checkpoint MAC mismatch: written with another key or altered"}
	case h.Seq > seq:
		return []string{fmt.Sprintf("checkpoint records seq %d but the log ends at seq %d: records are missing", h.Seq, seq)}
	case h.Seq == seq && h.Hash != hash:
		return []string{fmt.Sprintf("checkpoint hash for seq %d differs from the log's", seq)}
	}
	return nil
}
