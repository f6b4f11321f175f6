// Package audit writes the gateway's append-only, keyed, hash-chained
// JSON-lines audit log.
//
// Each line is one JSON object (a Record). Append and Write assign it a sequence
// number that grows by one across rotations and restarts, the hash of the
// previous record (prev_hash), and its own hash: the lowercase hex
// HMAC-SHA256, under a key derived from the audit key (Config.DigestKey), of
// the line's bytes with the trailing `,"hash":"…"` member removed (so the
// hashed text ends in `}`). That text is exactly encoding/json's encoding of
// the Record with an empty Hash. The first record of a log has a prev_hash of
// 64 zeros. Logs written before the chain was keyed used the unkeyed SHA-256
// of the same text; such records can only open a chain (see Verify).
//
// Arguments are never logged; callers log Digest(arguments), an HMAC-SHA256 under
// a key kept in the data directory, and an operator can compute the same digest
// for a known value to search the log.
//
// Queue and durability. A record is sequenced and chained in memory when it is
// appended, so the file's order is the order in which callers appended. One
// writer goroutine commits whatever has queued up with one write (a group
// commit). Append returns without waiting for it; Write waits. No record is
// dropped silently:
//   - The queue is bounded (Config.QueueBytes). When it is full, Append blocks
//     for up to Config.WriteTimeout; only then is the record dropped, counted,
//     and reported in the next "records_dropped" record of the log.
//   - When a commit fails, its records stay queued, Err reports the failure (the
//     gateway refuses new calls, so the queue stays bounded), and the writer
//     retries. On recovery it writes the queued records, re-chained onto what is
//     on disk if that changed, then a "sink_recovered" record.
//   - Close writes everything queued before it returns (one retry if the sink is
//     failing; records still unwritten then are counted in Close's error).
//
// What this leaves: a record that Append has accepted but the writer has not yet
// written is lost if the process is killed hard (SIGKILL, OOM kill) or the
// machine loses power. The window is one group commit, normally well under a
// millisecond. Callers that must not answer before their record is in the file
// use Write: concurrent Writes share one write (and one fsync with
// Config.Fsync), and each returns once the batch holding its record is in the
// file (write(2) done: it survives a crash of the process; with Config.Fsync,
// synced: it survives a crash of the machine).
//
// Tamper evidence and its limits. Every record is keyed, so someone without the
// audit key can neither alter a record nor recompute the chain after it. After
// every commit the log rewrites the checkpoint file "<file>.head" in place (the
// last seq and hash and the key's id, with a MAC under a key derived from the
// audit key), so records cut off the end are caught too. Verify reports an
// edited, deleted, inserted, reordered or forged record, a cut tail, and a
// missing, altered or foreign checkpoint; Open checks the tail of the chain
// against the checkpoint and records what it finds (TypeAudit, event
// "open_anomaly"), which Verify then reports as an alarm. What the chain cannot
// show: anything done by someone who holds the audit key (the gateway's host
// user can read it from the vault), and a log cut back to a copy of an earlier
// checkpoint that was saved and put back. Ship the log to another machine for
// stronger guarantees.
package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/switchboard-mcp/switchboard"
)

// Record types.
const (
	TypeToolCall       = "tool_call"
	TypeAuthFailure    = "auth_failure"
	TypeConfigReload   = "config_reload"
	TypeProvider       = "provider"
	TypeSecret         = "secret"
	TypeConnection     = "connection"
	TypePreference     = "preference"
	TypeProtocolError  = "protocol_error"
	TypeRateLimited    = "rate_limited"
	TypeStartup        = "startup"
	TypeToolDefChanged = "tool_definition_changed"
	// TypeAudit records are written by the log itself: an anomaly found at Open,
	// the keying of a chain written before keys, the end of a period in which
	// the sink failed, or records it had to drop (with how many). Detail
	// "event" says which.
	TypeAudit = "audit"
)

// Events of TypeAudit records that Verify interprets.
const (
	// EventOpenAnomaly records an integrity failure that Open found: Verify
	// reports it as an alarm.
	EventOpenAnomaly = "open_anomaly"
	// EventChainKeyed opens the keyed part of a chain whose earlier records were
	// written before the chain was keyed.
	EventChainKeyed = "chain_keyed"
)

// Decisions.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Outcomes.
const (
	OutcomeOK          = "ok"
	OutcomeError       = "error"
	OutcomeTimeout     = "timeout"
	OutcomeDenied      = "denied"
	OutcomeRateLimited = "rate_limited"
	OutcomeUnavailable = "unavailable"
)

// DigestPrefix starts every digest this package produces.
const DigestPrefix = "hmac-sha256:"

// DigestKeySize is the required length of Config.DigestKey.
const DigestKeySize = 32

// zeroHash is the prev_hash of the first record of a log.
const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Limits that keep one record to a bounded line.
const (
	maxField   = 4096 // bytes per string field; longer values are cut
	maxDetails = 64   // entries in Detail; more are dropped
)

// Defaults for zero Config fields.
const (
	DefaultMaxSizeMB     = 100
	DefaultWriteTimeout  = 10 * time.Second
	DefaultRetryInterval = time.Second
	DefaultQueueBytes    = 32 << 20
)

const (
	// maxSpare is the largest committed buffer kept for the next batch.
	maxSpare = 4 << 20
	// sessionCacheSize bounds the session digests kept; the cache starts over
	// when it is full.
	sessionCacheSize = 4096
)

// Config configures a Log.
type Config struct {
	// File is the current log file; rotated files sit beside it as
	// "<stem>-<UTC time>-<first seq><ext>".
	File string
	// MaxSizeMB rotates the file before a write would take it past this size.
	// Zero means DefaultMaxSizeMB.
	MaxSizeMB int
	// MaxBackups is how many rotated files to keep; zero keeps all.
	MaxBackups int
	// MaxAgeDays deletes rotated files older than this; zero keeps all.
	MaxAgeDays int
	// FailOpen makes Append and Write return nil when a record cannot be
	// written (yet). A record that has to be dropped is then logged at error
	// level with its identity; while the sink is failing, a full queue drops at
	// once instead of making the caller wait. By default they return an
	// EUNAVAILABLE error.
	FailOpen bool
	// DigestKey is the 32-byte audit key: Digest uses it as is, and the chain
	// and checkpoint MACs use keys derived from it. The caller generates it
	// once and keeps it where the log's writers cannot read it (the gateway
	// keeps it in the vault). A log is verifiable only with the key it was
	// written under.
	DigestKey []byte
	// Fsync syncs the file after each group of records, so that records Write
	// has returned for survive power loss. Without it they survive a crash of
	// the gateway (they are in the kernel) but not of the machine.
	Fsync bool
	// WriteTimeout bounds how long Write waits for the disk (a hung mount, a
	// blocked pipe) and how long Append waits for room in a full queue. Zero
	// means DefaultWriteTimeout. A commit that takes longer also makes Err
	// report the sink as failing.
	WriteTimeout time.Duration
	// RetryInterval is how often a failed sink is retried. Zero means
	// DefaultRetryInterval.
	RetryInterval time.Duration
	// QueueBytes bounds the records appended but not yet written. Zero means
	// DefaultQueueBytes.
	QueueBytes int
	// MaxSizeBytes, when positive, overrides MaxSizeMB. It exists for tests.
	MaxSizeBytes int64
	// Replica names the gateway replica writing this log; it is set on
	// every record (including the log's own). Each replica keeps its own
	// file and chain; VerifyDir checks a folder of several.
	Replica string
}

// Record is one audit event. Seq, PrevHash and Hash are set by Append and
// Write, and Time if it is zero; the caller fills in the rest. Every string must
// already be redacted; never put tool arguments or results here, only their
// Digest.
type Record struct {
	Seq      uint64    `json:"seq"`
	PrevHash string    `json:"prev_hash"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	// Replica names the gateway replica that wrote the record (Config.Replica).
	Replica   string `json:"replica,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// TraceID is the OpenTelemetry trace ID of a traced request.
	TraceID string `json:"trace_id,omitempty"`
	// Session is the MCP session ID. The log stores only its Digest.
	Session       string `json:"session,omitempty"`
	PrincipalKind string `json:"principal_kind,omitempty"`
	Principal     string `json:"principal,omitempty"`
	Endpoint      string `json:"endpoint,omitempty"`
	Client        string `json:"client,omitempty"`
	Provider      string `json:"provider,omitempty"`
	Tool          string `json:"tool,omitempty"`
	// ToolHash is the pinned hash of the tool's definition.
	ToolHash  string `json:"tool_hash,omitempty"`
	Decision  string `json:"decision,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	LatencyMS int64  `json:"latency_ms,omitempty"`
	// LatencyUS is the latency in microseconds (LatencyMS rounds down).
	LatencyUS int64 `json:"latency_us,omitempty"`
	// ReqBytes and RespBytes are the sizes of a call's arguments and of its
	// answer (sizes only: never their contents).
	ReqBytes   int64  `json:"req_bytes,omitempty"`
	RespBytes  int64  `json:"resp_bytes,omitempty"`
	ArgsDigest string `json:"args_digest,omitempty"`
	// Error is a short, already-redacted error text.
	Error string `json:"error,omitempty"`
	// Detail holds small extra facts: pid, exit code, config hashes, secret name.
	Detail map[string]string `json:"detail,omitempty"`
	Hash   string            `json:"hash,omitempty"`
}

// ErrClosed is returned by Append and Write after Close.
var ErrClosed = errors.New("audit log closed")

// monoStart anchors commit start times on the monotonic clock.
var monoStart = time.Now()

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	cfg      Config
	log      zerolog.Logger
	key      []byte
	keys     keys
	maxBytes int64
	macs     sync.Pool // of *mac, keyed with key

	smu      sync.Mutex
	sessions map[string]string // session ID → digest

	failing     atomic.Bool   // failErr != nil, read by Err without the lock
	commitStart atomic.Int64  // monotonic ns when the commit in flight began; 0 if none
	commits     atomic.Uint64 // batches committed

	mu         sync.Mutex
	mac        *lineMAC        // hashes records as they are chained
	seq        uint64          // last assigned
	prev       [64]byte        // hash of the last assigned record
	pend       []byte          // lines the writer has not taken; they end at seq
	pendN      uint64          // lines in pend
	dones      []chan struct{} // closed once everything in pend is written
	curDone    chan struct{}   // the newest of dones, shared by Writes until the next take
	spare      []byte          // a written batch's buffer, reused by pend
	inflight   int             // bytes the writer is committing
	writing    bool            // a batch is being committed (by the writer goroutine or a Write)
	changed    broadcast       // a commit ended or the writer stopped
	trouble    broadcast       // the sink failed or the writer stopped
	closed     bool            // Close has begun: no new records
	writerDone bool            // the writer has stopped: records can no longer be queued
	closeLost  uint64          // records still queued when the writer stopped
	failErr    error           // non-nil while the sink is failing
	failedAt   time.Time
	lost       uint64 // records dropped and not yet reported in the log
	dropped    uint64 // records dropped since Open

	kick    chan struct{}
	quit    chan struct{}
	stopped chan struct{}

	fmu         sync.Mutex // held by whoever touches the file
	file        *os.File
	size        int64
	fileFirst   uint64 // seq of the first record in the current file; 0 if empty
	durableSeq  uint64 // last record written
	durableHash string
	fragment    int64     // offset of the incomplete line openCurrent isolated, or -1
	head        *os.File  // the checkpoint file, rewritten in place
	headMAC     hash.Hash // keyed with the checkpoint key
	headBuf     [headSize]byte
	headIn      []byte      // the checkpoint MAC's input
	headSum     []byte      // the checkpoint MAC
	headOK      bool        // the checkpoint file holds durableSeq's checkpoint
	headAt      time.Time   // when pinHead last wrote it
	headTimer   *time.Timer // pins the checkpoint headEvery after a commit pinHead let pass
	headFailing bool        // the last checkpoint write failed (warned once)
	anomalies   []string    // what Open found wrong
}

// batch is a group of lines committed with one write.
type batch struct {
	buf   []byte
	n     uint64
	dones []chan struct{}
}

// mac is a pooled HMAC with room for its output.
type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
	out [len(DigestPrefix) + 2*sha256.Size]byte
}

// encBuf holds a record's body while it is encoded outside the lock.
var encBuf = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Open opens or creates the log at cfg.File and resumes its chain from the last
// record written, in the current file or the newest rotated one.
func Open(cfg Config, logger zerolog.Logger) (*Log, error) {
	if cfg.File == "" {
		return nil, errors.New("opening audit log: file is empty")
	}
	if len(cfg.DigestKey) != DigestKeySize {
		return nil, fmt.Errorf("opening audit log: digest key is %d bytes, want %d", len(cfg.DigestKey), DigestKeySize)
	}
	if cfg.MaxSizeMB < 0 || cfg.MaxBackups < 0 || cfg.MaxAgeDays < 0 || cfg.QueueBytes < 0 {
		return nil, errors.New("opening audit log: negative size, backup, age or queue setting")
	}
	if cfg.MaxSizeMB == 0 {
		cfg.MaxSizeMB = DefaultMaxSizeMB
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	l := &Log{
		cfg:      cfg,
		log:      logger.With().Str("component", "audit").Logger(),
		key:      append([]byte(nil), cfg.DigestKey...),
		maxBytes: int64(cfg.MaxSizeMB) << 20,
		sessions: make(map[string]string),
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if cfg.MaxSizeBytes > 0 {
		l.maxBytes = cfg.MaxSizeBytes
	}
	l.keys = deriveKeys(l.key)
	l.mac = newLineMAC(l.keys.chain)
	l.macs.New = func() any { return &mac{h: hmac.New(sha256.New, l.key)} }

	l.fmu.Lock()
	seq, hash, anomalies, err := l.openCurrent()
	var upgrade *Record
	if err == nil {
		var found []string
		found, upgrade, err = l.checkTail(seq, hash)
		anomalies = append(anomalies, found...)
	}
	if err == nil {
		err = l.openHead()
	}
	if err == nil {
		l.removeOld()
	} else if l.file != nil {
		_ = l.file.Close()
	}
	l.fmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	l.seq = seq
	copy(l.prev[:], hash)
	l.anomalies = anomalies
	go l.run()

	for _, a := range anomalies {
		l.log.Error().Str("file", cfg.File).Str("anomaly", a).Str("key_id", l.keys.id).
			Msg("audit log integrity check failed at open: the log was altered, cut, or written under another key; `switchboard audit verify` reports it until the log is moved aside")
		if err := l.Write(Record{Type: TypeAudit, Outcome: OutcomeError, Error: a, Detail: map[string]string{"event": EventOpenAnomaly}}); err != nil && !cfg.FailOpen {
			_ = l.Close()
			return nil, fmt.Errorf("opening audit log: recording anomaly: %w", err)
		}
	}
	if upgrade != nil {
		l.log.Warn().Str("file", cfg.File).Str("key_id", l.keys.id).Str("legacy_through_seq", upgrade.Detail[detailLegacyThrough]).
			Str("legacy_checkpoint", upgrade.Detail["legacy_checkpoint"]).
			Msg("audit log written before the chain was keyed: keying it from here on; earlier records are proven unchanged from now on, not before")
		if err := l.Write(*upgrade); err != nil && !cfg.FailOpen {
			_ = l.Close()
			return nil, fmt.Errorf("opening audit log: recording the keyed chain: %w", err)
		}
	}
	return l, nil
}

// Anomalies returns what Open found wrong with the log it resumed (it also
// logged and recorded each): empty for a log that checked out.
func (l *Log) Anomalies() []string { return slices.Clone(l.anomalies) }

// KeyID returns the public name of the log's audit key (see KeyID).
func (l *Log) KeyID() string { return l.keys.id }

// Digest returns "hmac-sha256:<hex>" of value under the log's digest key.
func (l *Log) Digest(value []byte) string {
	m := l.macs.Get().(*mac)
	m.h.Reset()
	m.h.Write(value)
	m.h.Sum(m.sum[:0])
	copy(m.out[:], DigestPrefix)
	hex.Encode(m.out[len(DigestPrefix):], m.sum[:])
	s := string(m.out[:])
	l.macs.Put(m)
	return s
}

// Digest returns "hmac-sha256:<hex>" of value under key: what Log.Digest returns
// for a log opened with that key. Operators use it to search for a known value.
func Digest(key, value []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(value)
	return DigestPrefix + hex.EncodeToString(m.Sum(nil))
}

// sessionDigest returns the digest of a session ID, computed once per session
// while it stays in the bounded cache.
func (l *Log) sessionDigest(id string) string {
	l.smu.Lock()
	d, ok := l.sessions[id]
	l.smu.Unlock()
	if ok {
		return d
	}
	d = l.Digest([]byte(id))
	l.smu.Lock()
	if len(l.sessions) >= sessionCacheSize {
		clear(l.sessions)
	}
	l.sessions[id] = d
	l.smu.Unlock()
	return d
}

// checkpointKey derives the MAC key of checkpoints written before the chain was
// keyed (format 1); they are only read now.
func checkpointKey(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("switchboard audit checkpoint v1"))
	return m.Sum(nil)
}

// Err returns nil while the sink is healthy, and an EUNAVAILABLE error while it
// is failing: a commit failed (until a retry, every Config.RetryInterval,
// succeeds) or has taken longer than Config.WriteTimeout. Callers check it
// before running a tool call, so that the call is refused rather than run while
// its record may not be written; that refusal is also what keeps the queue
// bounded during an outage. It reports failures with FailOpen too (for health
// checks); callers that chose FailOpen should not refuse on it.
func (l *Log) Err() error {
	if l.failing.Load() {
		l.mu.Lock()
		err := l.failErr
		l.mu.Unlock()
		if err != nil {
			return unavailable(err)
		}
	}
	if start := l.commitStart.Load(); start != 0 {
		if d := time.Duration(int64(time.Since(monoStart)) - start); d > l.cfg.WriteTimeout {
			return unavailable(fmt.Errorf("writing audit log %s: no answer from disk for %s", l.cfg.File, d.Round(time.Millisecond)))
		}
	}
	return nil
}

// Dropped returns how many records were dropped since Open: refused by a full
// queue after Config.WriteTimeout, appended after Close, not encodable (a time
// outside years 0–9999), or still unwritten when Close gave up on a failing
// sink.
func (l *Log) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

func unavailable(err error) error {
	return switchboard.WrapError(switchboard.EUNAVAILABLE, err, "audit log unavailable")
}

// Append queues rec and returns without waiting for the disk. It sets Seq,
// PrevHash and Hash, Time if zero, and replaces Session with its digest; the
// record's place in the log is fixed when Append returns. It blocks only while
// the queue is full, for up to Config.WriteTimeout; then it drops the record and
// returns an EUNAVAILABLE *switchboard.Error (with Config.FailOpen, it logs the
// record's identity at error level and returns nil, except after Close). A
// failing sink does not drop records: they stay queued until it recovers. Safe
// for concurrent use.
func (l *Log) Append(rec Record) error {
	_, err := l.enqueue(&rec, false)
	return err
}

// Write is Append, then waits until the record is in the file (and synced, with
// Config.Fsync) or Config.WriteTimeout passes. If the sink is failing, it
// returns at once. Either way the record stays queued and is written when the
// sink recovers; the EUNAVAILABLE error (nil with Config.FailOpen) says it is
// not in the file yet. Use it where the caller must not go on before its record
// is written.
func (l *Log) Write(rec Record) error {
	done, err := l.enqueue(&rec, true)
	if err != nil || done == nil {
		return err
	}
	// Commit the queue here if no one is committing: a lone Write then costs
	// no hand-off to the writer goroutine and back. Yielding first lets the
	// Writes that are ready to run queue their records, so that concurrent
	// calls share one write (with nothing else to run it returns at once).
	// If more was queued while this commit ran, the writer goroutine takes it.
	runtime.Gosched()
	if l.commitNext() {
		l.kickWriter()
	}
	return l.wait(&rec, done)
}

// kickWriter wakes the writer goroutine; it takes everything queued each
// time, so one pending kick is enough.
func (l *Log) kickWriter() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// enqueue encodes and chains rec. With wait, it returns a channel closed once
// the record is written, or a non-nil error if the sink is failing.
func (l *Log) enqueue(rec *Record, wait bool) (chan struct{}, error) {
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	if l.cfg.Replica != "" {
		rec.Replica = l.cfg.Replica
	}
	if rec.Session != "" && !strings.HasPrefix(rec.Session, DigestPrefix) {
		rec.Session = l.sessionDigest(rec.Session)
	}
	bp := encBuf.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			encBuf.Put(bp)
		}
	}()
	enc, err := appendBody((*bp)[:0], rec)
	*bp = enc[:0]
	if err != nil { // a time outside years 0–9999; never write a broken line
		return nil, l.drop(rec, fmt.Errorf("encoding audit record: %w", err))
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, l.drop(rec, ErrClosed)
	}
	if err := l.waitRoom(len(enc) + lineOverhead); err != nil {
		l.mu.Unlock()
		return nil, l.drop(rec, err)
	}
	first := len(l.pend) == 0
	l.chain(enc)
	var done chan struct{}
	failErr := l.failErr
	if wait && failErr == nil {
		if l.curDone == nil {
			l.curDone = make(chan struct{})
			l.dones = append(l.dones, l.curDone)
		}
		done = l.curDone
	}
	l.mu.Unlock()

	if first && !wait {
		// A Write commits itself (or waits for the commit in flight, which
		// hands the rest on); an Append wakes the writer goroutine.
		l.kickWriter()
	}
	if wait && failErr != nil {
		return nil, l.notYet(failErr)
	}
	return done, nil
}

// chain appends the line of the record with body enc to the queue. l.mu is held.
func (l *Log) chain(enc []byte) {
	if need := len(enc) + lineOverhead; cap(l.pend)-len(l.pend) < need {
		// Double, rather than append's 1.25 for large slices: a queue that
		// grows while the writer is busy is copied about once, not five times.
		grown := make([]byte, len(l.pend), max(2*cap(l.pend), len(l.pend)+need, 64<<10))
		copy(grown, l.pend)
		l.pend = grown
	}
	l.seq++
	l.pend = appendLine(l.pend, l.mac, l.seq, &l.prev, enc[1:len(enc)-1])
	l.pendN++
}

// queued is the size of the queue. l.mu is held.
func (l *Log) queued() int { return len(l.pend) + l.inflight }

// waitRoom waits, with l.mu held (released while it waits), until need more
// bytes fit in the queue, for up to Config.WriteTimeout.
func (l *Log) waitRoom(need int) error {
	fits := func() bool { return l.queued() == 0 || l.queued()+need <= l.cfg.QueueBytes }
	if fits() {
		return nil
	}
	if l.failErr != nil && l.cfg.FailOpen {
		// Waiting would only delay calls that fail_open chose to serve; the
		// queue drains no sooner than the sink recovers.
		return fmt.Errorf("audit queue full (%d bytes) while the sink is failing: %w", l.cfg.QueueBytes, l.failErr)
	}
	t := time.NewTimer(l.cfg.WriteTimeout)
	defer t.Stop()
	for {
		if l.writerDone {
			return ErrClosed
		}
		if fits() {
			return nil
		}
		ch := l.changedChan()
		l.mu.Unlock()
		select {
		case <-ch:
			l.mu.Lock()
		case <-t.C:
			l.mu.Lock()
			if fits() && !l.writerDone {
				return nil
			}
			return fmt.Errorf("audit queue full (%d bytes) for %s: the disk is not keeping up", l.cfg.QueueBytes, l.cfg.WriteTimeout)
		}
	}
}

// wait waits for done, which Write got from enqueue.
func (l *Log) wait(rec *Record, done chan struct{}) error {
	select {
	case <-done: // committed by this Write itself, or with another's
		return nil
	default:
	}
	t := time.NewTimer(l.cfg.WriteTimeout)
	defer t.Stop()
	for {
		l.mu.Lock()
		failErr, ch := l.failErr, l.troubleChan()
		l.mu.Unlock()
		select {
		case <-done:
			return nil
		default:
		}
		if failErr != nil {
			return l.notYet(failErr)
		}
		select {
		case <-done:
			return nil
		case <-ch:
		case <-t.C:
			return l.notYet(fmt.Errorf("writing audit record: no answer from disk within %s; the record stays queued", l.cfg.WriteTimeout))
		}
	}
}

// broadcast wakes every waiter at once, made on demand: wait returns the
// channel the next broadcast closes. The lock that guards it is held for
// both.
type broadcast struct{ ch chan struct{} }

func (g *broadcast) wait() chan struct{} {
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	return g.ch
}

func (g *broadcast) broadcast() {
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
}

// changedChan returns the channel closed at the next change. l.mu is held.
func (l *Log) changedChan() chan struct{} { return l.changed.wait() }

// notify wakes everyone waiting on changedChan. l.mu is held.
func (l *Log) notify() { l.changed.broadcast() }

// troubleChan returns the channel closed when the sink next fails or the
// writer stops: what a Write waits for besides its own commit. Unlike
// changedChan it is not closed by every commit, which would wake every
// waiting Write at each one. l.mu is held.
func (l *Log) troubleChan() chan struct{} { return l.trouble.wait() }

// alarm wakes every Write waiting on troubleChan. l.mu is held.
func (l *Log) alarm() { l.trouble.broadcast() }

// notYet is Write's result for a record that is queued but not written.
func (l *Log) notYet(err error) error {
	if l.cfg.FailOpen {
		return nil
	}
	return unavailable(err)
}

// drop counts a record that will never be written and turns err into the
// caller's result.
func (l *Log) drop(rec *Record, err error) error {
	l.mu.Lock()
	l.lost++
	l.dropped++
	l.mu.Unlock()
	// Let the writer note the drop in the log even if nothing else is queued.
	l.kickWriter()
	if !l.cfg.FailOpen || errors.Is(err, ErrClosed) {
		return unavailable(err)
	}
	l.log.Error().Err(err).
		Str("type", rec.Type).Str("request_id", rec.RequestID).
		Str("principal", rec.Principal).Str("provider", rec.Provider).Str("tool", rec.Tool).
		Str("decision", rec.Decision).Str("outcome", rec.Outcome).
		Msg("audit record dropped (fail_open)")
	return nil
}

// internal chains a record the log writes about itself. l.mu is held.
func (l *Log) internal(rec Record) {
	rec.Time = time.Now()
	rec.Replica = l.cfg.Replica
	enc, err := appendBody(nil, &rec)
	if err != nil { // not reachable: the time is now
		l.log.Error().Err(err).Msg("encoding an audit record about the log")
		return
	}
	l.chain(enc)
}

// run is the writer goroutine: it commits batches and retries a failed sink.
func (l *Log) run() {
	defer close(l.stopped)
	retry := time.NewTicker(l.cfg.RetryInterval)
	defer retry.Stop()
	for {
		select {
		case <-l.kick:
			l.flush()
		case <-retry.C:
			l.retry()
		case <-l.quit:
			l.drain()
			return
		}
	}
}

// flush commits the queue, batch after batch, until it is empty, the sink
// fails, or a Write is committing (it hands on what is left when it is done).
func (l *Log) flush() {
	for l.commitNext() {
	}
}

// commitNext commits what is queued as one batch, unless a commit is in
// flight, the sink is failing or nothing is queued. It reports whether more
// was queued meanwhile: the caller then commits again or hands it on to the
// writer goroutine. Batches reach the file in chain order because only one
// is in flight at a time.
func (l *Log) commitNext() bool {
	l.mu.Lock()
	if l.writing || l.writerDone || l.failErr != nil || (len(l.pend) == 0 && l.lost == 0) {
		l.mu.Unlock()
		return false
	}
	if l.lost > 0 {
		l.internal(Record{Type: TypeAudit, Outcome: OutcomeError,
			Error:  "audit records were dropped before they could be queued (the gateway log names them)",
			Detail: map[string]string{"event": "records_dropped", "lost_records": strconv.FormatUint(l.lost, 10)}})
		l.lost = 0
	}
	b := l.take()
	l.mu.Unlock()

	err := l.commit(b.buf)
	l.commits.Add(1)
	if err != nil { // logged before Writes learn of it
		l.log.Error().Err(err).Str("file", l.cfg.File).Bool("fail_open", l.cfg.FailOpen).
			Uint64("kept_records", b.n).Msg("audit sink failed; keeping the records and retrying")
	}
	l.mu.Lock()
	l.finish(&b, err)
	more := len(l.pend) > 0 || l.lost > 0
	l.mu.Unlock()
	if err != nil {
		return false
	}
	l.schedulePin()
	return more
}

// take hands the queue to the writer as a batch. l.mu is held.
func (l *Log) take() batch {
	b := batch{buf: l.pend, n: l.pendN, dones: l.dones}
	l.pend, l.spare = l.spare, nil
	l.pendN, l.dones, l.curDone = 0, nil, nil
	l.inflight, l.writing = len(b.buf), true
	l.commitStart.Store(int64(time.Since(monoStart)) | 1)
	return b
}

// finish settles a committed batch: on success its Writes return, on failure
// its records go back to the head of the queue and the sink counts as failing.
// l.mu is held.
func (l *Log) finish(b *batch, err error) {
	l.inflight, l.writing = 0, false
	l.commitStart.Store(0)
	if err == nil {
		for _, d := range b.dones {
			close(d)
		}
		if cap(b.buf) <= maxSpare {
			l.spare = b.buf[:0]
		}
	} else {
		l.pend = append(b.buf, l.pend...)
		l.pendN += b.n
		l.dones = append(b.dones, l.dones...)
		if l.failErr == nil {
			l.failErr, l.failedAt = err, time.Now()
			l.failing.Store(true)
		}
		l.alarm()
	}
	l.notify()
}

// retry tries to bring a failed sink back: reopen the file, reconcile the
// queue with what is on disk, and write the queue followed by a record of the
// outage. It reports whether the sink is healthy.
func (l *Log) retry() bool {
	l.mu.Lock()
	failErr, failedAt := l.failErr, l.failedAt
	l.mu.Unlock()
	if failErr == nil {
		return true
	}
	l.fmu.Lock()
	if l.file != nil {
		_ = l.file.Close()
		l.file = nil
	}
	seq, hash, _, err := l.openCurrent()
	l.fmu.Unlock()
	if err != nil {
		l.log.Debug().Err(err).Msg("audit sink still failing")
		return false
	}

	l.mu.Lock()
	l.reconcile(seq, hash)
	kept, lost := l.pendN, l.lost
	beforeSeq, beforePrev, before := l.seq, l.prev, len(l.pend)
	l.internal(Record{Type: TypeAudit, Outcome: OutcomeOK, Error: limit(failErr.Error()),
		Detail: map[string]string{
			"event":          "sink_recovered",
			"failed_since":   failedAt.UTC().Format(time.RFC3339Nano),
			"lost_records":   strconv.FormatUint(lost, 10),
			"queued_records": strconv.FormatUint(kept, 10),
			"fail_open":      strconv.FormatBool(l.cfg.FailOpen),
		}})
	recLen := len(l.pend) - before
	b := l.take()
	l.mu.Unlock()

	err = l.commit(b.buf)
	l.mu.Lock()
	if err != nil {
		l.unrecover(&b, recLen, beforeSeq, beforePrev)
		l.mu.Unlock()
		l.log.Debug().Err(err).Msg("audit sink still failing")
		return false
	}
	l.finish(&b, nil)
	l.lost -= lost
	l.failErr = nil
	l.failing.Store(false)
	l.mu.Unlock()
	l.pinHead()
	l.log.Warn().Str("file", l.cfg.File).Uint64("queued_records", kept).Uint64("lost_records", lost).
		Msg("audit sink recovered")
	l.flush() // what was appended meanwhile
	return true
}

// unrecover puts a failed recovery batch back: its records return to the head
// of the queue without the sink_recovered record at its end (which would claim a
// recovery that did not happen), and records appended meanwhile, which chain
// onto that record, are re-chained onto the one before it. l.mu is held.
func (l *Log) unrecover(b *batch, recLen int, seq uint64, prev [64]byte) {
	l.inflight, l.writing = 0, false
	l.commitStart.Store(0)
	tail, tailN := l.pend, l.pendN
	l.seq, l.prev = seq, prev
	l.pend, l.pendN = b.buf[:len(b.buf)-recLen], b.n-1
	if len(tail) > 0 {
		var n, bad uint64
		l.pend, l.seq, n, bad = rechain(l.pend, tail, l.mac, l.seq, &l.prev)
		l.pendN += n
		l.countBad(bad, tailN)
	}
	l.dones = append(b.dones, l.dones...)
	l.notify()
}

// reconcile makes the queue continue the chain found on disk (seq, hash) when
// the sink comes back. Normally the disk ends where the queue starts. If a
// failed commit reached the disk after all, the records already there leave the
// queue. If the file was replaced or moved, the queue is renumbered and
// re-chained onto what is there now. l.mu is held.
func (l *Log) reconcile(seq uint64, hash string) {
	var h [64]byte
	copy(h[:], hash)
	if len(l.pend) == 0 {
		l.seq, l.prev = seq, h
		return
	}
	rest := l.pend
	for i := uint64(1); len(rest) > 0; i++ {
		nl := bytes.IndexByte(rest, '\n')
		s, prev, lh, _, ok := parseLine(rest[:nl])
		rest = rest[nl+1:]
		if !ok {
			break
		}
		if i == 1 && s == seq+1 && string(prev) == hash {
			return
		}
		if s == seq && string(lh) == hash {
			l.pend, l.pendN = l.pend[len(l.pend)-len(rest):], l.pendN-i
			if l.pendN == 0 {
				for _, d := range l.dones {
					close(d)
				}
				l.dones, l.curDone = nil, nil
			}
			return
		}
	}
	queued := l.pendN
	var n, bad uint64
	l.prev = h
	l.pend, l.seq, n, bad = rechain(nil, l.pend, l.mac, seq, &l.prev)
	l.pendN = n
	l.countBad(bad, queued)
	l.log.Warn().Str("file", l.cfg.File).Uint64("resumed_at_seq", seq).Uint64("queued_records", n).
		Msg("the audit log on disk is not where the queue left it; continuing its chain")
}

// countBad accounts for queued lines rechain could not read (none are
// expected). l.mu is held.
func (l *Log) countBad(bad, of uint64) {
	if bad == 0 {
		return
	}
	l.lost += bad
	l.dropped += bad
	l.log.Error().Uint64("records", bad).Uint64("of", of).Msg("unreadable queued audit records dropped")
}

// drain is the writer's last act: write everything queued, retrying a failed
// sink once, and stop taking records.
func (l *Log) drain() {
	retried := false
	for {
		l.flush()
		l.mu.Lock()
		if l.writing { // a Write's commit: wait for it to end
			ch := l.changedChan()
			l.mu.Unlock()
			<-ch
			continue
		}
		if len(l.pend) == 0 || (l.failErr != nil && retried) {
			lost := l.pendN
			l.closeLost, l.dropped = lost, l.dropped+lost
			l.pend, l.pendN = nil, 0
			l.writerDone = true
			failErr := l.failErr
			l.notify()
			l.alarm()
			l.mu.Unlock()
			if lost > 0 {
				l.log.Error().Err(failErr).Str("file", l.cfg.File).Uint64("lost_records", lost).
					Msg("audit records not written at close: the sink is failing")
			}
			return
		}
		failing := l.failErr != nil
		l.mu.Unlock()
		if failing {
			retried = true
			l.retry()
		}
	}
}

// Close writes everything queued, then the checkpoint, syncs and closes the
// file. Later Appends and Writes fail with ErrClosed. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.stopped

	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.headTimer != nil {
		l.headTimer.Stop()
		l.headTimer = nil
	}
	var errs []error
	if l.closeLost > 0 {
		errs = append(errs, fmt.Errorf("%d records not written: %w", l.closeLost, l.failErr))
	}
	if l.file != nil {
		errs = append(errs, l.file.Sync(), l.file.Close())
		l.file = nil
	}
	if l.head != nil {
		if !l.headOK {
			errs = append(errs, l.writeHead())
		}
		errs = append(errs, l.head.Sync(), l.head.Close())
		l.head = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing audit log: %w", err)
	}
	return nil
}
