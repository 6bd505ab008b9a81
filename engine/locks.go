package engine

import (
	"slices"
	"sync"

	"blockhash/index"
)

// lockTable holds the engine's striped locks: block locks, which
// serialise changes to logical blocks, and key locks, which serialise
// lookup, reference and release of one key. A block's lock is taken
// before a key's lock (see doc.go).
type lockTable struct {
	// blocks serialise changes to logical blocks (striped by device and
	// 1 MiB range; see lockBlocks).
	blocks [1024]sync.Mutex
	// keys serialise lookup, reference and release of one key (striped by
	// key; see keyLock).
	keys [1024]sync.Mutex
}

func stripe(x uint64) int { return int((x * 0x9E3779B97F4A7C15) >> 54) } // 10 bits

// lockBlocks locks the stripes covering blocks [first, last] of a device in
// a global order and returns the unlock function. Stripes cover 1 MiB
// ranges, so a request takes one or two locks.
func (l *lockTable) lockBlocks(dev uint32, first, last uint64) func() {
	var idx []int
	for r := first >> 8; r <= last>>8; r++ {
		idx = append(idx, stripe(r^uint64(dev)<<48))
	}
	return l.lockStripes(idx)
}

// lockBlockSet locks the stripes of blocks lbas (any order) of a device,
// in the same global order as lockBlocks, and returns the unlock function.
func (l *lockTable) lockBlockSet(dev uint32, lbas []uint64) func() {
	idx := make([]int, 0, len(lbas))
	for _, lba := range lbas {
		idx = append(idx, stripe(lba>>8^uint64(dev)<<48))
	}
	return l.lockStripes(idx)
}

// lockStripes locks block stripes idx in ascending order (the global
// order that keeps two requests from deadlocking) and returns the unlock.
func (l *lockTable) lockStripes(idx []int) func() {
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		l.blocks[i].Lock()
	}
	return func() {
		for _, i := range idx {
			l.blocks[i].Unlock()
		}
	}
}

// keyLock is the lock of key k's stripe.
func (l *lockTable) keyLock(k index.Key) *sync.Mutex {
	return &l.keys[stripe(uint64(k.CRC)<<32|uint64(k.Sum[0])<<24|uint64(k.Sum[1])<<16|uint64(k.Sum[2])<<8|uint64(k.Sum[3]))]
}
