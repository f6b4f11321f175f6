// Package bench holds Switchboard's performance benchmarks: Go benchmarks that
// drive the real gateway binary (bin/switchboard, built by `make build`) and a
// direct stdio baseline, for profiling the client side with
// `go test -bench . -cpuprofile`, and the sbbench command (bench/cmd/sbbench,
// run by `make bench`) that measures the gateway against direct stdio, a bare
// net/http floor and a relay floor (that server with a child of its own) in
// one run and writes bench/results/latest.md.
package bench
