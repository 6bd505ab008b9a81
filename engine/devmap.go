package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"blockhash/blockstore"
	"blockhash/index"

	"blockhash/vfs"
	"github.com/rs/zerolog"
)

// A volume is a device, a snapshot of one, or a device being deleted. Its
// map sends each logical 4 KiB block to the key of its content and, as a
// location hint, the slot holding it: the key makes a map meaningful in any
// store; the slot saves a lookup per read. Maps are trees of pages in the
// shared page file (pages.go): a volume's root points to table pages, which
// point to leaf pages of mapPerPage entries of 48 bytes (16 bytes of each
// leaf unused):
//
//	entry: 0 32 digest | 32 4 CRC-32C of the block | 36 8 slot | 44 4 CRC-32C of bytes 0..43
//
// An all-zero entry is an unwritten or zero block; a hole in the tree is a
// run of them and costs nothing.
//
// The volume file ("devices/ID.vol") is a 4096-byte header, a copy of it
// (a damaged header is rebuilt from the copy), then the root:
// ceil(roots/ptrsPerPage) pointer pages (ptrpage.go), one pointer per
// tableBlocks blocks.
//
//	header: 0 8 magic "BHVOL\0\0\1" | 8 4 version | 12 4 volume id | 16 8 size
//	in bytes | 24 8 created (Unix ns) | 32 1 kind (0 device, 1 snapshot) |
//	33 1 flags (bit 0: being deleted) | 36 4 parent (a snapshot's device) |
//	40 4 root pointers | 44 2 name length | 46 64 name | 110 2 origin length |
//	112 .. origin (what a clone was made from, "dev@snap") | 256 16 guid
//	(a snapshot's identity, shared by its replicas; zeros: none) | 272 16
//	base guid and 288 2 target length, 290 64 target (a receive's staging
//	volume: the snapshot it is built from and the device it will become) |
//	354 1 dedup domain name length (0: the store's default domain), 355 64
//	domain name, 419 32 the domain's secret (domains.go) |
//	4092 4 CRC-32C of bytes 0..4091
const (
	mapHeaderSize = 4096
	// rootOffset is where a volume file's root begins (after the header
	// and its copy).
	rootOffset   = 2 * mapHeaderSize
	mapPageSize  = 4096
	mapEntrySize = 48
	mapPerPage   = mapPageSize / mapEntrySize // 85
	maxNameLen   = 64
	maxOriginLen = 2*maxNameLen + 1
)

// Volume kinds.
const (
	kindDevice   = 0
	kindSnapshot = 1
)

var mapMagic = [8]byte{'B', 'H', 'V', 'O', 'L', 0, 0, 1}

type mapEntry struct {
	Key  index.Key
	Slot uint64
}

func (e mapEntry) isZero() bool { return e == mapEntry{} }

// quarantined is the entry of a block whose map entry was damaged (it
// failed its checksum, or the map was cut short): the block's content is
// lost. It reads as an I/O error (ErrCorrupt) until the block is written
// again, holds no reference, and fsck lists it by device and block. An
// entry that fails its checksum is this value in memory, and fsck --repair
// writes it in place of the damage: on disk it is an ordinary, checksummed
// entry with a key and slot no real block has.
var quarantined = mapEntry{Key: index.Key{Sum: [index.SumSize]byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}, CRC: 0xffffffff}, Slot: ^uint64(0)}

// isLost reports whether the entry is quarantined: its block's data is lost.
func (e mapEntry) isLost() bool { return e == quarantined }

// holds reports whether the entry names a stored block (holds a reference).
func (e mapEntry) holds() bool { return !e.isZero() && !e.isLost() }

func (e mapEntry) encode(b []byte) {
	if e.isZero() {
		clear(b[:mapEntrySize])
		return
	}
	e.Key.Encode(b[:index.KeySize])
	binary.LittleEndian.PutUint64(b[36:], e.Slot)
	binary.LittleEndian.PutUint32(b[44:], crc32.Checksum(b[:44], castagnoli))
}

func decodeMapEntry(b []byte) (mapEntry, bool) {
	if len(b) < mapEntrySize {
		return mapEntry{}, false
	}
	if isZero(b[:mapEntrySize]) {
		return mapEntry{}, true
	}
	if crc32.Checksum(b[:44], castagnoli) != binary.LittleEndian.Uint32(b[44:]) {
		return mapEntry{}, false
	}
	k, _ := index.DecodeKey(b[:index.KeySize])
	return mapEntry{Key: k, Slot: binary.LittleEndian.Uint64(b[36:])}, true
}

// rootsFor is the number of root pointers of a volume of blocks blocks.
func rootsFor(blocks uint64) int { return int((blocks + tableBlocks - 1) / tableBlocks) }

type mapHeader struct {
	ID       uint32
	Size     int64
	Created  time.Time
	Name     string
	Kind     uint8
	Deleting bool
	Parent   uint32 // a snapshot's device
	Origin   string // what a clone was made from ("dev@snap"), for show
	// GUID names a snapshot's content across stores: a replica of a
	// snapshot has its source's GUID. Zero: none (older snapshots).
	GUID [16]byte
	// A receive's staging volume (receive.go) names the device it will
	// become (Target) and the snapshot it was cloned from (BaseGUID).
	BaseGUID [16]byte
	Target   string
	// Domain is the dedup domain ("": the store's default) and Secret its
	// key (domains.go); a snapshot or clone is in its source's domain.
	Domain string
	Secret [SecretSize]byte
}

func (h *mapHeader) roots() int { return rootsFor(uint64(h.Size / blockstore.BlockSize)) }

func (h *mapHeader) encode() []byte {
	b := make([]byte, mapHeaderSize)
	copy(b, mapMagic[:])
	binary.LittleEndian.PutUint32(b[8:], FormatVersion)
	binary.LittleEndian.PutUint32(b[12:], h.ID)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.Size))
	binary.LittleEndian.PutUint64(b[24:], uint64(h.Created.UnixNano()))
	b[32] = h.Kind
	if h.Deleting {
		b[33] = 1
	}
	binary.LittleEndian.PutUint32(b[36:], h.Parent)
	binary.LittleEndian.PutUint32(b[40:], uint32(h.roots()))
	binary.LittleEndian.PutUint16(b[44:], uint16(len(h.Name)))
	copy(b[46:46+maxNameLen], h.Name)
	binary.LittleEndian.PutUint16(b[110:], uint16(len(h.Origin)))
	copy(b[112:112+maxOriginLen], h.Origin)
	copy(b[256:272], h.GUID[:])
	copy(b[272:288], h.BaseGUID[:])
	binary.LittleEndian.PutUint16(b[288:], uint16(len(h.Target)))
	copy(b[290:290+maxNameLen], h.Target)
	b[354] = byte(len(h.Domain))
	copy(b[355:355+maxNameLen], h.Domain)
	copy(b[419:419+SecretSize], h.Secret[:])
	binary.LittleEndian.PutUint32(b[4092:], crc32.Checksum(b[:4092], castagnoli))
	return b
}

func decodeMapHeader(b []byte) (mapHeader, error) {
	var h mapHeader
	if len(b) < mapHeaderSize {
		return h, fmt.Errorf("%w: volume header truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if [8]byte(b[:8]) != mapMagic {
		if [5]byte(b[:5]) == [5]byte{'B', 'H', 'M', 'A', 'P'} {
			return h, fmt.Errorf("%w: a device map of an older format (blockhash format 1)", ErrFormat)
		}
		return h, fmt.Errorf("%w: not a blockhash volume", ErrCorrupt)
	}
	if crc32.Checksum(b[:4092], castagnoli) != binary.LittleEndian.Uint32(b[4092:]) {
		return h, fmt.Errorf("%w: volume header checksum mismatch", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return h, fmt.Errorf("%w: volume format version %d", ErrFormat, v)
	}
	h.ID = binary.LittleEndian.Uint32(b[12:])
	h.Size = int64(binary.LittleEndian.Uint64(b[16:]))
	h.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(b[24:])))
	h.Kind = b[32]
	h.Deleting = b[33]&1 != 0
	h.Parent = binary.LittleEndian.Uint32(b[36:])
	n := int(binary.LittleEndian.Uint16(b[44:]))
	on := int(binary.LittleEndian.Uint16(b[110:]))
	tn := int(binary.LittleEndian.Uint16(b[288:]))
	dn := int(b[354])
	if n == 0 || n > maxNameLen || on > maxOriginLen || tn > maxNameLen || dn > maxNameLen || h.Size <= 0 || h.Size%blockstore.BlockSize != 0 ||
		h.Kind > kindSnapshot || b[33]&^1 != 0 || (h.Kind == kindSnapshot) != (h.Parent != 0) || h.ID == 0 ||
		binary.LittleEndian.Uint32(b[40:]) != uint32(h.roots()) {
		return h, fmt.Errorf("%w: volume header fields out of range", ErrCorrupt)
	}
	h.Name = string(b[46 : 46+n])
	h.Origin = string(b[112 : 112+on])
	h.GUID = [16]byte(b[256:272])
	h.BaseGUID = [16]byte(b[272:288])
	h.Target = string(b[290 : 290+tn])
	h.Domain = string(b[355 : 355+dn])
	h.Secret = [SecretSize]byte(b[419 : 419+SecretSize])
	return h, nil
}

// Map is one volume's map: its root, the changes not yet committed, and
// the volume file.
type Map struct {
	hdr    mapHeader
	path   string
	f      vfs.File
	blocks uint64
	ps     *pageSpace
	// full is the name users give it: "dev", or "dev@snap" for a snapshot.
	full string

	// root points to the table pages; rootDirty lists the pointers changed
	// since the last seal. Both are guarded by ps.mu.
	root      []uint32
	rootDirty map[uint32]bool

	// mapped counts non-zero entries (maintained by the engine's writers).
	mapped atomic.Int64
	// lost counts the quarantined entries the last scan found.
	lost atomic.Int64
	// deleted is set once the volume is deleted: I/O then fails.
	deleted atomic.Bool
	// teardownMu makes one goroutine at a time release a deleted
	// volume's space.
	teardownMu sync.Mutex

	// mu guards cur and sealed. Readers of the page file hold it shared so
	// a commit cannot drop a sealed entry between their overlay check and
	// their read.
	mu     sync.RWMutex
	cur    map[uint64]mapEntry // changes since the last seal
	sealed map[uint64]mapEntry // changes the running commit is writing
}

// readOnly reports whether the volume takes no writes (a snapshot).
func (m *Map) readOnly() bool { return m.hdr.Kind == kindSnapshot }

func volPath(dir string, id uint32) string {
	return filepath.Join(dir, "devices", fmt.Sprintf("%d.vol", id))
}

// encodeVolume is a volume file's whole content.
func encodeVolume(h mapHeader, root []uint32) []byte {
	n := h.roots()
	pages := (n + ptrsPerPage - 1) / ptrsPerPage
	b := make([]byte, rootOffset+pages*mapPageSize)
	hb := h.encode()
	copy(b, hb)
	copy(b[mapHeaderSize:], hb)
	for pg := range pages {
		var p ptrPage
		copy(p[:], root[pg*ptrsPerPage:min(n, (pg+1)*ptrsPerPage)])
		p.encode(b[rootOffset+pg*mapPageSize:])
	}
	return b
}

// writeVolume writes a volume file whole and durably (a new name is made
// durable by the caller's directory sync).
func writeVolume(fsys vfs.FS, path string, content []byte) error {
	tmp := path + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if _, err := f.WriteAt(content, 0); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return fmt.Errorf("engine: write volume: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("engine: sync volume: %w", err)
	}
	if err := fsys.Rename(tmp, path); err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

func newMap(h mapHeader, path string, f vfs.File, ps *pageSpace) *Map {
	return &Map{hdr: h, path: path, f: f, blocks: uint64(h.Size / blockstore.BlockSize), ps: ps,
		full: h.Name, rootDirty: map[uint32]bool{}, cur: map[uint64]mapEntry{}}
}

// openMap opens a volume file and checks its header; loadRoot reads its
// root (after the journal replay, which may rewrite it).
func openMap(fsys vfs.FS, path string, ps *pageSpace, readOnly bool) (*Map, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := fsys.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	h, err := readVolumeHeader(f, path, !readOnly)
	if err != nil {
		f.Close()
		return nil, err
	}
	return newMap(h, path, f, ps), nil
}

// readVolumeHeader reads a volume's header, or its copy when the header is
// damaged (with fix, the header is then rewritten from the copy).
func readVolumeHeader(f vfs.File, path string, fix bool) (mapHeader, error) {
	hb := make([]byte, rootOffset)
	n, _ := io.ReadFull(io.NewSectionReader(f, 0, rootOffset), hb)
	h, err := decodeMapHeader(hb[:min(n, mapHeaderSize)])
	if err == nil || errors.Is(err, ErrFormat) {
		if err != nil {
			return h, fmt.Errorf("%s: %w", path, err)
		}
		return h, nil
	}
	h2, err2 := decodeMapHeader(hb[mapHeaderSize:max(n, mapHeaderSize)])
	if err2 != nil {
		return h, fmt.Errorf("%s: %w (and its copy: %v)", path, err, err2)
	}
	if fix {
		if _, werr := f.WriteAt(hb[mapHeaderSize:rootOffset], 0); werr == nil {
			f.Sync()
		}
	}
	return h2, nil
}

// loadRoot reads the root. A root page that is missing or fails its
// checksum loses the tables it named: their blocks read as I/O errors
// until written (fsck lists them).
func (m *Map) loadRoot(log zerolog.Logger) error {
	n := m.hdr.roots()
	root := make([]uint32, n)
	b := make([]byte, mapPageSize)
	for pg := 0; pg*ptrsPerPage < n; pg++ {
		hi := min(n, (pg+1)*ptrsPerPage)
		got, err := m.f.ReadAt(b, rootOffset+int64(pg)*mapPageSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("engine: read volume %s: %w", m.full, err)
		}
		var p *ptrPage
		if got == mapPageSize {
			p, err = decodePtrPage(b)
		}
		if p == nil {
			log.Error().Str("volume", m.full).Int("root_page", pg).AnErr("cause", err).
				Msg("volume root page is damaged: the blocks under it read as I/O errors until written (fsck lists them)")
			for i := pg * ptrsPerPage; i < hi; i++ {
				root[i] = lostPage
			}
			continue
		}
		copy(root[pg*ptrsPerPage:hi], p[:hi-pg*ptrsPerPage])
	}
	m.ps.mu.Lock()
	m.root = root
	m.ps.mu.Unlock()
	return nil
}

// leafSpan is one leaf of a volume: blocks first.. of the volume, in page.
type leafSpan struct {
	first uint64
	page  uint32 // 0: a hole; lostPage: damaged
}

// leaves lists the volume's leaves that are not holes, in block order.
func (m *Map) leaves() []leafSpan {
	ps := m.ps
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	var out []leafSpan
	for t, tp := range m.root {
		base := uint64(t) * tableBlocks
		switch {
		case tp == 0:
		case tp == lostPage:
			for l := range ptrsPerPage {
				if first := base + uint64(l)*mapPerPage; first < m.blocks {
					out = append(out, leafSpan{first, lostPage})
				}
			}
		default:
			for l, lp := range ps.tables[tp] {
				if first := base + uint64(l)*mapPerPage; lp != 0 && first < m.blocks {
					out = append(out, leafSpan{first, lp})
				}
			}
		}
	}
	return out
}

// scan reads the whole map: it sets the counts of mapped and quarantined
// entries and passes each non-zero one to visit (may be nil).
func (m *Map) scan(visit func(lba uint64, e mapEntry)) error {
	var mapped, lost int64
	err := m.scanPages(func(lba uint64, e mapEntry) {
		mapped++
		if e.isLost() {
			lost++
		}
		if visit != nil {
			visit(lba, e)
		}
	})
	if err != nil {
		return err
	}
	m.mapped.Store(mapped)
	m.lost.Store(lost)
	return nil
}

// scanPages passes each non-zero entry of the committed map (not the
// overlays) to visit. An entry that fails its checksum is quarantined.
// Leaves in consecutive pages are read with one call.
func (m *Map) scanPages(visit func(lba uint64, e mapEntry)) error {
	return m.scanLeaves(func(lba uint64, e mapEntry, _ uint32) { visit(lba, e) })
}

// scanLeaves is scanPages that also names the leaf page of each entry
// (lostPage for a lost leaf).
func (m *Map) scanLeaves(visit func(lba uint64, e mapEntry, page uint32)) error {
	spans := m.leaves()
	const chunk = 64
	buf := make([]byte, chunk*mapPageSize)
	for i := 0; i < len(spans); {
		j := i + 1
		if live(spans[i].page) {
			for j < len(spans) && j-i < chunk && spans[j].page == spans[j-1].page+1 {
				j++
			}
			n, err := m.ps.f.ReadAt(buf[:(j-i)*mapPageSize], int64(spans[i].page)*mapPageSize)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("engine: read map of %s: %w", m.full, err)
			}
			for k := i; k < j; k++ {
				pg := buf[(k-i)*mapPageSize : (k-i+1)*mapPageSize]
				if have := n - (k-i)*mapPageSize; have < mapPageSize {
					fillLost(pg, have)
				}
				m.ps.fresh(pg, spans[k].page) // not in the file yet
				if isZero(pg) {
					continue
				}
				for x := range mapPerPage {
					lba := spans[k].first + uint64(x)
					if lba >= m.blocks {
						break
					}
					e, ok := decodeMapEntry(pg[x*mapEntrySize:])
					if !ok {
						e = quarantined
					}
					if !e.isZero() {
						visit(lba, e, spans[k].page)
					}
				}
			}
		} else { // a lost leaf
			for x := range uint64(mapPerPage) {
				if lba := spans[i].first + x; lba < m.blocks {
					visit(lba, quarantined, lostPage)
				}
			}
		}
		i = j
	}
	return nil
}

// get returns the entry of lba: overlay first, then the page file. An
// entry that fails its checksum comes back quarantined.
func (m *Map) get(lba uint64) (mapEntry, error) {
	var out [1]mapEntry
	err := m.getRange(lba, out[:])
	return out[0], err
}

// getRange fills out with the entries of blocks first.. (overlay first,
// then the page file, one read per leaf). Entries that fail their checksum
// come back quarantined.
func (m *Map) getRange(first uint64, out []mapEntry) error {
	last := first + uint64(len(out)) - 1
	type leafRef struct {
		page    uint32
		content []byte
		fresh   bool
	}
	var small [4]leafRef
	leaves := small[:0]
	// The overlay lock first: a commit drops its sealed changes only after
	// the leaves it made are in the file, so what is looked up below and
	// the overlay read after it agree.
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.ps.mu.RLock()
	for leaf := first / mapPerPage; leaf <= last/mapPerPage; leaf++ {
		n := m.ps.leafOf(m.root, leaf*mapPerPage)
		c, ok := m.ps.freshLocked(n)
		leaves = append(leaves, leafRef{n, c, ok})
	}
	m.ps.mu.RUnlock()
	for i, l := range leaves {
		leaf := first/mapPerPage + uint64(i)
		lo, hi := max(first, leaf*mapPerPage), min(last+1, (leaf+1)*mapPerPage)
		if err := m.ps.entriesOf(l.page, l.content, l.fresh, int(lo-leaf*mapPerPage), out[lo-first:hi-first]); err != nil {
			return err
		}
	}
	if len(m.cur) > 0 || len(m.sealed) > 0 {
		for i := range out {
			lba := first + uint64(i)
			if e, ok := m.cur[lba]; ok {
				out[i] = e
			} else if e, ok := m.sealed[lba]; ok {
				out[i] = e
			}
		}
	}
	return nil
}

// setMany records changes; the caller holds the blocks' locks and the
// epoch, and has made their leaves the volume's own (Engine.ownLeaves).
func (m *Map) setMany(lbas []uint64, ents []mapEntry) {
	m.mu.Lock()
	for i, lba := range lbas {
		m.cur[lba] = ents[i]
	}
	m.mu.Unlock()
}

// set records a change (see setMany).
func (m *Map) set(lba uint64, e mapEntry) {
	m.mu.Lock()
	m.cur[lba] = e
	m.mu.Unlock()
}

// seal moves the pending changes aside for a commit.
func (m *Map) seal() map[uint64]mapEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.cur) == 0 {
		return nil
	}
	m.sealed = m.cur
	m.cur = make(map[uint64]mapEntry, len(m.sealed))
	return m.sealed
}

// writeEntries writes entries in place into the volume's leaves and syncs
// the page file (fsck --repair's quarantine of damaged entries: a damaged
// entry of a shared leaf is damaged for every volume sharing it). Entries
// under a hole or a lost leaf are skipped: they read as zeros or errors.
func (m *Map) writeEntries(entries map[uint64]mapEntry) error {
	if len(entries) == 0 {
		return nil
	}
	b := make([]byte, mapEntrySize)
	for lba, e := range entries {
		m.ps.mu.RLock()
		lp := m.ps.leafOf(m.root, lba)
		m.ps.mu.RUnlock()
		if !live(lp) {
			continue
		}
		e.encode(b)
		if _, err := m.ps.f.WriteAt(b, int64(lp)*mapPageSize+int64(lba%mapPerPage)*mapEntrySize); err != nil {
			return fmt.Errorf("engine: write map of %s: %w", m.full, err)
		}
	}
	if err := m.ps.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync map pages: %w", err)
	}
	return nil
}

// dropSealed forgets the sealed changes once they are in the page file.
func (m *Map) dropSealed() {
	m.mu.Lock()
	m.sealed = nil
	m.mu.Unlock()
}

// each calls fn for every non-zero entry, overlays applied.
func (m *Map) each(fn func(lba uint64, e mapEntry) error) error {
	m.mu.RLock()
	over := make(map[uint64]mapEntry, len(m.cur)+len(m.sealed))
	for k, v := range m.sealed {
		over[k] = v
	}
	for k, v := range m.cur {
		over[k] = v
	}
	m.mu.RUnlock()
	var fnErr error
	err := m.scanPages(func(lba uint64, e mapEntry) {
		if _, ok := over[lba]; !ok && fnErr == nil {
			fnErr = fn(lba, e)
		}
	})
	if err != nil {
		return err
	}
	if fnErr != nil {
		return fnErr
	}
	for lba, e := range over {
		if !e.isZero() {
			if err := fn(lba, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Map) close() error {
	if m.f == nil {
		return nil
	}
	return m.f.Close()
}

// patchRoot writes root pointers into the volume file (changes sorted by
// index) and syncs it. Each root page is patched as it is on disk,
// checksum or not, and written back whole with a fresh checksum.
func (m *Map) patchRoot(changes []rootChange, page []byte) error {
	for i := 0; i < len(changes); {
		pg := changes[i].Index / ptrsPerPage
		off := rootOffset + int64(pg)*mapPageSize
		n, err := m.f.ReadAt(page, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("engine: read volume %s: %w", m.full, err)
		}
		clear(page[n:])
		var p ptrPage
		for k := range p {
			p[k] = binary.LittleEndian.Uint32(page[4*k:])
		}
		for ; i < len(changes) && changes[i].Index/ptrsPerPage == pg; i++ {
			if int(changes[i].Index) >= m.hdr.roots() {
				return fmt.Errorf("%w: journal names root pointer %d of volume %s, which has %d", ErrCorrupt, changes[i].Index, m.full, m.hdr.roots())
			}
			p[changes[i].Index%ptrsPerPage] = changes[i].Page
		}
		p.encode(page)
		if _, err := m.f.WriteAt(page, off); err != nil {
			return fmt.Errorf("engine: write volume %s: %w", m.full, err)
		}
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync volume %s: %w", m.full, err)
	}
	return nil
}

// reopen opens the volume file again after it was replaced whole.
func (m *Map) reopen(fsys vfs.FS) error {
	f, err := fsys.OpenFile(m.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if m.f != nil {
		m.f.Close()
	}
	m.f = f
	return nil
}
