package main

import (
	"runtime"
	"testing"
)

func TestShareCPUs(t *testing.T) {
	saved := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(saved) })
	for _, tt := range []struct{ cpus, want int }{{1, 1}, {2, 1}, {3, 2}, {4, 2}, {16, 8}} {
		t.Setenv("GOMAXPROCS", "")
		runtime.GOMAXPROCS(tt.cpus)
		shareCPUs()
		if got := runtime.GOMAXPROCS(0); got != tt.want {
			t.Errorf("%d CPUs: GOMAXPROCS %d, want %d", tt.cpus, got, tt.want)
		}
	}
	// The environment wins.
	t.Setenv("GOMAXPROCS", "4")
	runtime.GOMAXPROCS(4)
	shareCPUs()
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Errorf("with GOMAXPROCS=4 set: %d", got)
	}
}
