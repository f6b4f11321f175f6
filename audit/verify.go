package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"time"
)

// VerifyResult is what Verify found.
type VerifyResult struct {
	// OK is true when the whole log is proven: every record is keyed and
	// verifies under the audit key (or is a pre-upgrade record that a keyed
	// record or a pre-upgrade checkpoint pins), the links hold, the checkpoint
	// is there, verifies and matches, and the gateway recorded no alarm. It is
	// false whenever Broken, Alarms or Unproven is set.
	OK bool `json:"ok"`
	// Files are the files walked, oldest first; the current file is last.
	Files []string `json:"files"`
	// Records is how many records were checked before the end or the break.
	Records uint64 `json:"records"`
	// FirstSeq, LastSeq and LastHash describe the checked part of the chain.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash,omitempty"`
	// Replicas are the replica names the checked records carry, in order of
	// first appearance (none for records written before records named their
	// replica).
	Replicas []string `json:"replicas,omitempty"`
	// KeyID names the audit key the records were checked with ("" without one).
	KeyID string `json:"key_id,omitempty"`
	// Legacy counts the records at the start of the chain that were written
	// before the chain was keyed (unkeyed SHA-256 hashes).
	Legacy uint64 `json:"legacy_records,omitempty"`
	// Checkpoint says how the "<file>.head" checkpoint compared: "absent",
	// "matched, MAC verified", "matched (MAC not checked: no key)",
	// "pre-upgrade format, matched, MAC verified", …
	Checkpoint string `json:"checkpoint"`
	// Notes are facts worth knowing that do not break the chain: records
	// rotated away, outages the log recorded about itself, what pre-upgrade
	// records can and cannot show.
	Notes []string `json:"notes,omitempty"`
	// Alarms are integrity failures the gateway found when it opened the log
	// and recorded in it (records of event "open_anomaly"): the chain after them
	// is sound, but what came before had been altered, cut or keyed otherwise.
	// They stay until the log is moved aside.
	Alarms []string `json:"alarms,omitempty"`
	// Unproven says why the log cannot be proven although nothing found is
	// wrong: no key to check with, or records written before the chain was
	// keyed that nothing pins.
	Unproven string `json:"unproven,omitempty"`
	// Broken is the first record (or the checkpoint, with Line 0) that fails a
	// check.
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

// Verify checks the log whose current file is file without the audit key: the
// rotated files oldest first, then the current file, for valid JSON, seq
// continuity, prev_hash links, the hashes of pre-upgrade records, and the
// checkpoint's presence and place. It cannot check a keyed record's hash or
// the checkpoint's MAC, so its result is never OK (Unproven says so): anyone
// who can write the file could have rewritten it consistently. A broken chain
// is reported in the result; the error is for files that cannot be read.
func Verify(file string) (VerifyResult, error) { return verify(file, nil) }

// VerifyWithKey checks the log with the audit key it was written under: every
// record's HMAC, the links, the checkpoint's MAC and that it matches the end
// of the chain, and the alarms the gateway recorded at startup. On a live log
// the record being written may show as an incomplete last line; verify again
// to tell.
func VerifyWithKey(file string, key []byte) (VerifyResult, error) {
	if len(key) != DigestKeySize {
		return VerifyResult{}, fmt.Errorf("verifying audit log: audit key is %d bytes, want %d", len(key), DigestKeySize)
	}
	k := deriveKeys(key)
	return verify(file, &k)
}

const hashSuffix = len(`,"hash":"`) + 64 + len(`"}`)

func verify(file string, k *keys) (VerifyResult, error) {
	res := VerifyResult{Checkpoint: "absent"}
	if k != nil {
		res.KeyID = k.id
	}
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
	// The checkpoint is read first: a live gateway only moves it forward
	// after the records it names are in the file.
	hd, herr := readHead(file)
	if herr != nil && !errors.Is(herr, errHeadFormat) {
		return res, fmt.Errorf("verifying audit log: %w", herr)
	}
	keyHint := ""
	if k != nil && hd != nil && hd.KeyID != "" && hd.KeyID != k.id {
		keyHint = fmt.Sprintf(" (the checkpoint names audit key %s, but the key given is %s: the audit key was replaced or removed)", hd.KeyID, k.id)
	}

	cls := newClassifier(k)
	prev := ""
	keyed := false // a record that is not pre-upgrade has been seen
	var keyedAt Record
	brk := func(f string, line int, seq uint64, format string, args ...any) (VerifyResult, error) {
		res.Broken = &Break{File: f, Line: line, Seq: seq, Reason: fmt.Sprintf(format, args...)}
		res.OK = false
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
			switch cls.kind(line[:len(line)-1]) {
			case kindBad:
				_ = f.Close()
				return brk(name, lineNo, rec.Seq, "hash mismatch: the record was altered, or written under another audit key%s", keyHint)
			case kindLegacy:
				if keyed {
					_ = f.Close()
					return brk(name, lineNo, rec.Seq, "unkeyed hash after keyed records: the record was rewritten by someone without the audit key")
				}
				res.Legacy++
			default:
				if !keyed {
					keyed, keyedAt = true, rec
				}
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
				at := rec.Time.Format("2006-01-02T15:04:05Z07:00")
				switch rec.Detail["event"] {
				case EventOpenAnomaly:
					res.Alarms = append(res.Alarms, fmt.Sprintf("seq %d at %s: on opening the log the gateway found: %s", rec.Seq, at, rec.Error))
				case EventChainKeyed:
					// Described with the pre-upgrade records below.
				default:
					res.Notes = append(res.Notes, fmt.Sprintf("seq %d at %s: %s: %s (%v)", rec.Seq, at, rec.Detail["event"], rec.Error, rec.Detail))
				}
			}
			if rec.Replica != "" && !slices.Contains(res.Replicas, rec.Replica) {
				res.Replicas = append(res.Replicas, rec.Replica)
			}
			prev = rec.Hash
			res.LastSeq, res.LastHash = rec.Seq, rec.Hash
			res.Records++
		}
		_ = f.Close()
	}

	hf := headFile(file)
	switch {
	case herr != nil:
		return brk(hf, 0, res.LastSeq, "the checkpoint is unreadable (%v): it was altered or replaced", herr)
	case hd == nil && res.Records > 0 && res.Legacy == res.Records:
		res.Unproven = fmt.Sprintf("every record (seq %d..%d) was written before the chain was keyed and no checkpoint pins them: their links catch accidental damage, but anyone who can write the files could have rewritten or cut them", res.FirstSeq, res.LastSeq)
	case hd == nil:
		return brk(hf, 0, res.LastSeq, "the checkpoint is missing: it was deleted (the gateway rewrites it after every write), so the end of the log cannot be trusted")
	case hd.V == 0 && keyed:
		return brk(hf, 0, hd.Seq, "the checkpoint has the pre-upgrade format but the chain is keyed: an old checkpoint was put back")
	case hd.V != 0 && res.Records > 0 && !keyed:
		return brk(hf, 0, hd.Seq, "the checkpoint is keyed but no record is: the records were rewritten without the audit key")
	case k != nil && !hd.macOK(k):
		if keyHint != "" {
			return brk(hf, 0, hd.Seq, "checkpoint MAC mismatch%s", keyHint)
		}
		return brk(hf, 0, hd.Seq, "checkpoint MAC mismatch: the checkpoint was altered, or written under another audit key")
	case hd.Seq > res.LastSeq:
		return brk(hf, 0, hd.Seq, "the log ends at seq %d but the checkpoint records seq %d: records were cut from the end", res.LastSeq, hd.Seq)
	case res.Records > 0 && hd.Seq < res.FirstSeq:
		return brk(hf, 0, hd.Seq, "the checkpoint (seq %d) is older than the oldest record (seq %d): an old checkpoint was put back", hd.Seq, res.FirstSeq)
	default:
		res.Checkpoint = "matched, MAC verified"
		if k == nil {
			res.Checkpoint = "matched (MAC not checked: no key)"
		}
		if hd.V == 0 {
			res.Checkpoint = "pre-upgrade format, " + res.Checkpoint
		}
		if hd.Seq < res.LastSeq {
			if hd.V == 0 {
				res.Unproven = fmt.Sprintf("every record was written before the chain was keyed; the pre-upgrade checkpoint pins seq %d..%d, but nothing pins seq %d..%d: anyone who can write the files could have rewritten or cut them", res.FirstSeq, hd.Seq, hd.Seq+1, res.LastSeq)
			} else {
				res.Notes = append(res.Notes, fmt.Sprintf("%d records after the checkpoint (seq %d) are keyed but not pinned: a running gateway rewrites its checkpoint within 50 ms of a write; otherwise the gateway stopped between writing them and its checkpoint", res.LastSeq-hd.Seq, hd.Seq))
			}
		} else if hd.V == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("every record was written before the chain was keyed; the pre-upgrade checkpoint (written %s) pins them all: they are unchanged since then, to anyone without the audit key", hd.Time.Format(time.RFC3339)))
		}
	}
	if res.Legacy > 0 && keyed {
		// The first keyed record's MAC covers its prev_hash, so it pins the
		// pre-upgrade records as they were when the gateway keyed the chain.
		// Whether they had been pinned before that, its record says: what the
		// gateway found in the pre-upgrade checkpoint.
		last := keyedAt.Seq - 1
		pinned := uint64(0)
		if keyedAt.Type == TypeAudit && keyedAt.Detail["event"] == EventChainKeyed &&
			keyedAt.Detail[detailLegacyThrough] == strconv.FormatUint(last, 10) {
			pinned, _ = strconv.ParseUint(keyedAt.Detail[detailLegacyPinned], 10, 64)
		}
		since := fmt.Sprintf("seq %d..%d were written before the chain was keyed; the keyed record seq %d (%s) pins them, so they are proven unchanged since then", res.FirstSeq, last, keyedAt.Seq, keyedAt.Time.Format(time.RFC3339))
		switch {
		case pinned >= last:
			res.Notes = append(res.Notes, since+"; before that, the pre-upgrade checkpoint had pinned them (through seq "+strconv.FormatUint(pinned, 10)+")")
		case res.Unproven == "":
			from := max(pinned+1, res.FirstSeq)
			res.Unproven = since + fmt.Sprintf(", but when the chain was keyed nothing pinned seq %d..%d: anyone who could write the files could have rewritten them before then (or converted keyed records into unkeyed ones)", from, last)
		}
	}
	if k == nil && res.Unproven == "" {
		res.Unproven = "no audit key: only the structure (JSON, seq numbers, links, pre-upgrade hashes) was checked; a keyed record's hash and the checkpoint's MAC need the key"
	}
	res.OK = res.Broken == nil && res.Unproven == "" && len(res.Alarms) == 0
	return res, nil
}

// checkLine checks one line (without its newline) on its own: its JSON and
// that its trailing hash member is the one the log writes. It returns the
// parsed record and "" or what is wrong. The hash itself is the classifier's.
func checkLine(line []byte) (Record, string) {
	var rec Record
	n := len(line)
	if n < hashSuffix+2 || !bytes.HasPrefix(line[n-hashSuffix:], []byte(`,"hash":"`)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		if json.Unmarshal(line, &rec) != nil {
			return rec, "not a JSON record"
		}
		return rec, "no trailing hash member"
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		return rec, "not valid JSON: " + err.Error()
	}
	if rec.Hash != string(line[n-66:n-2]) {
		return rec, "hash member altered or duplicated"
	}
	if rec.Seq == 0 {
		return rec, "no seq"
	}
	return rec, ""
}

// Report writes what verification found, one line each: notes, alarms,
// then the verdict, and returns the exit status `audit verify` gives: 0 the
// log is proven; 1 it is broken, cut, forged, keyed under another key, its
// checkpoint is missing or altered, or the gateway recorded an alarm; 2
// nothing wrong was found but the log cannot be proven.
func (res VerifyResult) Report(w io.Writer) int {
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, a := range res.Alarms {
		fmt.Fprintln(w, "ALARM:", a)
	}
	switch {
	case res.Broken != nil:
		where := fmt.Sprintf("%s:%d", res.Broken.File, res.Broken.Line)
		if res.Broken.Line == 0 {
			where = res.Broken.File
		}
		fmt.Fprintf(w, "BROKEN at %s (seq %d): %s\n", where, res.Broken.Seq, res.Broken.Reason)
		return 1
	case len(res.Alarms) > 0:
		fmt.Fprintf(w, "FAILED: the chain of %d records checks out, but the gateway found the log altered when it opened it (%d alarm(s) above); keep the files as evidence and move them aside to start a new log\n", res.Records, len(res.Alarms))
		return 1
	case !res.OK:
		fmt.Fprintf(w, "UNPROVEN (%d records, seq %d..%d): %s\n", res.Records, res.FirstSeq, res.LastSeq, res.Unproven)
		return 2
	}
	fmt.Fprintf(w, "ok: %d records in %d files, seq %d..%d; every record and the checkpoint verified under audit key %s\n", res.Records, len(res.Files), res.FirstSeq, res.LastSeq, res.KeyID)
	return 0
}
