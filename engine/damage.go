package engine

import (
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

// markDamaged records that slot, which should hold the block k, fails its
// digest (slotSpace.markDamaged). It is logged once per slot.
func (e *Engine) markDamaged(slot uint64, k index.Key) {
	if !e.slots.markDamaged(slot, k) {
		return
	}
	e.changes.Add(1)
	e.log.Error().Uint64("slot", slot).Stringer("key", k).
		Msg("stored block is damaged (fails its digest): reads of it fail until the same content is written again or fsck restores it")
}

// writeHeals rewrites damaged slots with their good content and clears
// their damage (the commit that syncs the data records it).
func (e *Engine) writeHeals(heals []heal) error {
	for _, h := range heals {
		if err := e.bs.WriteBlocks(blockstore.Slot(h.slot), [][]byte{h.data}); err != nil {
			return err
		}
		if e.slots.healed(h.slot, h.key) {
			e.changes.Add(1)
			e.log.Warn().Uint64("slot", h.slot).Stringer("key", h.key).Msg("damaged block healed: a write of the same content replaced it")
		}
	}
	return nil
}
