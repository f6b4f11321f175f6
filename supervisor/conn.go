package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// DefaultMaxMessageBytes is the default bound on one incoming JSON-RPC line.
const DefaultMaxMessageBytes = 16 << 20

// defaultNotificationQueue is the default number of child notifications and
// requests that may wait for the dispatcher goroutine.
const defaultNotificationQueue = 1024

// readBufferSize is the bufio buffer of the read loop; lines that fit are decoded
// straight from it without a copy.
const readBufferSize = 64 << 10

// maxAbandoned bounds the set of ids whose caller gave up, kept so that a late
// answer is not mistaken for garbage.
const maxAbandoned = 4096

var _ switchboard.Upstream = (*Conn)(nil)

// ConnOptions configures a Conn. The zero value is usable.
type ConnOptions struct {
	// MaxMessageBytes bounds one incoming line (without its newline). A longer
	// line fails the whole Conn. Zero means DefaultMaxMessageBytes.
	MaxMessageBytes int

	// OnNotification receives the child's notifications, except progress
	// notifications whose token is registered with ProgressToken. It is called
	// from a single dispatcher goroutine, in arrival order, never from the read
	// loop; when it falls more than NotificationQueue messages behind, further
	// notifications are dropped and counted (DroppedNotifications). params is
	// owned by the callee.
	OnNotification func(method string, params json.RawMessage)

	// OnGarbage is called from the read loop for every dropped line (invalid
	// JSON, not a JSON-RPC message, or a response with an unknown id), with the
	// line and the running total. line is only valid during the call. It must
	// not block.
	OnGarbage func(line []byte, total int64)

	// NotificationQueue bounds the notifications and child requests waiting for
	// the dispatcher. Zero means 1024.
	NotificationQueue int
}

// Conn is a JSON-RPC 2.0 client over a child's newline-delimited stdio. It
// implements switchboard.Upstream. One goroutine reads and routes responses;
// another dispatches notifications and answers the child's requests. All
// methods are safe for concurrent use.
type Conn struct {
	r    io.Reader
	w    io.WriteCloser
	opts ConnOptions
	max  int

	nextID    atomic.Int64
	nextToken atomic.Uint64

	mu        sync.Mutex
	closed    bool
	pending   map[int64]chan response
	abandoned map[int64]struct{}
	progress  map[string]func(json.RawMessage)

	// wsem serializes writes; a channel so that waiters can give up.
	wsem        chan struct{}
	writeClosed atomic.Bool

	done       chan struct{}
	err        error // set once, before done is closed
	failOnce   sync.Once
	readerDone chan struct{}
	inbox      chan inbound
	wg         sync.WaitGroup // dispatcher and cancellation senders

	garbage atomic.Int64
	dropped atomic.Int64
	late    atomic.Int64
}

type response struct {
	result json.RawMessage
	err    *switchboard.RPCError
}

type inbound struct {
	method string
	id     json.RawMessage // non-nil for a request from the child
	params json.RawMessage
}

// NewConn starts a Conn that reads the child's messages from r and writes
// requests to w. If r is an io.Closer, Close and connection failure close it.
// The Conn owns w and closes it when it dies.
func NewConn(r io.Reader, w io.WriteCloser, opts ConnOptions) *Conn {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.NotificationQueue <= 0 {
		opts.NotificationQueue = defaultNotificationQueue
	}
	c := &Conn{
		r:          r,
		w:          w,
		opts:       opts,
		max:        opts.MaxMessageBytes,
		pending:    make(map[int64]chan response),
		abandoned:  make(map[int64]struct{}),
		progress:   make(map[string]func(json.RawMessage)),
		wsem:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		inbox:      make(chan inbound, opts.NotificationQueue),
	}
	c.wg.Add(1)
	go c.dispatch()
	go c.readLoop()
	return c
}

// Done is closed when the Conn is dead: closed, its input ended or failed, or a
// write failed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the Conn died, or nil while it is alive.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Garbage returns how many incoming lines were dropped as invalid.
func (c *Conn) Garbage() int64 { return c.garbage.Load() }

// DroppedNotifications returns how many notifications were dropped because the
// dispatcher queue was full.
func (c *Conn) DroppedNotifications() int64 { return c.dropped.Load() }

// LateResponses returns how many responses arrived after their caller gave up.
func (c *Conn) LateResponses() int64 { return c.late.Load() }

// Close kills the Conn: pending calls fail with EUNAVAILABLE, w is closed, and r
// too if it is an io.Closer. It waits for the Conn's goroutines (the reader only
// if r is an io.Closer, since otherwise nothing can unblock it). Idempotent.
func (c *Conn) Close() error {
	c.fail(switchboard.Errorf(switchboard.EUNAVAILABLE, "provider connection closed"))
	c.wg.Wait()
	if _, ok := c.r.(io.Closer); ok {
		<-c.readerDone
	}
	return nil
}

// CloseWrite closes w (the child's stdin) but keeps reading, so in-flight calls
// can still be answered while the child shuts down. Later calls fail with
// EUNAVAILABLE. Idempotent.
func (c *Conn) CloseWrite() error {
	if c.writeClosed.Swap(true) {
		return nil
	}
	return c.w.Close()
}

// fail marks the Conn dead with err (first error wins) and releases its streams.
func (c *Conn) fail(err error) {
	c.failOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.err = err
		c.mu.Unlock()
		close(c.done)
		c.writeClosed.Store(true)
		_ = c.w.Close()
		if rc, ok := c.r.(io.Closer); ok {
			_ = rc.Close()
		}
	})
}

func (c *Conn) unavailable(method string) error {
	return switchboard.WrapError(switchboard.EUNAVAILABLE, c.err, "calling %s: provider connection lost", method)
}

// Call sends a request and waits for its response. params may be nil, a
// json.RawMessage (sent as is) or any value json.Marshal accepts. It returns the
// raw result, a *switchboard.RPCError from the child, an EUNAVAILABLE error as
// soon as the Conn dies, an ETIMEOUT error when ctx's deadline passes, or ctx's
// error when it is cancelled. When ctx ends the child is sent
// notifications/cancelled. The result is delimited but not validated as JSON:
// callers decode it anyway, and a child's malformed result fails there.
func (c *Conn) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, c.ctxError(method, err)
	}
	id := c.nextID.Add(1)
	buf := getBuf()
	defer putBuf(buf)
	buf.WriteString(`{"jsonrpc":"2.0","id":`)
	buf.Write(strconv.AppendInt(buf.AvailableBuffer(), id, 10))
	buf.WriteString(`,"method":`)
	writeJSONString(buf, method)
	if err := writeParams(buf, params); err != nil {
		return nil, switchboard.WrapError(switchboard.EINVALID, err, "calling %s: encoding params", method)
	}
	buf.WriteString("}\n")

	ch := make(chan response, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.unavailable(method)
	}
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.write(ctx, buf.Bytes()); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, c.ctxError(method, ctxErr)
		}
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "calling %s: provider connection lost", method)
	}

	select {
	case resp := <-ch:
		return resp.unpack()
	case <-c.done:
		select {
		case resp := <-ch:
			return resp.unpack()
		default:
		}
		return nil, c.unavailable(method)
	case <-ctx.Done():
		c.mu.Lock()
		_, stillPending := c.pending[id]
		if stillPending {
			delete(c.pending, id)
			if len(c.abandoned) >= maxAbandoned {
				clear(c.abandoned)
			}
			c.abandoned[id] = struct{}{}
		}
		c.mu.Unlock()
		if !stillPending { // answered meanwhile
			return (<-ch).unpack()
		}
		c.sendCancelled(id, ctx.Err())
		return nil, c.ctxError(method, ctx.Err())
	}
}

func (r response) unpack() (json.RawMessage, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.result, nil
}

func (c *Conn) ctxError(method string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return switchboard.WrapError(switchboard.ETIMEOUT, err, "calling %s: provider did not answer in time", method)
	}
	return fmt.Errorf("calling %s: %w", method, err)
}

// sendCancelled tells the child that request id is abandoned, without blocking
// the caller.
func (c *Conn) sendCancelled(id int64, cause error) {
	reason := "request cancelled"
	if errors.Is(cause, context.DeadlineExceeded) {
		reason = "request timed out"
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		buf := getBuf()
		defer putBuf(buf)
		buf.WriteString(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`)
		buf.Write(strconv.AppendInt(buf.AvailableBuffer(), id, 10))
		buf.WriteString(`,"reason":`)
		writeJSONString(buf, reason)
		buf.WriteString("}}\n")
		_ = c.write(context.Background(), buf.Bytes())
	}()
}

// Notify sends a notification to the child.
func (c *Conn) Notify(ctx context.Context, method string, params any) error {
	buf := getBuf()
	defer putBuf(buf)
	buf.WriteString(`{"jsonrpc":"2.0","method":`)
	writeJSONString(buf, method)
	if err := writeParams(buf, params); err != nil {
		return switchboard.WrapError(switchboard.EINVALID, err, "notifying %s: encoding params", method)
	}
	buf.WriteString("}\n")
	if err := c.write(ctx, buf.Bytes()); err != nil {
		return fmt.Errorf("notifying %s: %w", method, err)
	}
	return nil
}

// ProgressToken registers fn for the child's notifications/progress carrying
// the returned token. fn runs on the read loop, before the response of the
// request that carried the token is delivered, so it must be quick and must not
// call the Conn; hand work off if needed. release is idempotent.
func (c *Conn) ProgressToken(fn func(params json.RawMessage)) (string, func()) {
	token := "sb-" + strconv.FormatUint(c.nextToken.Add(1), 10)
	c.mu.Lock()
	c.progress[token] = fn
	c.mu.Unlock()
	var once sync.Once
	return token, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.progress, token)
			c.mu.Unlock()
		})
	}
}

// write sends one complete frame. On a write error the Conn dies, since a
// partial frame corrupts the stream.
func (c *Conn) write(ctx context.Context, frame []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.err
	}
	defer func() { <-c.wsem }()
	if c.writeClosed.Load() {
		if err := c.Err(); err != nil {
			return err
		}
		return switchboard.Errorf(switchboard.EUNAVAILABLE, "provider input closed")
	}
	if _, err := c.w.Write(frame); err != nil {
		if c.writeClosed.Load() { // CloseWrite raced with us: not a stream failure
			return switchboard.Errorf(switchboard.EUNAVAILABLE, "provider input closed")
		}
		c.fail(switchboard.WrapError(switchboard.EUNAVAILABLE, err, "writing to provider"))
		return err
	}
	return nil
}

// readLoop reads newline-delimited frames until the input ends or fails.
func (c *Conn) readLoop() {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(c.r, readBufferSize)
	var long []byte // accumulates a line longer than the bufio buffer
	var env jsonrpc.Envelope
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if long, err = c.accumulate(long, line); err != nil {
				c.fail(err)
				return
			}
			continue
		}
		if len(long) > 0 {
			if long, err = c.accumulate(long, line); err != nil {
				c.fail(err)
				return
			}
			line = long
		}
		if len(line) > c.max+1 || (len(line) == c.max+1 && line[len(line)-1] != '\n') {
			c.fail(c.tooLong())
			return
		}
		if len(line) > 0 {
			c.handle(line, &env)
		}
		if cap(long) > readBufferSize*4 {
			long = nil // release a big buffer
		} else {
			long = long[:0]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.fail(switchboard.WrapError(switchboard.EUNAVAILABLE, io.EOF, "provider closed its output"))
			} else {
				c.fail(switchboard.WrapError(switchboard.EUNAVAILABLE, err, "reading from provider"))
			}
			return
		}
	}
}

// ErrMessageTooLong is wrapped by the error of a Conn that received a line
// longer than its MaxMessageBytes.
var ErrMessageTooLong = errors.New("message too long")

func (c *Conn) tooLong() error {
	return switchboard.WrapError(switchboard.EUNAVAILABLE, ErrMessageTooLong, "reading from provider: line exceeds %d bytes", c.max)
}

// accumulate appends part to long without ever growing past the limit.
func (c *Conn) accumulate(long, part []byte) ([]byte, error) {
	need := len(long) + len(part)
	if need > c.max+1 {
		return nil, c.tooLong()
	}
	if need > cap(long) {
		newCap := max(2*cap(long), need, readBufferSize*2)
		newCap = min(newCap, c.max+1)
		grown := make([]byte, len(long), newCap)
		copy(grown, long)
		long = grown
	}
	return append(long, part...), nil
}

// handle routes one line. env is reused between lines.
func (c *Conn) handle(line []byte, env *jsonrpc.Envelope) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	if !env.Decode(line) || string(env.JSONRPC) != `"2.0"` {
		c.countGarbage(line)
		return
	}
	method, ok := jsonrpc.String(env.Method)
	if !ok || env.Params != nil && !json.Valid(env.Params) {
		c.countGarbage(line)
		return
	}
	hasID := has(env.ID)
	switch {
	case method != "" && !hasID:
		c.notification(method, jsonrpc.Clone(env.Params))
	case method != "":
		c.enqueue(inbound{method: method, id: jsonrpc.Clone(env.ID), params: jsonrpc.Clone(env.Params)})
	case hasID && (env.Result != nil || env.Error != nil):
		c.response(line, env)
	default:
		c.countGarbage(line)
	}
}

func (c *Conn) response(line []byte, env *jsonrpc.Envelope) {
	id, ok := jsonrpc.ParseID(env.ID)
	if !ok {
		c.countGarbage(line)
		return
	}
	c.mu.Lock()
	ch, found := c.pending[id]
	if found {
		delete(c.pending, id)
	} else if _, late := c.abandoned[id]; late {
		delete(c.abandoned, id)
		c.mu.Unlock()
		c.late.Add(1)
		return
	}
	c.mu.Unlock()
	if !found {
		c.countGarbage(line)
		return
	}
	resp := response{result: jsonrpc.Clone(env.Result)}
	if has(env.Error) {
		resp.err = new(switchboard.RPCError)
		if json.Unmarshal(env.Error, resp.err) != nil {
			resp.err = &switchboard.RPCError{Code: -32603, Message: "provider sent a malformed error"}
		}
	}
	ch <- resp
}

// has reports whether a JSON member was present and not null.
func has(raw []byte) bool { return len(raw) > 0 && string(raw) != "null" }

func (c *Conn) notification(method string, params json.RawMessage) {
	if method == "notifications/progress" {
		var p struct {
			ProgressToken json.RawMessage `json:"progressToken"`
		}
		if json.Unmarshal(params, &p) == nil && len(p.ProgressToken) > 2 && p.ProgressToken[0] == '"' {
			token := string(p.ProgressToken[1 : len(p.ProgressToken)-1])
			c.mu.Lock()
			fn := c.progress[token]
			c.mu.Unlock()
			if fn != nil {
				fn(params)
				return
			}
		}
	}
	c.enqueue(inbound{method: method, params: params})
}

func (c *Conn) enqueue(m inbound) {
	select {
	case c.inbox <- m:
	default:
		c.dropped.Add(1)
	}
}

func (c *Conn) countGarbage(line []byte) {
	n := c.garbage.Add(1)
	if c.opts.OnGarbage != nil {
		c.opts.OnGarbage(line, n)
	}
}

// dispatch hands notifications to OnNotification and answers the child's
// requests, off the read loop.
func (c *Conn) dispatch() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case m := <-c.inbox:
			if m.id == nil {
				if c.opts.OnNotification != nil {
					c.opts.OnNotification(m.method, m.params)
				}
				continue
			}
			c.answer(m)
		}
	}
}

// answer replies to a request from the child: ping and roots/list are
// supported, anything else is "method not found".
func (c *Conn) answer(m inbound) {
	buf := getBuf()
	defer putBuf(buf)
	buf.WriteString(`{"jsonrpc":"2.0","id":`)
	buf.Write(m.id)
	switch m.method {
	case "ping":
		buf.WriteString(`,"result":{}}` + "\n")
	case "roots/list":
		buf.WriteString(`,"result":{"roots":[]}}` + "\n")
	default:
		buf.WriteString(`,"error":{"code":-32601,"message":"method not found"}}` + "\n")
	}
	_ = c.write(context.Background(), buf.Bytes())
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuf(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return // let big buffers go
	}
	b.Reset()
	bufPool.Put(b)
}

// writeJSONString writes s as a JSON string, without allocating for the usual
// plain ASCII method names.
func writeJSONString(buf *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\' || ch == '<' || ch == '>' || ch == '&' {
			b, _ := json.Marshal(s)
			buf.Write(b)
			return
		}
	}
	buf.WriteByte('"')
	buf.WriteString(s)
	buf.WriteByte('"')
}

// writeParams appends `,"params":...` unless params is empty.
func writeParams(buf *bytes.Buffer, params any) error {
	switch p := params.(type) {
	case nil:
		return nil
	case json.RawMessage:
		if len(p) == 0 {
			return nil
		}
		buf.WriteString(`,"params":`)
		if bytes.IndexByte(p, '\n') >= 0 { // a frame must be one line
			return json.Compact(buf, p)
		}
		buf.Write(p)
		return nil
	}
	mark := buf.Len()
	buf.WriteString(`,"params":`)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(params); err != nil {
		buf.Truncate(mark)
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
	if bytes.HasSuffix(buf.Bytes(), []byte(`:null`)) && buf.Len()-mark == len(`,"params":null`) {
		buf.Truncate(mark)
	}
	return nil
}
