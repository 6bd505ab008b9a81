package blockstore

import "errors"

// Loc names where a Blocks store keeps a block. Zero is no block. What
// the number means is the store's business (SlotBlocks: slot + 1; the
// RADOS store: host, pack and block in pack).
type Loc uint64

// ErrNoBlock means a location that holds no block (never written, out of
// range, or zero).
var ErrNoBlock = errors.New("blockstore: no block at this location")

// Blocks is block storage that chooses where each block goes: the seam
// that the local extent store (SlotBlocks) and the store shared by hosts
// on Ceph RADOS (package rados, build tag rados) both implement, and that
// the conformance suite in package blockstest checks.
//
// Unlike Store, a caller never names a slot to write and never counts
// references in the store: it puts blocks and gets locations, counts its
// own references, and drops a location once no state it will commit
// refers to it. A shared store cannot do better: two hosts cannot both
// own one slot's count, and a location another host may still name
// cannot be reused, so SlotBlocks may reuse a dropped location while the
// RADOS store leaves it to garbage collection (rados/design.md).
//
// A Blocks is safe for concurrent use.
type Blocks interface {
	// Put stores len(tags) blocks (data holds them back to back,
	// BlockSize each), each with its tag, and returns their locations:
	// never zero, never one the caller holds (put and not dropped).
	// Readable at once; durable after Sync.
	Put(tags [][TagSize]byte, data []byte) ([]Loc, error)
	// Get reads the block at loc into p (BlockSize bytes) and returns
	// its tag. A location with no block is ErrNoBlock.
	Get(loc Loc, p []byte) (tag [TagSize]byte, err error)
	// Drop says that no state the caller will commit refers to locs any
	// more. A location must not be read or dropped again after it.
	Drop(locs []Loc) error
	// Sync makes every completed Put and Drop durable.
	Sync() error
	// Close releases resources; it does not sync.
	Close() error
}
