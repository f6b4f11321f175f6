package e2e

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sampleObs is what v1.mjs sample observes: the texts of the sampling
// requests its handler received, and its asker__sample call's outcome.
type sampleObs struct {
	Received []string    `json:"received"`
	Result   *toolResult `json:"result"`
	Error    string      `json:"error"`
}

// TestSharedChildSampling proves that a shared child's sampling request
// reaches only the client whose call caused it. Two users call asker__sample
// on the one shared asker process at the same time (asker holds both calls
// until both have arrived, then asks the client for each); each user's
// sampling handler answers with its own name.
func TestSharedChildSampling(t *testing.T) {
	needNPM(t)
	needPackage(t, "@modelcontextprotocol/sdk")
	t.Parallel()
	g := startGateway(t, `
providers:
  asker:
    command: $BIN/asker
`)
	g.waitRunning("asker")
	users := []string{"alice", "bob"}
	env := map[string][]string{}
	for _, u := range users {
		env[u] = []string{"SB_USER=" + u, "SB_KEY_" + strings.ToUpper(u) + "=" + g.addUser(u)}
	}
	answer := func(u string) string {
		return fmt.Sprintf("answer to %s: %s answered question from %s (model e2e-model)", u, u, u)
	}

	// Either each user gets its own request relayed, or its call fails with
	// a clear error; no handler ever sees the other user's question.
	t.Run("concurrent", func(t *testing.T) {
		group := fmt.Sprintf("pair-%d", time.Now().UnixNano())
		type run struct {
			out, errb bytes.Buffer
			done      chan error
		}
		runs := map[string]*run{}
		for _, u := range users {
			r := &run{done: make(chan error, 1)}
			cmd := scriptCmd(t, g, "v1.mjs", "sample", append(env[u], "SB_GROUP="+group, "SB_WAIT_FOR=2")...)
			cmd.Stdout, cmd.Stderr = &r.out, &r.errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { r.done <- cmd.Wait() }()
			runs[u] = r
		}
		refused := regexp.MustCompile(`^sampling refused: -?\d+ \S`)
		for _, u := range users {
			r := runs[u]
			var o sampleObs
			decode(t, scriptResult(t, "v1.mjs", "sample "+u, <-r.done, r.out.Bytes(), r.errb.String()), &o)
			for _, q := range o.Received {
				if q != "question from "+u {
					t.Errorf("%s's sampling handler received %q, caused by another user's call", u, q)
				}
			}
			switch {
			case o.Error != "":
				t.Logf("%s's call failed with a protocol error: %s", u, o.Error)
			case o.Result.IsError:
				// The barrier passed (both calls were in flight on the
				// child) and the gateway refused the child's request.
				if !refused.MatchString(o.Result.text()) {
					t.Errorf("%s's call = tool error %q, want the gateway's refusal of the sampling request", u, o.Result.text())
				}
			default:
				if got := o.Result.text(); got != answer(u) || len(o.Received) != 1 {
					t.Errorf("%s's call = %q after %d requests, want %q after 1", u, got, len(o.Received), answer(u))
				}
			}
		}
	})

	// One user's call alone on the shared child gets its request relayed.
	t.Run("sequential", func(t *testing.T) {
		var o sampleObs
		decode(t, script(t, g, "v1.mjs", "sample", append(env["alice"], "SB_GROUP=alone", "SB_WAIT_FOR=1")...), &o)
		if len(o.Received) != 1 || o.Received[0] != "question from alice" {
			t.Errorf("alice's sampling handler received %q, want [\"question from alice\"]", o.Received)
		}
		if o.Error != "" || o.Result == nil || o.Result.IsError || o.Result.text() != answer("alice") {
			t.Errorf("alice's call = %s %q, want %q", o.Error, o.Result.text(), answer("alice"))
		}
	})
}
