package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/statuspage"
)

// TestStatusPageRendersInChromium opens the status page of a running gateway
// in headless Chromium (Debian's package; .ci/run installs it) and checks the
// rendered page shows the providers and their states. Chromium cannot send an
// Authorization header from the command line, so the test serves the same
// handler, fed by the live gateway, on a second loopback server.
func TestStatusPageRendersInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts a browser")
	}
	browser, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run should install Debian's chromium package")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	g := MustOpenGateway(t, `
listen: 127.0.0.1:0
data_dir: ./data
providers:
  notes: {command: BIN/notes, env: {NOTES_DIR: ./data/notes}}
  broken: {command: BIN/testprovider, env: {TP_MODE: exit-now}}
`)
	g.waitReady(t)
	srv := httptest.NewServer(statuspage.Handler(g.status))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	shot := filepath.Join(t.TempDir(), "status.png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,900"}
	out, err := exec.CommandContext(ctx, browser, append(args, "--dump-dom", srv.URL+"/status")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	dom := string(out)
	for _, want := range []string{"notes", "broken", "running", "failed", "Switchboard"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if err := exec.CommandContext(ctx, browser, append(args, "--screenshot="+shot, srv.URL+"/status")...).Run(); err != nil {
		t.Fatalf("chromium --screenshot: %v", err)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 5000 {
		t.Errorf("screenshot missing or blank: %v", err)
	}
	if dir := os.Getenv("SWITCHBOARD_SCREENSHOT_DIR"); dir != "" {
		b, _ := os.ReadFile(shot)
		_ = os.WriteFile(filepath.Join(dir, "status.png"), b, 0o644)
	}
	resp, err := http.Get(g.URL() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the real /status without a key answered %d", resp.StatusCode)
	}
}
