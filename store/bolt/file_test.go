package bolt_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/switchboard-mcp/switchboard/store/bolt"
)

var ne = binary.NativeEndian

// boltFile is a store file's bytes with the few bbolt layout facts the damage
// cases need: page size, which meta page is current, its root and high-water mark.
type boltFile struct {
	b        []byte
	ps       int
	cur, old int // offsets of the current and the previous meta (page header included)
}

func parseBolt(tb testing.TB, b []byte) *boltFile {
	tb.Helper()
	ps := int(ne.Uint32(b[16+8:]))
	f := &boltFile{b: b, ps: ps, cur: 0, old: ps}
	if f.txid(ps) > f.txid(0) {
		f.cur, f.old = ps, 0
	}
	return f
}

func (f *boltFile) txid(meta int) uint64 { return ne.Uint64(f.b[meta+16+48:]) }
func (f *boltFile) root() int            { return int(ne.Uint64(f.b[f.cur+16+16:])) }
func (f *boltFile) hwm() int             { return int(ne.Uint64(f.b[f.cur+16+40:])) }

// reseal recomputes a meta page's checksum after an edit.
func (f *boltFile) reseal(meta int) {
	h := fnv.New64a()
	h.Write(f.b[meta+16 : meta+16+56])
	ne.PutUint64(f.b[meta+16+56:], h.Sum64())
}

// bucketRoot returns the offset of the root-page id of top-level bucket name.
func (f *boltFile) bucketRoot(tb testing.TB, name string) int {
	tb.Helper()
	p := f.root() * f.ps
	if flags := ne.Uint16(f.b[p+8:]); flags != 0x02 {
		tb.Fatalf("root page is not a leaf (flags %x); the test file grew too big", flags)
	}
	for i := 0; i < int(ne.Uint16(f.b[p+10:])); i++ {
		at := p + 16 + i*16
		pos, ksize := int(ne.Uint32(f.b[at+4:])), int(ne.Uint32(f.b[at+8:]))
		if string(f.b[at+pos:at+pos+ksize]) == name {
			return at + pos + ksize
		}
	}
	tb.Fatalf("bucket %s not in the root page", name)
	return 0
}

// mustDamageableFile writes a store with enough entries for several pages, a
// non-inline bucket and (as files written before the Store did) nested
// buckets, and returns its path.
func mustDamageableFile(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), bolt.FileName)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("vault.secret"))
		if err != nil {
			return err
		}
		for i := 0; i < 300; i++ {
			if err := b.Put([]byte(fmt.Sprintf("SECRET_%03d", i)), []byte(strings.Repeat("v", 200))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	// A second transaction, so that the previous meta page holds the secrets.
	err = db.Update(func(tx *bbolt.Tx) error {
		conn, err := tx.CreateBucket([]byte("vault.conn"))
		if err != nil {
			return err
		}
		for _, u := range []string{"alice", "bob"} {
			ub, err := conn.CreateBucket([]byte(u))
			if err != nil {
				return err
			}
			pb, err := ub.CreateBucket([]byte("gh"))
			if err != nil {
				return err
			}
			if err := pb.Put([]byte("record"), []byte("{}")); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestDamagedFileIsOneSentence: every kind of damaged file gives
// ErrDamaged with the one documented sentence, never a crash (SIGBUS or
// SIGSEGV from bbolt reading a page that the file does not hold).
func TestDamagedFileIsOneSentence(t *testing.T) {
	srcPath := mustDamageableFile(t)
	src, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	info := parseBolt(t, append([]byte(nil), src...))
	needs := info.hwm() * info.ps
	tests := []struct {
		name   string
		damage func(f *boltFile) []byte
		reason string
	}{
		{"zero length", func(f *boltFile) []byte { return nil }, "the file is empty"},
		{"truncated to 10000 bytes", func(f *boltFile) []byte { return f.b[:10000] },
			fmt.Sprintf("truncated: 10000 bytes, the database needs %d", needs)},
		{"truncated by one page", func(f *boltFile) []byte { return f.b[:needs-f.ps] },
			fmt.Sprintf("truncated: %d bytes, the database needs %d", needs-info.ps, needs)},
		{"truncated inside the header pages", func(f *boltFile) []byte { return f.b[:5000] },
			"truncated: 5000 bytes, shorter than its two header pages"},
		{"truncated inside the first page", func(f *boltFile) []byte { return f.b[:50] },
			"not a vault: no database header in its 50 bytes"},
		{"garbage", func(f *boltFile) []byte { _, _ = rand.Read(f.b); return f.b },
			fmt.Sprintf("not a vault: no database header in its %d bytes", len(src))},
		{"text", func(f *boltFile) []byte { return []byte(strings.Repeat("this is not a database\n", 500)) },
			"not a vault: no database header in its 11500 bytes"},
		{"wrong magic", func(f *boltFile) []byte {
			f.b[16] ^= 0xff
			f.b[f.ps+16] ^= 0xff
			return f.b
		}, fmt.Sprintf("not a vault: no database header in its %d bytes", len(src))},
		{"both meta pages torn", func(f *boltFile) []byte {
			f.b[16+48] ^= 1
			f.b[f.ps+16+48] ^= 1
			return f.b
		}, "both database header pages are corrupt"},
		{"high-water mark past the end", func(f *boltFile) []byte {
			ne.PutUint64(f.b[f.cur+16+40:], uint64(len(f.b)/f.ps+5))
			f.reseal(f.cur)
			return f.b
		}, fmt.Sprintf("truncated: %d bytes, the database needs %d", len(src), (len(src)/info.ps+5)*info.ps)},
		{"bucket root points past the end", func(f *boltFile) []byte {
			ne.PutUint64(f.b[f.bucketRoot(t, "vault.secret"):], 1<<40)
			return f.b
		}, fmt.Sprintf("a reference to page 1099511627776, outside the database's %d pages", info.hwm())},
		{"garbage root page", func(f *boltFile) []byte {
			_, _ = rand.Read(f.b[f.root()*f.ps : (f.root()+1)*f.ps])
			return f.b
		}, fmt.Sprintf("page %d is not what it claims to be", info.root())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), bolt.FileName)
			if err := os.WriteFile(path, tt.damage(parseBolt(t, append([]byte(nil), src...))), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{false, true} {
				st, err := bolt.Open(path, bolt.Options{ReadOnly: ro})
				if err == nil {
					st.Close()
					t.Fatalf("Open (read-only %v) of a damaged file succeeded", ro)
				}
				want := "vault file " + path + " is damaged (" + tt.reason + "): restore it from a backup (see docs/secrets.md, Backups)"
				if !errors.Is(err, bolt.ErrDamaged) || err.Error() != want {
					t.Errorf("Open (read-only %v):\n got %v\nwant %s", ro, err, want)
				}
			}
			// A damaged file is reported, never replaced or changed.
			if got, _ := os.ReadFile(path); len(got) == 0 && tt.name != "zero length" {
				t.Error("the damaged file was emptied")
			}
		})
	}
}

// TestOneTornMetaPageFallsBack: a crash while bbolt writes a meta page leaves
// the other one; bbolt uses it, and so does the store: that is not damage.
func TestOneTornMetaPageFallsBack(t *testing.T) {
	path := mustDamageableFile(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := parseBolt(t, b)
	f.b[f.cur+16+48] ^= 1 // the newer meta's txid: its checksum no longer matches
	if err := os.WriteFile(path, f.b, 0o600); err != nil {
		t.Fatal(err)
	}
	st := MustOpen(t, path, bolt.Options{})
	if err := st.Check(); err != nil {
		t.Fatalf("after falling back to the previous meta: %v", err)
	}
	if _, err := st.Get(context.Background(), "vault.secret", "SECRET_000"); err != nil {
		t.Fatal(err)
	}
}

// TestDamageCheckWaitsForTheLock: a file that another process holds (here an
// empty one, as while another opener creates the file) is reported as locked,
// not as damaged: the file is checked only under the lock.
func TestDamageCheckWaitsForTheLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), bolt.FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err = bolt.Open(path, bolt.Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, bolt.ErrLocked) || errors.Is(err, bolt.ErrDamaged) {
		t.Fatalf("Open of a locked empty file: %v, want ErrLocked", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_, err = bolt.Open(path, bolt.Options{})
	if !errors.Is(err, bolt.ErrDamaged) {
		t.Fatalf("Open of an unlocked empty file: %v, want ErrDamaged", err)
	}
}
