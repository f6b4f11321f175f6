package jsonrpc

import "encoding/json"

// The scanner's tests were written for the edge's scanMessage, which read a
// fixed envelope; these adapters keep them checking Parse against the same
// references.

const maxDepth = EdgeDepth

var knownKeys = KnownKeys

// fastEnvelope is the envelope the old edge read, filled from a Message.
type fastEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
		Meta      json.RawMessage `json:"_meta"`
	} `json:"params"`
	params   json.RawMessage
	progress bool
}

func checkMessage(body []byte) (int, string) {
	var m Message
	if err := Parse(body, &m, EdgeDepth); err != nil {
		return err.Code, err.Message
	}
	return 0, ""
}

func scanMessage(body []byte, fe *fastEnvelope) (int, string) {
	var m Message
	err := Parse(body, &m, EdgeDepth)
	*fe = fastEnvelope{}
	if err != nil {
		return err.Code, err.Message
	}
	fe.JSONRPC, fe.ID, fe.Method, fe.params = m.JSONRPC, m.ID, m.Method, m.Params
	fe.Params.Name, fe.Params.Arguments, fe.Params.Meta = m.P.Name, m.P.Arguments, m.P.Meta
	meta := m.P.Meta
	fe.progress = len(meta) > 0 && string(meta) != "null" && (meta[0] != '{' || m.P.M.ProgressToken != nil)
	return 0, ""
}

func validJSON(b []byte) bool { return Valid(b) }

func isErrorResult(raw []byte) bool { return ResultIsError(raw) }
