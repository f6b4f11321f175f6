package switchboard

import (
	"encoding/json"

	"github.com/switchboard-mcp/switchboard/internal/jsonrpc"
)

// What the gateway says of itself to a provider, a child on stdio and a
// remote server alike: the newest protocol version of each era, and its
// client side's capabilities.
const (
	// SessionProtocol is the version of the gateway's initialize.
	SessionProtocol = "2025-11-25"
	// StatelessProtocol is the version of the gateway's server/discover and
	// of every request to a provider that speaks it.
	StatelessProtocol = "2026-07-28"
)

// ClientCapabilities is what the gateway tells a provider its client side
// can do: exactly what it relays to the client whose call is in flight
// (sampling, elicitation in form and URL modes), and roots only for an
// instance that serves one user.
func ClientCapabilities(roots bool) json.RawMessage {
	caps := map[string]any{
		"sampling":    map[string]any{},
		"elicitation": map[string]any{"form": map[string]any{}, "url": map[string]any{}},
	}
	if roots {
		caps["roots"] = map[string]any{"listChanged": true}
	}
	b, _ := json.Marshal(caps)
	return b
}

// ClientInfo is the gateway's name and version.
func ClientInfo() json.RawMessage {
	b, _ := json.Marshal(map[string]string{"name": "switchboard", "version": Version})
	return b
}

// InitializeParams is the params of the gateway's initialize request to a
// session-era provider.
func InitializeParams(roots bool) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"protocolVersion": SessionProtocol,
		"capabilities":    ClientCapabilities(roots),
		"clientInfo":      ClientInfo(),
	})
	return b
}

// StatelessMeta is the _meta members, without braces, that every request to
// a 2026-07-28 provider carries: the protocol version, the client
// capabilities and the client info.
func StatelessMeta(roots bool) []byte {
	b := []byte(`"` + jsonrpc.MetaProtocolVersion + `":"` + StatelessProtocol + `","` + jsonrpc.MetaClientCapabilities + `":`)
	b = append(b, ClientCapabilities(roots)...)
	b = append(b, `,"`+jsonrpc.MetaClientInfo+`":`...)
	return append(b, ClientInfo()...)
}
