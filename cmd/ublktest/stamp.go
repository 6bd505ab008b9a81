package main

// Stamp blocks: the power-cut verifier's unit of data. Every 4 KiB block the
// stamp writer puts on a device names a content id (cid) and is otherwise a
// pure function of it, so a block read back is either exactly some cid's
// block, all zeros (cid 0: never written) or garbage. Cids 1..stampPool are
// shared patterns (many blocks hold the same content, so the store
// deduplicates them); larger cids are unique to one write.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
)

const (
	stampBlockSize = 4096
	stampPool      = 64 // cids 1..stampPool are shared patterns
	stampMagic     = "BHSTAMP1"
)

// errGarbage: a block that is neither zeros nor exactly a stamp block.
var errGarbage = errors.New("not a stamp block (garbage or torn)")

var stampCRC = crc32.MakeTable(crc32.Castagnoli)

// encodeStamp fills b (stampBlockSize bytes) with cid's block: magic, cid,
// filler drawn from cid (splitmix64), CRC-32C of everything before it.
func encodeStamp(b []byte, cid uint64) {
	copy(b, stampMagic)
	binary.LittleEndian.PutUint64(b[8:], cid)
	x := cid
	for i := 16; i < stampBlockSize-4; i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		binary.LittleEndian.PutUint64(b[i:], z)
	}
	binary.LittleEndian.PutUint32(b[stampBlockSize-4:], crc32.Checksum(b[:stampBlockSize-4], stampCRC))
}

// decodeStamp returns the cid whose block b is exactly, 0 for all zeros, or
// errGarbage. scratch is a stampBlockSize buffer it may overwrite.
func decodeStamp(b, scratch []byte) (uint64, error) {
	if string(b[:8]) != stampMagic {
		if isZero(b) {
			return 0, nil
		}
		return 0, errGarbage
	}
	cid := binary.LittleEndian.Uint64(b[8:])
	if cid == 0 {
		return 0, errGarbage
	}
	encodeStamp(scratch, cid)
	if !bytes.Equal(b[:stampBlockSize], scratch[:stampBlockSize]) {
		return 0, errGarbage
	}
	return cid, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
