package engine

import (
	"sync/atomic"

	"blockhash/blockstore"
	"blockhash/index"
)

// Damaged slots: a live slot whose data fails its digest (found by a read,
// a verify-mode compare, a scrub or fsck) is marked damaged in memory and,
// at the next commit, in its slot record (blockstore.FlagDamaged), so a
// restarted store still knows. Reads of it fail with ErrCorrupt. A write
// of the same content heals it: the good data is written over the damaged
// copy in place, so every block of every device that names the slot reads
// correctly again, and the flag is cleared by the commit that makes the
// new data durable. Rewriting in place is safe: nothing can read the slot
// correctly before, and a torn rewrite leaves it damaged, not worse.

// heal is a damaged slot a request rewrites with the content it must hold.
type heal struct {
	slot uint64
	key  index.Key
	data []byte
}

// slotFlagsLocked is the flags a slot record must carry now. The caller
// holds dirtyMu.
func (e *Engine) slotFlagsLocked(slot uint64) uint32 {
	flags := blockstore.FlagIndexed
	if e.unindexed[slot] {
		flags = 0
	}
	if e.damaged[slot] {
		flags |= blockstore.FlagDamaged
	}
	return flags
}

// markDamaged records that slot, which should hold the block k, fails its
// digest. It is logged once per slot.
func (e *Engine) markDamaged(slot uint64, k index.Key) {
	e.dirtyMu.Lock()
	if e.damaged[slot] {
		e.dirtyMu.Unlock()
		return
	}
	e.damaged[slot] = true
	e.damagedN.Add(1)
	e.dirty[slot] = slotTag{key: k, flags: e.slotFlagsLocked(slot), fresh: e.dirty[slot].fresh}
	e.dirtyMu.Unlock()
	e.changes.Add(1)
	e.log.Error().Uint64("slot", slot).Stringer("key", k).
		Msg("stored block is damaged (fails its digest): reads of it fail until the same content is written again or fsck restores it")
}

// isDamaged reports whether slot is known to be damaged. It costs one
// atomic load while nothing is damaged.
func (e *Engine) isDamaged(slot uint64) bool {
	if e.damagedN.Load() == 0 {
		return false
	}
	e.dirtyMu.Lock()
	defer e.dirtyMu.Unlock()
	return e.damaged[slot]
}

// forgetDamagedLocked drops slot from the damaged set (it was healed,
// freed or reused). The caller holds dirtyMu.
func (e *Engine) forgetDamagedLocked(slot uint64) bool {
	if !e.damaged[slot] {
		return false
	}
	delete(e.damaged, slot)
	e.damagedN.Add(-1)
	return true
}

// writeHeals rewrites damaged slots with their good content and clears
// their damage (the commit that syncs the data records it).
func (e *Engine) writeHeals(heals []heal) error {
	for _, h := range heals {
		if err := e.bs.WriteBlocks(blockstore.Slot(h.slot), [][]byte{h.data}); err != nil {
			return err
		}
		e.dirtyMu.Lock()
		healed := e.forgetDamagedLocked(h.slot)
		if healed {
			e.dirty[h.slot] = slotTag{key: h.key, flags: e.slotFlagsLocked(h.slot), fresh: e.dirty[h.slot].fresh}
		}
		e.dirtyMu.Unlock()
		if healed {
			e.changes.Add(1)
			e.log.Warn().Uint64("slot", h.slot).Stringer("key", h.key).Msg("damaged block healed: a write of the same content replaced it")
		}
	}
	return nil
}

// incRef adds a reference to slot, saturating: a slot that reaches
// blockstore.MaxRefs keeps it for good (release leaves it too), so a count
// can never wrap to zero and free a block still in use. The caller holds
// the key's lock.
func (e *Engine) incRef(slot uint64) {
	p := e.refs.ptr(slot)
	if n := atomic.LoadUint32(p); n < blockstore.MaxRefs {
		atomic.StoreUint32(p, n+1)
	}
}
