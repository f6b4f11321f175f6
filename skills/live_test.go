package skills

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A liveServer starts the real provider behind a built-in skill. start returns
// the argv and extra environment, or skips the test when the server is not
// available on this machine.
type liveServer struct {
	kind  string // servers of the same kind are started once
	start func(t *testing.T, tmp string) (argv, env []string)
}

var (
	goBins   = map[string]string{}
	goBinsMu sync.Mutex
)

// mustGoBinary builds one of the repository's example providers once per run.
func mustGoBinary(t *testing.T, name string) string {
	t.Helper()
	goBinsMu.Lock()
	defer goBinsMu.Unlock()
	if p, ok := goBins[name]; ok {
		return p
	}
	src := filepath.Join("..", "examples", "providers", name)
	if _, err := os.Stat(src); err != nil {
		t.Skipf("example provider %s is not in this tree: %v", name, err)
	}
	dir, err := os.MkdirTemp("", "skills-live-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", p, "./"+filepath.ToSlash(src))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	goBins[name] = p
	return p
}

// npmServer returns argv for a reference server installed under e2e/node_modules.
func npmServer(t *testing.T, pkg string, args ...string) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	js, err := filepath.Abs(filepath.Join("..", "e2e", "node_modules", "@modelcontextprotocol", pkg, "dist", "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(js); err != nil {
		t.Skipf("%s is not installed (run npm ci in e2e/): %v", pkg, err)
	}
	return append([]string{node, js}, args...)
}

var (
	fsServer = liveServer{kind: "filesystem", start: func(t *testing.T, tmp string) ([]string, []string) {
		return npmServer(t, "server-filesystem", tmp), nil
	}}
	memoryServer = liveServer{kind: "memory", start: func(t *testing.T, tmp string) ([]string, []string) {
		return npmServer(t, "server-memory"), []string{"MEMORY_FILE_PATH=" + filepath.Join(tmp, "memory.jsonl")}
	}}
)

// liveServers maps every built-in provider skill to the server it documents.
var liveServers = map[string]liveServer{
	"notes": {kind: "notes", start: func(t *testing.T, tmp string) ([]string, []string) {
		return []string{mustGoBinary(t, "notes")}, []string{"NOTES_DIR=" + tmp}
	}},
	"echo": {kind: "echo", start: func(t *testing.T, tmp string) ([]string, []string) {
		return []string{mustGoBinary(t, "echo")}, nil
	}},
	"filesystem": fsServer,
	"memory":     memoryServer,
	"github": {kind: "github", start: func(t *testing.T, tmp string) ([]string, []string) {
		return npmServer(t, "server-github"), nil // tools/list needs no token
	}},
	"everything": {kind: "everything", start: func(t *testing.T, tmp string) ([]string, []string) {
		return npmServer(t, "server-everything", "stdio"), nil
	}},
}

// TestSkillsNameLiveTools starts the real server behind every built-in provider
// skill and checks that each tool and prompt the skill names exists.
func TestSkillsNameLiveTools(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real provider processes")
	}
	set, errs := Load(Builtin(), "")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	t.Cleanup(func() {
		for _, p := range goBins {
			os.RemoveAll(filepath.Dir(p))
		}
	})
	names := map[string][]string{} // kind → live tool and prompt names
	for _, prefix := range sortedKeys(set.Providers) {
		t.Run(prefix, func(t *testing.T) {
			srv, ok := liveServers[prefix]
			if !ok {
				t.Fatalf("no live server for built-in skill %q: add it to liveServers", prefix)
			}
			live, ok := names[srv.kind]
			if !ok {
				tmp := t.TempDir()
				argv, env := srv.start(t, tmp)
				var err error
				live, err = listNames(t, argv, append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp}, env...))
				if err != nil {
					t.Fatal(err)
				}
				names[srv.kind] = live
			}
			if stale := StaleTools(set.Get(prefix), prefix, live); len(stale) > 0 {
				t.Errorf("the skill names tools or prompts the server does not have: %v (server has %v)", stale, live)
			}
		})
	}
}

// listNames runs argv as a stdio MCP server and returns its tool and prompt names.
func listNames(t *testing.T, argv, env []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	cmd.Stderr = io.Discard
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %v: %w", argv, err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	r := bufio.NewReaderSize(stdout, 1<<20)
	enc := json.NewEncoder(stdin)
	id := 0
	call := func(method string, params any) (json.RawMessage, error) {
		id++
		if err := enc.Encode(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return nil, fmt.Errorf("%s: reading: %w", method, err)
			}
			var msg struct {
				ID     *int            `json:"id"`
				Result json.RawMessage `json:"result"`
				Error  *struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(line, &msg) != nil || msg.ID == nil || *msg.ID != id {
				continue // a notification, or a request we do not answer
			}
			if msg.Error != nil {
				return nil, fmt.Errorf("%s: %s", method, msg.Error.Message)
			}
			return msg.Result, nil
		}
	}
	res, err := call("initialize", map[string]any{
		"protocolVersion": "2025-06-18",
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "skills-test", "version": "0"},
	})
	if err != nil {
		return nil, err
	}
	var init struct {
		Capabilities struct {
			Prompts *struct{} `json:"prompts"`
		} `json:"capabilities"`
	}
	if err := json.Unmarshal(res, &init); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if err := enc.Encode(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}); err != nil {
		return nil, err
	}
	var names []string
	list := func(method, field string) error {
		cursor := ""
		for {
			params := map[string]any{}
			if cursor != "" {
				params["cursor"] = cursor
			}
			res, err := call(method, params)
			if err != nil {
				return err
			}
			var page map[string]json.RawMessage
			if err := json.Unmarshal(res, &page); err != nil {
				return fmt.Errorf("%s: %w", method, err)
			}
			var items []struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(page[field], &items); err != nil {
				return fmt.Errorf("%s: %w", method, err)
			}
			for _, it := range items {
				names = append(names, it.Name)
			}
			cursor = ""
			if c, ok := page["nextCursor"]; ok {
				_ = json.Unmarshal(c, &cursor)
			}
			if cursor == "" {
				return nil
			}
		}
	}
	if err := list("tools/list", "tools"); err != nil {
		return nil, err
	}
	if init.Capabilities.Prompts != nil {
		if err := list("prompts/list", "prompts"); err != nil {
			return nil, err
		}
	}
	return names, nil
}
