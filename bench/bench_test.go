package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-mcp/switchboard/bench/internal/harness"
	"github.com/switchboard-mcp/switchboard/bench/internal/mcpclient"
)

var sizes = []int{100, 64 << 10}

func text(n int) string { return strings.Repeat("a", n) }

func params(tool string, n int) []byte {
	return []byte(`{"name":"` + tool + `","arguments":{"text":"` + text(n) + `"}}`)
}

// startGateway runs bin/switchboard with one echo provider and an admin user,
// and returns a client whose first session already lists the echo tools. It
// skips when the binaries are not built.
func startGateway(b *testing.B) (*mcpclient.Client, *mcpclient.Session) {
	b.Helper()
	bins, err := harness.FindBins("..")
	if err != nil {
		b.Skip(err)
	}
	ctx := context.Background()
	env, err := harness.NewEnv(bins, b.TempDir(), harness.Config{
		Providers: []harness.Provider{{Name: "echo", Command: bins.Echo}},
	})
	if err != nil {
		b.Fatal(err)
	}
	key, err := env.AddUser(ctx, "bench", "admin")
	if err != nil {
		b.Fatal(err)
	}
	g, err := env.Start(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = g.Stop() })
	c := &mcpclient.Client{URL: g.URL, Key: key, HTTP: mcpclient.NewHTTPClient(64)}
	s, err := harness.OpenSession(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := harness.WaitTools(ctx, s, 1, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	return c, s
}

func startDirect(b *testing.B) *harness.Direct {
	b.Helper()
	bins, err := harness.FindBins("..")
	if err != nil {
		b.Skip(err)
	}
	d, err := harness.StartDirect(context.Background(), bins.Echo)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Stop() })
	return d
}

// BenchmarkGatewayCall is one client calling echo__echo through the gateway.
func BenchmarkGatewayCall(b *testing.B) {
	_, s := startGateway(b)
	ctx := context.Background()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			p := params("echo__echo", n)
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := s.Call(ctx, "tools/call", p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGatewayCallParallel is GOMAXPROCS×-cpu clients, each with its own
// session, calling echo__echo through the gateway.
func BenchmarkGatewayCallParallel(b *testing.B) {
	c, _ := startGateway(b)
	ctx := context.Background()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			p := params("echo__echo", n)
			b.SetBytes(int64(n))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				s, err := c.Open(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if _, err := s.Call(ctx, "tools/call", p); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGatewayList is tools/list through the gateway.
func BenchmarkGatewayList(b *testing.B) {
	_, s := startGateway(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.Call(ctx, "tools/list", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDirectCall is the baseline: the same call over direct stdio with
// supervisor.Conn.
func BenchmarkDirectCall(b *testing.B) {
	d := startDirect(b)
	ctx := context.Background()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			p := params("echo", n)
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := d.Call(ctx, "tools/call", p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDirectCallParallel is the parallel baseline: as many callers
// sharing one stdio child.
func BenchmarkDirectCallParallel(b *testing.B) {
	d := startDirect(b)
	ctx := context.Background()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			p := params("echo", n)
			b.SetBytes(int64(n))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := d.Call(ctx, "tools/call", p); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
