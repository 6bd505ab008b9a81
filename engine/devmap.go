package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"blockhash/blockstore"
	"blockhash/index"

	"blockhash/vfs"
	"github.com/rs/zerolog"
)

// A device's map file ("devices/NAME.map") maps each logical 4 KiB block to
// the key of its content and, as a location hint, the slot holding it. The
// key makes a map meaningful in any store; the slot saves a lookup per read.
//
// Layout: a 4096-byte header, then pages of 4096 bytes, each holding
// mapPerPage entries of 48 bytes (16 bytes of each page unused):
//
//	entry: 0 32 digest | 32 4 CRC-32C of the block | 36 8 slot | 44 4 CRC-32C of bytes 0..43
//
// An all-zero entry is an unwritten or zero block; the file is sparse, so
// such blocks cost nothing on disk.
//
// Header: 0 8 magic "BHMAP\0\0\1" | 8 4 version | 12 4 device id | 16 8 size
// in bytes | 24 8 created (Unix ns) | 32 2 name length | 34 .. name |
// 4092 4 CRC-32C of bytes 0..4091.
const (
	mapHeaderSize = 4096
	mapPageSize   = 4096
	mapEntrySize  = 48
	mapPerPage    = mapPageSize / mapEntrySize // 85
	maxNameLen    = 64
)

var mapMagic = [8]byte{'B', 'H', 'M', 'A', 'P', 0, 0, 1}

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

func entryOffset(lba uint64) int64 {
	return mapHeaderSize + int64(lba/mapPerPage)*mapPageSize + int64(lba%mapPerPage)*mapEntrySize
}

func mapFileSize(blocks uint64) int64 {
	return mapHeaderSize + int64((blocks+mapPerPage-1)/mapPerPage)*mapPageSize
}

type mapHeader struct {
	ID      uint32
	Size    int64
	Created time.Time
	Name    string
}

func (h *mapHeader) encode() []byte {
	b := make([]byte, mapHeaderSize)
	copy(b, mapMagic[:])
	binary.LittleEndian.PutUint32(b[8:], FormatVersion)
	binary.LittleEndian.PutUint32(b[12:], h.ID)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.Size))
	binary.LittleEndian.PutUint64(b[24:], uint64(h.Created.UnixNano()))
	binary.LittleEndian.PutUint16(b[32:], uint16(len(h.Name)))
	copy(b[34:], h.Name)
	binary.LittleEndian.PutUint32(b[4092:], crc32.Checksum(b[:4092], castagnoli))
	return b
}

func decodeMapHeader(b []byte) (mapHeader, error) {
	var h mapHeader
	if len(b) < mapHeaderSize {
		return h, fmt.Errorf("%w: map header truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if [8]byte(b[:8]) != mapMagic {
		return h, fmt.Errorf("%w: not a blockhash map", ErrCorrupt)
	}
	if crc32.Checksum(b[:4092], castagnoli) != binary.LittleEndian.Uint32(b[4092:]) {
		return h, fmt.Errorf("%w: map header checksum mismatch", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return h, fmt.Errorf("%w: map format version %d", ErrFormat, v)
	}
	h.ID = binary.LittleEndian.Uint32(b[12:])
	h.Size = int64(binary.LittleEndian.Uint64(b[16:]))
	h.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(b[24:])))
	n := int(binary.LittleEndian.Uint16(b[32:]))
	if n == 0 || n > maxNameLen || h.Size <= 0 || h.Size%blockstore.BlockSize != 0 {
		return h, fmt.Errorf("%w: map header fields out of range", ErrCorrupt)
	}
	h.Name = string(b[34 : 34+n])
	return h, nil
}

// Map is one device's map: the file plus the changes not yet written to it.
type Map struct {
	hdr    mapHeader
	path   string
	f      vfs.File
	blocks uint64

	// mapped counts non-zero entries (maintained by the engine's writers).
	mapped atomic.Int64
	// lost counts the quarantined entries the last scan found.
	lost atomic.Int64
	// deleted is set once the device is deleted: I/O then fails.
	deleted atomic.Bool

	// mu guards cur and sealed. Readers of the file hold it shared so a
	// commit cannot drop a sealed entry between their overlay check and
	// their file read.
	mu     sync.RWMutex
	cur    map[uint64]mapEntry // changes since the last seal
	sealed map[uint64]mapEntry // changes the running commit is writing
}

func createMap(fsys vfs.FS, path string, h mapHeader) (*Map, error) {
	tmp := path + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	blocks := uint64(h.Size / blockstore.BlockSize)
	fail := func(err error) (*Map, error) {
		f.Close()
		fsys.Remove(tmp)
		return nil, err
	}
	if _, err := f.WriteAt(h.encode(), 0); err != nil {
		return fail(fmt.Errorf("engine: write map header: %w", err))
	}
	if err := f.Truncate(mapFileSize(blocks)); err != nil {
		return fail(fmt.Errorf("engine: size map: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("engine: sync map: %w", err))
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("engine: %w", err))
	}
	return &Map{hdr: h, path: path, f: f, blocks: blocks, cur: map[uint64]mapEntry{}}, nil
}

// openMap opens a map file and checks its header and size; scan reads its
// entries. A map shorter than its header says (cut short by a damaged file
// system or a careless copy) is extended at once with quarantined entries:
// the blocks whose entries are gone read as errors, never as zeros.
func openMap(fsys vfs.FS, path string, log zerolog.Logger, readOnly bool) (*Map, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := fsys.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	m, err := readMapHeader(f, path)
	if err == nil && !readOnly {
		err = m.fillShort(log)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

func readMapHeader(f vfs.File, path string) (*Map, error) {
	hb := make([]byte, mapHeaderSize)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, mapHeaderSize), hb); err != nil {
		return nil, fmt.Errorf("%s: %w: map header truncated", path, ErrCorrupt)
	}
	h, err := decodeMapHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Map{hdr: h, path: path, f: f, blocks: uint64(h.Size / blockstore.BlockSize), cur: map[uint64]mapEntry{}}, nil
}

// fillShort extends a truncated map to its size with quarantined entries.
func (m *Map) fillShort(log zerolog.Logger) error {
	size, err := m.f.Size()
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	want := mapFileSize(m.blocks)
	if size >= want {
		return nil
	}
	// Whole entries that survived are kept; the first partial one and
	// everything after it are lost.
	have := max(0, size-mapHeaderSize)
	first := uint64(have/mapPageSize)*mapPerPage + uint64(have%mapPageSize/mapEntrySize)
	log.Error().Str("map", m.path).Int64("bytes", size).Int64("want", want).
		Uint64("first_block", first).Uint64("blocks", m.blocks-first).
		Msg("map file is cut short: its missing blocks are quarantined (they read as I/O errors until written; fsck lists them)")
	ents := make(map[uint64]mapEntry, min(m.blocks-first, 1<<16))
	for lba := first; lba < m.blocks; lba++ {
		ents[lba] = quarantined
		if len(ents) == 1<<16 || lba == m.blocks-1 {
			if err := m.writeEntries(ents); err != nil {
				return err
			}
			clear(ents)
		}
	}
	return nil
}

// scan reads the whole map file: it sets the counts of mapped and
// quarantined entries and passes each non-zero one to visit (may be nil).
func (m *Map) scan(visit func(lba uint64, e mapEntry)) error {
	var mapped, lost int64
	err := m.scanFile(func(lba uint64, e mapEntry) {
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

// scanFile passes each non-zero entry of the file (not the overlays) to
// visit. An entry that fails its checksum is quarantined. Only the file's
// data regions are read: an empty 4 TiB device has a 51 GB map that is
// all hole.
func (m *Map) scanFile(visit func(lba uint64, e mapEntry)) error {
	size, err := m.f.Size()
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	const chunkPages = 256
	buf := make([]byte, chunkPages*mapPageSize)
	var readTo int64 // pages before it were read (those that hold data)
	end := min(size, mapFileSize(m.blocks))
	for pos := int64(mapHeaderSize); pos < end; {
		data, hole, err := m.f.DataRegion(pos, end)
		if err != nil {
			return err
		}
		// whole pages covering [data, hole)
		first := max(0, (data-mapHeaderSize)/mapPageSize)
		stop := (min(hole, end) - mapHeaderSize + mapPageSize - 1) / mapPageSize
		for page := first; page < stop; page += chunkPages {
			n := min(chunkPages, stop-page)
			readTo = page + n
			if err := m.readPages(buf[:n*mapPageSize], mapHeaderSize+page*mapPageSize); err != nil {
				return err
			}
			for p := range n {
				pg := buf[p*mapPageSize : (p+1)*mapPageSize]
				if isZero(pg) {
					continue
				}
				for i := range mapPerPage {
					lba := uint64(page+p)*mapPerPage + uint64(i)
					if lba >= m.blocks {
						break // the last page's tail holds no block
					}
					e, ok := decodeMapEntry(pg[i*mapEntrySize:])
					if !ok {
						e = quarantined
					}
					if !e.isZero() {
						visit(lba, e)
					}
				}
			}
		}
		pos = mapHeaderSize + stop*mapPageSize
	}
	// A map cut short (opened read-only, so not yet filled): every entry
	// past its end is lost. Pages the loop read had those entries filled in
	// as quarantined by readPages; the rest are visited here.
	if size < mapFileSize(m.blocks) {
		have := size - mapHeaderSize
		first := uint64(have/mapPageSize)*mapPerPage + uint64(have%mapPageSize/mapEntrySize)
		for lba := first; lba < m.blocks; lba++ {
			if int64(lba/mapPerPage) < readTo {
				continue
			}
			visit(lba, quarantined)
		}
	}
	return nil
}

// readPages reads whole pages at off; whatever lies past the end of a map
// cut short reads as quarantined entries.
func (m *Map) readPages(buf []byte, off int64) error {
	n, err := m.f.ReadAt(buf, off)
	if errors.Is(err, io.EOF) {
		for pg := n / mapPageSize * mapPageSize; pg < len(buf); pg += mapPageSize {
			for k := max(0, n-pg) / mapEntrySize; k < mapPerPage; k++ {
				if pg+k*mapEntrySize < n {
					continue
				}
				quarantined.encode(buf[pg+k*mapEntrySize:])
			}
			clear(buf[pg+mapPerPage*mapEntrySize : pg+mapPageSize])
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("engine: read map %s: %w", m.hdr.Name, err)
	}
	return nil
}

// get returns the entry of lba: overlay first, then the file. An entry
// that fails its checksum comes back quarantined.
func (m *Map) get(lba uint64) (mapEntry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if e, ok := m.cur[lba]; ok {
		return e, nil
	}
	if e, ok := m.sealed[lba]; ok {
		return e, nil
	}
	var b [mapEntrySize]byte
	if _, err := m.f.ReadAt(b[:], entryOffset(lba)); errors.Is(err, io.EOF) {
		return quarantined, nil // past the end of a map cut short
	} else if err != nil {
		return mapEntry{}, fmt.Errorf("engine: read map %s: %w", m.hdr.Name, err)
	}
	e, ok := decodeMapEntry(b[:])
	if !ok {
		return quarantined, nil
	}
	return e, nil
}

// getRange fills out with the entries of blocks first.. (overlay first,
// then the file, read in one call). Entries that fail their checksum come
// back quarantined.
func (m *Map) getRange(first uint64, out []mapEntry) error {
	if len(out) == 1 {
		e, err := m.get(first)
		out[0] = e
		return err
	}
	last := first + uint64(len(out)) - 1
	pg0, pg1 := first/mapPerPage, last/mapPerPage
	buf := make([]byte, (pg1-pg0+1)*mapPageSize)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.readPages(buf, mapHeaderSize+int64(pg0)*mapPageSize); err != nil {
		return err
	}
	for i := range out {
		lba := first + uint64(i)
		if e, ok := m.cur[lba]; ok {
			out[i] = e
			continue
		}
		if e, ok := m.sealed[lba]; ok {
			out[i] = e
			continue
		}
		off := (lba/mapPerPage-pg0)*mapPageSize + (lba%mapPerPage)*mapEntrySize
		e, ok := decodeMapEntry(buf[off:])
		if !ok {
			e = quarantined
		}
		out[i] = e
	}
	return nil
}

// setMany records changes; the caller holds the blocks' locks and the epoch.
func (m *Map) setMany(lbas []uint64, ents []mapEntry) {
	m.mu.Lock()
	for i, lba := range lbas {
		m.cur[lba] = ents[i]
	}
	m.mu.Unlock()
}

// set records a change; the caller holds the block's lock and the epoch.
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

// writeEntries writes entries into the file by page (read, modify, write)
// and syncs it. It is idempotent (journal replay calls it too).
func (m *Map) writeEntries(entries map[uint64]mapEntry) error {
	if len(entries) == 0 {
		return nil
	}
	lbas := make([]uint64, 0, len(entries))
	for lba := range entries {
		lbas = append(lbas, lba)
	}
	sort.Slice(lbas, func(i, j int) bool { return lbas[i] < lbas[j] })
	page := make([]byte, mapPageSize)
	for i := 0; i < len(lbas); {
		pg := lbas[i] / mapPerPage
		off := mapHeaderSize + int64(pg)*mapPageSize
		n, err := m.f.ReadAt(page, off)
		if errors.Is(err, io.EOF) {
			// Past the end of a map cut short: those entries are lost.
			for k := n / mapEntrySize; k < mapPerPage; k++ {
				quarantined.encode(page[k*mapEntrySize:])
			}
		} else if err != nil {
			return fmt.Errorf("engine: read map %s: %w", m.hdr.Name, err)
		}
		for ; i < len(lbas) && lbas[i]/mapPerPage == pg; i++ {
			entries[lbas[i]].encode(page[(lbas[i]%mapPerPage)*mapEntrySize:])
		}
		if _, err := m.f.WriteAt(page, off); err != nil {
			return fmt.Errorf("engine: write map %s: %w", m.hdr.Name, err)
		}
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync map %s: %w", m.hdr.Name, err)
	}
	return nil
}

// dropSealed forgets the sealed changes once they are in the file.
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
	err := m.scanFile(func(lba uint64, e mapEntry) {
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

func (m *Map) close() error { return m.f.Close() }
