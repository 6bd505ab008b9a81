package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"time"

	"blockhash/blockstore"
	"blockhash/vfs"
)

// Superblock is the store's manifest, the file "superblock" (64 bytes):
//
//	0  8  magic "BLKHASH\x00"
//	8  4  format version
//	12 4  block size
//	16 1  hash algorithm (1 sha256, 2 sha1)
//	17 1  flags (bit 0: verify before sharing)
//	18 6  zero
//	24 8  extent size in bytes
//	32 8  creation time, Unix nanoseconds
//	40 20 zero
//	60 4  CRC-32C of bytes 0..59
type Superblock struct {
	Version    uint32
	BlockSize  uint32
	Hash       HashAlg
	Verify     bool
	ExtentSize int64
	Created    time.Time
}

const (
	superblockName = "superblock"
	superblockSize = 64
	// FormatVersion is the on-disk format this code reads and writes.
	// Version 2: device maps are copy-on-write page trees (snapshots and
	// clones); version 1 kept one flat map file per device.
	FormatVersion = 2
)

var superMagic = [8]byte{'B', 'L', 'K', 'H', 'A', 'S', 'H', 0}

// Encode returns the on-disk form.
func (s *Superblock) Encode() []byte {
	b := make([]byte, superblockSize)
	copy(b, superMagic[:])
	binary.LittleEndian.PutUint32(b[8:], s.Version)
	binary.LittleEndian.PutUint32(b[12:], s.BlockSize)
	b[16] = byte(s.Hash)
	if s.Verify {
		b[17] = 1
	}
	binary.LittleEndian.PutUint64(b[24:], uint64(s.ExtentSize))
	binary.LittleEndian.PutUint64(b[32:], uint64(s.Created.UnixNano()))
	binary.LittleEndian.PutUint32(b[60:], crc32.Checksum(b[:60], castagnoli))
	return b
}

// DecodeSuperblock parses and checks a superblock.
func DecodeSuperblock(b []byte) (Superblock, error) {
	var s Superblock
	if len(b) != superblockSize {
		return s, fmt.Errorf("%w: superblock is %d bytes, want %d", ErrCorrupt, len(b), superblockSize)
	}
	if [8]byte(b[:8]) != superMagic {
		return s, fmt.Errorf("%w: not a blockhash superblock", ErrCorrupt)
	}
	if crc32.Checksum(b[:60], castagnoli) != binary.LittleEndian.Uint32(b[60:]) {
		return s, fmt.Errorf("%w: superblock checksum mismatch", ErrCorrupt)
	}
	if b[17]&^1 != 0 || !isZero(b[18:24]) || !isZero(b[40:60]) {
		return s, fmt.Errorf("%w: superblock has unknown flags or fields set", ErrFormat)
	}
	s.Version = binary.LittleEndian.Uint32(b[8:])
	s.BlockSize = binary.LittleEndian.Uint32(b[12:])
	s.Hash = HashAlg(b[16])
	s.Verify = b[17]&1 != 0
	s.ExtentSize = int64(binary.LittleEndian.Uint64(b[24:]))
	s.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(b[32:])))
	if s.Version < FormatVersion {
		return s, fmt.Errorf("%w: the store has format version %d, made by an older blockhash; this one reads version %d (run blockhash upgrade)", ErrFormat, s.Version, FormatVersion)
	}
	if s.Version != FormatVersion {
		return s, fmt.Errorf("%w: format version %d, made by a newer blockhash; this one reads version %d", ErrFormat, s.Version, FormatVersion)
	}
	if s.BlockSize != blockstore.BlockSize {
		return s, fmt.Errorf("%w: block size %d, want %d", ErrFormat, s.BlockSize, blockstore.BlockSize)
	}
	if s.Hash != SHA256 && s.Hash != SHA1 {
		return s, fmt.Errorf("%w: unknown hash algorithm %d", ErrFormat, s.Hash)
	}
	if s.ExtentSize <= 0 || s.ExtentSize%blockstore.BlockSize != 0 {
		return s, fmt.Errorf("%w: extent size %d", ErrCorrupt, s.ExtentSize)
	}
	return s, nil
}

func readSuperblock(fsys vfs.FS, dir string) (Superblock, error) {
	b, err := vfs.ReadFile(fsys, filepath.Join(dir, superblockName))
	if errors.Is(err, fs.ErrNotExist) {
		if f := strayStoreFile(dir); f != "" {
			return Superblock{}, fmt.Errorf("%w: %s: superblock missing, but the directory holds a store (%s): rebuild it with blockhash init --recover-superblock", ErrCorrupt, dir, f)
		}
		return Superblock{}, fmt.Errorf("%w: %s", ErrNoStore, dir)
	}
	if err != nil {
		return Superblock{}, fmt.Errorf("engine: %w", err)
	}
	s, err := DecodeSuperblock(b)
	if errors.Is(err, ErrCorrupt) {
		return s, fmt.Errorf("%s: %w (rebuild it with blockhash init --recover-superblock)", filepath.Join(dir, superblockName), err)
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, superblockName), err)
	}
	return s, nil
}
