package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

const skillsConfig = `
listen: 127.0.0.1:0
data_dir: ./data
roles:
  echoer: {providers: [echo]}
providers:
  notes:
    command: BIN/notes
    env: {NOTES_DIR: ./data/notes}
  echo:
    command: BIN/echo
`

func TestSkillsServedThroughMCPAndFiltered(t *testing.T) {
	g := MustOpenGateway(t, skillsConfig)
	g.waitReady(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	c := MustConnect(t, g.URL()+"/mcp", g.admin())
	res, err := c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "skill://notes/SKILL.md"}})
	if err != nil {
		t.Fatalf("reading the notes skill: %v", err)
	}
	txt := res.Contents[0].(mcp.TextResourceContents)
	if txt.MIMEType != "text/markdown" || !strings.Contains(txt.Text, "notes__search_notes") {
		t.Errorf("skill resource: %s %.200s", txt.MIMEType, txt.Text)
	}
	pr, err := c.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{Name: "notes__skill"}})
	if err != nil || len(pr.Messages) == 0 {
		t.Fatalf("notes__skill prompt: %v", err)
	}
	resources := listResourceURIs(t, c)
	if !strings.Contains(resources, "skill://notes/SKILL.md") || !strings.Contains(resources, "skill://echo/SKILL.md") {
		t.Errorf("resources = %s", resources)
	}

	// A caller who cannot see notes cannot see or read its skill, and its
	// instructions index only what it can see.
	ec := MustConnectInit(t, g.URL()+"/mcp", g.userKey(t, "eve", "echoer"), func(r *mcp.InitializeResult) {
		if !strings.Contains(r.Instructions, "skill://echo/SKILL.md") || strings.Contains(r.Instructions, "notes") {
			t.Errorf("instructions for an echo-only user:\n%s", r.Instructions)
		}
	})
	if uris := listResourceURIs(t, ec); strings.Contains(uris, "notes") {
		t.Errorf("echo-only user lists %s", uris)
	}
	if _, err := ec.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "skill://notes/SKILL.md"}}); err == nil {
		t.Error("echo-only user read the notes skill")
	}
	if _, err := ec.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{Name: "notes__skill"}}); err == nil {
		t.Error("echo-only user got the notes__skill prompt")
	}
}

func listResourceURIs(t *testing.T, c *client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range res.Resources {
		out = append(out, r.URI)
	}
	return strings.Join(out, ",")
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	code := 0
	if err != nil {
		code = 1
		if ee, ok := err.(*exitError); ok {
			code = ee.code
			if ee.err != nil {
				out.WriteString(ee.err.Error())
			}
		} else {
			out.WriteString(err.Error())
		}
	}
	return out.String(), code
}

func TestValidateSkills(t *testing.T) {
	long := "---\nname: x\ndescription: d\nprovider: notes\n---\n" + strings.Repeat("word ", 1001)
	tests := []struct {
		name   string
		config string
		files  map[string]string
		want   string
	}{
		{"provider without a skill", "providers:\n  nosk:\n    command: ./x\n", nil, `"nosk"`},
		{"not required", "skills: {required: false}\nproviders:\n  nosk:\n    command: ./x\n", nil, ""},
		{"bad front matter", "skills: {dir: ./sk}\nproviders:\n  notes:\n    command: ./x\n",
			map[string]string{"sk/notes/SKILL.md": "---\nname: n\ncolour: red\n---\nbody\n"}, "colour"},
		{"too long", "skills: {dir: ./sk}\nproviders:\n  notes:\n    command: ./x\n",
			map[string]string{"sk/notes/SKILL.md": long}, "1000"},
		{"orphan folder", "skills: {dir: ./sk}\nproviders:\n  notes:\n    command: ./x\n",
			map[string]string{"sk/ghost/SKILL.md": "---\nname: g\ndescription: d\nprovider: ghost\n---\nbody\n"}, "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				p := filepath.Join(dir, name)
				_ = os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg := filepath.Join(dir, "gateway.yaml")
			if err := os.WriteFile(cfg, []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := runCLI(t, "validate", "--config", cfg)
			if tt.want == "" {
				if code != 0 {
					t.Fatalf("exit %d:\n%s", code, out)
				}
				return
			}
			if code != 1 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, output:\n%s\nwant a problem mentioning %s", code, out, tt.want)
			}
		})
	}
}

// TestShippedConfigsValidate loads the default config and every example
// through the real loader and skill checks, so none of them can rot.
func TestShippedConfigsValidate(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	configs, _ := filepath.Glob(filepath.Join(root, "examples", "*", "gateway.yaml"))
	configs = append(configs, filepath.Join(root, "gateway.yaml"), filepath.Join(root, "deploy", "gateway.yaml"))
	for _, cfg := range configs {
		if _, err := os.Stat(cfg); err != nil {
			continue
		}
		rel, _ := filepath.Rel(root, cfg)
		t.Run(rel, func(t *testing.T) {
			if out, code := runCLI(t, "validate", "--config", cfg); code != 0 {
				t.Errorf("validate %s: exit %d\n%s", rel, code, out)
			}
		})
	}
}
