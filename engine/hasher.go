package engine

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"

	"blockhash/index"
)

// HashAlg is the strong hash of a store, fixed at creation.
type HashAlg uint8

const (
	SHA256 HashAlg = 1 // default: collision resistant
	SHA1   HashAlg = 2 // the original design's hash; collisions can be built
)

func (h HashAlg) String() string {
	switch h {
	case SHA256:
		return "sha256"
	case SHA1:
		return "sha1"
	}
	return fmt.Sprintf("hash(%d)", uint8(h))
}

// ParseHash parses "sha256" or "sha1".
func ParseHash(s string) (HashAlg, error) {
	switch strings.ToLower(s) {
	case "sha256", "":
		return SHA256, nil
	case "sha1":
		return SHA1, nil
	}
	return 0, fmt.Errorf("%w: unknown hash %q (want sha256 or sha1)", ErrInvalid, s)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockKey computes the key of one 4 KiB block; zero blocks get the zero Key.
func (h HashAlg) blockKey(b []byte) index.Key {
	if isZero(b) {
		return index.Key{}
	}
	k := index.Key{CRC: crc32.Checksum(b, castagnoli)}
	if h == SHA1 {
		s := sha1.Sum(b)
		copy(k.Sum[:], s[:])
	} else {
		k.Sum = sha256.Sum256(b)
	}
	if k.IsZero() { // cannot happen for real digests; keep zero meaning "no block"
		k.CRC = 1
	}
	return k
}

func isZero(b []byte) bool {
	for len(b) >= 32 {
		if binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:]) != 0 {
			return false
		}
		b = b[32:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
