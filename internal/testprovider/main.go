// Command testprovider is a deliberately misbehaving stdio MCP server for the
// supervisor's and the gateway's tests. It speaks hand-rolled JSON-RPC 2.0,
// one message per line, and needs nothing beyond the standard library.
//
// Normal behaviour: it answers initialize (echoing the client's protocol
// version when supported, else 2025-11-25) with tools, prompts and resources
// capabilities; tools/list lists
//
//	echo     returns its "text" argument
//	env      returns the variable named by "name", or the whole environment
//	         (sorted KEY=VALUE lines) when no name is given
//	sleep    sleeps "ms" milliseconds, sending notifications/progress when the
//	         request carries _meta.progressToken; a notifications/cancelled for
//	         it makes it answer with an error at once
//	pid      returns its process id
//	crash    exits with status 3 in the middle of the call
//	add_tool adds a tool called "name" and sends notifications/tools/list_changed
//	log      writes its "text" argument to stderr
//	fail     answers with its "text" argument as a tool error (isError)
//
// prompts/list lists one prompt ("greet", readable with prompts/get);
// resources/list lists test://hello, readable with resources/read. Every
// notifications/cancelled for a call in flight is logged to stderr as
// "cancelled <id>".
//
// Environment:
//
//	TP_MODE       comma-separated misbehaviours, below
//	TP_PIDFILE    write the process id here; grandchild pids go to TP_PIDFILE.grandchild
//	TP_PAGE_SIZE  paginate tools/list with this many tools per page
//
// TP_MODE items:
//
//	exit-now          exit at once (status from exit-code=N, default 1)
//	exit-after=N      exit with status 1 after answering N tools/call requests
//	no-init           never answer initialize
//	proto=V           answer initialize with protocolVersion V
//	hang              never answer tools/call
//	ignore-eof        keep running after stdin closes
//	ignore-term       ignore SIGTERM
//	fork              start a grandchild "sleep 1000" in the same process group
//	fork-escape       start a grandchild "sleep 1000" in a new session (setsid)
//	                  that holds stdout and stderr open
//	daemon            double-fork a daemon: a child in a new session (setsid)
//	                  starts a grandchild (this program again) that ignores
//	                  SIGTERM and SIGHUP, has its stdio on /dev/null and writes
//	                  its pid to TP_PIDFILE.daemon, then exits at once, so that
//	                  the grandchild is orphaned (reparented to the nearest
//	                  subreaper, or init)
//	garbage           write non-JSON, non-JSON-RPC and wrong-id lines before
//	                  every response
//	big=N             echo returns N bytes of text (one N-byte line)
//	stderr-flood      write to stderr as fast as possible, forever
//	leak              allocate memory without bound (1 MiB every 10 ms)
//	spin[=N]          keep N goroutines (default 1) busy on the CPU, forever
//	foreign-progress  send progress notifications with tokens it was not given
//	slow=DURATION     wait this long before answering each request
//	ask-client        after notifications/initialized, send the client ping,
//	                  roots/list and an unknown request, logging the answers to
//	                  stderr as "client answered <id> <json>"
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var supported = map[string]bool{"2024-11-05": true, "2025-03-26": true, "2025-06-18": true, "2025-11-25": true}

type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

type server struct {
	mode map[string]string

	outMu sync.Mutex
	out   io.Writer

	mu       sync.Mutex
	inflight map[string]chan struct{} // tools/call id -> closed on cancel
	calls    int
	wg       sync.WaitGroup // tools/call in progress
	extra    []string       // tools added by add_tool
}

func main() {
	switch os.Getenv("TP_ROLE") {
	case "daemon-middle":
		daemonMiddle()
		return
	case "daemon":
		daemon()
		return
	}
	s := &server{mode: parseMode(os.Getenv("TP_MODE")), out: os.Stdout, inflight: map[string]chan struct{}{}}
	if f := os.Getenv("TP_PIDFILE"); f != "" {
		_ = os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	if s.has("exit-now") {
		code := 1
		if v, ok := s.mode["exit-code"]; ok {
			code, _ = strconv.Atoi(v)
		}
		fmt.Fprintln(os.Stderr, "exiting now")
		os.Exit(code)
	}
	if s.has("ignore-term") {
		signal.Ignore(syscall.SIGTERM)
	}
	if s.has("fork") {
		s.grandchild(false)
	}
	if s.has("fork-escape") {
		s.grandchild(true)
	}
	if s.has("daemon") {
		startDaemon()
	}
	if s.has("stderr-flood") {
		go flood()
	}
	if s.has("leak") {
		go leak()
	}
	if s.has("spin") {
		n, err := strconv.Atoi(s.mode["spin"])
		if err != nil || n < 1 {
			n = 1
		}
		for range n {
			go spin()
		}
	}
	fmt.Fprintln(os.Stderr, "testprovider started")

	br := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			s.handle(line)
		}
		if err != nil {
			break
		}
	}
	fmt.Fprintln(os.Stderr, "stdin closed")
	if s.has("ignore-eof") {
		for {
			time.Sleep(time.Hour)
		}
	}
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select { // let calls in progress answer, for a while
	case <-finished:
	case <-time.After(time.Second):
	}
}

func parseMode(v string) map[string]string {
	m := map[string]string{}
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		k, val, _ := strings.Cut(item, "=")
		m[k] = val
	}
	return m
}

func (s *server) has(k string) bool { _, ok := s.mode[k]; return ok }

func (s *server) grandchild(escape bool) {
	cmd := exec.Command("sleep", "1000")
	if escape {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "fork failed:", err)
		return
	}
	if f := os.Getenv("TP_PIDFILE"); f != "" {
		_ = os.WriteFile(f+".grandchild", []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	}
	go func() { _ = cmd.Wait() }()
}

// startDaemon runs this program as the middle of a double fork, in a new
// session, and waits for it: it exits as soon as it started the daemon.
func startDaemon() {
	exe, err := os.Executable()
	if err == nil {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "TP_ROLE=daemon-middle")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemon failed:", err)
	}
}

func daemonMiddle() {
	exe, err := os.Executable()
	if err != nil {
		os.Exit(1)
	}
	cmd := exec.Command(exe) // stdio on /dev/null
	cmd.Env = append(os.Environ(), "TP_ROLE=daemon")
	if err := cmd.Start(); err != nil {
		os.Exit(1)
	}
	os.Exit(0) // orphan it
}

func daemon() {
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP)
	if f := os.Getenv("TP_PIDFILE"); f != "" {
		_ = os.WriteFile(f+".daemon", []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	for {
		time.Sleep(time.Hour)
	}
}

func flood() {
	line := []byte(strings.Repeat("flood ", 20) + "\n")
	for {
		_, _ = os.Stderr.Write(line)
	}
}

func leak() {
	var keep [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = byte(i)
		}
		keep = append(keep, b)
		time.Sleep(10 * time.Millisecond)
	}
}

var spun atomic.Uint64

func spin() {
	for {
		for range 1 << 20 {
			spun.Add(1)
		}
		runtime.Gosched()
	}
}

func (s *server) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	_, _ = s.out.Write(append(b, '\n'))
}

func (s *server) writeRaw(line string) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	_, _ = io.WriteString(s.out, line+"\n")
}

func (s *server) reply(id json.RawMessage, result any) {
	if s.has("garbage") {
		s.writeRaw("this is not json")
		s.writeRaw(`{"hello":"not json-rpc"}`)
		s.writeRaw(`{"jsonrpc":"2.0","id":987654321,"result":{"content":[{"type":"text","text":"wrong id"}]}}`)
	}
	s.write(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
}

func (s *server) replyError(id json.RawMessage, code int, msg string) {
	s.write(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": code, "message": msg}})
}

func (s *server) notify(method string, params any) {
	s.write(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
}

func text(t string) map[string]any {
	return map[string]any{"content": []any{map[string]any{"type": "text", "text": t}}}
}

func (s *server) handle(line []byte) {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		return
	}
	if m.Method == "" { // an answer to one of our requests
		fmt.Fprintf(os.Stderr, "client answered %s %s\n", m.ID, line)
		return
	}
	if len(m.ID) == 0 {
		s.notification(m)
		return
	}
	if d, err := time.ParseDuration(s.mode["slow"]); err == nil && d > 0 {
		time.Sleep(d)
	}
	switch m.Method {
	case "initialize":
		if s.has("no-init") {
			return
		}
		var p struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		_ = json.Unmarshal(m.Params, &p)
		v := p.ProtocolVersion
		if !supported[v] {
			v = "2025-11-25"
		}
		if pv, ok := s.mode["proto"]; ok {
			v = pv
		}
		s.reply(m.ID, map[string]any{
			"protocolVersion": v,
			"capabilities": map[string]any{
				"tools":     map[string]any{"listChanged": true},
				"prompts":   map[string]any{},
				"resources": map[string]any{},
			},
			"serverInfo":   map[string]any{"name": "testprovider", "version": "0.0.1"},
			"instructions": "A test provider.",
		})
	case "ping":
		s.reply(m.ID, map[string]any{})
	case "tools/list":
		s.toolsList(m)
	case "tools/call":
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.call(m)
		}()
	case "prompts/list":
		s.reply(m.ID, map[string]any{"prompts": []any{map[string]any{
			"name": "greet", "description": "Greets someone.",
			"arguments": []any{map[string]any{"name": "who", "required": false}},
		}}})
	case "prompts/get":
		s.reply(m.ID, map[string]any{"messages": []any{map[string]any{
			"role": "user", "content": map[string]any{"type": "text", "text": "Hello!"},
		}}})
	case "resources/list":
		s.reply(m.ID, map[string]any{"resources": []any{map[string]any{
			"uri": "test://hello", "name": "hello", "mimeType": "text/plain",
		}}})
	case "resources/templates/list":
		s.reply(m.ID, map[string]any{"resourceTemplates": []any{}})
	case "resources/read":
		var p struct {
			URI string `json:"uri"`
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.URI != "test://hello" {
			s.replyError(m.ID, -32002, "resource not found")
			return
		}
		s.reply(m.ID, map[string]any{"contents": []any{map[string]any{
			"uri": p.URI, "mimeType": "text/plain", "text": "hello",
		}}})
	default:
		s.replyError(m.ID, -32601, "method not found")
	}
}

func (s *server) notification(m message) {
	switch m.Method {
	case "notifications/cancelled":
		var p struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		_ = json.Unmarshal(m.Params, &p)
		id := string(p.RequestID)
		s.mu.Lock()
		ch, ok := s.inflight[id]
		if ok {
			delete(s.inflight, id)
			close(ch)
		}
		s.mu.Unlock()
		if ok {
			fmt.Fprintf(os.Stderr, "cancelled %s\n", id)
		}
	case "notifications/initialized":
		if s.has("ask-client") {
			s.write(map[string]any{"jsonrpc": "2.0", "id": "tp-ping", "method": "ping"})
			s.write(map[string]any{"jsonrpc": "2.0", "id": "tp-roots", "method": "roots/list"})
			s.write(map[string]any{"jsonrpc": "2.0", "id": "tp-other", "method": "sampling/createMessage", "params": map[string]any{}})
		}
	}
}

var baseTools = []string{"echo", "env", "sleep", "pid", "crash", "add_tool", "log", "fail"}

func tool(name string) map[string]any {
	return map[string]any{
		"name":        name,
		"description": "Test tool " + name + ".",
		"inputSchema": map[string]any{"type": "object", "properties": map[string]any{
			"text": map[string]any{"type": "string"},
			"name": map[string]any{"type": "string"},
			"ms":   map[string]any{"type": "integer"},
		}},
	}
}

func (s *server) toolsList(m message) {
	s.mu.Lock()
	names := append(slices.Clone(baseTools), s.extra...)
	s.mu.Unlock()
	var p struct {
		Cursor string `json:"cursor"`
	}
	_ = json.Unmarshal(m.Params, &p)
	start, _ := strconv.Atoi(p.Cursor)
	end := len(names)
	if n, err := strconv.Atoi(os.Getenv("TP_PAGE_SIZE")); err == nil && n > 0 {
		end = min(start+n, len(names))
	}
	start = min(start, len(names))
	tools := []any{}
	for _, n := range names[start:end] {
		tools = append(tools, tool(n))
	}
	res := map[string]any{"tools": tools}
	if end < len(names) {
		res["nextCursor"] = strconv.Itoa(end)
	}
	s.reply(m.ID, res)
}

func (s *server) call(m message) {
	var p struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
		Meta      struct {
			ProgressToken json.RawMessage `json:"progressToken"`
		} `json:"_meta"`
	}
	_ = json.Unmarshal(m.Params, &p)
	id := string(m.ID)
	cancel := make(chan struct{})
	s.mu.Lock()
	s.inflight[id] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, id)
		s.mu.Unlock()
	}()

	if s.has("foreign-progress") {
		s.notify("notifications/progress", map[string]any{"progressToken": "foreign-token", "progress": 1})
		s.notify("notifications/progress", map[string]any{"progressToken": "sb-999999", "progress": 1})
		s.notify("notifications/progress", map[string]any{"progressToken": 42, "progress": 1})
	}
	if s.has("hang") {
		<-cancel
		return
	}
	str := func(k string) string { v, _ := p.Arguments[k].(string); return v }

	switch p.Name {
	case "echo":
		t := str("text")
		if n, err := strconv.Atoi(s.mode["big"]); err == nil && n > 0 {
			t = strings.Repeat("x", n)
		}
		s.reply(m.ID, text(t))
	case "env":
		if n := str("name"); n != "" {
			s.reply(m.ID, text(os.Getenv(n)))
			return
		}
		env := os.Environ()
		slices.Sort(env)
		s.reply(m.ID, text(strings.Join(env, "\n")))
	case "sleep":
		ms, _ := p.Arguments["ms"].(float64)
		d := time.Duration(ms) * time.Millisecond
		const steps = 5
		tick := time.NewTicker(max(d/steps, time.Millisecond))
		defer tick.Stop()
		deadline := time.After(d)
		sent := 0
	loop:
		for {
			select {
			case <-cancel:
				s.replyError(m.ID, -32800, "request cancelled")
				return
			case <-deadline:
				break loop
			case <-tick.C:
				if len(p.Meta.ProgressToken) > 0 && sent < steps {
					sent++
					s.notify("notifications/progress", map[string]any{
						"progressToken": p.Meta.ProgressToken, "progress": sent, "total": steps,
					})
				}
			}
		}
		s.reply(m.ID, text(fmt.Sprintf("slept %s", d)))
	case "pid":
		s.reply(m.ID, text(strconv.Itoa(os.Getpid())))
	case "log":
		fmt.Fprintln(os.Stderr, str("text"))
		s.reply(m.ID, text("logged"))
	case "fail":
		s.reply(m.ID, map[string]any{"content": []any{map[string]any{"type": "text", "text": str("text")}}, "isError": true})
	case "crash":
		fmt.Fprintln(os.Stderr, "crashing")
		os.Exit(3)
	case "add_tool":
		s.mu.Lock()
		s.extra = append(s.extra, str("name"))
		s.mu.Unlock()
		s.reply(m.ID, text("added"))
		s.notify("notifications/tools/list_changed", map[string]any{})
	default:
		s.replyError(m.ID, -32602, "unknown tool "+p.Name)
	}
	if n, err := strconv.Atoi(s.mode["exit-after"]); err == nil && n > 0 {
		s.mu.Lock()
		s.calls++
		done := s.calls >= n
		s.mu.Unlock()
		if done {
			fmt.Fprintln(os.Stderr, "exiting after calls")
			os.Exit(1)
		}
	}
}
