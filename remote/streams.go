package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
	"github.com/switchboard-mcp/switchboard/internal/listen"
)

// Delays before a background stream that ended is opened again.
const (
	streamRetryMin = time.Second
	streamRetryMax = 30 * time.Second
	// streamStable is how long a stream must have lasted for the next
	// attempt to start from streamRetryMin again.
	streamStable = 10 * time.Second
)

// startStreams opens the connection's background stream: the session's GET
// stream, or the stateless era's subscriptions/listen (the legacy stream is
// already open).
func (c *client) startStreams() {
	switch c.era {
	case eraSession:
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.getStream()
		}()
	case eraStateless:
		c.lis = listen.New(c.bg, c.listen)
		c.lis.Start()
	}
}

// retryDelay waits d (doubled for the next time, up to streamRetryMax) or
// until ctx ends; it reports whether to carry on. A stream that ran for
// streamStable or longer starts again from streamRetryMin.
func retryDelay(ctx context.Context, d *time.Duration, ran time.Duration) bool {
	if ran >= streamStable {
		*d = streamRetryMin
	}
	t := time.NewTimer(*d)
	defer t.Stop()
	*d = min(2**d, streamRetryMax)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// getStream keeps the session's GET stream open: the server's list
// changes, resource updates and other messages not tied to a request. A
// server that offers none (405) is not asked again.
func (c *client) getStream() {
	delay := streamRetryMin
	for c.bg.Err() == nil {
		start := time.Now()
		sid, _ := c.session()
		h := c.sessionHeaders()
		resp, err := c.send(c.bg, http.MethodGet, c.cfg.url, h, nil)
		if err != nil {
			if !retryDelay(c.bg, &delay, 0) {
				return
			}
			continue
		}
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		switch {
		case resp.StatusCode == http.StatusMethodNotAllowed:
			drain(resp)
			c.cfg.log.Debug().Msg("the remote provider offers no GET stream")
			return
		case resp.StatusCode != http.StatusOK || mt != "text/event-stream":
			drain(resp)
			// A 404: the session ended; the next call makes a new one.
			if !retryDelay(c.bg, &delay, 0) {
				return
			}
			continue
		}
		err = c.readEvents(resp.Body, sid)
		_ = resp.Body.Close()
		if err != nil && c.bg.Err() == nil {
			c.cfg.log.Debug().Str("error", c.cfg.redact(err.Error())).Msg("the remote provider's GET stream ended")
		}
		if !retryDelay(c.bg, &delay, time.Since(start)) {
			return
		}
	}
}

// readEvents routes the messages of a stream that no request owns until it
// ends.
func (c *client) readEvents(body io.Reader, session string) error {
	sr := newSSEReader(body, c.cfg.max)
	var msg jsonrpc.Message
	for {
		ev, err := sr.next()
		if err != nil {
			return err
		}
		if ev.name != "" && ev.name != "message" {
			continue
		}
		if jsonrpc.Parse(ev.data, &msg, jsonrpc.MaxNesting) != nil || msg.JSONRPC != "2.0" || msg.IsResponse() {
			c.garbage.Add(1)
			continue
		}
		c.incoming(&msg, nil, session)
	}
}

// listen carries a stateless-era server's subscriptions/listen stream (list
// changes, and updates of the resources clients subscribed to) until ctx
// ends, opening it again with backoff when it ends; listen.Stream opens it
// anew whenever the subscribed resources change.
func (c *client) listen(ctx context.Context, params json.RawMessage) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		delay := streamRetryMin
		for ctx.Err() == nil {
			start := time.Now()
			out, err := c.exchange(ctx, post{req: &switchboard.Request{Method: listen.Method, Params: params}, meta: c.meta, version: ProtocolStateless, modern: true})
			if ctx.Err() != nil {
				return
			}
			if err == nil && out.rpcErr != nil {
				c.cfg.log.Info().Int("code", out.rpcErr.Code).Str("error", c.cfg.redact(out.rpcErr.Message)).Msg("the remote provider refused subscriptions/listen; its list changes will not be seen")
				return
			}
			if err != nil {
				c.cfg.log.Debug().Str("error", c.cfg.redact(err.Error())).Msg("the remote provider's subscriptions/listen stream ended")
			}
			if !retryDelay(ctx, &delay, time.Since(start)) {
				return
			}
		}
	}()
}

// legacyStream is the HTTP+SSE transport of 2024-11-05: one event stream
// from the server carrying every message (responses too), and an endpoint
// to POST the client's messages to.
type legacyStream struct {
	endpoint *url.URL
	body     io.ReadCloser
	cancel   context.CancelFunc
	once     sync.Once
}

func (l *legacyStream) close() {
	l.once.Do(func() {
		l.cancel()
		_ = l.body.Close()
	})
}

// connectLegacy opens the event stream at u, waits for its endpoint event,
// and initializes over it.
func (c *client) connectLegacy(ctx context.Context, u *url.URL) (*hello, error) {
	// The stream outlives ctx, which only bounds the connecting.
	streamCtx, cancelStream := context.WithCancel(c.bg)
	stop := context.AfterFunc(ctx, cancelStream)
	defer stop()
	resp, err := c.send(streamCtx, http.MethodGet, u, http.Header{}, nil)
	if err != nil {
		cancelStream()
		if ctx.Err() != nil {
			return nil, switchboard.CallContextError("connecting over HTTP+SSE", ctx.Err())
		}
		return nil, fmt.Errorf("connecting over HTTP+SSE: %w", err)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		drain(resp)
		cancelStream()
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "connecting over HTTP+SSE: GET answered HTTP %d (%s)", resp.StatusCode, mt)
	}
	sr := newSSEReader(resp.Body, c.cfg.max)
	type found struct {
		ep  *url.URL
		err error
	}
	first := make(chan found, 1)
	go func() {
		ev, err := sr.next()
		for err == nil && ev.name != "endpoint" {
			ev, err = sr.next()
		}
		if err != nil {
			first <- found{err: err}
			return
		}
		ref, err := url.Parse(string(ev.data))
		if err != nil {
			first <- found{err: fmt.Errorf("the endpoint event is not a URL: %w", err)}
			return
		}
		first <- found{ep: u.ResolveReference(ref)}
	}()
	var ep *url.URL
	select {
	case f := <-first:
		if f.err != nil {
			_ = resp.Body.Close()
			cancelStream()
			return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, f.err, "connecting over HTTP+SSE: reading the endpoint event")
		}
		ep = f.ep
	case <-ctx.Done():
		_ = resp.Body.Close()
		cancelStream()
		<-first // the reader ends with the body
		return nil, switchboard.CallContextError("connecting over HTTP+SSE", ctx.Err())
	}
	if ep.Scheme != u.Scheme || ep.Host != u.Host {
		// Never send the credentials of one origin to another.
		_ = resp.Body.Close()
		cancelStream()
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "connecting over HTTP+SSE: the server's endpoint is on another origin")
	}
	c.legacy = &legacyStream{endpoint: ep, body: resp.Body, cancel: cancelStream}
	c.era = eraLegacy
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.legacyRead(sr)
	}()

	params := switchboard.InitializeParams(c.cfg.roots)
	raw, err := c.legacy.call(ctx, c, &switchboard.Request{Method: "initialize", Params: params})
	if err != nil {
		return nil, fmt.Errorf("connecting over HTTP+SSE: initialize: %w", err)
	}
	h, err := readInitializeResult(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.version = h.version
	c.mu.Unlock()
	if err := c.notify(ctx, "notifications/initialized", nil); err != nil {
		return nil, fmt.Errorf("connecting over HTTP+SSE: %w", err)
	}
	return h, nil
}

// legacyRead routes the messages of the legacy event stream until it ends,
// which kills the connection.
func (c *client) legacyRead(sr *sseReader) {
	var msg jsonrpc.Message
	for {
		ev, err := sr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			c.fail(switchboard.WrapError(switchboard.EUNAVAILABLE, err, "the remote provider's event stream ended"))
			return
		}
		if ev.name != "" && ev.name != "message" {
			continue
		}
		if jsonrpc.Parse(ev.data, &msg, jsonrpc.MaxNesting) != nil || msg.JSONRPC != "2.0" {
			c.garbage.Add(1)
			continue
		}
		if msg.IsResponse() {
			id, ok := jsonrpc.ParseID(msg.ID)
			c.mu.Lock()
			cl := c.calls[id]
			c.mu.Unlock()
			if !ok || cl == nil || cl.ch == nil {
				c.garbage.Add(1)
				continue
			}
			select {
			case cl.ch <- toResponse(&msg):
			default:
			}
			continue
		}
		c.incoming(&msg, nil, "")
	}
}

// post sends one message to the legacy endpoint.
func (l *legacyStream) post(ctx context.Context, c *client, frame []byte) error {
	resp, err := c.send(ctx, http.MethodPost, l.endpoint, http.Header{}, frame)
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode/100 != 2 {
		return switchboard.Errorf(switchboard.EUNAVAILABLE, "the server answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// call sends a request over the legacy transport and waits for its
// response on the event stream.
func (l *legacyStream) call(ctx context.Context, c *client, req *switchboard.Request) (json.RawMessage, error) {
	id := c.nextID.Add(1)
	frame, err := appendRequest(nil, id, req, nil)
	if err != nil {
		return nil, switchboard.WrapError(switchboard.EINVALID, err, "calling %s: encoding params", req.Method)
	}
	cl := &call{caller: req.Caller, progress: req.Progress, ch: make(chan response, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.Unavailable(req.Method)
	}
	c.calls[id] = cl
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
	}()
	if err := l.post(ctx, c, frame); err != nil {
		if ctx.Err() != nil {
			return nil, switchboard.CallContextError(req.Method, ctx.Err())
		}
		return nil, fmt.Errorf("calling %s: %w", req.Method, err)
	}
	select {
	case r := <-cl.ch:
		return r.unpack()
	case <-c.done:
		select {
		case r := <-cl.ch:
			return r.unpack()
		default:
		}
		return nil, c.Unavailable(req.Method)
	case <-ctx.Done():
		c.cancelled(id, "", ctx.Err())
		return nil, switchboard.CallContextError(req.Method, ctx.Err())
	}
}

// ping checks that the server answers: ping in the session and legacy eras,
// server/discover in the stateless era (which has no ping).
func (c *client) ping(ctx context.Context) error {
	method := "ping"
	if c.era == eraStateless {
		method = "server/discover"
	}
	_, err := c.Call(ctx, &switchboard.Request{Method: method})
	var rpcErr *switchboard.RPCError
	if errors.As(err, &rpcErr) {
		return nil // it answered
	}
	return err
}
