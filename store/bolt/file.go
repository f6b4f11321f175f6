package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrDamaged means the vault file is not a whole database: empty, truncated,
// not a bbolt file, or with pages that are corrupt. It comes wrapped in one
// sentence that names the file and what is wrong; see DamagedError.
var ErrDamaged = errors.New("vault file is damaged")

// DamagedError is the error for a vault file that cannot be opened safely.
// Its text is the one sentence docs/secrets.md documents.
type DamagedError struct {
	Path   string
	Reason string // what is wrong, e.g. "truncated: 10000 bytes of 32768"
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("vault file %s is damaged (%s): restore it from a backup (see docs/secrets.md, Backups)", e.Path, e.Reason)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

func damaged(path, format string, args ...any) error {
	return &DamagedError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// The on-disk format of bbolt (go.etcd.io/bbolt/internal/common), read here
// without mapping the file: bbolt maps the file into memory and reads pages
// through pointers, so a page beyond the end of a truncated file would crash
// the process with SIGBUS instead of returning an error. Integers are in the
// machine's byte order, as bbolt writes them.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	metaSize        = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	metaChecksumOff = 56
	elementSize     = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeader    = 16 // root pgid u64, sequence u64

	branchPage   = 0x01
	leafPage     = 0x02
	freelistPage = 0x10
	bucketLeaf   = 0x01

	noFreelist = ^uint64(0)
	maxDepth   = 64 // nested buckets and tree levels; real vaults use a handful
)

var ne = binary.NativeEndian

// boltMeta is one of the two meta pages.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
	err      string // why it does not validate; "" if it does
}

// readMeta reads the meta page at offset off.
func readMeta(f *os.File, off int64) (boltMeta, bool) {
	var b [pageHeaderSize + metaSize]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	m := b[pageHeaderSize:]
	bm := boltMeta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}
	h := fnv.New64a()
	h.Write(m[:metaChecksumOff])
	switch {
	case ne.Uint32(m[0:]) != boltMagic:
		bm.err = "magic"
	case ne.Uint32(m[4:]) != boltVersion:
		bm.err = "version"
	case ne.Uint64(m[metaChecksumOff:]) != h.Sum64():
		bm.err = "checksum"
	}
	return bm, true
}

// checkFile validates a vault file that exists before bbolt maps it: the two
// meta pages (magic, version, checksum, page size), that the file holds every
// page up to the high-water mark of the meta bbolt will use, and that every
// page reachable from it (bucket trees, nested and inline buckets, the
// freelist) lies inside that range, has the type and id it claims and keeps
// its elements within its bounds. After it passes, bbolt cannot read past the
// end of the file. It reads through f, which the caller has locked.
func checkFile(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("opening vault %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return damaged(path, "the file is empty")
	}
	m0, ok0 := readMeta(f, 0)
	ps := int64(m0.pageSize)
	if !ok0 || m0.err != "" {
		// Like bbolt: look for the second meta page at every power-of-two page size.
		ps = 0
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos+pageHeaderSize+metaSize > size {
				break
			}
			if m, ok := readMeta(f, pos); ok && m.err == "" && int64(m.pageSize) == pos {
				ps = pos
				break
			}
		}
	}
	if ps == 0 {
		if !ok0 || m0.err == "magic" {
			return damaged(path, "not a vault: no database header in its %d bytes", size)
		}
		return damaged(path, "both database header pages are corrupt")
	}
	if ps < 1024 || ps > 1<<24 || ps&(ps-1) != 0 {
		return damaged(path, "the database header names an impossible page size %d", ps)
	}
	if size < 2*ps {
		return damaged(path, "truncated: %d bytes, shorter than its two header pages", size)
	}
	m0, _ = readMeta(f, 0)
	m1, _ := readMeta(f, ps)
	// bbolt uses the valid meta with the higher transaction id.
	var m boltMeta
	switch {
	case m0.err == "" && (m1.err != "" || m0.txid >= m1.txid):
		m = m0
	case m1.err == "":
		m = m1
	default:
		return damaged(path, "both database header pages are corrupt")
	}
	if int64(m.pageSize) != ps {
		return damaged(path, "the database header pages disagree on the page size")
	}
	switch {
	case m.pgid < 3 || m.root < 2 || m.root >= m.pgid || (m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid)):
		return damaged(path, "the database header points outside the database")
	case m.pgid > uint64(size/ps):
		return damaged(path, "truncated: %d bytes, the database needs %d", size, int64(m.pgid)*ps)
	}
	w := &walker{f: f, ps: ps, hwm: m.pgid, seen: map[uint64]bool{}}
	err = w.tree(m.root, 0)
	if err == nil && m.freelist != noFreelist {
		err = w.freelist(m.freelist)
	}
	if err != nil {
		return damaged(path, "%v", err)
	}
	return nil
}

// walker reads pages with ReadAt and checks their structure.
type walker struct {
	f    *os.File
	ps   int64
	hwm  uint64
	seen map[uint64]bool
}

// page reads page id with its overflow pages, checking that they lie below the
// high-water mark and are referenced once.
func (w *walker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("a reference to page %d, outside the database's %d pages", id, w.hwm)
	}
	var hdr [pageHeaderSize]byte
	if _, err := w.f.ReadAt(hdr[:], int64(id)*w.ps); err != nil {
		return nil, fmt.Errorf("page %d cannot be read", id)
	}
	if got := ne.Uint64(hdr[0:]); got != id {
		return nil, fmt.Errorf("page %d is not what it claims to be", id)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= w.hwm-id {
		return nil, fmt.Errorf("page %d runs past the end of the database", id)
	}
	for i := uint64(0); i <= overflow; i++ {
		if w.seen[id+i] {
			return nil, fmt.Errorf("page %d is used twice", id+i)
		}
		w.seen[id+i] = true
	}
	buf := make([]byte, int64(overflow+1)*w.ps)
	if _, err := w.f.ReadAt(buf, int64(id)*w.ps); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("page %d cannot be read", id)
	}
	return buf, nil
}

// tree checks the b-tree rooted at page id.
func (w *walker) tree(id uint64, depth int) error {
	if depth > maxDepth {
		return errors.New("the page tree is nested too deep")
	}
	buf, err := w.page(id)
	if err != nil {
		return err
	}
	return w.node(id, buf, depth)
}

// node checks one branch or leaf page (or an inline bucket's page) in buf.
func (w *walker) node(id uint64, buf []byte, depth int) error {
	if len(buf) < pageHeaderSize {
		return fmt.Errorf("an inline bucket in page %d is cut short", id)
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if pageHeaderSize+count*elementSize > len(buf) {
		return fmt.Errorf("page %d lists more elements than it holds", id)
	}
	for i := 0; i < count; i++ {
		at := pageHeaderSize + i*elementSize
		e := buf[at : at+elementSize]
		switch flags {
		case branchPage:
			pos, ksize := int(ne.Uint32(e[0:])), int(ne.Uint32(e[4:]))
			if at+pos+ksize > len(buf) || at+pos+ksize < at {
				return fmt.Errorf("page %d has an element past its end", id)
			}
			if err := w.tree(ne.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
		case leafPage:
			eflags, pos, ksize, vsize := ne.Uint32(e[0:]), int(ne.Uint32(e[4:])), int(ne.Uint32(e[8:])), int(ne.Uint32(e[12:]))
			end := at + pos + ksize + vsize
			if end > len(buf) || end < at {
				return fmt.Errorf("page %d has an element past its end", id)
			}
			if eflags&bucketLeaf == 0 {
				continue
			}
			v := buf[at+pos+ksize : end]
			if len(v) < bucketHeader {
				return fmt.Errorf("page %d has a bucket entry cut short", id)
			}
			if root := ne.Uint64(v); root != 0 {
				if err := w.tree(root, depth+1); err != nil {
					return err
				}
			} else if depth+1 > maxDepth {
				return errors.New("the page tree is nested too deep")
			} else if err := w.node(id, v[bucketHeader:], depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d is neither a branch nor a leaf", id)
		}
	}
	if flags != branchPage && flags != leafPage {
		return fmt.Errorf("page %d is neither a branch nor a leaf", id)
	}
	return nil
}

// freelist checks the freelist page: its type, and that its ids fit in it.
func (w *walker) freelist(id uint64) error {
	buf, err := w.page(id)
	if err != nil {
		return err
	}
	if ne.Uint16(buf[8:]) != freelistPage {
		return fmt.Errorf("page %d should be the freelist", id)
	}
	count, start := uint64(ne.Uint16(buf[10:])), uint64(pageHeaderSize)
	if count == 0xFFFF { // the real count is the first element
		if len(buf) < pageHeaderSize+8 {
			return fmt.Errorf("the freelist in page %d is cut short", id)
		}
		count, start = ne.Uint64(buf[pageHeaderSize:]), pageHeaderSize+8
	}
	if count > (uint64(len(buf))-start)/8 {
		return fmt.Errorf("the freelist in page %d lists more pages than it holds", id)
	}
	for i := uint64(0); i < count; i++ {
		if p := ne.Uint64(buf[start+i*8:]); p < 2 || p >= w.hwm {
			return fmt.Errorf("the freelist in page %d names page %d, outside the database", id, p)
		}
	}
	return nil
}

// openFile opens path for bbolt, locks it (exclusive for writing, shared for
// reading, waiting up to timeout like bbolt would), and checks it with
// checkFile when it existed before. bbolt then takes over the descriptor (its
// own flock on it succeeds at once) and closes it.
func openFile(path string, readOnly bool, timeout time.Duration) (*os.File, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o600)
	created := false
	if errors.Is(err, os.ErrNotExist) && !readOnly {
		f, err = os.OpenFile(path, flag|os.O_CREATE|os.O_EXCL, 0o600)
		created = err == nil
		if errors.Is(err, os.ErrExist) { // another opener created it first
			f, err = os.OpenFile(path, flag, 0o600)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening vault %s: %w", path, err)
	}
	if err := lockFile(f, !readOnly, timeout); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("opening vault %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("opening vault %s: %w", path, err)
	}
	if !created {
		if err := checkFile(f, path); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// guard runs fn, turning a panic or a memory fault (a page bbolt maps but the
// file no longer holds) into ErrDamaged instead of a crash. It is a second line
// behind checkFile.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			if i := strings.IndexAny(msg, "[\n"); i > 0 {
				msg = strings.TrimSpace(msg[:i]) // drop addresses
			}
			err = damaged(path, "reading it failed: %s", msg)
		}
	}()
	return fn()
}

// consistencyCheck runs bbolt's own consistency check (free pages, every page
// reachable or free, key order) when the file is opened. No writer can run yet.
func consistencyCheck(db *bolt.DB, path string) error {
	var first error
	err := guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				if first == nil {
					first = err
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if first != nil {
		return damaged(path, "consistency check: %s", clip(first.Error()))
	}
	return nil
}
