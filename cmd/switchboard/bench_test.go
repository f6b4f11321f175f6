package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkToolCall measures one tools/call through the whole gateway (edge,
// auth, filter, audit, metrics, supervisor) to the echo provider, over real
// HTTP on loopback, with the audit log on and off. Profile it with:
//
//	go test -run '^$' -bench ToolCall -cpuprofile cpu.out ./cmd/switchboard
//
// bench/cmd/sbbench (make bench) compares the real binary with direct stdio.
func BenchmarkToolCall(b *testing.B) {
	for _, variant := range []struct{ name, extra string }{
		{"full", ""},
		{"audit-off", "audit: {disabled: true}\n"},
	} {
		for _, size := range []int{100, 64 << 10} {
			name := variant.name + "/" + map[int]string{100: "100B", 64 << 10: "64KiB"}[size]
			b.Run(name, func(b *testing.B) {
				benchToolCall(b, variant.extra, size)
			})
		}
	}
}

func benchToolCall(b *testing.B, extra string, size int) {
	g := MustOpenGateway(b, "listen: 127.0.0.1:0\ndata_dir: ./data\nlog: {level: warn}\n"+extra+
		"auth: {rate_limit: {rps: 1000000000, burst: 1000000000}}\nproviders:\n  echo: {command: BIN/echo}\n")
	g.waitReady(b)
	url := g.URL() + "/mcp"
	sid := rawSession(b, url, g.admin())
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"` + strings.Repeat("x", size) + `"}}}`)
	auth := g.admin()["Authorization"]
	client := &http.Client{}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}
