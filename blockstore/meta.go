package blockstore

import (
	"encoding/binary"
	"hash/crc32"
)

// TagSize is the size of the opaque tag each slot record carries.
const TagSize = 36

// MetaSize is the on-disk size of one slot record:
//
//	offset size field
//	0      36   tag (the engine stores the block's digest and CRC-32 here)
//	36     4    reference count, little endian
//	40     4    flags, little endian
//	44     4    CRC-32C of bytes 0..43
//
// An all-zero record is a slot that was never used.
const MetaSize = 48

// Meta flags.
const (
	// FlagIndexed marks a slot whose tag is the index's entry for it
	// (a verify-mode collision is stored but not indexed).
	FlagIndexed uint32 = 1 << 0
	// FlagDamaged marks a live slot whose data is known to fail its digest
	// (found by a read, a verify, a scrub or fsck). A write of the same
	// content rewrites the slot in place and clears the flag.
	FlagDamaged uint32 = 1 << 1
	// MaxRefs is a saturated reference count: a slot that reaches it is
	// never released again (fsck recounts it exactly).
	MaxRefs uint32 = 1<<32 - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Meta is one slot's record.
type Meta struct {
	Tag   [TagSize]byte
	Refs  uint32
	Flags uint32
}

// IsZero reports whether the record is unused.
func (m *Meta) IsZero() bool { return *m == Meta{} }

// Encode writes the record into b (len >= MetaSize).
func (m *Meta) Encode(b []byte) {
	_ = b[MetaSize-1]
	if m.IsZero() {
		clear(b[:MetaSize])
		return
	}
	copy(b, m.Tag[:])
	binary.LittleEndian.PutUint32(b[36:], m.Refs)
	binary.LittleEndian.PutUint32(b[40:], m.Flags)
	binary.LittleEndian.PutUint32(b[44:], crc32.Checksum(b[:44], castagnoli))
}

// DecodeMeta parses one record. ok is false when the checksum fails.
func DecodeMeta(b []byte) (m Meta, ok bool) {
	if len(b) < MetaSize {
		return Meta{}, false
	}
	if IsZero(b[:MetaSize]) {
		return Meta{}, true
	}
	if crc32.Checksum(b[:44], castagnoli) != binary.LittleEndian.Uint32(b[44:]) {
		return Meta{}, false
	}
	copy(m.Tag[:], b)
	m.Refs = binary.LittleEndian.Uint32(b[36:])
	m.Flags = binary.LittleEndian.Uint32(b[40:])
	return m, true
}

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
