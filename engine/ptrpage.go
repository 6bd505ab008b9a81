package engine

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// A pointer page is 4096 bytes: ptrsPerPage page numbers (little-endian
// uint32) and, in its last 4 bytes, the CRC-32C of the bytes before them.
// It is the format of a map table page (pointers to leaf pages) and of each
// page of a volume's root (pointers to table pages). Pointer 0 is a hole
// (every block under it unwritten); lostPage marks a subtree whose pages
// were damaged (every block under it reads as an I/O error until written).
const (
	ptrsPerPage = (mapPageSize - 4) / 4 // 1023
	// lostPage is the pointer to a damaged subtree.
	lostPage = ^uint32(0)
)

// ptrPage is a decoded pointer page.
type ptrPage [ptrsPerPage]uint32

func (p *ptrPage) encode(b []byte) {
	for i, v := range p {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	binary.LittleEndian.PutUint32(b[mapPageSize-4:], crc32.Checksum(b[:mapPageSize-4], castagnoli))
}

// decodePtrPage parses a pointer page. An all-zero page is a valid, empty
// one (a page written by a crash-interrupted commit reads so only if it
// was never written, and its pointers were all holes then).
func decodePtrPage(b []byte) (*ptrPage, error) {
	if len(b) < mapPageSize {
		return nil, fmt.Errorf("%w: pointer page truncated (%d bytes)", ErrCorrupt, len(b))
	}
	p := new(ptrPage)
	if isZero(b[:mapPageSize]) {
		return p, nil
	}
	if crc32.Checksum(b[:mapPageSize-4], castagnoli) != binary.LittleEndian.Uint32(b[mapPageSize-4:]) {
		return nil, fmt.Errorf("%w: pointer page checksum mismatch", ErrCorrupt)
	}
	for i := range p {
		p[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return p, nil
}

// live reports whether a pointer names a page (not a hole, not lost).
func live(ptr uint32) bool { return ptr != 0 && ptr != lostPage }
