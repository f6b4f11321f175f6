package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
	l.fragment = -1
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
			l.fragment = fragment
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
	l.headOK = false // until pinHead
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

// The checkpoint. "<file>.head" holds one head: the seq and hash of the last
// record written, the id of the audit key, and a MAC under the checkpoint key.
// The log rewrites it in place after every commit (one pwrite of headSize
// bytes: a sector, so a crash leaves the old or the new one), which pins the
// chain's end: records cut off the end no longer match it. Checkpoints written
// before the chain was keyed (format 1: no "v", MAC under checkpointKey, written
// every 1000 records and on close) are still read.

// headVersion is the format of the checkpoints this package writes.
const headVersion = 2

// headSize is the checkpoint file's size: the JSON, spaces, a newline.
const headSize = 512

// head is the checkpoint in "<file>.head".
type head struct {
	// V is headVersion, or 0 for a pre-upgrade checkpoint.
	V     int       `json:"v,omitempty"`
	Seq   uint64    `json:"seq"`
	Hash  string    `json:"hash"`
	KeyID string    `json:"key_id,omitempty"`
	Time  time.Time `json:"time"`
	MAC   string    `json:"mac"`
}

func headFile(file string) string { return file + ".head" }

// headMAC is the MAC of a pre-upgrade (format 1) checkpoint.
func headMAC(key []byte, seq uint64, hash string) string {
	return Digest(key, []byte(strconv.FormatUint(seq, 10)+"\n"+hash))
}

// headMACv2 is the MAC of a checkpoint under the checkpoint key.
func headMACv2(key []byte, seq uint64, hash, keyID string) string {
	return Digest(key, []byte("v2\n"+strconv.FormatUint(seq, 10)+"\n"+hash+"\n"+keyID))
}

// macOK reports whether h's MAC verifies under k, for its format.
func (h *head) macOK(k *keys) bool {
	switch h.V {
	case 0:
		return hmacEqual(h.MAC, headMAC(k.ck1, h.Seq, h.Hash))
	case headVersion:
		return hmacEqual(h.MAC, headMACv2(k.ck, h.Seq, h.Hash, h.KeyID))
	}
	return false
}

func hmacEqual(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// openHead opens the checkpoint file for the in-place writes.
func (l *Log) openHead() error {
	f, err := os.OpenFile(headFile(l.cfg.File), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening audit checkpoint: %w", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil && st.Size() > headSize {
		err = f.Truncate(headSize)
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("opening audit checkpoint %s: %w", headFile(l.cfg.File), err)
	}
	l.head, l.headOK = f, false
	return nil
}

// blankHead is an empty checkpoint line.
var blankHead = func() (b [headSize]byte) {
	for i := range b {
		b[i] = ' '
	}
	b[headSize-1] = '\n'
	return b
}()

// writeHead records the last written record in the checkpoint file. It runs
// after every commit, so it encodes by hand into a reused buffer (what
// encoding/json makes of a head, which readHead decodes).
func (l *Log) writeHead() error {
	if l.head == nil {
		return errors.New("writing audit checkpoint: the file is not open")
	}
	if l.headMAC == nil {
		l.headMAC = hmac.New(sha256.New, l.keys.ck)
	}
	// The MAC input is headMACv2's: "v2\n<seq>\n<hash>\n<key id>".
	in := append(l.headIn[:0], "v2\n"...)
	in = strconv.AppendUint(in, l.durableSeq, 10)
	seq := in[3:]
	in = append(in, '\n')
	in = append(in, l.durableHash...)
	in = append(in, '\n')
	in = append(in, l.keys.id...)
	l.headIn = in
	m := l.headMAC
	m.Reset()
	m.Write(in)
	b := append(l.headBuf[:0], `{"v":2,"seq":`...)
	b = append(b, seq...)
	b = append(b, `,"hash":"`...)
	b = append(b, l.durableHash...)
	b = append(b, `","key_id":"`...)
	b = append(b, l.keys.id...)
	b = append(b, `","time":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","mac":"`+DigestPrefix...)
	l.headSum = m.Sum(l.headSum[:0])
	b = hex.AppendEncode(b, l.headSum)
	b = append(b, `"}`...)
	n := len(b)
	b = append(b, blankHead[n:]...)
	if _, err := l.head.WriteAt(b, 0); err != nil {
		l.headOK = false
		return fmt.Errorf("writing audit checkpoint: %w", err)
	}
	l.headOK = true
	return nil
}

// headEvery is how often, at most, the checkpoint is rewritten while records
// keep coming, and how long at most it lags the last commit.
const headEvery = 50 * time.Millisecond

// schedulePin pins the checkpoint after a commit: at once if it was last
// written headEvery ago or more, else headEvery after that (one timer at a
// time). A call's record is written before the answer either way; the
// checkpoint is evidence, not durability, and one write of it per 50 ms
// instead of one per commit spares a busy gateway a system call per call.
// Close pins whatever is left.
func (l *Log) schedulePin() {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.headOK || l.head == nil || l.headTimer != nil {
		return
	}
	if wait := headEvery - time.Since(l.headAt); wait > 0 {
		l.headTimer = time.AfterFunc(wait, func() {
			l.fmu.Lock()
			defer l.fmu.Unlock()
			l.headTimer = nil
			l.pinHeadLocked()
		})
		return
	}
	l.pinHeadLocked()
}

// pinHead writes the checkpoint for what is in the file, if it does not
// hold it yet. The records are written either way; a checkpoint that lags
// leaves the records after it keyed but not pinned against being cut, and
// verify notes them.
func (l *Log) pinHead() {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.pinHeadLocked()
}

// pinHeadLocked is pinHead with l.fmu held.
func (l *Log) pinHeadLocked() {
	if l.headOK || l.head == nil {
		return
	}
	l.headAt = time.Now()
	if err := l.writeHead(); err != nil {
		if !l.headFailing {
			l.log.Warn().Err(err).Msg("audit checkpoint not written; records written meanwhile are not pinned against being cut")
		}
		l.headFailing = true
		return
	}
	l.headFailing = false
}

// errHeadFormat marks a checkpoint file that is not a checkpoint.
var errHeadFormat = errors.New("not a checkpoint")

// readHead reads the checkpoint file; it returns nil, nil if there is none (an
// empty file, as a crash right after creating it leaves, counts as none).
func readHead(file string) (*head, error) {
	data, err := os.ReadFile(headFile(file))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	data = bytes.TrimRight(data, " \n\x00")
	if len(data) == 0 {
		return nil, nil
	}
	var h head
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w: %v", headFile(file), errHeadFormat, err)
	}
	if h.V != 0 && h.V != headVersion {
		return nil, fmt.Errorf("checkpoint %s: %w: format %d is unknown", headFile(file), errHeadFormat, h.V)
	}
	if !isHash(h.Hash) {
		return nil, fmt.Errorf("checkpoint %s: %w: no hash", headFile(file), errHeadFormat)
	}
	return &h, nil
}

// tailLine is one line of the end of the chain.
type tailLine struct {
	line []byte // without its newline
	file string
	seq  uint64 // 0 if the line is not a record
}

// chainTail returns the end of the chain, oldest first, from the last line
// whose seq is at most from (or from the start, if there is none): the current
// file read backwards, then the rotated files, newest first. The line at offset
// skip of the current file (an incomplete line Open isolated) is left out.
func (l *Log) chainTail(from uint64, skip int64) ([]tailLine, error) {
	var out []tailLine
	// back prepends lines of one file; it reports whether from was reached.
	back := func(f *os.File, name string, size int64, skip int64) (bool, error) {
		if size == 0 {
			return false, nil
		}
		for n := 4; ; n *= 4 {
			lines, offs, err := lastLines(f, size, n)
			if err != nil {
				return false, err
			}
			var got []tailLine
			reached := false
			for i, line := range lines {
				if offs[i] == skip {
					continue
				}
				seq, _, _, _, ok := parseLine(line)
				if !ok {
					seq = 0
				}
				if ok && seq <= from {
					got, reached = got[:0], true
				}
				got = append(got, tailLine{line: line, file: name, seq: seq})
			}
			if reached || len(lines) < n {
				out = append(got, out...)
				return reached, nil
			}
		}
	}
	reached, err := back(l.file, l.cfg.File, l.size, skip)
	if err != nil || reached {
		return out, err
	}
	backups, err := listBackups(l.cfg.File)
	if err != nil {
		return out, err
	}
	for i := len(backups) - 1; i >= 0 && !reached; i-- {
		f, err := os.Open(backups[i].path)
		if err != nil {
			return out, err
		}
		st, err := f.Stat()
		if err == nil {
			reached, err = back(f, backups[i].path, st.Size(), -1)
		}
		_ = f.Close()
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// checkTail checks the end of the chain found on disk (last record seq with
// hash) against the checkpoint and the audit key, before the log writes
// anything. It returns what is wrong, and for a chain written before the
// chain was keyed, the record that starts its keyed part.
func (l *Log) checkTail(seq uint64, hash string) (anomalies []string, upgrade *Record, err error) {
	add := func(format string, args ...any) { anomalies = append(anomalies, fmt.Sprintf(format, args...)) }
	h, herr := readHead(l.cfg.File)
	if herr != nil && !errors.Is(herr, errHeadFormat) {
		return nil, nil, fmt.Errorf("reading audit checkpoint: %w", herr)
	}
	if seq == 0 {
		if h != nil && h.Seq > 0 {
			add("the checkpoint records seq %d, but the log has no records: they were removed", h.Seq)
		}
		return anomalies, nil, nil
	}
	trusted := h != nil && h.macOK(&l.keys)
	from := seq
	if trusted && h.Seq < seq {
		from = h.Seq
	}
	tail, err := l.chainTail(from, l.fragment)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the end of the audit log: %w", err)
	}
	if len(tail) == 0 || tail[len(tail)-1].seq != seq {
		return nil, nil, fmt.Errorf("reading the end of the audit log: seq %d not found", seq)
	}
	cls := newClassifier(&l.keys)
	lastKind := cls.kind(tail[len(tail)-1].line)
	lastBad := func() {
		add("the last record (seq %d) does not verify under the audit key (key id %s): it was altered, or written under another key", seq, l.keys.id)
	}
	switch {
	case herr != nil:
		add("the checkpoint is unreadable (%v): it was altered or replaced", herr)
		if lastKind == kindBad {
			lastBad()
		}
		return anomalies, nil, nil
	case h == nil:
		switch lastKind {
		case kindKeyed:
			add("the checkpoint %s is missing although the log's records are keyed: it was deleted (the gateway rewrites it after every write)", filepath.Base(headFile(l.cfg.File)))
		case kindLegacy:
			// A pre-upgrade log, or a keyed one rewritten without the key. The
			// first record of each file tells, unless every record was.
			if s, f, ok := l.keyedFirstLine(cls); ok {
				add("record seq %d (the first of %s) is keyed but the last record (seq %d) is not and the checkpoint is gone: records were rewritten without the key", s, filepath.Base(f), seq)
				return anomalies, nil, nil
			}
			return nil, chainKeyed(seq, 0, l.keys.id), nil
		default:
			lastBad()
		}
		return anomalies, nil, nil
	case !trusted && h.V == headVersion && h.KeyID != l.keys.id:
		add("the checkpoint was written under another audit key (key id %s; the vault's key is %s): the key was replaced or removed, so the records up to seq %d can no longer be verified", h.KeyID, l.keys.id, seq)
		return anomalies, nil, nil
	case !trusted:
		add("the checkpoint's MAC does not verify under the audit key (key id %s): the checkpoint was altered, or written under another key", l.keys.id)
		return anomalies, nil, nil
	case h.Seq > seq:
		add("the checkpoint records seq %d, but the log ends at seq %d: records were cut from the end", h.Seq, seq)
		return anomalies, nil, nil
	}
	// A trusted checkpoint: walk from its record to the end.
	want := kindKeyed
	if h.V == 0 {
		want = kindLegacy
	}
	first := tail[0]
	if first.seq != h.Seq {
		add("the checkpoint's record (seq %d) is not in the log: records were removed", h.Seq)
		return anomalies, nil, nil
	}
	var prevHash []byte
	for i, t := range tail {
		s, p, hh, _, ok := parseLine(t.line)
		if !ok {
			add("the line after seq %d in %s is not a record: the log was altered", tail[i-1].seq, filepath.Base(t.file))
			return anomalies, nil, nil
		}
		k := cls.kind(t.line)
		switch {
		case i == 0 && string(hh) != h.Hash:
			add("the record at the checkpoint's seq %d differs from the checkpoint: the chain was rewritten", h.Seq)
		case i > 0 && (s != tail[i-1].seq+1 || string(p) != string(prevHash)):
			add("seq %d does not follow seq %d: records were removed, inserted or reordered after the checkpoint", s, tail[i-1].seq)
		case k == want:
			prevHash = hh
			continue
		case want == kindLegacy && k == kindKeyed:
			add("the checkpoint has the pre-upgrade format, but record seq %d is keyed: an old checkpoint was put back", s)
		case k == kindLegacy:
			add("record seq %d has an unkeyed hash although the chain is keyed: it was rewritten without the key", s)
		default:
			add("record seq %d does not verify under the audit key (key id %s): it was altered", s, l.keys.id)
		}
		return anomalies, nil, nil
	}
	if h.V == 0 {
		return nil, chainKeyed(seq, h.Seq, l.keys.id), nil
	}
	return nil, nil, nil
}

// keyedFirstLine returns the seq and file of the first record of a file of the
// log that is keyed, if any.
func (l *Log) keyedFirstLine(cls *classifier) (uint64, string, bool) {
	check := func(f *os.File, name string) (uint64, string, bool) {
		line, err := firstLine(f)
		if err != nil {
			return 0, "", false
		}
		if s, _, _, _, ok := parseLine(line); ok && cls.kind(line) == kindKeyed {
			return s, name, true
		}
		return 0, "", false
	}
	if s, name, ok := check(l.file, l.cfg.File); ok {
		return s, name, ok
	}
	backups, _ := listBackups(l.cfg.File)
	for _, b := range backups {
		f, err := os.Open(b.path)
		if err != nil {
			continue
		}
		s, name, ok := check(f, b.path)
		_ = f.Close()
		if ok {
			return s, name, ok
		}
	}
	return 0, "", false
}

// Detail of an EventChainKeyed record.
const (
	detailLegacyThrough = "legacy_through_seq"
	detailLegacyPinned  = "legacy_pinned_through_seq"
)

// chainKeyed is the record that starts the keyed part of a chain whose records
// up to seq were written before the chain was keyed, of which a pre-upgrade
// checkpoint (MAC verified) pinned those up to pinned (0: none).
func chainKeyed(seq, pinned uint64, keyID string) *Record {
	text := "absent: nothing pinned them"
	if pinned > 0 {
		text = fmt.Sprintf("pinned through seq %d by the pre-upgrade checkpoint (MAC verified)", pinned)
		if pinned < seq {
			text += fmt.Sprintf("; seq %d..%d were not pinned", pinned+1, seq)
		}
	}
	return &Record{Type: TypeAudit, Outcome: OutcomeOK, Detail: map[string]string{
		"event":             EventChainKeyed,
		detailLegacyThrough: strconv.FormatUint(seq, 10),
		detailLegacyPinned:  strconv.FormatUint(pinned, 10),
		"legacy_checkpoint": text,
		"key_id":            keyID,
	}}
}
