package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
	"github.com/switchboard-mcp/switchboard/internal/listen"
	"github.com/switchboard-mcp/switchboard/internal/relay"
)

// SessionVersion is the protocol version the gateway asks a session-era
// server for in initialize.
const SessionVersion = switchboard.SessionProtocol

// supportedSession are the versions a server may answer initialize with.
var supportedSession = map[string]bool{
	"2024-11-05": true,
	"2025-03-26": true,
	"2025-06-18": true,
	"2025-11-25": true,
}

// Header names of the streamable HTTP transport.
const (
	hdrSessionID       = "Mcp-Session-Id"
	hdrProtocolVersion = "MCP-Protocol-Version"
	hdrMethod          = "Mcp-Method"
	hdrName            = "Mcp-Name"
)

// era is the protocol generation a connection speaks.
type era int

const (
	eraStateless era = iota + 1 // 2026-07-28: per-request _meta, no sessions
	eraSession                  // 2025-03-26 … 2025-11-25 streamable HTTP: initialize, Mcp-Session-Id
	eraLegacy                   // 2024-11-05 HTTP+SSE: one event stream, POSTs to its endpoint
)

func (e era) String() string {
	switch e {
	case eraStateless:
		return ProtocolStateless
	case eraSession:
		return "session"
	case eraLegacy:
		return "legacy-sse"
	}
	return "unknown"
}

// hello is what the server said about itself when the connection was made.
type hello struct {
	version      string
	caps         json.RawMessage
	instructions string
}

// has reports whether the server's capabilities include name.
func (h *hello) has(name string) bool {
	v, ok := jsonrpc.Member(h.caps, name)
	return ok && jsonrpc.Has(v)
}

// clientConfig configures one connection.
type clientConfig struct {
	url       *url.URL
	transport string
	protocol  string
	headers   map[string]string
	auth      switchboard.Authorizer
	roots     bool
	max       int
	hc        *http.Client
	// onNotification receives the server's notifications that belong to no
	// call: list changes, resource updates, log messages that cannot be tied
	// to one client. It must not block for long.
	onNotification func(method string, params json.RawMessage)
	log            zerolog.Logger
	redact         func(string) string
}

// call is a request in flight.
type call struct {
	caller   switchboard.Caller
	progress json.RawMessage // the client's progress token
	ch       chan response   // legacy era: where the read loop delivers the answer
}

type response struct {
	result json.RawMessage
	err    *switchboard.RPCError
}

func (r response) unpack() (json.RawMessage, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.result, nil
}

// client is one live connection to a remote MCP server, in the era the
// server speaks. It implements switchboard.Upstream. Its background streams
// (the session's GET stream, the stateless era's subscriptions/listen, the
// legacy SSE stream) end with it.
type client struct {
	cfg  clientConfig
	era  era
	meta []byte // stateless era: the _meta members of every request

	nextID atomic.Int64

	mu        sync.Mutex
	sessionID string
	version   string // negotiated (session and legacy eras)
	gen       int    // bumped on every re-initialization
	calls     map[int64]*call
	params    map[string][]paramHeader // stateless era: tool → Mcp-Param headers
	closed    bool

	reinit sync.Mutex // serializes re-initialization after a 404

	legacy *legacyStream

	bg       context.Context
	bgCancel context.CancelFunc
	wg       sync.WaitGroup
	relays   *relay.Relays // the server's requests being relayed to clients

	done     chan struct{}
	err      error
	failOnce sync.Once

	garbage atomic.Int64

	// lis is the stateless era's subscriptions/listen stream.
	lis *listen.Stream
}

var _ switchboard.Upstream = (*client)(nil)

func newClient(cfg clientConfig) *client {
	if cfg.redact == nil {
		cfg.redact = func(s string) string { return s }
	}
	if cfg.max <= 0 {
		cfg.max = DefaultMaxMessageBytes
	}
	bg, cancel := context.WithCancel(context.Background())
	return &client{
		cfg:      cfg,
		calls:    map[int64]*call{},
		bg:       bg,
		bgCancel: cancel,
		relays:   relay.New(),
		done:     make(chan struct{}),
	}
}

// dial connects to the server in the newest era it speaks and returns the
// live connection and what the server said about itself.
func dial(ctx context.Context, cfg clientConfig) (*client, *hello, error) {
	c := newClient(cfg)
	h, err := c.connect(ctx)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	c.startStreams()
	return c, h, nil
}

// connect finds the server's era and makes the handshake it needs: a
// server/discover probe (2026-07-28), else initialize (session era), else
// the legacy HTTP+SSE transport, as the transport specification's
// backward-compatibility sections say.
func (c *client) connect(ctx context.Context) (*hello, error) {
	if c.cfg.transport == TransportSSE {
		return c.connectLegacy(ctx, c.cfg.url)
	}
	if c.cfg.protocol != ProtocolSession {
		h, why, err := c.discover(ctx)
		switch {
		case err != nil:
			return nil, err
		case h != nil:
			c.era = eraStateless
			return h, nil
		case c.cfg.protocol == ProtocolStateless:
			return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "connecting: the server does not speak %s (%s)", ProtocolStateless, why)
		}
	}
	h, status, err := c.initialize(ctx)
	if err == nil {
		return h, nil
	}
	if c.cfg.transport == TransportAuto && (status == http.StatusBadRequest || status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		lh, lerr := c.connectLegacy(ctx, c.cfg.url)
		if lerr == nil {
			return lh, nil
		}
		return nil, fmt.Errorf("%w; as a legacy HTTP+SSE server: %w", err, lerr)
	}
	return nil, err
}

// discover probes with server/discover. It returns the server's hello when
// it speaks 2026-07-28, nil and why not when it does not, or an error when
// the probe could not be made (network, authorization).
func (c *client) discover(ctx context.Context) (*hello, string, error) {
	meta := switchboard.StatelessMeta(c.cfg.roots)
	out, err := c.exchange(ctx, post{req: &switchboard.Request{Method: "server/discover"}, meta: meta, version: ProtocolStateless, modern: true})
	if err != nil {
		return nil, "", fmt.Errorf("connecting: probing with server/discover: %w", err)
	}
	if out.rpcErr != nil {
		return nil, fmt.Sprintf("server/discover answered HTTP %d, error %d", out.status, out.rpcErr.Code), nil
	}
	if out.status != http.StatusOK || out.result == nil {
		return nil, fmt.Sprintf("server/discover answered HTTP %d", out.status), nil
	}
	var d struct {
		Versions     []string        `json:"supportedVersions"`
		Capabilities json.RawMessage `json:"capabilities"`
		Instructions string          `json:"instructions"`
	}
	if json.Unmarshal(out.result, &d) != nil || !slices.Contains(d.Versions, ProtocolStateless) {
		return nil, "server/discover did not offer " + ProtocolStateless, nil
	}
	c.meta = meta
	return &hello{version: ProtocolStateless, caps: d.Capabilities, instructions: d.Instructions}, "", nil
}

// initialize opens a session: initialize, then notifications/initialized.
// status is the HTTP status of a refused initialize.
func (c *client) initialize(ctx context.Context) (*hello, int, error) {
	params := switchboard.InitializeParams(c.cfg.roots)
	out, err := c.exchange(ctx, post{req: &switchboard.Request{Method: "initialize", Params: params}})
	if err != nil {
		return nil, 0, fmt.Errorf("connecting: initialize: %w", err)
	}
	if out.rpcErr != nil {
		return nil, out.status, switchboard.WrapError(switchboard.EUNAVAILABLE, out.rpcErr, "connecting: the server refused initialize")
	}
	if out.status != http.StatusOK || out.result == nil {
		return nil, out.status, switchboard.Errorf(switchboard.EUNAVAILABLE, "connecting: initialize answered HTTP %d", out.status)
	}
	h, err := readInitializeResult(out.result)
	if err != nil {
		return nil, 0, err
	}
	sid := out.header.Get(hdrSessionID)
	if !validSessionID(sid) {
		return nil, 0, switchboard.Errorf(switchboard.EUNAVAILABLE, "connecting: the server sent an invalid %s", hdrSessionID)
	}
	c.mu.Lock()
	c.sessionID, c.version = sid, h.version
	c.gen++
	c.mu.Unlock()
	c.era = eraSession
	if err := c.notify(ctx, "notifications/initialized", nil); err != nil {
		return nil, 0, fmt.Errorf("connecting: %w", err)
	}
	return h, 0, nil
}

// readInitializeResult checks and reads an initialize result.
func readInitializeResult(raw json.RawMessage) (*hello, error) {
	var ir struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		Instructions    string          `json:"instructions"`
	}
	if err := json.Unmarshal(raw, &ir); err != nil {
		return nil, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "connecting: decoding the initialize result")
	}
	if !supportedSession[ir.ProtocolVersion] {
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "connecting: unsupported protocol version %q", ir.ProtocolVersion)
	}
	return &hello{version: ir.ProtocolVersion, caps: ir.Capabilities, instructions: ir.Instructions}, nil
}

// validSessionID reports whether id is empty (the server keeps no session)
// or visible ASCII, as the transport requires.
func validSessionID(id string) bool {
	if len(id) > 1024 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// reinitialize opens a new session after the server answered 404 to the
// session of generation gen; concurrent callers share one re-initialization.
func (c *client) reinitialize(ctx context.Context, gen int) error {
	c.reinit.Lock()
	defer c.reinit.Unlock()
	c.mu.Lock()
	cur := c.gen
	c.mu.Unlock()
	if cur != gen {
		return nil // someone else did it
	}
	c.cfg.log.Info().Msg("the remote provider ended its session; initializing a new one")
	if _, _, err := c.initialize(ctx); err != nil {
		c.fail(switchboard.WrapError(switchboard.EUNAVAILABLE, err, "re-initializing the session"))
		return err
	}
	return nil
}

// session returns the current session id and its generation.
func (c *client) session() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessionID, c.gen
}

// Done is closed when the connection is dead.
func (c *client) Done() <-chan struct{} { return c.done }

// Err returns why the connection died, or nil while it is alive.
func (c *client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// fail marks the connection dead with err (the first error wins): calls in
// flight fail, background streams end.
func (c *client) fail(err error) {
	c.failOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.err = err
		c.mu.Unlock()
		c.relays.Close()
		close(c.done)
		c.bgCancel()
		if c.legacy != nil {
			c.legacy.close()
		}
	})
}

// Close ends the connection: a session-era server is told (DELETE), calls in
// flight fail with EUNAVAILABLE, and background goroutines are waited for.
// Idempotent.
func (c *client) Close() error {
	if c.era == eraSession && c.Err() == nil {
		if sid, _ := c.session(); sid != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if resp, err := c.send(ctx, http.MethodDelete, c.cfg.url, c.sessionHeaders(), nil); err == nil {
				drain(resp)
			}
			cancel()
		}
	}
	c.fail(switchboard.Errorf(switchboard.EUNAVAILABLE, "remote provider connection closed"))
	c.wg.Wait()
	c.relays.Wait()
	return nil
}

// Unavailable is the error of a call to method on the dead connection.
func (c *client) Unavailable(method string) error {
	return switchboard.WrapError(switchboard.EUNAVAILABLE, c.err, "calling %s: remote provider connection lost", method)
}

// Call sends one request and returns the raw result, a
// *switchboard.RPCError from the server, an EUNAVAILABLE error when the
// connection is dead or dies, ETIMEOUT when ctx's deadline passes, or ctx's
// error. The server's messages about the call reach req.Caller: over
// streamable HTTP they arrive on the call's own response stream, so they are
// tied to it without doubt.
func (c *client) Call(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, switchboard.CallContextError(req.Method, err)
	}
	if c.Err() != nil {
		return nil, c.Unavailable(req.Method)
	}
	switch c.era {
	case eraLegacy:
		return c.legacy.call(ctx, c, req)
	case eraStateless:
		return c.callStateless(ctx, req)
	default:
		return c.callSession(ctx, req)
	}
}

// callSession is Call in the session era: a 404 means the server ended the
// session, so the call is retried once on a new one.
func (c *client) callSession(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	for attempt := 0; ; attempt++ {
		sid, gen := c.session()
		out, err := c.exchange(ctx, post{req: req, version: c.negotiated(), session: sid})
		if err != nil {
			return nil, err
		}
		if out.status == http.StatusNotFound && sid != "" && attempt == 0 {
			if err := c.reinitialize(ctx, gen); err != nil {
				return nil, fmt.Errorf("calling %s: %w", req.Method, err)
			}
			continue
		}
		return out.unpack(req.Method)
	}
}

// negotiated is the session's protocol version.
func (c *client) negotiated() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// callStateless is Call in the 2026-07-28 era: every request carries the
// protocol's _meta, and an input_required result is worked through with
// req.Caller, after which the call is retried with the answers.
func (c *client) callStateless(ctx context.Context, req *switchboard.Request) (json.RawMessage, error) {
	if listen.Serves(req.Method) {
		// The stateless era has no such methods: the listen stream carries
		// the subscribed resources.
		return c.lis.Serve(req)
	}
	meta := append([]byte(nil), c.meta...)
	if req.LogLevel != "" {
		meta = append(meta, `,"`+jsonrpc.MetaLogLevel+`":`...)
		meta = jsonrpc.AppendString(meta, req.LogLevel)
	}
	return switchboard.CallWithInput(ctx, req, func(r *switchboard.Request) (json.RawMessage, error) {
		out, err := c.exchange(ctx, post{req: r, meta: meta, version: ProtocolStateless, modern: true})
		if err != nil {
			return nil, err
		}
		return out.unpack(req.Method)
	})
}

// notify sends a notification (session era, or legacy through its
// endpoint); the server answers 202.
func (c *client) notify(ctx context.Context, method string, params []byte) error {
	frame := jsonrpc.AppendNotification(nil, method, params)
	if c.era == eraLegacy {
		return c.legacy.post(ctx, c, frame)
	}
	resp, err := c.send(ctx, http.MethodPost, c.cfg.url, c.sessionHeaders(), frame)
	if err != nil {
		return fmt.Errorf("notifying %s: %w", method, err)
	}
	drain(resp)
	if resp.StatusCode/100 != 2 {
		return switchboard.Errorf(switchboard.EUNAVAILABLE, "notifying %s: the server answered HTTP %d", method, resp.StatusCode)
	}
	return nil
}

// sessionHeaders are the headers of a session-era request.
func (c *client) sessionHeaders() http.Header {
	h := http.Header{}
	c.mu.Lock()
	if c.sessionID != "" {
		h.Set(hdrSessionID, c.sessionID)
	}
	if c.version != "" {
		h.Set(hdrProtocolVersion, c.version)
	}
	c.mu.Unlock()
	return h
}

// post is one request to make over streamable HTTP.
type post struct {
	req     *switchboard.Request
	meta    []byte // extra _meta members
	version string // MCP-Protocol-Version ("" for none)
	session string // Mcp-Session-Id ("" for none)
	modern  bool   // send the 2026-07-28 headers (Mcp-Method, Mcp-Name, Mcp-Param-*)
}

// outcome is how the server answered a request: the HTTP status and
// headers, and the JSON-RPC result or error when it sent one.
type outcome struct {
	status int
	header http.Header
	result json.RawMessage
	rpcErr *switchboard.RPCError
}

// unpack turns an outcome into Call's result.
func (o outcome) unpack(method string) (json.RawMessage, error) {
	switch {
	case o.rpcErr != nil:
		return nil, o.rpcErr
	case o.result != nil:
		return o.result, nil
	case o.status == http.StatusOK:
		return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "calling %s: the provider answered without a result", method)
	}
	return nil, switchboard.Errorf(switchboard.EUNAVAILABLE, "calling %s: the provider answered HTTP %d", method, o.status)
}

// exchange posts one request and reads its answer: a JSON body, or an SSE
// stream on which the server's messages about the request precede the
// response. An error means the exchange failed (the network, the
// credentials, ctx, a malformed answer); an HTTP error status without a
// JSON-RPC error is an outcome with that status and nothing else.
func (c *client) exchange(ctx context.Context, p post) (outcome, error) {
	req := p.req
	id := c.nextID.Add(1)
	frame, err := appendRequest(nil, id, req, p.meta)
	if err != nil {
		return outcome{}, switchboard.WrapError(switchboard.EINVALID, err, "calling %s: encoding params", req.Method)
	}
	h := http.Header{}
	if p.version != "" {
		h.Set(hdrProtocolVersion, p.version)
	}
	if p.session != "" {
		h.Set(hdrSessionID, p.session)
	}
	if p.modern {
		h.Set(hdrMethod, req.Method)
		if name, ok := nameOf(req.Method, req.Params); ok {
			h.Set(hdrName, headerValue(name))
			if req.Method == "tools/call" {
				c.mu.Lock()
				hs := c.params[name]
				c.mu.Unlock()
				if len(hs) > 0 {
					args, _ := jsonrpc.Member(req.Params, "arguments")
					for k, v := range paramHeaderValues(hs, args) {
						h.Set(k, v)
					}
				}
			}
		}
	}
	cl := &call{caller: req.Caller, progress: req.Progress}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return outcome{}, c.Unavailable(req.Method)
	}
	c.calls[id] = cl
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.calls, id)
		c.mu.Unlock()
	}()

	resp, err := c.send(ctx, http.MethodPost, c.cfg.url, h, frame)
	if err != nil {
		if ctx.Err() != nil {
			return outcome{}, switchboard.CallContextError(req.Method, ctx.Err())
		}
		return outcome{}, fmt.Errorf("calling %s: %w", req.Method, err)
	}
	defer resp.Body.Close()
	out := outcome{status: resp.StatusCode, header: resp.Header}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mt == "text/event-stream" && resp.StatusCode == http.StatusOK:
		res, err := c.readStream(ctx, resp.Body, id, cl, p.session)
		if err != nil {
			if ctx.Err() != nil {
				c.cancelled(id, p.session, ctx.Err())
				return outcome{}, switchboard.CallContextError(req.Method, ctx.Err())
			}
			return outcome{}, fmt.Errorf("calling %s: %w", req.Method, err)
		}
		out.result, out.rpcErr = res.result, res.err
		return out, nil
	case mt == "application/json":
		body, err := readLimited(resp.Body, c.cfg.max)
		if err != nil {
			if ctx.Err() != nil {
				c.cancelled(id, p.session, ctx.Err())
				return outcome{}, switchboard.CallContextError(req.Method, ctx.Err())
			}
			return outcome{}, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "calling %s: reading the answer", req.Method)
		}
		var msg jsonrpc.Message
		if jsonrpc.Parse(body, &msg, jsonrpc.MaxNesting) != nil || !msg.IsResponse() {
			if resp.StatusCode != http.StatusOK {
				return out, nil // an HTTP error with some other JSON body
			}
			return outcome{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "calling %s: the provider's answer is not a JSON-RPC response", req.Method)
		}
		if rid, ok := jsonrpc.ParseID(msg.ID); ok && rid != id && resp.StatusCode == http.StatusOK {
			return outcome{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "calling %s: the provider answered another request", req.Method)
		}
		r := toResponse(&msg)
		out.result, out.rpcErr = r.result, r.err
		return out, nil
	default:
		drain(resp)
		if resp.StatusCode == http.StatusOK {
			return outcome{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "calling %s: the provider answered with content type %q", req.Method, mt)
		}
		return out, nil
	}
}

// toResponse reads a JSON-RPC response's result or error.
func toResponse(msg *jsonrpc.Message) response {
	if jsonrpc.Has(msg.Error) {
		e := new(switchboard.RPCError)
		if json.Unmarshal(msg.Error, e) != nil {
			e = &switchboard.RPCError{Code: jsonrpc.CodeInternalError, Message: "provider sent a malformed error"}
		}
		return response{err: e}
	}
	if msg.Result == nil || string(msg.Result) == "null" {
		return response{result: json.RawMessage(`{}`)}
	}
	return response{result: jsonrpc.Clone(msg.Result)}
}

// readStream reads a request's SSE response stream until the response to
// id arrives. The server's notifications and (session era) requests on the
// stream belong to that request: they go to cl's caller.
func (c *client) readStream(ctx context.Context, body io.Reader, id int64, cl *call, session string) (response, error) {
	sr := newSSEReader(body, c.cfg.max)
	var msg jsonrpc.Message
	for {
		ev, err := sr.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return response{}, switchboard.Errorf(switchboard.EUNAVAILABLE, "the provider closed the response stream before answering")
			}
			return response{}, switchboard.WrapError(switchboard.EUNAVAILABLE, err, "reading the response stream")
		}
		if ev.name != "" && ev.name != "message" {
			continue
		}
		if jsonrpc.Parse(ev.data, &msg, jsonrpc.MaxNesting) != nil || msg.JSONRPC != "2.0" {
			c.garbage.Add(1)
			continue
		}
		if msg.IsResponse() {
			if rid, ok := jsonrpc.ParseID(msg.ID); ok && rid == id {
				return toResponse(&msg), nil
			}
			c.garbage.Add(1)
			continue
		}
		c.incoming(&msg, cl, session)
	}
}

// incoming routes a message of the server that is not the response a
// reader waits for. tied is the call whose response stream it came on (nil
// for the session's GET stream, the listen stream and the legacy stream).
func (c *client) incoming(msg *jsonrpc.Message, tied *call, session string) {
	switch {
	case msg.IsRequest():
		c.serverRequest(jsonrpc.Clone(msg.ID), msg.Method, jsonrpc.Clone(msg.Params), tied, session)
	case msg.IsNotification():
		c.notification(msg, tied)
	default:
		c.garbage.Add(1)
	}
}

// notification routes a notification of the server: progress to the call
// whose token it names, log messages to the caller they can be tied to,
// everything else to onNotification.
func (c *client) notification(msg *jsonrpc.Message, tied *call) {
	switch msg.Method {
	case "notifications/progress":
		target := c.progressTarget(msg.P.ProgressToken)
		if target == nil && tied != nil && tied.progress != nil {
			target = tied
		}
		if target != nil && target.caller != nil && target.progress != nil {
			target.caller.Notify(msg.Method, jsonrpc.SetMember(nil, msg.Params, "progressToken", target.progress))
		}
		return
	case "notifications/message":
		caller := (switchboard.Caller)(nil)
		if tied != nil {
			caller = tied.caller
		} else {
			caller, _ = c.soleCaller()
		}
		if caller != nil {
			caller.Notify(msg.Method, jsonrpc.Clone(msg.Params))
			return
		}
	case "notifications/cancelled":
		c.relays.Cancel(msg.P.RequestID)
		return
	}
	if f := c.cfg.onNotification; f != nil {
		f(msg.Method, jsonrpc.Clone(msg.Params))
	}
}

// progressTarget returns the call in flight that token, one the client
// minted ("sb-<id>"), belongs to.
func (c *client) progressTarget(token []byte) *call {
	id, ok := jsonrpc.ProgressTokenID(token)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// soleCaller returns the one client whose calls are in flight, or why there
// is none: a message that no stream ties to a call may go to a client only
// when no other client could be its owner.
func (c *client) soleCaller() (switchboard.Caller, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return switchboard.SoleCaller(func(yield func(switchboard.Caller) bool) {
		for _, p := range c.calls {
			if !yield(p.caller) {
				return
			}
		}
	})
}

// serverRequest answers a request of the server: ping at once, sampling,
// elicitation and roots by relaying them to the caller of the call they
// belong to (tied, or the sole client in flight), anything else with an
// error. The stateless era has no server requests: they are dropped.
func (c *client) serverRequest(id json.RawMessage, method string, params json.RawMessage, tied *call, session string) {
	if c.era == eraStateless {
		c.garbage.Add(1)
		return
	}
	if method == "ping" {
		c.answer(id, jsonrpc.AppendResult(nil, id, []byte(`{}`)), session)
		return
	}
	var caller switchboard.Caller
	why := ""
	if tied != nil {
		caller = tied.caller
		if caller == nil {
			why = "the gateway's own request cannot answer it"
		}
	} else {
		caller, why = c.soleCaller()
	}
	answer := func(frame []byte) { c.answer(id, frame, session) }
	if caller == nil {
		answer(relay.Refusal(id, method, why))
		return
	}
	c.relays.Start(id, method, params, caller, answer)
}

// answer sends the client side's response to a server request: POSTed to
// the session (which answers 202), or to the legacy endpoint.
func (c *client) answer(id json.RawMessage, frame []byte, session string) {
	ctx, cancel := context.WithTimeout(c.bg, 30*time.Second)
	defer cancel()
	var err error
	if c.era == eraLegacy {
		err = c.legacy.post(ctx, c, frame)
	} else {
		h := c.sessionHeaders()
		if session != "" {
			h.Set(hdrSessionID, session)
		}
		var resp *http.Response
		resp, err = c.send(ctx, http.MethodPost, c.cfg.url, h, frame)
		if err == nil {
			drain(resp)
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("the server answered HTTP %d", resp.StatusCode)
			}
		}
	}
	if err != nil && c.Err() == nil {
		c.cfg.log.Warn().Str("id", string(id)).Str("error", c.cfg.redact(err.Error())).Msg("answering the remote provider's request failed")
	}
}

// cancelled tells a session-era server that the request id is abandoned
// (the stateless era needs nothing: closing the stream is the cancel).
func (c *client) cancelled(id int64, session string, cause error) {
	if c.era != eraSession && c.era != eraLegacy {
		return
	}
	reason := "request cancelled"
	if errors.Is(cause, context.DeadlineExceeded) {
		reason = "request timed out"
	}
	params := []byte(`{"requestId":` + strconv.FormatInt(id, 10) + `,"reason":`)
	params = jsonrpc.AppendString(params, reason)
	params = append(params, '}')
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.bg, 10*time.Second)
		defer cancel()
		_ = c.notify(ctx, "notifications/cancelled", params)
	}()
}

// send makes one HTTP request with the connection's headers and
// credentials. A 401 is handed to the Authorizer, and the request retried
// once if it has a fresh credential; a 401 it cannot cure is an
// EUNAUTHORIZED error. A failure to reach the server kills the connection
// (it will be made again), unless ctx ended.
func (c *client) send(ctx context.Context, method string, u *url.URL, h http.Header, body []byte) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
		if err != nil {
			return nil, switchboard.WrapError(switchboard.EINVALID, err, "building the request")
		}
		for k, v := range c.cfg.headers {
			req.Header.Set(k, v)
		}
		for k, vs := range h {
			req.Header[k] = vs
		}
		switch method {
		case http.MethodPost:
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
		case http.MethodGet:
			req.Header.Set("Accept", "text/event-stream")
		}
		sent := ""
		if c.cfg.auth != nil {
			if sent, err = c.cfg.auth.Authorization(ctx); err != nil {
				err = fmt.Errorf("authorizing: %w", err)
				c.unauthorized(err)
				return nil, err
			}
			if sent != "" {
				req.Header.Set("Authorization", sent)
			}
		}
		resp, err := c.cfg.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// Never the URL: url.Error would print it, and it may carry a secret.
			cause := errors.Unwrap(err)
			if cause == nil {
				cause = err
			}
			e := switchboard.WrapError(switchboard.EUNAVAILABLE, cause, "reaching the remote provider")
			c.fail(e)
			return nil, e
		}
		if resp.StatusCode != http.StatusUnauthorized {
			return resp, nil
		}
		challenge := resp.Header.Get("WWW-Authenticate")
		drain(resp)
		if c.cfg.auth == nil || attempt > 0 {
			err := switchboard.Errorf(switchboard.EUNAUTHORIZED, "the remote provider refused the gateway's credentials (HTTP 401)")
			c.unauthorized(err)
			return nil, err
		}
		if err := c.cfg.auth.Rejected(ctx, sent, challenge); err != nil {
			err = fmt.Errorf("the remote provider refused the credentials: %w", err)
			c.unauthorized(err)
			return nil, err
		}
	}
}

// unauthorized kills the connection when err says that no credential can
// be had (the user's connection expired): nothing will work on it until
// the user connects again, and the manager's reconnects show why. A passing
// failure to get a token (the authorization server unreachable) leaves it.
func (c *client) unauthorized(err error) {
	if switchboard.ErrorCode(err) == switchboard.EUNAUTHORIZED {
		c.fail(err)
	}
}

// drain reads what is left of a response body (a little) and closes it, so
// the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

// readLimited reads all of r, failing past max bytes.
func readLimited(r io.Reader, max int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("answer exceeds %d bytes", max)
	}
	return b, nil
}

// setTools records the Mcp-Param headers of the stateless era's tools and
// returns the tools a client may be offered: a tool whose x-mcp-header
// annotations break the rules is left out (and logged), as the transport
// requires.
func (c *client) setTools(tools []json.RawMessage) []json.RawMessage {
	if c.era != eraStateless {
		return tools
	}
	params := map[string][]paramHeader{}
	out := tools[:0:0]
	for _, t := range tools {
		hs, err := toolParamHeaders(t)
		name := ""
		if raw, ok := jsonrpc.Member(t, "name"); ok {
			_ = json.Unmarshal(raw, &name)
		}
		if err != nil {
			c.cfg.log.Warn().Str("tool", name).Str("reason", err.Error()).Msg("leaving out a tool of the remote provider: invalid x-mcp-header")
			continue
		}
		if len(hs) > 0 {
			params[name] = hs
		}
		out = append(out, t)
	}
	c.mu.Lock()
	c.params = params
	c.mu.Unlock()
	return out
}
