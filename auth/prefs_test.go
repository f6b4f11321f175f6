package auth

import (
	"path/filepath"
	"testing"

	"github.com/switchboard-mcp/switchboard/store/bolt"
)

func TestPrefs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPrefs(db)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := p.SetHidden("ann", "fs", true); err != nil || !changed {
		t.Fatalf("hide: changed=%v err=%v", changed, err)
	}
	if changed, _ := p.SetHidden("ann", "fs", true); changed {
		t.Error("hiding twice should change nothing")
	}
	if !p.Hidden("ann", "fs") || p.Hidden("bob", "fs") {
		t.Error("Hidden wrong")
	}
	db.Close()
	p, err = NewPrefs(MustOpenStore(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Hidden("ann", "fs") {
		t.Error("preference lost across reopen")
	}
	if changed, _ := p.SetHidden("ann", "fs", false); !changed || p.Hidden("ann", "fs") {
		t.Error("show failed")
	}
}
