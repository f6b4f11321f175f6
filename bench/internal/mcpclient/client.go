// Package mcpclient is a minimal streamable-HTTP MCP client for load generation:
// plain net/http with keep-alive, one MCP session per simulated client, JSON and
// SSE response bodies, and no decoding beyond the JSON-RPC envelope.
package mcpclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// ProtocolVersion is the MCP protocol version the client speaks.
const ProtocolVersion = "2025-11-25"

// Client talks to one MCP endpoint with one bearer credential.
type Client struct {
	// URL is the MCP endpoint, e.g. http://127.0.0.1:8080/mcp.
	URL string
	// Key is sent as "Authorization: Bearer <Key>" when not empty.
	Key string
	// HTTP is the client used for every request.
	HTTP *http.Client
}

// NewHTTPClient returns an http.Client whose transport keeps up to idle
// connections per host alive and never compresses.
func NewHTTPClient(idle int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// RPCError is a JSON-RPC error answered by the server.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message) }

// StatusError is a non-2xx HTTP answer.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string { return fmt.Sprintf("http %d: %s", e.Status, e.Body) }

// Session is one MCP session. It is not safe for concurrent use: each simulated
// client owns one.
type Session struct {
	c    *Client
	ID   string
	next int64
	req  []byte
	line []byte
	body bytes.Buffer
}

// InitializeParams is the params of the client's initialize request.
var InitializeParams = []byte(`{"protocolVersion":"` + ProtocolVersion + `","capabilities":{},"clientInfo":{"name":"sbbench","version":"1"}}`)

// Open initializes a session and sends notifications/initialized.
func (c *Client) Open(ctx context.Context) (*Session, error) {
	s, _, err := c.Initialize(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Notify(ctx, "notifications/initialized", nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Initialize sends initialize and returns the new session and its result
// (valid until the session's next request).
func (c *Client) Initialize(ctx context.Context) (*Session, json.RawMessage, error) {
	s := &Session{c: c}
	res, err := s.Call(ctx, "initialize", InitializeParams)
	if err != nil {
		return nil, nil, fmt.Errorf("initialize: %w", err)
	}
	if s.ID == "" {
		return nil, nil, errors.New("initialize: no Mcp-Session-Id in the answer")
	}
	return s, res, nil
}

// Call sends a request and returns its raw result, valid until the session's
// next request. params is raw JSON or nil.
func (s *Session) Call(ctx context.Context, method string, params []byte) (json.RawMessage, error) {
	s.next++
	id := s.next
	resp, err := s.post(ctx, s.message(id, method, params))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" && s.ID == "" {
		s.ID = sid
	}
	s.body.Reset()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		msg, err := s.readSSE(resp.Body, id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		return s.decode(msg, id)
	}
	if _, err := s.body.ReadFrom(resp.Body); err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", method, err)
	}
	return s.decode(s.body.Bytes(), id)
}

// message encodes a JSON-RPC request into the session's reused buffer; id 0
// makes it a notification (request ids start at 1).
func (s *Session) message(id int64, method string, params []byte) []byte {
	b := append(s.req[:0], `{"jsonrpc":"2.0",`...)
	if id != 0 {
		b = append(b, `"id":`...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, ',')
	}
	b = append(b, `"method":"`...)
	b = append(b, method...)
	b = append(b, '"')
	if len(params) > 0 {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	b = append(b, '}')
	s.req = b
	return b
}

// Notify sends a notification; the server answers 202.
func (s *Session) Notify(ctx context.Context, method string, params []byte) error {
	return expect2xx(s.post(ctx, s.message(0, method, params)))
}

// Close ends the session with DELETE.
func (s *Session) Close(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.c.URL, nil)
	if err != nil {
		return err
	}
	s.headers(req)
	return expect2xx(s.c.HTTP.Do(req))
}

// expect2xx drains and closes an answer whose body does not matter, and
// fails unless its status is 2xx.
func expect2xx(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

func (s *Session) headers(req *http.Request) {
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	if s.c.Key != "" {
		h.Set("Authorization", "Bearer "+s.c.Key)
	}
	if s.ID != "" {
		h.Set("Mcp-Session-Id", s.ID)
		h.Set("MCP-Protocol-Version", ProtocolVersion)
	}
}

func (s *Session) post(ctx context.Context, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	s.headers(req)
	return s.c.HTTP.Do(req)
}

// decode parses msg as a JSON-RPC message and checks its id. The direct
// side's supervisor.Conn parses every message with the same jsonrpc.Parse,
// so both sides of a comparison do the same work per answer; the load's ops
// check what they need of the result.
func (s *Session) decode(msg []byte, id int64) (json.RawMessage, error) {
	var e jsonrpc.Message
	if jsonrpc.Parse(msg, &e, jsonrpc.MaxNesting) != nil || e.JSONRPC != "2.0" {
		return nil, fmt.Errorf("decoding the answer: not a JSON-RPC 2.0 message: %.200s", msg)
	}
	if got, ok := jsonrpc.ParseID(e.ID); !ok || got != id {
		return nil, fmt.Errorf("answer has id %s, want %d", e.ID, id)
	}
	if len(e.Error) > 0 && string(e.Error) != "null" {
		rpc := new(RPCError)
		if err := json.Unmarshal(e.Error, rpc); err != nil {
			return nil, fmt.Errorf("decoding the answer's error: %w", err)
		}
		return nil, rpc
	}
	if len(e.Result) == 0 {
		return nil, fmt.Errorf("answer has neither result nor error: %.200s", msg)
	}
	return e.Result, nil
}

// readSSE returns the data of the first event that answers id, skipping
// notifications and requests the server sends first.
func (s *Session) readSSE(r io.Reader, id int64) ([]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line := s.line[:0]
		var err error
		for {
			var part []byte
			part, err = br.ReadSlice('\n')
			line = append(line, part...)
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		s.line = line
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 { // end of an event
			if s.body.Len() > 0 {
				if answers(s.body.Bytes(), id) {
					return s.body.Bytes(), nil
				}
				s.body.Reset()
			}
		} else if data, ok := bytes.CutPrefix(trimmed, []byte("data:")); ok {
			if s.body.Len() > 0 {
				s.body.WriteByte('\n')
			}
			s.body.Write(bytes.TrimPrefix(data, []byte(" ")))
		}
		if err != nil {
			if s.body.Len() > 0 && answers(s.body.Bytes(), id) {
				return s.body.Bytes(), nil
			}
			if errors.Is(err, io.EOF) {
				return nil, errors.New("event stream ended without the answer")
			}
			return nil, err
		}
	}
}

// answers reports whether msg is a response (not a notification or a request)
// with id want.
func answers(msg []byte, want int64) bool {
	var e jsonrpc.Message
	if jsonrpc.Parse(msg, &e, jsonrpc.MaxNesting) != nil || e.Method != "" {
		return false
	}
	got, ok := jsonrpc.ParseID(e.ID)
	return ok && got == want
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return &StatusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
}

// Get fetches path relative to the client's URL host with the client's key and
// returns the status and body.
func (c *Client) Get(ctx context.Context, path string) (int, []byte, error) {
	base := c.URL
	if i := strings.Index(base, "://"); i >= 0 {
		if j := strings.IndexByte(base[i+3:], '/'); j >= 0 {
			base = base[:i+3+j]
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
