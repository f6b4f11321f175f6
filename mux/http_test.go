package mux

import (
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

func TestCheckMessage(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
	tests := []struct {
		name string
		body string
		code int
	}{
		{"ok", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"Name":"free","name":"args are the provider's"}}}`, 0},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`, mcp.INVALID_REQUEST},
		{"malformed", `{"jsonrpc":"2.0",`, mcp.PARSE_ERROR},
		{"not object", `"hello"`, mcp.INVALID_REQUEST},
		{"empty", ``, mcp.PARSE_ERROR},
		{"invalid utf8", "{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}", mcp.PARSE_ERROR},
		{"duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, mcp.INVALID_REQUEST},
		{"case variant Name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"allowed","Name":"forbidden"}}`, mcp.INVALID_REQUEST},
		{"case variant Method", `{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`, mcp.INVALID_REQUEST},
		{"unicode fold paramſ", `{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"x"}}`, mcp.INVALID_REQUEST},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, mcp.INVALID_REQUEST},
		{"deep nesting", deep, mcp.INVALID_REQUEST},
		{"trailing", `{"jsonrpc":"2.0","id":1,"method":"ping"} {}`, mcp.PARSE_ERROR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := checkMessage([]byte(tt.body))
			if code != tt.code {
				t.Fatalf("checkMessage code = %d (%s), want %d", code, msg, tt.code)
			}
		})
	}
}
