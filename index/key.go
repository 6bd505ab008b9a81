package index

import (
	"encoding/binary"
	"encoding/hex"
)

// SumSize is the size of the strong digest in a Key (SHA-256; a SHA-1
// digest is stored in the first 20 bytes, the rest zero).
const SumSize = 32

// KeySize is the encoded size of a Key.
const KeySize = SumSize + 4

// Key names a block by content: its strong digest and its CRC-32C. It is
// comparable and usable as a map key.
type Key struct {
	Sum [SumSize]byte
	CRC uint32
}

// String is a short form for logs: the first 6 bytes of the digest.
func (k Key) String() string { return hex.EncodeToString(k.Sum[:6]) }

// IsZero reports whether k is the zero Key (no block).
func (k Key) IsZero() bool { return k == Key{} }

// Encode writes the KeySize-byte form of k into b.
func (k Key) Encode(b []byte) {
	copy(b, k.Sum[:])
	binary.BigEndian.PutUint32(b[SumSize:], k.CRC)
}

// DecodeKey reads a Key from its KeySize-byte form.
func DecodeKey(b []byte) (k Key, ok bool) {
	if len(b) != KeySize {
		return Key{}, false
	}
	copy(k.Sum[:], b)
	k.CRC = binary.BigEndian.Uint32(b[SumSize:])
	return k, true
}

// fingerprint is the level-one key: the digest's first 32 bits, never 0.
func (k Key) fingerprint() uint32 {
	fp := binary.BigEndian.Uint32(k.Sum[:4])
	if fp == 0 {
		fp = 1
	}
	return fp
}
