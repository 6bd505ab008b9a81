package engine

import (
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
//	header: 0 4 magic "BHJ1" | 4 8 sequence | 12 4 body length | 16 4 CRC-32C of body | 20 4 CRC-32C of bytes 0..19
//	body:   4 count, then count map changes of 56 bytes:
//	          0 4 device id | 4 8 block | 12 36 key | 48 8 slot   (a zero key and slot unmaps)
//	        4 count, then count slot records of 56 bytes:
//	          0 8 slot | 8 48 blockstore record
//	        4 count, then count device ids of 4 bytes: devices deleted
type record struct {
	Seq     uint64
	Maps    []mapChange
	Slots   []slotChange
	Deletes []uint32
}

type mapChange struct {
	Dev   uint32
	LBA   uint64
	Entry mapEntry
}

type slotChange struct {
	Slot uint64
	Meta blockstore.Meta
}

const (
	journalName       = "journal"
	journalHeaderSize = 24
	mapChangeSize     = 56
	slotChangeSize    = 56
	maxJournalBody    = 1 << 31
)

var journalMagic = [4]byte{'B', 'H', 'J', '1'}

func (r *record) encode() []byte {
	n := 12 + len(r.Maps)*mapChangeSize + len(r.Slots)*slotChangeSize + 4*len(r.Deletes)
	b := make([]byte, journalHeaderSize+n)
	body := b[journalHeaderSize:]
	p := body
	binary.LittleEndian.PutUint32(p, uint32(len(r.Maps)))
	p = p[4:]
	for _, c := range r.Maps {
		binary.LittleEndian.PutUint32(p, c.Dev)
		binary.LittleEndian.PutUint64(p[4:], c.LBA)
		c.Entry.Key.Encode(p[12:48])
		binary.LittleEndian.PutUint64(p[48:], c.Entry.Slot)
		p = p[mapChangeSize:]
	}
	binary.LittleEndian.PutUint32(p, uint32(len(r.Slots)))
	p = p[4:]
	for _, c := range r.Slots {
		binary.LittleEndian.PutUint64(p, c.Slot)
		c.Meta.Encode(p[8:])
		p = p[slotChangeSize:]
	}
	binary.LittleEndian.PutUint32(p, uint32(len(r.Deletes)))
	p = p[4:]
	for _, d := range r.Deletes {
		binary.LittleEndian.PutUint32(p, d)
		p = p[4:]
	}
	copy(b, journalMagic[:])
	binary.LittleEndian.PutUint64(b[4:], r.Seq)
	binary.LittleEndian.PutUint32(b[12:], uint32(n))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(body, castagnoli))
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	return b
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
	r := &record{Seq: binary.LittleEndian.Uint64(b[4:])}
	bad := fmt.Errorf("%w: journal body malformed", ErrCorrupt)
	count := func(size int) (int, bool) {
		if len(body) < 4 {
			return 0, false
		}
		c := int(binary.LittleEndian.Uint32(body))
		body = body[4:]
		if c < 0 || c > len(body)/size {
			return 0, false
		}
		return c, true
	}
	c, ok := count(mapChangeSize)
	if !ok {
		return nil, bad
	}
	r.Maps = make([]mapChange, c)
	for i := range r.Maps {
		k, _ := index.DecodeKey(body[12:48])
		r.Maps[i] = mapChange{
			Dev:   binary.LittleEndian.Uint32(body),
			LBA:   binary.LittleEndian.Uint64(body[4:]),
			Entry: mapEntry{Key: k, Slot: binary.LittleEndian.Uint64(body[48:])},
		}
		body = body[mapChangeSize:]
	}
	if c, ok = count(slotChangeSize); !ok {
		return nil, bad
	}
	r.Slots = make([]slotChange, c)
	for i := range r.Slots {
		m, ok := blockstore.DecodeMeta(body[8:slotChangeSize])
		if !ok {
			return nil, bad
		}
		r.Slots[i] = slotChange{Slot: binary.LittleEndian.Uint64(body), Meta: m}
		body = body[slotChangeSize:]
	}
	if c, ok = count(4); !ok {
		return nil, bad
	}
	r.Deletes = make([]uint32, c)
	for i := range r.Deletes {
		r.Deletes[i] = binary.LittleEndian.Uint32(body)
		body = body[4:]
	}
	if len(body) != 0 {
		return nil, bad
	}
	return r, nil
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
