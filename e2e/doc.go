// Package e2e holds the end-to-end tests: they build the real switchboard
// binary, the example providers and the misbehaving test provider, run
// `switchboard serve` as a subprocess on a free loopback port, and talk to it
// over real HTTP with mcp-go's streamable-HTTP client and raw requests.
//
// The npm tests need the pinned third-party servers in this folder's
// package.json, installed by `make npm` (npm ci); without them they skip.
// SOAK=1 runs the long load test (make soak). E2E_RACE=0 builds the gateway
// without the race detector even when the tests use it.
//
// A real fuzz run of the request edge and the config parser:
//
//	go test -run '^$' -fuzz '^FuzzCheckMessage$' -fuzztime 5m ./mux/
//	go test -run '^$' -fuzz '^FuzzLoadConfig$' -fuzztime 5m ./providers/
package e2e
