package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
	"github.com/switchboard-mcp/switchboard/internal/relay"
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

	// OnNotification receives the child's notifications that no call in
	// flight takes (see Call): list changes, resource updates, and log
	// messages that cannot be tied to one client. It is called from a single
	// dispatcher goroutine, in arrival order, never from the read loop; when
	// it falls more than NotificationQueue messages behind, further
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
// another dispatches notifications and the child's requests. All methods are
// safe for concurrent use.
//
// The child's messages that belong to a call in flight reach that call's
// switchboard.Caller: progress by the token the Conn put in the call, and log
// messages and the child's own requests (sampling, elicitation, roots) when
// every call in flight has callers with one Key, since stdio gives no other
// way to tell whose they are. Otherwise a log message goes to OnNotification
// and a request is refused with a JSON-RPC error that says why.
type Conn struct {
	r    io.Reader
	w    io.WriteCloser
	opts ConnOptions
	max  int

	nextID atomic.Int64

	mu        sync.Mutex
	closed    bool
	pending   map[int64]*pending
	abandoned map[int64]struct{}

	// Small frames to the child are queued in out; whoever holds wsem (the
	// writer) writes everything queued (see write).
	wsem        chan struct{} // the writer's token; a channel so that waiters can give up
	omu         sync.Mutex
	out         []byte // queued frames, whole, in order
	spare       []byte // a written batch's buffer, for out to reuse
	writeClosed atomic.Bool

	done       chan struct{}
	err        error // set once, before done is closed
	failOnce   sync.Once
	readerDone chan struct{}
	inbox      chan inbound
	relays     *relay.Relays  // the child's requests being relayed to clients
	wg         sync.WaitGroup // dispatcher and cancellation senders

	garbage atomic.Int64
	dropped atomic.Int64
	late    atomic.Int64

	// modern is set once the child is known to speak the stateless
	// protocol; modernMeta is written before it.
	modern     atomic.Bool
	modernMeta []byte
}

// SetModern makes every later Call speak the stateless protocol (see
// modern.go): meta is the _meta members each request carries.
func (c *Conn) SetModern(meta []byte) {
	c.modernMeta = meta
	c.modern.Store(true)
}

// Modern reports whether the child speaks the stateless protocol.
func (c *Conn) Modern() bool { return c.modern.Load() }

// pending is a call waiting for its response.
type pending struct {
	ch       chan response
	caller   switchboard.Caller
	progress json.RawMessage // the client's progress token
}

type response struct {
	result json.RawMessage
	err    *switchboard.RPCError
}

type inbound struct {
	method string
	id     json.RawMessage // non-nil for a request from the child
	params json.RawMessage
	caller switchboard.Caller // for a request: whom to relay it to (nil: refuse)
	why    string             // for a request without a caller: why
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
		pending:    make(map[int64]*pending),
		abandoned:  make(map[int64]struct{}),
		wsem:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		inbox:      make(chan inbound, opts.NotificationQueue),
		relays:     relay.New(),
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
	c.relays.Wait()
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
		c.relays.Close()
		close(c.done)
		c.writeClosed.Store(true)
		_ = c.w.Close()
		if rc, ok := c.r.(io.Closer); ok {
			_ = rc.Close()
		}
	})
}

// Unavailable is the error of a call to method on the dead connection: why
// it died, as EUNAVAILABLE.
func (c *Conn) Unavailable(method string) error {
	return switchboard.WrapError(switchboard.EUNAVAILABLE, c.err, "calling %s: provider connection lost", method)
}

// CallParams is Call for the gateway's own requests: params may be nil, a
// json.RawMessage (sent as is) or any value json.Marshal accepts.
func (c *Conn) CallParams(ctx context.Context, method string, params any) (json.RawMessage, error) {
	raw, err := marshalParams(params)
	if err != nil {
		return nil, switchboard.WrapError(switchboard.EINVALID, err, "calling %s: encoding params", method)
	}
	return c.Call(ctx, &switchboard.Request{Method: method, Params: raw})
}

// Call sends a request and waits for its response. It returns the raw
// result, a *switchboard.RPCError from the child, an EUNAVAILABLE error as
// soon as the Conn dies, an ETIMEOUT error when ctx's deadline passes, or
// ctx's error when it is cancelled. When ctx ends the child is sent
// notifications/cancelled. The result has been validated as JSON by the
// read loop. To a child that speaks the stateless protocol the request
// carries its _meta, and an input_required result is worked through with
// req.Caller (see modern.go).
func (c *Conn) Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	if c.modern.Load() {
		return c.callModern(ctx, req)
	}
	return c.call(ctx, req)
}

// call sends one request and waits for its response.
func (c *Conn) call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	method := req.Method
	if err := ctx.Err(); err != nil {
		return nil, switchboard.CallContextError(method, err)
	}
	id := c.nextID.Add(1)
	bp := getBuf()
	defer putBuf(bp)
	frame, err := appendCall(*bp, id, req)
	if err != nil {
		return nil, switchboard.WrapError(switchboard.EINVALID, err, "calling %s: encoding params", method)
	}
	*bp = frame

	p := &pending{ch: make(chan response, 1), caller: req.Caller, progress: req.Progress}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.Unavailable(method)
	}
	c.pending[id] = p
	c.mu.Unlock()

	if err := c.write(ctx, frame); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, switchboard.CallContextError(method, ctxErr)
		}
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "calling %s: provider connection lost", method)
	}

	select {
	case resp := <-p.ch:
		return resp.unpack()
	case <-c.done:
		select {
		case resp := <-p.ch:
			return resp.unpack()
		default:
		}
		return nil, c.Unavailable(method)
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
			return (<-p.ch).unpack()
		}
		c.sendCancelled(id, ctx.Err())
		return nil, switchboard.CallContextError(method, ctx.Err())
	}
}

// appendCall appends the request frame for req with the given id. The
// child's progress token, when the caller asked for progress, is "sb-<id>":
// the read loop finds the call by it.
func appendCall(dst []byte, id int64, req *switchboard.Request) ([]byte, error) {
	params := bytes.TrimSpace(req.Params)
	if string(params) == "null" {
		params = nil
	}
	if bytes.IndexByte(params, '\n') >= 0 { // a frame must be one line
		var b bytes.Buffer
		if err := json.Compact(&b, params); err != nil {
			return nil, err
		}
		params = b.Bytes()
	}
	hasMeta := req.Progress != nil || len(req.Meta) > 0
	if len(params) > 0 && hasMeta && (params[0] != '{' || params[len(params)-1] != '}') {
		return nil, errors.New("params must be a JSON object to carry _meta")
	}
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"method":`...)
	dst = jsonrpc.AppendString(dst, req.Method)
	if len(params) > 0 || hasMeta {
		dst = append(dst, `,"params":`...)
		if !hasMeta {
			dst = append(dst, params...)
		} else {
			if len(params) == 0 {
				dst = append(dst, '{')
			} else {
				inner := params[:len(params)-1] // without its '}'
				dst = append(dst, inner...)
				if !emptyObjectSoFar(inner) {
					dst = append(dst, ',')
				}
			}
			dst = append(dst, `"_meta":{`...)
			if req.Progress != nil {
				dst = jsonrpc.AppendProgressToken(dst, id)
				if len(req.Meta) > 0 {
					dst = append(dst, ',')
				}
			}
			dst = append(dst, req.Meta...)
			dst = append(dst, "}}"...)
		}
	}
	return append(dst, "}\n"...), nil
}

// emptyObjectSoFar reports whether b, an object's text without its closing
// brace, has no members.
func emptyObjectSoFar(b []byte) bool {
	return len(bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(b), []byte("{")))) == 0
}

// marshalParams encodes params for CallParams.
func marshalParams(params any) (json.RawMessage, error) {
	switch p := params.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return p, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(params); err != nil {
		return nil, err
	}
	out := bytes.TrimSpace(b.Bytes())
	if string(out) == "null" {
		return nil, nil
	}
	return out, nil
}

func (r response) unpack() (json.RawMessage, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.result, nil
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
		bp := getBuf()
		defer putBuf(bp)
		b := append(*bp, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, `,"reason":`...)
		b = jsonrpc.AppendString(b, reason)
		b = append(b, "}}\n"...)
		*bp = b
		_ = c.write(context.Background(), b)
	}()
}

// Notify sends a notification to the child. params may be nil, a
// json.RawMessage or any value json.Marshal accepts.
func (c *Conn) Notify(ctx context.Context, method string, params any) error {
	raw, err := marshalParams(params)
	if err != nil {
		return switchboard.WrapError(switchboard.EINVALID, err, "notifying %s: encoding params", method)
	}
	if bytes.IndexByte(raw, '\n') >= 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return switchboard.WrapError(switchboard.EINVALID, err, "notifying %s: encoding params", method)
		}
		raw = b.Bytes()
	}
	bp := getBuf()
	defer putBuf(bp)
	b := jsonrpc.AppendNotification(*bp, method, raw)
	b = append(b, '\n')
	*bp = b
	if err := c.write(ctx, b); err != nil {
		return fmt.Errorf("notifying %s: %w", method, err)
	}
	return nil
}

// write sends one complete frame to the child. A small frame is queued; if
// no one holds the writer's token the caller takes it, yields once so that
// the callers ready to run queue their frames too, and writes everything
// queued in one system call; otherwise it returns at once and the holder
// writes the frame. Under load many calls share one write (and the child one
// read); a lone call pays one write, as before. A large frame is not copied:
// its caller waits for the token (or ctx), writes what was queued before it,
// then the frame itself. Frames from one caller reach the child in the order
// it wrote them. A write error kills the Conn, since a partial frame
// corrupts the stream; callers waiting for an answer learn it from c.done.
func (c *Conn) write(ctx context.Context, frame []byte) error {
	if err := c.inputOpen(); err != nil {
		return err
	}
	if len(frame) > maxQueuedFrame {
		select {
		case c.wsem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.err
		}
		return c.writeHeld(frame)
	}
	c.omu.Lock()
	if c.out == nil {
		c.out, c.spare = c.spare, nil
	}
	c.out = append(c.out, frame...)
	c.omu.Unlock()
	select {
	case c.wsem <- struct{}{}:
	default:
		return nil // the holder writes it before giving the token back
	}
	runtime.Gosched()
	return c.writeHeld(nil)
}

// inputOpen reports why the child's input is closed, if it is.
func (c *Conn) inputOpen() error {
	if !c.writeClosed.Load() {
		return nil
	}
	if err := c.Err(); err != nil {
		return err
	}
	return switchboard.Errorf(switchboard.EUNAVAILABLE, "provider input closed")
}

// writeHeld writes, holding the writer's token, what is queued and then
// frame (if any), and gives the token back once nothing is queued. Whatever
// a caller queued before it found the token held is written before the
// holder lets go.
func (c *Conn) writeHeld(frame []byte) error {
	for {
		for {
			c.omu.Lock()
			buf := c.out
			c.out = nil
			c.omu.Unlock()
			if len(buf) == 0 {
				break
			}
			err := c.writeRaw(buf)
			c.omu.Lock()
			if cap(buf) <= maxSpareOut {
				c.spare = buf[:0]
			}
			c.omu.Unlock()
			if err != nil {
				<-c.wsem
				return err
			}
		}
		if frame != nil {
			if err := c.writeRaw(frame); err != nil {
				<-c.wsem
				return err
			}
			frame = nil
			continue // what was queued meanwhile
		}
		<-c.wsem
		// A frame queued after the last look but before the token came
		// back found it held: write it unless someone else took the token.
		c.omu.Lock()
		more := len(c.out) > 0
		c.omu.Unlock()
		if !more {
			return nil
		}
		select {
		case c.wsem <- struct{}{}:
		default:
			return nil
		}
	}
}

// writeRaw writes b to the child; on an error the Conn dies.
func (c *Conn) writeRaw(b []byte) error {
	if err := c.inputOpen(); err != nil {
		return err
	}
	if _, err := c.w.Write(b); err != nil {
		if c.writeClosed.Load() { // CloseWrite raced with us: not a stream failure
			return switchboard.Errorf(switchboard.EUNAVAILABLE, "provider input closed")
		}
		c.fail(switchboard.WrapError(switchboard.EUNAVAILABLE, err, "writing to provider"))
		return err
	}
	return nil
}

// maxQueuedFrame is the largest frame write copies into the queue; larger
// ones are written from the caller's buffer. maxSpareOut caps the queue's
// buffer a Conn keeps between batches.
const (
	maxQueuedFrame = 8 << 10
	maxSpareOut    = 64 << 10
)

// readLoop reads newline-delimited frames until the input ends or fails.
func (c *Conn) readLoop() {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(c.r, readBufferSize)
	var long []byte // accumulates a line longer than the bufio buffer
	var msg jsonrpc.Message
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
			c.handle(line, &msg)
		}
		if br.Buffered() == 0 && err == nil {
			// The next read is a system call that usually finds nothing
			// yet: let the callers just answered run first, so that it is
			// not on their answer's path.
			runtime.Gosched()
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

// handle routes one line. msg is reused between lines.
func (c *Conn) handle(line []byte, msg *jsonrpc.Message) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	if jsonrpc.Parse(line, msg, jsonrpc.MaxNesting) != nil || msg.JSONRPC != "2.0" {
		c.countGarbage(line)
		return
	}
	switch {
	case msg.IsResponse():
		c.response(line, msg)
	case msg.IsRequest():
		in := inbound{method: msg.Method, id: jsonrpc.Clone(msg.ID), params: jsonrpc.Clone(msg.Params)}
		if in.method != "ping" {
			in.caller, in.why = c.soleCaller()
		}
		c.enqueue(in)
	case msg.IsNotification():
		c.notification(msg)
	default:
		c.countGarbage(line)
	}
}

func (c *Conn) response(line []byte, msg *jsonrpc.Message) {
	id, ok := jsonrpc.ParseID(msg.ID)
	if !ok {
		c.countGarbage(line)
		return
	}
	c.mu.Lock()
	p, found := c.pending[id]
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
	resp := response{result: jsonrpc.Clone(msg.Result)}
	if jsonrpc.Has(msg.Error) {
		resp.err = new(switchboard.RPCError)
		if json.Unmarshal(msg.Error, resp.err) != nil {
			resp.err = &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "provider sent a malformed error"}
		}
	} else if msg.Result == nil || string(msg.Result) == "null" {
		resp.result = nil
	}
	p.ch <- resp
}

// soleCaller returns the one client whose calls are in flight, or why there
// is none.
func (c *Conn) soleCaller() (switchboard.Caller, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return switchboard.SoleCaller(func(yield func(switchboard.Caller) bool) {
		for _, p := range c.pending {
			if !yield(p.caller) {
				return
			}
		}
	})
}

// notification routes a notification of the child. Progress for a call in
// flight goes to its caller at once, on the read loop, so that it arrives
// before the call's response; everything else is queued for the dispatcher.
func (c *Conn) notification(msg *jsonrpc.Message) {
	switch msg.Method {
	case "notifications/progress":
		if p := c.progressTarget(msg.P.ProgressToken); p != nil {
			var b []byte
			b = jsonrpc.SetMember(b, msg.Params, "progressToken", p.progress)
			p.caller.Notify(msg.Method, b)
			return
		}
	case "notifications/message":
		if caller, _ := c.soleCaller(); caller != nil {
			caller.Notify(msg.Method, jsonrpc.Clone(msg.Params))
			return
		}
	case "notifications/cancelled":
		c.relays.Cancel(msg.P.RequestID)
		return
	}
	c.enqueue(inbound{method: msg.Method, params: jsonrpc.Clone(msg.Params)})
}

// progressTarget returns the call that token, one the Conn minted
// ("sb-<id>"), belongs to, if it is in flight and asked for progress.
func (c *Conn) progressTarget(token []byte) *pending {
	id, ok := jsonrpc.ProgressTokenID(token)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[id]
	if p == nil || p.caller == nil || p.progress == nil {
		return nil
	}
	return p
}

func (c *Conn) enqueue(m inbound) {
	select {
	case c.inbox <- m:
	default:
		c.dropped.Add(1)
		if m.id != nil { // a request must get an answer
			c.answerError(m.id, jsonrpc.CodeInternalError, "switchboard: too many messages from the provider queued")
		}
	}
}

func (c *Conn) countGarbage(line []byte) {
	n := c.garbage.Add(1)
	if c.opts.OnGarbage != nil {
		c.opts.OnGarbage(line, n)
	}
}

// dispatch hands notifications to OnNotification and answers or relays the
// child's requests, off the read loop.
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
			c.request(m)
		}
	}
}

// request answers a request of the child: ping at once, anything else by
// relaying it to the client whose call is in flight, in its own goroutine
// (a person may take minutes to answer an elicitation).
func (c *Conn) request(m inbound) {
	switch {
	case m.method == "ping":
		c.answer(m.id, []byte(`{}`))
	case m.caller == nil:
		c.send(relay.Refusal(m.id, m.method, m.why))
	default:
		c.relays.Start(m.id, m.method, m.params, m.caller, c.send)
	}
}

// send writes a response frame (without its newline) to the child.
func (c *Conn) send(frame []byte) {
	_ = c.write(context.Background(), append(frame, '\n'))
}

func (c *Conn) answer(id, result []byte) {
	bp := getBuf()
	defer putBuf(bp)
	b := jsonrpc.AppendResult(*bp, id, result)
	*bp = append(b, '\n')
	_ = c.write(context.Background(), *bp)
}

func (c *Conn) answerError(id []byte, code int, msg string) {
	bp := getBuf()
	defer putBuf(bp)
	b := jsonrpc.AppendError(*bp, id, code, msg, nil)
	*bp = append(b, '\n')
	_ = c.write(context.Background(), *bp)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // let big buffers go
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
