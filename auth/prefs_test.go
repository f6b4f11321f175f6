package auth

import (
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
)

func TestPrefs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := bbolt.Open(path, 0o600, nil)
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
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err = NewPrefs(db)
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
