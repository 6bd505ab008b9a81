package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"blockhash/blockstore"
	"blockhash/index"

	"blockhash/vfs"
	"github.com/rs/zerolog"
)

// The journal ("journal" in the store directory) holds at most one record:
// the commit being applied. A commit syncs the new block data, writes and
// syncs its record, then applies it to the maps, the slot records and the
// index, and truncates the journal. A record that is complete and passes its
// checksum is replayed at open (every change in it is an absolute value, so
// replaying twice is harmless); a torn record is a commit that never
// happened and is discarded.
//
// Record: a 24-byte header, then the body.
//
//	header: 0 4 magic "BHJ2" | 4 8 sequence | 12 4 body length | 16 4 CRC-32C of body | 20 4 CRC-32C of bytes 0..19
//	body:   4 count, then count leaf writes:
//	          0 4 page | 4 1 how (0 in place, 1 from zeros, 2 from the 4096 bytes
//	          that follow) | [4096 first content] | 4 count, then count entries
//	          of 46 bytes: 0 2 index in the leaf | 2 36 key | 38 8 slot
//	        4 count, then count table writes: 0 4 page | 4 4096 pointer page
//	        4 count, then count volume files: 0 4 id | 4 4 length | content
//	        4 count, then count root pointers: 0 4 volume id | 4 4 index | 8 4 page
//	        4 count, then count volume ids of 4 bytes: volume files removed
//	        4 count, then count slot records of 56 bytes: 0 8 slot | 8 48 blockstore record
//
// Every change is an absolute value and a leaf's first content travels
// with it (a copy-on-write does not read its source at replay), so applying
// a record twice is harmless.
type record struct {
	Seq     uint64
	Leaves  []leafWrite
	Tables  []tableWrite
	Vols    []volWrite
	Roots   []rootChange
	Removes []uint32
	Slots   []slotChange
}

// leafWrite changes one leaf page: from its current content (Init nil and
// Zero unset), from zeros, or from Init, then Entries.
type leafWrite struct {
	Page    uint32
	Zero    bool
	Init    []byte // mapPageSize bytes
	Entries []leafEntry
}

type leafEntry struct {
	Idx   uint16
	Entry mapEntry
}

type tableWrite struct {
	Page uint32
	Ptrs *ptrPage
}

type volWrite struct {
	ID      uint32
	Content []byte // the whole volume file
}

type rootChange struct {
	Vol   uint32
	Index uint32
	Page  uint32
}

type slotChange struct {
	Slot uint64
	Meta blockstore.Meta
}

const (
	journalName       = "journal"
	journalHeaderSize = 24
	leafEntrySize     = 46
	slotChangeSize    = 56
	maxJournalBody    = 1 << 31
	maxVolumeFile     = 64 << 20
)

var journalMagic = [4]byte{'B', 'H', 'J', '2'}

func (r *record) empty() bool {
	return len(r.Leaves) == 0 && len(r.Tables) == 0 && len(r.Vols) == 0 && len(r.Roots) == 0 &&
		len(r.Removes) == 0 && len(r.Slots) == 0
}

func (r *record) encode() []byte {
	w := make([]byte, journalHeaderSize, journalHeaderSize+64+len(r.Slots)*slotChangeSize)
	u32 := func(v uint32) { w = binary.LittleEndian.AppendUint32(w, v) }
	u32(uint32(len(r.Leaves)))
	var eb [mapEntrySize]byte
	for _, l := range r.Leaves {
		u32(l.Page)
		switch {
		case l.Init != nil:
			w = append(w, 2)
			w = append(w, l.Init[:mapPageSize]...)
		case l.Zero:
			w = append(w, 1)
		default:
			w = append(w, 0)
		}
		u32(uint32(len(l.Entries)))
		for _, e := range l.Entries {
			w = binary.LittleEndian.AppendUint16(w, e.Idx)
			e.Entry.Key.Encode(eb[:index.KeySize])
			w = append(w, eb[:index.KeySize]...)
			w = binary.LittleEndian.AppendUint64(w, e.Entry.Slot)
		}
	}
	u32(uint32(len(r.Tables)))
	pb := make([]byte, mapPageSize)
	for _, t := range r.Tables {
		u32(t.Page)
		t.Ptrs.encode(pb)
		w = append(w, pb...)
	}
	u32(uint32(len(r.Vols)))
	for _, v := range r.Vols {
		u32(v.ID)
		u32(uint32(len(v.Content)))
		w = append(w, v.Content...)
	}
	u32(uint32(len(r.Roots)))
	for _, c := range r.Roots {
		u32(c.Vol)
		u32(c.Index)
		u32(c.Page)
	}
	u32(uint32(len(r.Removes)))
	for _, id := range r.Removes {
		u32(id)
	}
	u32(uint32(len(r.Slots)))
	for _, c := range r.Slots {
		w = binary.LittleEndian.AppendUint64(w, c.Slot)
		var mb [blockstore.MetaSize]byte
		c.Meta.Encode(mb[:])
		w = append(w, mb[:]...)
	}
	body := w[journalHeaderSize:]
	copy(w, journalMagic[:])
	binary.LittleEndian.PutUint64(w[4:], r.Seq)
	binary.LittleEndian.PutUint32(w[12:], uint32(len(body)))
	binary.LittleEndian.PutUint32(w[16:], crc32.Checksum(body, castagnoli))
	binary.LittleEndian.PutUint32(w[20:], crc32.Checksum(w[:20], castagnoli))
	return w
}

// decodeRecord parses a journal. It returns (nil, nil) for an empty journal
// and an error wrapping ErrCorrupt for a torn or damaged one.
func decodeRecord(b []byte) (*record, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < journalHeaderSize || [4]byte(b[:4]) != journalMagic ||
		crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:]) {
		return nil, fmt.Errorf("%w: journal header", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(b[12:])
	if uint64(n) != uint64(len(b)-journalHeaderSize) {
		return nil, fmt.Errorf("%w: journal body is %d bytes, header says %d", ErrCorrupt, len(b)-journalHeaderSize, n)
	}
	body := b[journalHeaderSize:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		return nil, fmt.Errorf("%w: journal body checksum", ErrCorrupt)
	}
	d := recordDecoder{b: body}
	r := &record{Seq: binary.LittleEndian.Uint64(b[4:])}
	for range d.count(4 + 1 + 4) {
		l := leafWrite{Page: d.u32()}
		switch d.byte() {
		case 0:
		case 1:
			l.Zero = true
		case 2:
			l.Init = bytes.Clone(d.bytes(mapPageSize))
		default:
			d.bad = true
		}
		l.Entries = make([]leafEntry, d.count(leafEntrySize))
		for i := range l.Entries {
			l.Entries[i].Idx = d.u16()
			k, _ := index.DecodeKey(d.bytes(index.KeySize))
			l.Entries[i].Entry = mapEntry{Key: k, Slot: d.u64()}
			if l.Entries[i].Idx >= mapPerPage {
				d.bad = true
			}
		}
		if d.bad {
			break
		}
		r.Leaves = append(r.Leaves, l)
	}
	for range d.count(4 + mapPageSize) {
		t := tableWrite{Page: d.u32()}
		p, err := decodePtrPage(d.bytes(mapPageSize))
		if err != nil {
			d.bad = true
			break
		}
		t.Ptrs = p
		r.Tables = append(r.Tables, t)
	}
	for range d.count(8) {
		v := volWrite{ID: d.u32()}
		n := d.u32()
		if n > maxVolumeFile || int64(n) > int64(len(d.b)) {
			d.bad = true
			break
		}
		v.Content = bytes.Clone(d.bytes(int(n)))
		r.Vols = append(r.Vols, v)
	}
	for range d.count(12) {
		r.Roots = append(r.Roots, rootChange{Vol: d.u32(), Index: d.u32(), Page: d.u32()})
	}
	for range d.count(4) {
		r.Removes = append(r.Removes, d.u32())
	}
	for range d.count(slotChangeSize) {
		slot := d.u64()
		m, ok := blockstore.DecodeMeta(d.bytes(blockstore.MetaSize))
		if !ok {
			d.bad = true
			break
		}
		r.Slots = append(r.Slots, slotChange{Slot: slot, Meta: m})
	}
	if d.bad || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: journal body malformed", ErrCorrupt)
	}
	return r, nil
}

// recordDecoder reads a record body; any short read sets bad and yields
// zeros, so a malformed body is reported once, at the end.
type recordDecoder struct {
	b   []byte
	bad bool
}

func (d *recordDecoder) bytes(n int) []byte {
	if d.bad || n > len(d.b) {
		d.bad = true
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *recordDecoder) byte() byte  { return d.bytes(1)[0] }
func (d *recordDecoder) u16() uint16 { return binary.LittleEndian.Uint16(d.bytes(2)) }
func (d *recordDecoder) u32() uint32 { return binary.LittleEndian.Uint32(d.bytes(4)) }
func (d *recordDecoder) u64() uint64 { return binary.LittleEndian.Uint64(d.bytes(8)) }

// count reads a count of items of at least min bytes each; a count the
// rest of the body cannot hold is malformed (and yields 0).
func (d *recordDecoder) count(min int) int {
	c := int(d.u32())
	if d.bad || c < 0 || c > len(d.b)/min {
		d.bad = true
		return 0
	}
	return c
}

// journal is the open journal file.
type journal struct {
	f        vfs.File
	log      zerolog.Logger
	readOnly bool // a read-only open: a torn record is ignored, not emptied
}

func openJournal(fsys vfs.FS, path string, log zerolog.Logger) (*journal, error) {
	_, statErr := fsys.Stat(path)
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("engine: journal: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// A new journal's name must be durable before a record in it
		// can be a commit point.
		if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("engine: journal: %w", err)
		}
	}
	return &journal{f: f, log: log}, nil
}

// read returns the pending record, nil if none. A torn or damaged record
// is a commit that did not reach its commit point: it is reported and
// emptied at once, so that the next commit's shorter record is never read
// together with its leftover tail.
func (j *journal) read() (*record, error) {
	size, err := j.f.Size()
	if err != nil {
		return nil, fmt.Errorf("engine: journal: %w", err)
	}
	if size > maxJournalBody+journalHeaderSize {
		if j.readOnly {
			return nil, nil
		}
		j.log.Error().Int64("bytes", size).Msg("journal is larger than any record: discarding it")
		return nil, j.reset()
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(j.f, 0, size), b); err != nil {
		return nil, fmt.Errorf("engine: journal: %w", err)
	}
	r, err := decodeRecord(b)
	if errors.Is(err, ErrCorrupt) {
		if j.readOnly {
			return nil, nil
		}
		if len(b) >= 4 && [4]byte(b[:4]) == journalMagic {
			j.log.Warn().Err(err).Int("bytes", len(b)).Msg("discarding a torn journal record: the commit it began never completed")
		} else {
			j.log.Error().Err(err).Int("bytes", len(b)).Msg("journal holds no valid record: discarding it")
		}
		return nil, j.reset()
	}
	return r, err
}

// write makes r durable; this is a commit's point of no return.
func (j *journal) write(r *record) error {
	b := r.encode()
	if _, err := j.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("engine: write journal: %w", err)
	}
	// The file holds exactly this record (nothing of an earlier one).
	if err := j.f.Truncate(int64(len(b))); err != nil {
		return fmt.Errorf("engine: write journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync journal: %w", err)
	}
	return nil
}

// reset empties the journal once its record is applied everywhere.
func (j *journal) reset() error {
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("engine: truncate journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync journal: %w", err)
	}
	return nil
}

func (j *journal) close() error { return j.f.Close() }
