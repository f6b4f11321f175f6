//go:build !unix

package bolt

import (
	"os"
	"time"
)

// lockFile leaves locking to bbolt where flock is not available.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error { return nil }
