package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// HandlerLatencies reads the gateway's access log (its JSON log lines, in
// LogFile) and returns the latency of every "mcp request" line for method
// whose principal starts with principalPrefix. That latency is the time the
// request spent in the gateway's MCP handler, after the HTTP request was read
// and authenticated, up to the answer's flush and its bookkeeping; it leaves
// out the network, the HTTP parsing and the client's own work.
func (e *Env) HandlerLatencies(method, principalPrefix string) ([]time.Duration, error) {
	f, err := os.Open(e.LogFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue // the startup banner is plain text
		}
		var l struct {
			Message   string   `json:"message"`
			Method    string   `json:"method"`
			Principal string   `json:"principal"`
			Latency   *float64 `json:"latency"` // zerolog's default: milliseconds
		}
		if json.Unmarshal(line, &l) != nil || l.Message != "mcp request" || l.Method != method ||
			!strings.HasPrefix(l.Principal, principalPrefix) {
			continue
		}
		if l.Latency == nil {
			return nil, fmt.Errorf("%s: access-log line without a latency: %.200s", e.LogFile, line)
		}
		out = append(out, time.Duration(*l.Latency*float64(time.Millisecond)))
	}
	return out, sc.Err()
}

// WaitHandlerLatencies is HandlerLatencies once the log holds at least n such
// lines. The gateway writes a request's line just after flushing its answer,
// so the client can have the answer a moment before the line is in the file.
func (e *Env) WaitHandlerLatencies(ctx context.Context, method, principalPrefix string, n int) ([]time.Duration, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		lat, err := e.HandlerLatencies(method, principalPrefix)
		if err != nil || len(lat) >= n {
			return lat, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %d access-log lines for %s after 5s, want %d", e.LogFile, len(lat), method, n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
