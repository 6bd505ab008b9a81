package rados

import (
	"encoding/binary"
	"fmt"
)

// BlockSize is the size of one block in bytes.
const BlockSize = 4096

// KeySize is the size of a content key (the engine's digest + CRC-32C).
// The package treats keys as opaque bytes.
const KeySize = 36

// Bits of a Loc: host id | pack sequence | block in pack.
const (
	hostBits  = 16
	seqBits   = 38
	blockBits = 10
	// PackBlocks is the most blocks a pack holds (4 MiB of data).
	PackBlocks = 1 << blockBits
	// MaxSeq is the largest pack sequence number.
	MaxSeq = 1<<seqBits - 1
)

// PackID names one pack: the host that writes it and its sequence number
// among that host's packs. Host 0 is not a host.
type PackID struct {
	Host uint16
	Seq  uint64
}

// Object is the pack's RADOS object name.
func (p PackID) Object() string { return fmt.Sprintf("bh.pack.%d.%d", p.Host, p.Seq) }

func (p PackID) String() string { return p.Object() }

// Loc is where a block's bytes are: host id (16 bits), pack sequence (38
// bits), block in the pack (10 bits). Zero is no location.
type Loc uint64

// MakeLoc returns the location of block i of pack p.
func MakeLoc(p PackID, i int) (Loc, error) {
	if p.Host == 0 || p.Seq > MaxSeq || i < 0 || i >= PackBlocks {
		return 0, fmt.Errorf("%w: location host %d pack %d block %d", ErrArg, p.Host, p.Seq, i)
	}
	return Loc(uint64(p.Host)<<(seqBits+blockBits) | p.Seq<<blockBits | uint64(i)), nil
}

// Pack is the pack holding the block.
func (l Loc) Pack() PackID {
	return PackID{Host: uint16(l >> (seqBits + blockBits)), Seq: uint64(l>>blockBits) & MaxSeq}
}

// Block is the block's index in its pack.
func (l Loc) Block() int { return int(l & (PackBlocks - 1)) }

// Offset is the block's byte offset in its pack object.
func (l Loc) Offset() uint64 { return uint64(l.Block()) * BlockSize }

func (l Loc) String() string { return fmt.Sprintf("%s/%d", l.Pack(), l.Block()) }

// indexValueSize is the size of an index shard's omap value:
//
//	0 1 format (1) | 1 8 Loc, little endian
const (
	indexValueSize   = 9
	indexValueFormat = 1
)

func encodeIndexValue(l Loc) []byte {
	b := make([]byte, indexValueSize)
	b[0] = indexValueFormat
	binary.LittleEndian.PutUint64(b[1:], uint64(l))
	return b
}

func decodeIndexValue(b []byte) (Loc, error) {
	if len(b) != indexValueSize || b[0] != indexValueFormat {
		return 0, fmt.Errorf("%w: index value of %d bytes (format %v)", ErrBadValue, len(b), b[:min(1, len(b))])
	}
	l := Loc(binary.LittleEndian.Uint64(b[1:]))
	if l == 0 || l.Pack().Host == 0 {
		return 0, fmt.Errorf("%w: index value names no location", ErrBadValue)
	}
	return l, nil
}

// shardOf is the index shard holding key: its first four bytes, big
// endian, modulo shards (a power of two).
func shardOf(key []byte, shards uint32) uint32 {
	return binary.BigEndian.Uint32(key[:4]) & (shards - 1)
}

// shardObject is shard i's object name.
func shardObject(i uint32) string { return fmt.Sprintf("bh.idx.%d", i) }

// packOmapKey is the pack omap's key for block i: four hex digits (no
// NUL byte in an omap key: see ikey).
func packOmapKey(i int) string { return fmt.Sprintf("%04x", i) }

// sealXattr marks a sealed pack; its value is the block count, two bytes
// big endian.
const sealXattr = "bh.seal"
