package switchboard

import (
	"encoding/json"
	"testing"
)

func TestClientCapabilitiesAreWhatTheGatewayRelays(t *testing.T) {
	for _, roots := range []bool{false, true} {
		var caps map[string]json.RawMessage
		if err := json.Unmarshal(ClientCapabilities(roots), &caps); err != nil {
			t.Fatal(err)
		}
		if string(caps["sampling"]) != `{}` || string(caps["elicitation"]) != `{"form":{},"url":{}}` {
			t.Errorf("roots %v: %s", roots, ClientCapabilities(roots))
		}
		if _, ok := caps["roots"]; ok != roots || len(caps) != 2+map[bool]int{true: 1}[roots] {
			t.Errorf("roots %v: %s", roots, ClientCapabilities(roots))
		}
	}
}

func TestHandshakeParams(t *testing.T) {
	var init struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      struct {
			Name, Version string
		} `json:"clientInfo"`
	}
	if err := json.Unmarshal(InitializeParams(true), &init); err != nil {
		t.Fatal(err)
	}
	if init.ProtocolVersion != SessionProtocol || string(init.Capabilities) != string(ClientCapabilities(true)) || init.ClientInfo.Name != "switchboard" || init.ClientInfo.Version != Version {
		t.Errorf("initialize params %s", InitializeParams(true))
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(append(append([]byte("{"), StatelessMeta(false)...), '}'), &meta); err != nil {
		t.Fatalf("_meta members %s: %v", StatelessMeta(false), err)
	}
	if string(meta["io.modelcontextprotocol/protocolVersion"]) != `"`+StatelessProtocol+`"` ||
		string(meta["io.modelcontextprotocol/clientCapabilities"]) != string(ClientCapabilities(false)) ||
		string(meta["io.modelcontextprotocol/clientInfo"]) != string(ClientInfo()) || len(meta) != 3 {
		t.Errorf("_meta members %s", StatelessMeta(false))
	}
}
