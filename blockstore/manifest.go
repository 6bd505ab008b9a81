package blockstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The extent manifest ("extents" in the store's directory) is the durable
// count of extents, so a missing last extent is noticed. It is rewritten
// with the durable recipe (temp file, sync, rename, directory sync) after
// each Grow has made its files durable; the files can therefore be ahead
// of the manifest (a crash between the two) but never behind it.
//
//	0  8 magic "BHEXT\0\0\1"
//	8  8 extent count, little endian
//	16 4 CRC-32C of bytes 0..15
const (
	manifestName = "extents"
	manifestSize = 20
)

var manifestMagic = [8]byte{'B', 'H', 'E', 'X', 'T', 0, 0, 1}

func encodeManifest(count uint64) []byte {
	b := make([]byte, manifestSize)
	copy(b, manifestMagic[:])
	binary.LittleEndian.PutUint64(b[8:], count)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	return b
}

// decodeManifest parses the manifest; damage is an error wrapping
// ErrCorrupt.
func decodeManifest(b []byte) (uint64, error) {
	if len(b) != manifestSize {
		return 0, fmt.Errorf("%w: extent manifest is %d bytes, want %d", ErrCorrupt, len(b), manifestSize)
	}
	if [8]byte(b[:8]) != manifestMagic {
		return 0, fmt.Errorf("%w: extent manifest has a bad magic", ErrCorrupt)
	}
	if crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
		return 0, fmt.Errorf("%w: extent manifest checksum mismatch", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint64(b[8:])
	if n > 1<<31 {
		return 0, fmt.Errorf("%w: extent manifest counts %d extents", ErrCorrupt, n)
	}
	return n, nil
}
