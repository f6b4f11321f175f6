package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// VerifyResult is what Verify found.
type VerifyResult struct {
	// OK is true when every record checks out and Broken is nil.
	OK bool `json:"ok"`
	// Files are the files walked, oldest first; the current file is last.
	Files []string `json:"files"`
	// Records is how many records were checked before the end or the break.
	Records uint64 `json:"records"`
	// FirstSeq, LastSeq and LastHash describe the checked part of the chain.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash,omitempty"`
	// Checkpoint says how the "<file>.head" checkpoint compared: "absent",
	// "matched", "matched, MAC verified", "older than the oldest file".
	Checkpoint string `json:"checkpoint"`
	// Notes are facts worth knowing that do not break the chain: records
	// rotated away, outages and anomalies the log recorded about itself.
	Notes []string `json:"notes,omitempty"`
	// Broken is the first record that fails a check.
	Broken *Break `json:"broken,omitempty"`
}

// Break locates the first broken record.
type Break struct {
	File string `json:"file"`
	Line int    `json:"line"` // 1-based; 0 when the problem is the checkpoint
	// Seq is the record's seq, or the seq expected there if it is unreadable.
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// String renders the break as "file:line: seq N: reason".
func (b *Break) String() string {
	if b.Line == 0 {
		return fmt.Sprintf("%s: seq %d: %s", b.File, b.Seq, b.Reason)
	}
	return fmt.Sprintf("%s:%d: seq %d: %s", b.File, b.Line, b.Seq, b.Reason)
}

// Verify checks the log whose current file is file: the rotated files oldest
// first, then the current file, for valid JSON, seq continuity, prev_hash links,
// each record's hash, and the checkpoint. A broken chain is reported in the
// result; the error is for files that cannot be read. On a live log the record
// being written may show as an incomplete last line; verify again to tell.
func Verify(file string) (VerifyResult, error) { return verify(file, nil) }

// VerifyWithKey is Verify that also checks the checkpoint's MAC with the digest
// key, which catches a chain and checkpoint rewritten by someone without it.
func VerifyWithKey(file string, key []byte) (VerifyResult, error) {
	if len(key) != DigestKeySize {
		return VerifyResult{}, fmt.Errorf("verifying audit log: digest key is %d bytes, want %d", len(key), DigestKeySize)
	}
	return verify(file, checkpointKey(key))
}

const hashSuffix = len(`,"hash":"`) + 64 + len(`"}`)

func verify(file string, ckKey []byte) (VerifyResult, error) {
	res := VerifyResult{Checkpoint: "absent"}
	backups, err := listBackups(file)
	if err != nil {
		return res, fmt.Errorf("verifying audit log: %w", err)
	}
	for _, b := range backups {
		res.Files = append(res.Files, b.path)
	}
	if _, err := os.Stat(file); err == nil {
		res.Files = append(res.Files, file)
	} else if !errors.Is(err, fs.ErrNotExist) || len(backups) == 0 {
		return res, fmt.Errorf("verifying audit log: %w", err)
	}
	hd, err := readHead(file)
	if err != nil {
		return res, fmt.Errorf("verifying audit log: %w", err)
	}

	prev := ""
	brk := func(f string, line int, seq uint64, format string, args ...any) (VerifyResult, error) {
		res.Broken = &Break{File: f, Line: line, Seq: seq, Reason: fmt.Sprintf(format, args...)}
		return res, nil
	}
	for _, name := range res.Files {
		f, err := os.Open(name)
		if err != nil {
			return res, fmt.Errorf("verifying audit log: %w", err)
		}
		r := bufio.NewReaderSize(f, 64<<10)
		for lineNo := 1; ; lineNo++ {
			line, err := r.ReadBytes('\n')
			if len(line) == 0 && err == io.EOF {
				break
			}
			want := res.LastSeq + 1
			if err == io.EOF {
				_ = f.Close()
				return brk(name, lineNo, want, "incomplete last line: the file was cut mid-record")
			}
			if err != nil {
				_ = f.Close()
				return res, fmt.Errorf("verifying audit log: reading %s: %w", name, err)
			}
			rec, reason := checkLine(line[:len(line)-1])
			if reason != "" {
				_ = f.Close()
				if rec.Seq != 0 {
					want = rec.Seq
				}
				return brk(name, lineNo, want, "%s", reason)
			}
			switch {
			case res.Records == 0:
				res.FirstSeq = rec.Seq
				if rec.Seq == 1 && rec.PrevHash != zeroHash {
					_ = f.Close()
					return brk(name, lineNo, rec.Seq, "first record's prev_hash is not zero")
				}
				if rec.Seq != 1 {
					res.Notes = append(res.Notes, fmt.Sprintf("the chain starts at seq %d: earlier records were rotated away", rec.Seq))
				}
			case rec.Seq != want:
				_ = f.Close()
				return brk(name, lineNo, rec.Seq, "seq %d follows %d: a record is missing, inserted or out of order", rec.Seq, res.LastSeq)
			case rec.PrevHash != prev:
				_ = f.Close()
				return brk(name, lineNo, rec.Seq, "prev_hash does not match the previous record's hash")
			}
			if hd != nil && rec.Seq == hd.Seq && rec.Hash != hd.Hash {
				_ = f.Close()
				return brk(name, lineNo, rec.Seq, "hash differs from the checkpoint's: the chain was rewritten")
			}
			if rec.Type == TypeAudit {
				res.Notes = append(res.Notes, fmt.Sprintf("seq %d at %s: %s: %s (%v)", rec.Seq, rec.Time.Format("2006-01-02T15:04:05Z07:00"), rec.Detail["event"], rec.Error, rec.Detail))
			}
			prev = rec.Hash
			res.LastSeq, res.LastHash = rec.Seq, rec.Hash
			res.Records++
		}
		_ = f.Close()
	}

	if hd != nil {
		current := file
		switch {
		case ckKey != nil && hd.MAC != headMAC(ckKey, hd.Seq, hd.Hash):
			return brk(headFile(current), 0, hd.Seq, "checkpoint MAC mismatch: written with another key or altered")
		case hd.Seq > res.LastSeq:
			return brk(headFile(current), 0, hd.Seq, "the log ends at seq %d but the checkpoint records seq %d: records were cut from the end", res.LastSeq, hd.Seq)
		case hd.Seq < res.FirstSeq:
			res.Checkpoint = "older than the oldest file"
		case ckKey != nil:
			res.Checkpoint = "matched, MAC verified"
		default:
			res.Checkpoint = "matched"
		}
		if hd.Seq < res.LastSeq {
			res.Notes = append(res.Notes, fmt.Sprintf("%d records after the checkpoint (seq %d) are covered by the chain only", res.LastSeq-hd.Seq, hd.Seq))
		}
	}
	res.OK = true
	return res, nil
}

// checkLine checks one line (without its newline) on its own: its hash and its
// JSON. It returns the parsed record and "" or what is wrong.
func checkLine(line []byte) (Record, string) {
	var rec Record
	n := len(line)
	if n < hashSuffix+2 || !bytes.HasPrefix(line[n-hashSuffix:], []byte(`,"hash":"`)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		if json.Unmarshal(line, &rec) != nil {
			return rec, "not a JSON record"
		}
		return rec, "no trailing hash member"
	}
	h := sha256.New()
	h.Write(line[:n-hashSuffix])
	h.Write([]byte{'}'})
	sum := hex.EncodeToString(h.Sum(nil))
	err := json.Unmarshal(line, &rec)
	if err != nil {
		return rec, "not valid JSON: " + err.Error()
	}
	if sum != string(line[n-66:n-2]) {
		return rec, "hash mismatch: the record was altered"
	}
	if rec.Hash != sum {
		return rec, "hash member altered or duplicated"
	}
	if rec.Seq == 0 {
		return rec, "no seq"
	}
	return rec, ""
}
