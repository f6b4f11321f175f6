// Command asker is a stdio MCP server for the e2e tests whose tools ask the
// client things back: it sends requests to the client (through the gateway)
// in the middle of a tool call, and emits logs and content types that
// server-everything does not. It speaks hand-rolled JSON-RPC 2.0, one message
// per line, with the standard library only.
//
// Tools:
//
//	audio   returns one audio content block (audioWAV, audio/wav)
//	caps    returns the client capabilities the gateway sent in initialize, as JSON
//	log     sends notifications/message at info ("info during call") and then
//	        at error ("error during call"), logger "worker", and returns "logged"
//	region  {region, query?}: region carries x-mcp-header "Region"; returns
//	        "region=<region>"
//	sample  {tag, group?, wait_for?}: waits until wait_for calls of the same
//	        group are in flight (default 1, at most 30s), then sends
//	        sampling/createMessage with the text "question from <tag>" to the
//	        client and returns "answer to <tag>: <answer text> (model <model>)",
//	        or a tool error "sampling refused: <code> <message>"
//
// The tools are listed in that (alphabetical) order, so a client that takes
// the first tool and calls it with no arguments gets audio.
//
// Every request from the client that is not initialize, ping, tools/list,
// tools/call or logging/setLevel gets "method not found".
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// audioWAV is a valid, empty 8 kHz mono WAV file.
const audioWAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA="

type message struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type server struct {
	wmu sync.Mutex
	out *json.Encoder

	mu      sync.Mutex
	caps    json.RawMessage
	nextID  int
	waiting map[string]chan message // our request id → its answer
	groups  map[string]*group
}

// group is a barrier: calls of one group wait until want of them arrived.
type group struct {
	arrived int
	full    chan struct{}
}

func main() {
	s := &server{out: json.NewEncoder(os.Stdout), waiting: map[string]chan message{}, groups: map[string]*group{}}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			var m message
			if json.Unmarshal(line, &m) == nil {
				s.handle(m)
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *server) send(v any) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.out.Encode(v)
}

func (s *server) reply(id json.RawMessage, result any) {
	s.send(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
}

func (s *server) handle(m message) {
	switch {
	case m.Method == "" && len(m.ID) > 0: // an answer to one of our requests
		var id string
		_ = json.Unmarshal(m.ID, &id)
		s.mu.Lock()
		ch := s.waiting[id]
		delete(s.waiting, id)
		s.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	case len(m.ID) == 0: // notifications
	case m.Method == "initialize":
		var p struct {
			ProtocolVersion string          `json:"protocolVersion"`
			Capabilities    json.RawMessage `json:"capabilities"`
		}
		_ = json.Unmarshal(m.Params, &p)
		s.mu.Lock()
		s.caps = p.Capabilities
		s.mu.Unlock()
		s.reply(m.ID, map[string]any{
			"protocolVersion": p.ProtocolVersion,
			"capabilities":    map[string]any{"tools": map[string]any{}, "logging": map[string]any{}},
			"serverInfo":      map[string]any{"name": "asker", "version": "1"},
		})
	case m.Method == "ping", m.Method == "logging/setLevel":
		s.reply(m.ID, map[string]any{})
	case m.Method == "tools/list":
		s.reply(m.ID, map[string]any{"tools": tools})
	case m.Method == "tools/call":
		go s.call(m)
	default:
		s.send(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": rpcError{Code: -32601, Message: "method not found"}})
	}
}

var tools = []any{
	map[string]any{"name": "audio", "description": "Returns a short audio clip.",
		"inputSchema": map[string]any{"type": "object"}},
	map[string]any{"name": "caps", "description": "Returns the client capabilities this server was initialized with.",
		"inputSchema": map[string]any{"type": "object"}},
	map[string]any{"name": "log", "description": "Logs at info and error during the call.",
		"inputSchema": map[string]any{"type": "object"}},
	map[string]any{"name": "region", "description": "Echoes a region mirrored into the Mcp-Param-Region header.",
		"inputSchema": map[string]any{"type": "object", "properties": map[string]any{
			"region": map[string]any{"type": "string", "x-mcp-header": "Region"},
			"query":  map[string]any{"type": "string"},
		}, "required": []string{"region"}}},
	map[string]any{"name": "sample", "description": "Asks the client for a sampling answer mid-call.",
		"inputSchema": map[string]any{"type": "object", "properties": map[string]any{
			"tag":      map[string]any{"type": "string"},
			"group":    map[string]any{"type": "string"},
			"wait_for": map[string]any{"type": "integer"},
		}, "required": []string{"tag"}}},
}

func text(s string, isError bool) map[string]any {
	r := map[string]any{"content": []any{map[string]any{"type": "text", "text": s}}}
	if isError {
		r["isError"] = true
	}
	return r
}

func (s *server) call(m message) {
	var p struct {
		Name      string `json:"name"`
		Arguments struct {
			Tag     string `json:"tag"`
			Group   string `json:"group"`
			WaitFor int    `json:"wait_for"`
			Region  string `json:"region"`
		} `json:"arguments"`
	}
	_ = json.Unmarshal(m.Params, &p)
	a := p.Arguments
	switch p.Name {
	case "sample":
		if err := s.barrier(a.Group, a.WaitFor); err != nil {
			s.reply(m.ID, text(err.Error(), true))
			return
		}
		s.reply(m.ID, s.ask(a.Tag))
	case "log":
		for _, lv := range []string{"info", "error"} {
			s.send(map[string]any{"jsonrpc": "2.0", "method": "notifications/message",
				"params": map[string]any{"level": lv, "logger": "worker", "data": lv + " during call"}})
		}
		s.reply(m.ID, text("logged", false))
	case "audio":
		s.reply(m.ID, map[string]any{"content": []any{map[string]any{"type": "audio", "data": audioWAV, "mimeType": "audio/wav"}}})
	case "region":
		s.reply(m.ID, text("region="+a.Region, false))
	case "caps":
		s.mu.Lock()
		caps := string(s.caps)
		s.mu.Unlock()
		s.reply(m.ID, text(caps, false))
	default:
		s.send(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": rpcError{Code: -32602, Message: "unknown tool " + strconv.Quote(p.Name)}})
	}
}

// barrier waits until want calls of group have arrived.
func (s *server) barrier(name string, want int) error {
	if want <= 1 {
		return nil
	}
	s.mu.Lock()
	g := s.groups[name]
	if g == nil {
		g = &group{full: make(chan struct{})}
		s.groups[name] = g
	}
	g.arrived++
	if g.arrived == want {
		close(g.full)
	}
	s.mu.Unlock()
	select {
	case <-g.full:
		return nil
	case <-time.After(30 * time.Second):
		s.mu.Lock()
		n := g.arrived
		s.mu.Unlock()
		return fmt.Errorf("barrier %q: only %d of %d calls arrived within 30s", name, n, want)
	}
}

// ask sends sampling/createMessage to the client and turns the answer into
// the tool's result.
func (s *server) ask(tag string) map[string]any {
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprintf("asker-%d", s.nextID)
	ch := make(chan message, 1)
	s.waiting[id] = ch
	s.mu.Unlock()
	s.send(map[string]any{"jsonrpc": "2.0", "id": id, "method": "sampling/createMessage", "params": map[string]any{
		"messages":  []any{map[string]any{"role": "user", "content": map[string]any{"type": "text", "text": "question from " + tag}}},
		"maxTokens": 16,
	}})
	select {
	case a := <-ch:
		if a.Error != nil {
			return text(fmt.Sprintf("sampling refused: %d %s", a.Error.Code, a.Error.Message), true)
		}
		var r struct {
			Model   string `json:"model"`
			Content struct {
				Text string `json:"text"`
			} `json:"content"`
		}
		_ = json.Unmarshal(a.Result, &r)
		return text(fmt.Sprintf("answer to %s: %s (model %s)", tag, r.Content.Text, r.Model), false)
	case <-time.After(60 * time.Second):
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
		return text("sampling refused: no answer within 60s", true)
	}
}
