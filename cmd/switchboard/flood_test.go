package main

import (
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/switchboard-mcp/switchboard/audit"
)

// TestRepeated429sOfOnePrincipalAreAuditedOnce: a principal hammering past
// its rate limit costs the audit log one record at once and one summary (here
// written at shutdown), whose counts add up to every 429 it got.
func TestRepeated429sOfOnePrincipalAreAuditedOnce(t *testing.T) {
	g := MustOpenGateway(t, identityConfig)
	g.waitReady(t)
	url := g.URL() + "/mcp"
	hdr := g.userKey(t, "burst", "admin")
	sid := rawSession(t, url, hdr)
	limited := 0
	for range 300 {
		resp := post(t, url, sid, hdr, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 100 {
		t.Fatalf("only %d of 300 pings at rps 5 were limited", limited)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	records, counted := 0, 0
	for _, r := range g.records(t) {
		if r.Type != audit.TypeRateLimited || r.Principal != "user:burst" {
			continue
		}
		records++
		n, err := strconv.Atoi(r.Detail["count"])
		if err != nil {
			t.Fatalf("rate_limited record without a count: %+v", r)
		}
		counted += n
	}
	if records > 2 || counted != limited {
		t.Errorf("%d rate_limited records counting %d; want at most 2 counting all %d 429s", records, counted, limited)
	}
}
