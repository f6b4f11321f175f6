package bolt_test

import (
	"path/filepath"
	"testing"

	"github.com/switchboard-mcp/switchboard"
	"github.com/switchboard-mcp/switchboard/store/bolt"
	"github.com/switchboard-mcp/switchboard/store/storetest"
)

// TestConformance runs the Store conformance suite on a real file: one
// process opens it at a time, so Changes is nil.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Options{
		New: func(t *testing.T) func(t *testing.T) switchboard.Store {
			path := filepath.Join(t.TempDir(), bolt.FileName)
			return func(t *testing.T) switchboard.Store {
				st, err := bolt.Open(path, bolt.Options{})
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				return st
			}
		},
	})
}
