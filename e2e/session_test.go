package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// everythingDir is the installed server-everything package.
func everythingDir(t testing.TB) string {
	return needPackage(t, "@modelcontextprotocol/server-everything")
}

// tinyImage is server-everything's MCP_TINY_IMAGE, read from its source.
func tinyImage(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(everythingDir(t), "dist", "tools", "get-tiny-image.js"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`MCP_TINY_IMAGE = "([A-Za-z0-9+/=]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no MCP_TINY_IMAGE in server-everything's get-tiny-image.js")
	}
	return string(m[1])
}

// logParams is a notifications/message.
type logParams struct {
	Level  string `json:"level"`
	Logger string `json:"logger"`
	Data   any    `json:"data"`
	// BeforeResponse: it arrived before the response to the call that
	// caused it (asker's logs only).
	BeforeResponse bool `json:"beforeResponse"`
}

// namespaced reports whether logger names provider prefix: the prefix alone
// or the prefix, a separator and the child's own logger.
func namespaced(logger, prefix, child string) bool {
	if child == "" {
		return logger == prefix || regexp.MustCompile(`^`+regexp.QuoteMeta(prefix)+`[_/.:]`).MatchString(logger)
	}
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `(__|[/.:])` + regexp.QuoteMeta(child) + `$`).MatchString(logger)
}

// TestSessionClient drives the gateway with the TypeScript SDK's v1 client
// (@modelcontextprotocol/sdk) over streamable HTTP with an API key, through
// the prefixed names of server-everything and asker. It covers what the
// conformance runner's tools-call scenarios test by bare names, and the
// rest of the session-era surface a client uses.
func TestSessionClient(t *testing.T) {
	needNPM(t)
	t.Parallel()
	g := startGateway(t, `
providers:
  everything:
    command: $NPM/mcp-server-everything
  asker:
    command: $BIN/asker
`)
	g.waitRunning("everything", "asker")
	run := func(t *testing.T, scenario string, v any) {
		t.Helper()
		decode(t, script(t, g, "v1.mjs", scenario), v)
	}

	t.Run("text", func(t *testing.T) {
		var c callObs
		run(t, "text", &c)
		res := c.ok(t, "everything__echo")
		if len(res.Content) != 1 || res.Content[0].Type != "text" || res.Content[0].Text != "Echo: héllo through switchboard" {
			t.Errorf("everything__echo content = %+v, want one text block \"Echo: héllo through switchboard\"", res.Content)
		}
	})

	t.Run("image", func(t *testing.T) {
		var c callObs
		run(t, "image", &c)
		res := c.ok(t, "everything__get-tiny-image")
		want := []content{
			{Type: "text", Text: "Here's the image you requested:"},
			{Type: "image", Data: tinyImage(t), MimeType: "image/png"},
			{Type: "text", Text: "The image above is the MCP logo."},
		}
		if !sameContent(res.Content, want) {
			t.Errorf("everything__get-tiny-image content = %s", brief(res.Content))
		}
	})

	t.Run("audio", func(t *testing.T) {
		var c callObs
		run(t, "audio", &c)
		res := c.ok(t, "asker__audio")
		want := []content{{Type: "audio", Data: "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=", MimeType: "audio/wav"}}
		if !sameContent(res.Content, want) {
			t.Errorf("asker__audio content = %s", brief(res.Content))
		}
	})

	t.Run("embedded", func(t *testing.T) {
		var c callObs
		run(t, "embedded", &c)
		res := c.ok(t, "everything__get-resource-reference")
		if len(res.Content) != 3 || res.Content[1].Type != "resource" || res.Content[1].Resource == nil {
			t.Fatalf("everything__get-resource-reference content = %s, want text, resource, text", brief(res.Content))
		}
		r := res.Content[1].Resource
		if r.URI != "demo://resource/dynamic/text/3" || r.MimeType != "text/plain" || !strings.HasPrefix(r.Text, "Resource 3: This is a plaintext resource created at ") {
			t.Errorf("embedded resource = %+v", r)
		}
		if res.Content[2].Text != "You can access this resource using the URI: demo://resource/dynamic/text/3" {
			t.Errorf("third block = %q", res.Content[2].Text)
		}
	})

	t.Run("mixed", func(t *testing.T) {
		var c callObs
		run(t, "mixed", &c)
		res := c.ok(t, "everything__get-annotated-message")
		if len(res.Content) != 2 {
			t.Fatalf("content = %s, want text and image", brief(res.Content))
		}
		txt, img := res.Content[0], res.Content[1]
		if txt.Type != "text" || txt.Text != "Error: Operation failed" || txt.Annotations == nil ||
			txt.Annotations.Priority != 1 || !slices.Equal(txt.Annotations.Audience, []string{"user", "assistant"}) {
			t.Errorf("text block = %+v (annotations %+v)", txt, txt.Annotations)
		}
		if img.Type != "image" || img.MimeType != "image/png" || img.Data != tinyImage(t) || img.Annotations == nil ||
			img.Annotations.Priority != 0.5 || !slices.Equal(img.Annotations.Audience, []string{"user"}) {
			t.Errorf("image block = %s (annotations %+v)", brief([]content{img}), img.Annotations)
		}
	})

	t.Run("toolError", func(t *testing.T) {
		var c callObs
		run(t, "toolError", &c)
		if c.Error != "" || c.Result == nil {
			t.Fatalf("want a tool error result, got protocol error %d: %s", c.Code, c.Error)
		}
		if !c.Result.IsError || c.Result.text() != "Invalid resourceId: -1. Must be a finite positive integer." {
			t.Errorf("result = isError %v, %q", c.Result.IsError, c.Result.text())
		}
	})

	t.Run("logging", func(t *testing.T) {
		type side struct {
			Result *toolResult `json:"result"`
			Error  string      `json:"error"`
			Logs   []logParams `json:"logs"`
		}
		var o struct {
			SetDebug   attemptObs[json.RawMessage] `json:"setDebug"`
			SetError   attemptObs[json.RawMessage] `json:"setError"`
			Everything side                        `json:"everything"`
			Asker      side                        `json:"asker"`
		}
		run(t, "logging", &o)
		o.SetDebug.ok(t, "logging/setLevel debug")
		o.SetError.ok(t, "logging/setLevel error")
		// server-everything logs one random-level message, without a
		// logger, while the toggle call is in flight.
		if o.Everything.Error != "" || !strings.HasPrefix(o.Everything.Result.text(), "Started simulated, random-leveled logging") {
			t.Fatalf("everything__toggle-simulated-logging = %q %s", o.Everything.Result.text(), o.Everything.Error)
		}
		if len(o.Everything.Logs) == 0 {
			t.Error("no notifications/message arrived within 15s of everything__toggle-simulated-logging at level debug (its first is sent during the call)")
		}
		for _, l := range o.Everything.Logs {
			if d, _ := l.Data.(string); !regexp.MustCompile(`(?i)level.message`).MatchString(d) || !namespaced(l.Logger, "everything", "") {
				t.Errorf("log from everything = %+v, want data \"<Level>-level message\" and logger \"everything\"", l)
			}
		}
		// At level error, asker__log's info message is dropped and its
		// error message arrives, with asker's logger "worker" namespaced.
		// (The child sends info first: had it been forwarded, it would have
		// arrived before the error one.)
		if o.Asker.Error != "" || o.Asker.Result.text() != "logged" {
			t.Fatalf("asker__log = %q %s", o.Asker.Result.text(), o.Asker.Error)
		}
		if len(o.Asker.Logs) != 1 || o.Asker.Logs[0].Level != "error" || o.Asker.Logs[0].Data != "error during call" || !namespaced(o.Asker.Logs[0].Logger, "asker", "worker") {
			t.Errorf("logs during asker__log at level error = %+v, want only {error, asker/worker, \"error during call\"}", o.Asker.Logs)
		}
	})

	t.Run("progress", func(t *testing.T) {
		type progress struct {
			Progress      float64         `json:"progress"`
			Total         float64         `json:"total"`
			ProgressToken json.RawMessage `json:"progressToken,omitempty"`
		}
		var o struct {
			callObs
			OnProgress []progress `json:"onprogress"`
			Progress   []progress `json:"progress"`
		}
		run(t, "progress", &o)
		if got := o.ok(t, "everything__trigger-long-running-operation").text(); got != "Long running operation completed. Duration: 0.3 seconds, Steps: 3." {
			t.Errorf("result = %q", got)
		}
		// The client's own token is its request id; all three steps arrive
		// before the result.
		if len(o.Progress) != 3 {
			b, _ := json.Marshal(o.Progress)
			t.Fatalf("%d notifications/progress before the result, want 3: %s", len(o.Progress), b)
		}
		for i, p := range o.Progress {
			if p.Progress != float64(i+1) || p.Total != 3 || string(p.ProgressToken) != string(o.ID) {
				t.Errorf("progress %d = {%v/%v token %s}, want {%d/3 token %s}", i, p.Progress, p.Total, p.ProgressToken, i+1, o.ID)
			}
		}
		if len(o.OnProgress) != 3 {
			t.Errorf("the SDK's onprogress saw %d notifications, want 3", len(o.OnProgress))
		}
	})

	t.Run("sampling", func(t *testing.T) {
		var o struct {
			Listed   bool `json:"listed"`
			Received []struct {
				Messages []struct {
					Role    string  `json:"role"`
					Content content `json:"content"`
				} `json:"messages"`
				SystemPrompt string `json:"systemPrompt"`
				MaxTokens    int    `json:"maxTokens"`
			} `json:"received"`
			Result *toolResult `json:"result"`
			Error  string      `json:"error"`
		}
		run(t, "sampling", &o)
		if !o.Listed {
			t.Error("a client that advertises sampling is not offered everything__trigger-sampling-request")
		}
		if len(o.Received) != 1 {
			t.Fatalf("the client's sampling handler got %d requests, want 1 (call error: %s)", len(o.Received), o.Error)
		}
		r := o.Received[0]
		if len(r.Messages) != 1 || r.Messages[0].Content.Text != "Resource trigger-sampling-request context: e2e-sampling-prompt" ||
			r.MaxTokens != 7 || r.SystemPrompt != "You are a helpful test server." {
			t.Errorf("sampling request = %+v", r)
		}
		if o.Error != "" || o.Result == nil || o.Result.IsError {
			t.Fatalf("call: %s %+v", o.Error, o.Result)
		}
		if txt := o.Result.text(); !strings.HasPrefix(txt, "LLM sampling result: ") || !strings.Contains(txt, `"text": "e2e-sampled-answer"`) || !strings.Contains(txt, `"model": "e2e-model"`) {
			t.Errorf("result = %q, want the handler's answer and model", txt)
		}
	})

	t.Run("elicitation", func(t *testing.T) {
		var o struct {
			Listed   bool `json:"listed"`
			Received []struct {
				Message         string `json:"message"`
				RequestedSchema struct {
					Properties map[string]struct {
						Type    string            `json:"type"`
						Default json.RawMessage   `json:"default"`
						Enum    []string          `json:"enum"`
						OneOf   []json.RawMessage `json:"oneOf"`
						Names   []string          `json:"enumNames"`
					} `json:"properties"`
					Required []string `json:"required"`
				} `json:"requestedSchema"`
			} `json:"received"`
			Result *toolResult `json:"result"`
			Error  string      `json:"error"`
		}
		run(t, "elicitation", &o)
		if !o.Listed {
			t.Error("a client that advertises elicitation is not offered everything__trigger-elicitation-request")
		}
		if len(o.Received) != 1 {
			t.Fatalf("the client's elicitation handler got %d requests, want 1 (call error: %s)", len(o.Received), o.Error)
		}
		s := o.Received[0].RequestedSchema
		p := s.Properties
		for name, want := range map[string]string{
			"firstLine":                  `"It was a dark and stormy night."`,
			"integer":                    `42`,
			"number":                     `3.14`,
			"untitledSingleSelectEnum":   `"Monica"`,
			"untitledMultipleSelectEnum": `["Guitar"]`,
			"titledSingleSelectEnum":     `"hero-1"`,
			"legacyTitledEnum":           `"pet-1"`,
		} {
			if string(p[name].Default) != want {
				t.Errorf("requestedSchema.%s.default = %s, want %s", name, p[name].Default, want)
			}
		}
		if !slices.Equal(p["untitledSingleSelectEnum"].Enum, []string{"Monica", "Rachel", "Joey", "Chandler", "Ross", "Phoebe"}) ||
			len(p["titledSingleSelectEnum"].OneOf) != 3 ||
			!slices.Equal(p["legacyTitledEnum"].Names, []string{"Cats", "Dogs", "Birds", "Fish", "Reptiles"}) ||
			!slices.Equal(s.Required, []string{"name"}) {
			t.Errorf("requestedSchema enums/required lost on the way: %+v", s)
		}
		if o.Error != "" || o.Result == nil || o.Result.IsError {
			t.Fatalf("call: %s %+v", o.Error, o.Result)
		}
		txt := o.Result.text()
		for _, want := range []string{
			"✅ User provided the requested information!", "- Name: E2E Tester", "- Agreed to terms: true",
			"- Favorite Integer: 42", "- Favorite Number: 3.14",
			`"untitledSingleSelectEnum": "Joey"`, `"titledSingleSelectEnum": "hero-2"`, `"legacyTitledEnum": "pet-2"`,
		} {
			if !strings.Contains(txt, want) {
				t.Errorf("result lacks %q:\n%s", want, txt)
			}
		}
	})

	t.Run("noSampling", func(t *testing.T) {
		var o map[string]struct {
			Result *toolResult `json:"result"`
			Error  string      `json:"error"`
			MS     int         `json:"ms"`
		}
		run(t, "noSampling", &o)
		for _, name := range []string{"everything__trigger-sampling-request", "asker__sample"} {
			r := o[name]
			failed := r.Error != "" || (r.Result != nil && r.Result.IsError)
			msg := r.Error + r.Result.text()
			if !failed || strings.TrimSpace(msg) == "" {
				t.Errorf("%s from a client without sampling = %+v, want an error that says why", name, r)
			}
			if time.Duration(r.MS)*time.Millisecond > 30*time.Second {
				t.Errorf("%s took %dms to fail: it must not wait for an answer that cannot come", name, r.MS)
			}
		}
		// asker's tool error carries the gateway's JSON-RPC error answer to
		// the child's sampling/createMessage.
		if txt := o["asker__sample"].Result.text(); !regexp.MustCompile(`^sampling refused: -?\d+ \S`).MatchString(txt) {
			t.Errorf("asker__sample = %q, want the gateway's refusal of the sampling request", txt)
		}
	})

	t.Run("subscribe", func(t *testing.T) {
		var o struct {
			SubA     attemptObs[json.RawMessage] `json:"subA"`
			SubB     attemptObs[json.RawMessage] `json:"subB"`
			Arrived  bool                        `json:"arrived"`
			X        string                      `json:"x"`
			Y        string                      `json:"y"`
			UpdatesA []string                    `json:"updatesA"`
			UpdatesB []string                    `json:"updatesB"`
		}
		run(t, "subscribe", &o)
		o.SubA.ok(t, "resources/subscribe "+o.X)
		o.SubB.ok(t, "resources/subscribe "+o.Y)
		if !o.Arrived {
			t.Errorf("two rounds of notifications/resources/updated did not arrive within 20s: A got %v, B got %v", o.UpdatesA, o.UpdatesB)
		}
		for _, u := range o.UpdatesA {
			if u != o.X {
				t.Errorf("session A, subscribed to %s only, got an update for %s", o.X, u)
			}
		}
		for _, u := range o.UpdatesB {
			if u != o.Y {
				t.Errorf("session B, subscribed to %s only, got an update for %s", o.Y, u)
			}
		}
	})

	t.Run("completion", func(t *testing.T) {
		type completion struct {
			Completion struct {
				Values []string `json:"values"`
			} `json:"completion"`
		}
		var o struct {
			Template   string                 `json:"template"`
			Department attemptObs[completion] `json:"department"`
			Member     attemptObs[completion] `json:"member"`
			ResourceID attemptObs[completion] `json:"resourceId"`
		}
		run(t, "completion", &o)
		if got := o.Department.ok(t, "complete everything__completable-prompt department").Completion.Values; !slices.Equal(got, []string{"Engineering"}) {
			t.Errorf("department \"Eng\" completes to %q, want [Engineering]", got)
		}
		if got := o.Member.ok(t, "complete everything__completable-prompt name").Completion.Values; !slices.Equal(got, []string{"David", "Eve", "Frank"}) {
			t.Errorf("name in Sales completes to %q, want [David Eve Frank]", got)
		}
		if o.Template == "" {
			t.Fatal("resources/templates/list has no .../text/{resourceId} template")
		}
		if got := o.ResourceID.ok(t, "complete "+o.Template).Completion.Values; !slices.Equal(got, []string{"7"}) {
			t.Errorf("resourceId \"7\" of %s completes to %q, want [7]", o.Template, got)
		}
	})

	t.Run("prompts", func(t *testing.T) {
		type prompt struct {
			Messages []struct {
				Role    string  `json:"role"`
				Content content `json:"content"`
			} `json:"messages"`
		}
		var o struct {
			Args        attemptObs[prompt] `json:"args"`
			Completable attemptObs[prompt] `json:"completable"`
		}
		run(t, "prompts", &o)
		for _, c := range []struct {
			name string
			got  attemptObs[prompt]
			want string
		}{
			{"everything__args-prompt", o.Args, "What's weather in Lisbon, PT?"},
			{"everything__completable-prompt", o.Completable, "Please promote Eve to the head of the Sales team."},
		} {
			p := c.got.ok(t, "prompts/get "+c.name)
			if len(p.Messages) != 1 || p.Messages[0].Role != "user" || p.Messages[0].Content.Text != c.want {
				t.Errorf("prompts/get %s = %+v, want one user message %q", c.name, p.Messages, c.want)
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		type read struct {
			Contents []resourceContents `json:"contents"`
		}
		var o struct {
			Dynamic attemptObs[read] `json:"dynamic"`
			Static  attemptObs[read] `json:"static"`
		}
		run(t, "resources", &o)
		d := o.Dynamic.ok(t, "resources/read demo://resource/dynamic/text/5")
		if len(d.Contents) != 1 || d.Contents[0].URI != "demo://resource/dynamic/text/5" || !strings.HasPrefix(d.Contents[0].Text, "Resource 5: This is a plaintext resource created at ") {
			t.Errorf("dynamic resource = %+v", d.Contents)
		}
		want, err := os.ReadFile(filepath.Join(everythingDir(t), "dist", "docs", "architecture.md"))
		if err != nil {
			t.Fatal(err)
		}
		s := o.Static.ok(t, "resources/read demo://resource/static/document/architecture.md")
		if len(s.Contents) != 1 || s.Contents[0].MimeType != "text/markdown" || s.Contents[0].Text != string(want) {
			t.Errorf("static resource differs from server-everything's docs/architecture.md (%d contents)", len(s.Contents))
		}
	})
}

// sameContent compares content blocks by type, text, data and MIME type.
func sameContent(got, want []content) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Type != w.Type || g.Text != w.Text || g.Data != w.Data || g.MimeType != w.MimeType {
			return false
		}
	}
	return true
}

// brief renders content blocks with long data cut short.
func brief(cs []content) string {
	var parts []string
	for _, c := range cs {
		d := c.Data
		if len(d) > 24 {
			d = d[:24] + "…"
		}
		parts = append(parts, c.Type+"{text="+c.Text+" data="+d+" mime="+c.MimeType+"}")
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
