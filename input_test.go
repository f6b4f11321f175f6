package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// inputRound is an input_required result asking for one elicitation, with
// the state the provider wants back.
const inputRound = `{"resultType":"input_required","inputRequests":{"q":{"method":"elicitation/create","params":{}}},"requestState":"s1"}`

func TestCallWithInput(t *testing.T) {
	t.Run("works a round through and retries with the answers", func(t *testing.T) {
		c := &askingCaller{}
		var sent []string
		req := &Request{Method: "tools/call", Params: json.RawMessage(`{"name":"t","_meta":{"x":1}}`), Caller: c}
		got, err := CallWithInput(context.Background(), req, func(r *Request) (json.RawMessage, error) {
			sent = append(sent, string(r.Params))
			if len(sent) == 1 {
				return json.RawMessage(inputRound), nil
			}
			return json.RawMessage(`{"content":[]}`), nil
		})
		if err != nil || string(got) != `{"content":[]}` {
			t.Fatalf("CallWithInput = %s, %v", got, err)
		}
		if len(sent) != 2 || len(c.asked) != 1 || c.asked[0] != "elicitation/create" {
			t.Fatalf("sent %q, asked %q", sent, c.asked)
		}
		var retry struct {
			Name           string                     `json:"name"`
			Meta           json.RawMessage            `json:"_meta"`
			InputResponses map[string]json.RawMessage `json:"inputResponses"`
			RequestState   string                     `json:"requestState"`
		}
		if err := json.Unmarshal([]byte(sent[1]), &retry); err != nil {
			t.Fatal(err)
		}
		if retry.Name != "t" || retry.Meta != nil || string(retry.InputResponses["q"]) != `"elicitation/create"` || retry.RequestState != "s1" {
			t.Errorf("retry params %s", sent[1])
		}
		if string(req.Params) != `{"name":"t","_meta":{"x":1}}` {
			t.Errorf("the caller's request was changed: %s", req.Params)
		}
	})
	t.Run("a provider that keeps asking is cut off", func(t *testing.T) {
		calls := 0
		_, err := CallWithInput(context.Background(), &Request{Method: "tools/call", Caller: &askingCaller{}}, func(*Request) (json.RawMessage, error) {
			calls++
			return json.RawMessage(inputRound), nil
		})
		if ErrorCode(err) != EUNAVAILABLE || !strings.Contains(err.Error(), "more than") || calls != MaxInputRounds+1 {
			t.Errorf("after %d calls: %v", calls, err)
		}
	})
	t.Run("without a caller the call fails", func(t *testing.T) {
		_, err := CallWithInput(context.Background(), &Request{Method: "tools/call"}, func(*Request) (json.RawMessage, error) {
			return json.RawMessage(inputRound), nil
		})
		if ErrorCode(err) != EUNAVAILABLE {
			t.Errorf("no caller: %v", err)
		}
	})
	t.Run("an error of the call is returned as it is", func(t *testing.T) {
		boom := errors.New("boom")
		if _, err := CallWithInput(context.Background(), &Request{}, func(*Request) (json.RawMessage, error) { return nil, boom }); err != boom {
			t.Errorf("err = %v", err)
		}
	})
}

func TestIsInputRequired(t *testing.T) {
	for raw, want := range map[string]bool{
		inputRound: true,
		`{"content":[{"type":"text","text":"input_required"}]}`:           false,
		`{"resultType":"complete","note":"input_required"}`:               false,
		`{"content":[],"resultType":"input_required","inputRequests":{}}`: true,
	} {
		if got := IsInputRequired([]byte(raw)); got != want {
			t.Errorf("IsInputRequired(%s) = %v, want %v", raw, got, want)
		}
	}
}
