package rados

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// A host's published references for one GC round (object
// bh.refs.<host>): every location its maps name or it has pinned.
//
//	0 8 magic "BHREFS\0\1" | 8 8 round | 16 2 host | 18 4 count |
//	22 8*count locations, ascending, distinct, non-zero |
//	last 4: CRC-32C of everything before
//
// All integers little endian. A sorted list is what this step needs; the
// design's per-pack bitmaps (design.md 4.5) replace it when stores grow.
const (
	refsMagic  = "BHREFS\x00\x01"
	refsHeader = 22
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// refsObject is host's published references.
func refsObject(host uint16) string { return fmt.Sprintf("bh.refs.%d", host) }

// encodeRefs encodes locs (sorted and deduplicated here).
func encodeRefs(round uint64, host uint16, locs []Loc) []byte {
	locs = slices.Clone(locs)
	slices.Sort(locs)
	locs = slices.Compact(locs)
	if len(locs) > 0 && locs[0] == 0 {
		locs = locs[1:]
	}
	b := make([]byte, 0, refsHeader+8*len(locs)+4)
	b = append(b, refsMagic...)
	b = binary.LittleEndian.AppendUint64(b, round)
	b = binary.LittleEndian.AppendUint16(b, host)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(locs)))
	for _, l := range locs {
		b = binary.LittleEndian.AppendUint64(b, uint64(l))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeRefs parses a published reference list.
func decodeRefs(b []byte) (round uint64, host uint16, locs []Loc, err error) {
	if len(b) < refsHeader+4 || string(b[:8]) != refsMagic {
		return 0, 0, nil, fmt.Errorf("%w: reference list of %d bytes without its magic", ErrBadValue, len(b))
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return 0, 0, nil, fmt.Errorf("%w: reference list fails its checksum", ErrBadValue)
	}
	round = binary.LittleEndian.Uint64(b[8:])
	host = binary.LittleEndian.Uint16(b[16:])
	n := binary.LittleEndian.Uint32(b[18:])
	if uint64(len(body)-refsHeader) != 8*uint64(n) {
		return 0, 0, nil, fmt.Errorf("%w: reference list says %d locations in %d bytes", ErrBadValue, n, len(body)-refsHeader)
	}
	locs = make([]Loc, n)
	for i := range locs {
		locs[i] = Loc(binary.LittleEndian.Uint64(body[refsHeader+8*i:]))
		if locs[i] == 0 || i > 0 && locs[i] <= locs[i-1] {
			return 0, 0, nil, fmt.Errorf("%w: reference list not ascending at %d", ErrBadValue, i)
		}
	}
	return round, host, locs, nil
}

func crc32Sum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
