// Package audit writes the gateway's append-only, hash-chained JSON-lines audit log.
//
// Each line is one JSON object (a Record). Write assigns it a sequence number that
// grows by one across rotations and restarts, the hash of the previous record
// (prev_hash), and its own hash: the lowercase hex SHA-256 of the line's bytes with
// the trailing `,"hash":"…"` member removed (so the hashed text ends in `}`). That
// text is exactly encoding/json's encoding of the Record with an empty Hash. The
// first record of a log has a prev_hash of 64 zeros.
//
// Arguments are never logged; callers log Digest(arguments), an HMAC-SHA256 under
// a key kept in the data directory, and an operator can compute the same digest
// for a known value to search the log.
//
// Tamper evidence and its limits. Verify detects an edited, deleted, inserted or
// reordered record and a tail cut mid-line. Cutting whole records off the end is
// only detected against the checkpoint file "<file>.head" (last seq and hash,
// written every Config.CheckpointEvery records and on Close, with a MAC under a
// key derived from the digest key): records written after the last checkpoint
// can be cut without trace. Anyone who can write the log and the key can rewrite
// the whole chain and checkpoint consistently; the chain proves integrity against
// accidents and against attackers who lack the key, not against the host's root.
// Ship the log to another machine for stronger guarantees.
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
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
	// or the end of a period in which the sink failed (with how many records were
	// refused or dropped).
	TypeAudit = "audit"
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
	DefaultMaxSizeMB       = 100
	DefaultCheckpointEvery = 1000
	DefaultWriteTimeout    = 10 * time.Second
	DefaultRetryInterval   = time.Second
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
	// FailOpen makes Write log a record it cannot write at error level and
	// return nil. By default Write returns an error and callers fail the call.
	FailOpen bool
	// DigestKey is the 32-byte HMAC key for Digest and checkpoint MACs. The caller
	// generates it once and keeps it in the data directory.
	DigestKey []byte
	// Fsync syncs the file after each group of records before Write returns, so
	// acknowledged records survive power loss. Without it they survive a crash of
	// the gateway (they are in the kernel) but not of the machine.
	Fsync bool
	// CheckpointEvery writes the "<file>.head" checkpoint every this many records.
	// Zero means DefaultCheckpointEvery; it is also written on Close.
	CheckpointEvery int
	// WriteTimeout bounds how long Write waits for the disk (a hung mount, a
	// blocked pipe). Zero means DefaultWriteTimeout. A timed-out record may still
	// reach the file later.
	WriteTimeout time.Duration
	// RetryInterval is how often a failed sink is retried. Zero means
	// DefaultRetryInterval.
	RetryInterval time.Duration
	// MaxSizeBytes, when positive, overrides MaxSizeMB. It exists for tests.
	MaxSizeBytes int64
}

// Record is one audit event. Seq, PrevHash and Hash are set by Write, and Time
// if it is zero; the caller fills in the rest. Every string must already be redacted; never put
// tool arguments or results here, only their Digest.
type Record struct {
	Seq       uint64    `json:"seq"`
	PrevHash  string    `json:"prev_hash"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	RequestID string    `json:"request_id,omitempty"`
	// Session is the MCP session ID. Write stores only its Digest.
	Session       string `json:"session,omitempty"`
	PrincipalKind string `json:"principal_kind,omitempty"`
	Principal     string `json:"principal,omitempty"`
	Endpoint      string `json:"endpoint,omitempty"`
	Client        string `json:"client,omitempty"`
	Provider      string `json:"provider,omitempty"`
	Tool          string `json:"tool,omitempty"`
	// ToolHash is the pinned hash of the tool's definition.
	ToolHash   string `json:"tool_hash,omitempty"`
	Decision   string `json:"decision,omitempty"`
	Outcome    string `json:"outcome,omitempty"`
	LatencyMS  int64  `json:"latency_ms,omitempty"`
	ArgsDigest string `json:"args_digest,omitempty"`
	// Error is a short, already-redacted error text.
	Error string `json:"error,omitempty"`
	// Detail holds small extra facts: pid, exit code, config hashes, secret name.
	Detail map[string]string `json:"detail,omitempty"`
	Hash   string            `json:"hash,omitempty"`
}

// body is Record without the fields Write assigns under the lock. Its fields and
// tags must match Record's, in the same order.
type body struct {
	Time          time.Time         `json:"time"`
	Type          string            `json:"type"`
	RequestID     string            `json:"request_id,omitempty"`
	Session       string            `json:"session,omitempty"`
	PrincipalKind string            `json:"principal_kind,omitempty"`
	Principal     string            `json:"principal,omitempty"`
	Endpoint      string            `json:"endpoint,omitempty"`
	Client        string            `json:"client,omitempty"`
	Provider      string            `json:"provider,omitempty"`
	Tool          string            `json:"tool,omitempty"`
	ToolHash      string            `json:"tool_hash,omitempty"`
	Decision      string            `json:"decision,omitempty"`
	Outcome       string            `json:"outcome,omitempty"`
	LatencyMS     int64             `json:"latency_ms,omitempty"`
	ArgsDigest    string            `json:"args_digest,omitempty"`
	Error         string            `json:"error,omitempty"`
	Detail        map[string]string `json:"detail,omitempty"`
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit log closed")

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	cfg      Config
	log      zerolog.Logger
	key      []byte
	ckKey    []byte
	maxBytes int64

	mu       sync.Mutex
	seq      uint64 // last assigned
	prev     string // hash of the last assigned record
	batch    *batch // records waiting for the writer
	closed   bool
	failErr  error // non-nil while the sink is failing
	failedAt time.Time
	lost     uint64 // records refused or dropped since failedAt

	kick    chan struct{}
	quit    chan struct{}
	stopped chan struct{}

	fmu         sync.Mutex // held by whoever touches the file
	file        *os.File
	size        int64
	fileFirst   uint64 // seq of the first record in the current file; 0 if empty
	durableSeq  uint64 // last record written
	durableHash string
	ckSeq       uint64 // last checkpointed seq
}

// batch is a group of encoded records committed with one write.
type batch struct {
	buf       []byte
	n         uint64
	first     uint64
	last      uint64
	lastHash  string
	startSeq  uint64 // chain state before the batch, restored if it fails
	startPrev string
	done      chan struct{}
	err       error // set before done is closed
}

// Open opens or creates the log at cfg.File and resumes its chain from the last
// record written, in the current file or the newest rotated one.
func Open(cfg Config, logger zerolog.Logger) (*Log, error) {
	if cfg.File == "" {
		return nil, errors.New("opening audit log: file is empty")
	}
	if len(cfg.DigestKey) != DigestKeySize {
		return nil, fmt.Errorf("opening audit log: digest key is %d bytes, want %d", len(cfg.DigestKey), DigestKeySize)
	}
	if cfg.MaxSizeMB < 0 || cfg.MaxBackups < 0 || cfg.MaxAgeDays < 0 || cfg.CheckpointEvery < 0 {
		return nil, errors.New("opening audit log: negative size, backup, age or checkpoint setting")
	}
	if cfg.MaxSizeMB == 0 {
		cfg.MaxSizeMB = DefaultMaxSizeMB
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	l := &Log{
		cfg:      cfg,
		log:      logger.With().Str("component", "audit").Logger(),
		key:      append([]byte(nil), cfg.DigestKey...),
		maxBytes: int64(cfg.MaxSizeMB) << 20,
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if cfg.MaxSizeBytes > 0 {
		l.maxBytes = cfg.MaxSizeBytes
	}
	l.ckKey = checkpointKey(l.key)

	l.fmu.Lock()
	seq, hash, anomalies, err := l.openCurrent()
	if err == nil {
		anomalies = append(anomalies, l.checkHead(seq, hash)...)
		l.ckSeq = seq
		l.removeOld()
	}
	l.fmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	l.seq, l.prev = seq, hash
	go l.run()

	for _, a := range anomalies {
		l.log.Error().Str("file", cfg.File).Str("anomaly", a).Msg("audit log anomaly at open")
		if err := l.Write(Record{Type: TypeAudit, Outcome: OutcomeError, Error: a, Detail: map[string]string{"event": "open_anomaly"}}); err != nil && !cfg.FailOpen {
			_ = l.Close()
			return nil, fmt.Errorf("opening audit log: recording anomaly: %w", err)
		}
	}
	return l, nil
}

// Digest returns "hmac-sha256:<hex>" of value under the log's digest key.
func (l *Log) Digest(value []byte) string { return Digest(l.key, value) }

// Digest returns "hmac-sha256:<hex>" of value under key: what Log.Digest returns
// for a log opened with that key. Operators use it to search for a known value.
func Digest(key, value []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(value)
	return DigestPrefix + hex.EncodeToString(m.Sum(nil))
}

// checkpointKey derives the checkpoint MAC key, distinct from the digest key so
// that a digest oracle cannot forge checkpoints.
func checkpointKey(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("switchboard audit checkpoint v1"))
	return m.Sum(nil)
}

// Err returns nil while the sink is healthy, and the write error while it is
// failing (until a retry, every Config.RetryInterval, succeeds). Callers can
// check it before running a tool call, so that the call is refused rather than
// run and then left unaudited. It reports failures with FailOpen too (for
// health checks); callers that chose FailOpen should not refuse on it.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failErr == nil {
		return nil
	}
	return unavailable(l.failErr)
}

func unavailable(err error) error {
	return switchboard.WrapError(switchboard.EUNAVAILABLE, err, "audit log unavailable")
}

// Write appends rec to the log and returns once it has been written (and synced,
// with Config.Fsync). It sets Seq, PrevHash and Hash, Time if zero, and replaces
// Session with its digest. If the record cannot be written, it returns an
// EUNAVAILABLE *switchboard.Error, or with Config.FailOpen logs the record's
// identity at error level and returns nil. While the sink is failing, Write
// fails at once without touching the disk. Safe for concurrent use.
func (l *Log) Write(rec Record) error {
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	if rec.Session != "" && !strings.HasPrefix(rec.Session, DigestPrefix) {
		rec.Session = l.Digest([]byte(rec.Session))
	}
	enc, err := json.Marshal(newBody(&rec))
	if err != nil { // not reachable with string fields, but never write a broken line
		return l.refuse(&rec, fmt.Errorf("encoding audit record: %w", err))
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return unavailable(ErrClosed)
	}
	if l.failErr != nil {
		l.lost++
		err := l.failErr
		l.mu.Unlock()
		return l.refuse(&rec, err)
	}
	b := l.batch
	if b == nil {
		b = &batch{startSeq: l.seq, startPrev: l.prev, first: l.seq + 1, done: make(chan struct{})}
		l.batch = b
	}
	l.seq++
	b.buf, l.prev = appendLine(b.buf, l.seq, l.prev, enc)
	b.n++
	b.last, b.lastHash = l.seq, l.prev
	l.mu.Unlock()

	select {
	case l.kick <- struct{}{}:
	default:
	}
	t := time.NewTimer(l.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case <-b.done:
		if b.err != nil {
			return l.refuse(&rec, b.err)
		}
		return nil
	case <-t.C:
		return l.refuse(&rec, fmt.Errorf("writing audit record: no answer from disk within %s", l.cfg.WriteTimeout))
	}
}

// refuse turns a write failure into Write's result.
func (l *Log) refuse(rec *Record, err error) error {
	if !l.cfg.FailOpen {
		return unavailable(err)
	}
	l.log.Error().Err(err).
		Str("type", rec.Type).Str("request_id", rec.RequestID).
		Str("principal", rec.Principal).Str("provider", rec.Provider).Str("tool", rec.Tool).
		Str("decision", rec.Decision).Str("outcome", rec.Outcome).
		Msg("audit record dropped (fail_open)")
	return nil
}

// newBody copies rec's caller fields, normalizing time and capping sizes.
func newBody(rec *Record) *body {
	b := &body{
		Time:          rec.Time.UTC(),
		Type:          limit(rec.Type),
		RequestID:     limit(rec.RequestID),
		Session:       limit(rec.Session),
		PrincipalKind: limit(rec.PrincipalKind),
		Principal:     limit(rec.Principal),
		Endpoint:      limit(rec.Endpoint),
		Client:        limit(rec.Client),
		Provider:      limit(rec.Provider),
		Tool:          limit(rec.Tool),
		ToolHash:      limit(rec.ToolHash),
		Decision:      limit(rec.Decision),
		Outcome:       limit(rec.Outcome),
		LatencyMS:     rec.LatencyMS,
		ArgsDigest:    limit(rec.ArgsDigest),
		Error:         limit(rec.Error),
	}
	if len(rec.Detail) > 0 {
		b.Detail = make(map[string]string, min(len(rec.Detail), maxDetails))
		for k, v := range rec.Detail {
			if len(b.Detail) == maxDetails {
				b.Detail["_truncated"] = "true"
				break
			}
			b.Detail[limit(k)] = limit(v)
		}
	}
	return b
}

func limit(s string) string {
	if len(s) <= maxField {
		return s
	}
	return s[:maxField-len("…")] + "…"
}

// appendLine appends the full line for a record with body enc and returns the
// line's hash.
func appendLine(dst []byte, seq uint64, prev string, enc []byte) ([]byte, string) {
	start := len(dst)
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"prev_hash":"`...)
	dst = append(dst, prev...)
	dst = append(dst, `",`...)
	dst = append(dst, enc[1:]...) // enc is `{"time":…}`
	sum := sha256.Sum256(dst[start:])
	h := hex.EncodeToString(sum[:])
	dst = dst[:len(dst)-1]
	dst = append(dst, `,"hash":"`...)
	dst = append(dst, h...)
	dst = append(dst, "\"}\n"...)
	return dst, h
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
			l.flush()
			return
		}
	}
}

// flush commits the pending batch, if any.
func (l *Log) flush() {
	l.mu.Lock()
	b := l.batch
	l.batch = nil
	l.mu.Unlock()
	if b == nil {
		return
	}
	err := l.commit(b.buf, b.first, b.last, b.lastHash)
	if err != nil {
		l.mu.Lock()
		// The records were not written: take them out of the chain, and fail the
		// records queued since, which chain onto them.
		l.seq, l.prev = b.startSeq, b.startPrev
		lost := b.n
		if nb := l.batch; nb != nil {
			l.batch = nil
			lost += nb.n
			nb.err = err
			close(nb.done)
		}
		if l.failErr == nil {
			l.failErr, l.failedAt, l.lost = err, time.Now(), 0
		}
		l.lost += lost
		l.mu.Unlock()
		l.log.Error().Err(err).Str("file", l.cfg.File).Bool("fail_open", l.cfg.FailOpen).
			Msg("audit sink failed; retrying")
	}
	b.err = err
	close(b.done)
}

// retry tries to bring a failed sink back: reopen the file, resume the chain
// from what is on disk, and write a record of the outage.
func (l *Log) retry() {
	l.mu.Lock()
	failErr, failedAt, closed := l.failErr, l.failedAt, l.closed
	l.mu.Unlock()
	if failErr == nil || closed {
		return
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
		return
	}

	l.mu.Lock()
	lost := l.lost
	rec := Record{
		Time: time.Now(), Type: TypeAudit, Outcome: OutcomeOK,
		Error: limit(failErr.Error()),
		Detail: map[string]string{
			"event":        "sink_recovered",
			"failed_since": failedAt.UTC().Format(time.RFC3339Nano),
			"lost_records": strconv.FormatUint(lost, 10),
			"fail_open":    strconv.FormatBool(l.cfg.FailOpen),
		},
	}
	enc, _ := json.Marshal(newBody(&rec))
	buf, h := appendLine(nil, seq+1, hash, enc)
	l.mu.Unlock()

	if err := l.commit(buf, seq+1, seq+1, h); err != nil {
		l.log.Debug().Err(err).Msg("audit sink still failing")
		return
	}
	l.mu.Lock()
	l.seq, l.prev = seq+1, h
	l.failErr, l.lost = nil, 0
	l.mu.Unlock()
	l.log.Warn().Str("file", l.cfg.File).Uint64("lost_records", lost).Msg("audit sink recovered")
}

// Close flushes pending records, writes the checkpoint, syncs and closes the
// file. Later Writes fail with ErrClosed. Close is idempotent.
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
	var errs []error
	if l.durableSeq > l.ckSeq {
		errs = append(errs, l.writeHead())
	}
	if l.file != nil {
		errs = append(errs, l.file.Sync(), l.file.Close())
		l.file = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing audit log: %w", err)
	}
	return nil
}
