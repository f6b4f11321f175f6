package vault_test

import (
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

	"github.com/switchboard-mcp/switchboard/vault"
)

var ne = binary.NativeEndian

// boltFile is a vault file's bytes with the few bbolt layout facts the damage
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
		tb.Fatalf("root page is not a leaf (flags %x); the test vault grew too big", flags)
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

// mustDamageableVault writes a vault with enough entries for several pages, a
// non-inline secret bucket and nested connection buckets, and returns its path and key.
func mustDamageableVault(tb testing.TB) (string, vault.Key) {
	tb.Helper()
	v, path, key := MustOpen(tb)
	for i := 0; i < 300; i++ {
		if err := v.Set(fmt.Sprintf("SECRET_%03d", i), []byte(strings.Repeat("v", 200))); err != nil {
			tb.Fatal(err)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if err := v.SetConnection(u, "gh", map[string][]byte{"TOKEN": []byte("t-" + u)}); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := v.InternalKey("SWITCHBOARD_SERVICE_SIGNING_KEY"); err != nil {
		tb.Fatal(err)
	}
	if err := v.Close(); err != nil {
		tb.Fatal(err)
	}
	return path, key
}

// TestDamagedFileIsOneSentence: every kind of damaged vault file gives
// ErrDamaged with the one documented sentence, never a crash (SIGBUS or
// SIGSEGV from bbolt reading a page that the file does not hold).
func TestDamagedFileIsOneSentence(t *testing.T) {
	srcPath, key := mustDamageableVault(t)
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
			path := filepath.Join(t.TempDir(), vault.DefaultFileName)
			if err := os.WriteFile(path, tt.damage(parseBolt(t, append([]byte(nil), src...))), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{false, true} {
				v, err := vault.Open(path, key, vault.Options{ReadOnly: ro})
				if err == nil {
					v.Close()
					t.Fatalf("Open (read-only %v) of a damaged file succeeded", ro)
				}
				want := "vault file " + path + " is damaged (" + tt.reason + "): restore it from a backup (see docs/secrets.md, Backups)"
				if !errors.Is(err, vault.ErrDamaged) || err.Error() != want {
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
// the other one; bbolt uses it, and so does the vault: that is not damage.
func TestOneTornMetaPageFallsBack(t *testing.T) {
	path, key := mustDamageableVault(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := parseBolt(t, b)
	f.b[f.cur+16+48] ^= 1 // the newer meta's txid: its checksum no longer matches
	if err := os.WriteFile(path, f.b, 0o600); err != nil {
		t.Fatal(err)
	}
	v := MustOpenPath(t, path, key, vault.Options{})
	if err := v.Check(); err != nil {
		t.Fatalf("after falling back to the previous meta: %v", err)
	}
	if _, err := v.Get("SECRET_000"); err != nil {
		t.Fatal(err)
	}
}

// TestDamageCheckWaitsForTheLock: a file that another process holds (here an
// empty one, as while another opener creates the vault) is reported as locked,
// not as damaged: the file is checked only under the lock.
func TestDamageCheckWaitsForTheLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), vault.DefaultFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err = vault.Open(path, vault.GenerateKey(), vault.Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, vault.ErrLocked) || errors.Is(err, vault.ErrDamaged) {
		t.Fatalf("Open of a locked empty file: %v, want ErrLocked", err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_, err = vault.Open(path, vault.GenerateKey(), vault.Options{})
	if !errors.Is(err, vault.ErrDamaged) {
		t.Fatalf("Open of an unlocked empty file: %v, want ErrDamaged", err)
	}
}
