package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sync"

	"blockhash/vfs"
)

// The map page file ("mappages") holds the pages of every volume's map
// (devices, snapshots and clones): leaf pages of mapPerPage entries (the
// format of devmap.go) and table pages of ptrsPerPage pointers to leaves
// (ptrpage.go). A volume's root (in its volume file) points to table pages.
// Pages are shared copy-on-write: a snapshot or clone shares its source's
// tables, and the first write under a shared page copies it (a table, then
// a leaf: one page each).
//
// Page 0 is the file's header (pointer 0 means "none"):
//
//	0 8 magic "BHPAGES\x01" | 8 4 format version | 4092 4 CRC-32C of bytes 0..4091
//
// Reference counts are not stored: at open, every volume's root is walked
// (tables are read once each, leaves not at all) and a page's count is the
// number of roots (for a table) or live tables (for a leaf) naming it. A
// block's slot count is the number of entries naming it in live leaves, so
// copying a shared leaf adds a reference to every block it names.
const (
	pagesName = "mappages"
	// tableBlocks is the number of blocks under one table page.
	tableBlocks = mapPerPage * ptrsPerPage // 86,955 (about 340 MiB)
)

var pagesMagic = [8]byte{'B', 'H', 'P', 'A', 'G', 'E', 'S', 1}

// pageSpace is the page file and the state of its pages.
type pageSpace struct {
	f vfs.File

	// mu guards every field below and every volume's root (Map.root).
	// Lookups hold it shared; changes of shape (a page allocated, copied
	// or freed) exclusively. It is never held across disk I/O except the
	// read of nothing: leaf copies are read before it is taken.
	mu     sync.RWMutex
	refs   []uint32            // parents of each page; 0: free
	free   []uint32            // free pages, reusable (highest first: low ones are handed out first)
	frees  []uint32            // freed since the last seal: reusable once that commit is applied
	hwm    uint32              // pages at or above it were never used
	tables map[uint32]*ptrPage // every live table page

	// Changes since the last seal (the commit journals them):
	newLeaves   map[uint32][]byte // leaves made: first content (nil: all zero)
	dirtyTables map[uint32]bool   // tables made or changed
	// applying holds the new leaves of the commit being applied until
	// they are in the file: readers find their content here meanwhile.
	applying map[uint32][]byte
}

func newPageSpace(f vfs.File) *pageSpace {
	return &pageSpace{f: f, refs: make([]uint32, 1), hwm: 1, tables: map[uint32]*ptrPage{},
		newLeaves: map[uint32][]byte{}, dirtyTables: map[uint32]bool{}}
}

// openPages opens (creating if need be) the page file.
func openPages(fsys vfs.FS, path string, readOnly bool) (*pageSpace, error) {
	flag := os.O_RDWR | os.O_CREATE
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := fsys.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("engine: map pages: %w", err)
	}
	hb := make([]byte, mapPageSize)
	n, err := f.ReadAt(hb, 0)
	switch {
	case n == 0 && (err == nil || errors.Is(err, io.EOF)) && !readOnly:
		copy(hb, pagesMagic[:])
		binary.LittleEndian.PutUint32(hb[8:], FormatVersion)
		binary.LittleEndian.PutUint32(hb[4092:], crc32.Checksum(hb[:4092], castagnoli))
		if _, err := f.WriteAt(hb, 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("engine: map pages: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("engine: map pages: %w", err)
		}
	case n == 0 && readOnly:
		// a store whose page file was never written: no pages
	case n < mapPageSize || [8]byte(hb[:8]) != pagesMagic ||
		crc32.Checksum(hb[:4092], castagnoli) != binary.LittleEndian.Uint32(hb[4092:]):
		f.Close()
		return nil, fmt.Errorf("%s: %w: not a map page file (damaged header)", path, ErrCorrupt)
	case binary.LittleEndian.Uint32(hb[8:]) != FormatVersion:
		f.Close()
		return nil, fmt.Errorf("%s: %w: map pages of format version %d", path, ErrFormat, binary.LittleEndian.Uint32(hb[8:]))
	}
	return newPageSpace(f), nil
}

func (ps *pageSpace) close() error { return ps.f.Close() }

// readPage reads page n; what lies past the end of the file (a file cut
// short) reads as a leaf of quarantined entries.
func (ps *pageSpace) readPage(buf []byte, n uint32) error {
	if ps.fresh(buf, n) {
		return nil
	}
	return ps.readPageFile(buf, n)
}

// fresh copies leaf n into buf if it was made since the last commit (it
// is not in the file yet) and reports whether it was.
func (ps *pageSpace) fresh(buf []byte, n uint32) bool {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	content, ok := ps.freshLocked(n)
	if !ok {
		return false
	}
	if content == nil {
		clear(buf[:mapPageSize])
	} else {
		copy(buf, content)
	}
	return true
}

// freshLocked returns the first content of leaf n if it was made since the
// last commit (nil: all zero) and reports whether it was. The caller holds
// mu.
func (ps *pageSpace) freshLocked(n uint32) ([]byte, bool) {
	if c, ok := ps.newLeaves[n]; ok {
		return c, true
	}
	c, ok := ps.applying[n]
	return c, ok
}

func (ps *pageSpace) readPageFile(buf []byte, n uint32) error {
	got, err := ps.f.ReadAt(buf[:mapPageSize], int64(n)*mapPageSize)
	if errors.Is(err, io.EOF) {
		fillLost(buf[:mapPageSize], got)
		return nil
	}
	if err != nil {
		return fmt.Errorf("engine: read map page %d: %w", n, err)
	}
	return nil
}

// fillLost makes the entries of a leaf from byte have on quarantined.
func fillLost(page []byte, have int) {
	for k := max(0, have) / mapEntrySize; k < mapPerPage; k++ {
		if k*mapEntrySize < have {
			continue
		}
		quarantined.encode(page[k*mapEntrySize:])
	}
	clear(page[mapPerPage*mapEntrySize:])
}

// readEntries decodes entries [from, from+len(out)) of leaf page n (a
// hole or lost leaf included). Entries that fail their checksum come back
// quarantined.
func (ps *pageSpace) readEntries(n uint32, from int, out []mapEntry) error {
	ps.mu.RLock()
	content, fresh := ps.freshLocked(n)
	ps.mu.RUnlock()
	return ps.entriesOf(n, content, fresh, from, out)
}

// entriesOf is readEntries with leaf n's fresh content already looked up
// (freshLocked).
func (ps *pageSpace) entriesOf(n uint32, content []byte, fresh bool, from int, out []mapEntry) error {
	switch n {
	case 0:
		clear(out)
		return nil
	case lostPage:
		for i := range out {
			out[i] = quarantined
		}
		return nil
	}
	// A leaf made since the last commit is not in the file yet.
	if fresh {
		for i := range out {
			if content == nil {
				out[i] = mapEntry{}
				continue
			}
			e, ok := decodeMapEntry(content[(from+i)*mapEntrySize:])
			if !ok {
				e = quarantined
			}
			out[i] = e
		}
		return nil
	}
	b := make([]byte, len(out)*mapEntrySize)
	got, err := ps.f.ReadAt(b, int64(n)*mapPageSize+int64(from)*mapEntrySize)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("engine: read map page %d: %w", n, err)
	}
	for i := range out {
		if (i+1)*mapEntrySize > got {
			out[i] = quarantined // past the end of a file cut short
			continue
		}
		e, ok := decodeMapEntry(b[i*mapEntrySize:])
		if !ok {
			e = quarantined
		}
		out[i] = e
	}
	return nil
}

// alloc returns a free page with one reference. The caller holds mu.
func (ps *pageSpace) alloc() uint32 {
	var n uint32
	if k := len(ps.free); k > 0 {
		n = ps.free[k-1]
		ps.free = ps.free[:k-1]
	} else {
		n = ps.hwm
		ps.hwm++
		ps.refs = append(ps.refs, 0)
	}
	ps.refs[n] = 1
	return n
}

// ensure grows refs to cover page n (a page named by a volume or table
// past the file's end). The caller holds mu.
func (ps *pageSpace) ensure(n uint32) {
	for uint32(len(ps.refs)) <= n {
		ps.refs = append(ps.refs, 0)
	}
	ps.hwm = max(ps.hwm, n+1)
}

// leafOf returns the leaf page holding block lba of a volume whose root
// is root (0: a hole). The caller holds mu (shared is enough).
func (ps *pageSpace) leafOf(root []uint32, lba uint64) uint32 {
	t := lba / tableBlocks
	if t >= uint64(len(root)) {
		return 0
	}
	tp := root[t]
	if !live(tp) {
		return tp
	}
	return ps.tables[tp][lba/mapPerPage%ptrsPerPage]
}

// sealed is what one commit takes of the page changes.
type sealedPages struct {
	newLeaves map[uint32][]byte
	tables    map[uint32]*ptrPage // content of each table made or changed
	frees     []uint32
}

// seal takes the changes made since the last seal. The caller holds the
// epoch exclusively (no writer changes the tree meanwhile).
func (ps *pageSpace) seal() sealedPages {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	s := sealedPages{newLeaves: ps.newLeaves, tables: make(map[uint32]*ptrPage, len(ps.dirtyTables)), frees: ps.frees}
	for n := range ps.dirtyTables {
		if t := ps.tables[n]; t != nil { // nil: made and freed since the last seal
			c := *t
			s.tables[n] = &c
		}
	}
	ps.applying = ps.newLeaves
	ps.newLeaves, ps.dirtyTables, ps.frees = map[uint32][]byte{}, map[uint32]bool{}, nil
	return s
}

// applied forgets the new leaves of a commit once they are in the file.
func (ps *pageSpace) applied() {
	ps.mu.Lock()
	ps.applying = nil
	ps.mu.Unlock()
}

// reuse hands the pages a commit freed back for allocation.
func (ps *pageSpace) reuse(frees []uint32) {
	if len(frees) == 0 {
		return
	}
	ps.mu.Lock()
	ps.free = append(ps.free, frees...)
	slices.SortFunc(ps.free, func(a, b uint32) int { return int(int64(b) - int64(a)) })
	ps.mu.Unlock()
}

// dropRef removes one reference to page n; at zero the page is freed (and,
// for a table, forgotten). It reports whether the page was freed. The
// caller holds mu.
func (ps *pageSpace) dropRef(n uint32) bool {
	if !live(n) || ps.refs[n] == 0 {
		return false
	}
	ps.refs[n]--
	if ps.refs[n] > 0 {
		return false
	}
	ps.frees = append(ps.frees, n)
	delete(ps.newLeaves, n)
	return true
}
