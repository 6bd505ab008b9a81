package engine

import (
	"errors"
	"fmt"
	"sort"

	"blockhash/blockstore"
	"blockhash/index"
)

// FsckReport is what Fsck found (and, with repair, fixed).
type FsckReport struct {
	Devices       int      `json:"devices"`
	MappedBlocks  uint64   `json:"mapped_blocks"`
	SlotsChecked  uint64   `json:"slots_checked"`
	LiveSlots     uint64   `json:"live_slots"`
	RefMismatches int      `json:"ref_mismatches"`
	TagMismatches int      `json:"tag_mismatches"`
	CorruptMeta   int      `json:"corrupt_slot_records"`
	BadData       int      `json:"bad_data"` // stored blocks whose content fails its digest
	IndexMissing  int      `json:"index_missing"`
	IndexStale    int      `json:"index_stale"`
	LostBlocks    int      `json:"lost_blocks"` // quarantined map entries
	Repaired      bool     `json:"repaired"`
	Problems      []string `json:"problems,omitempty"` // the first 100
}

// OK reports whether nothing was wrong.
func (r *FsckReport) OK() bool {
	return r.RefMismatches+r.TagMismatches+r.CorruptMeta+r.BadData+r.IndexMissing+r.IndexStale+r.LostBlocks == 0
}

func (r *FsckReport) problem(format string, a ...any) {
	if len(r.Problems) < 100 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
	}
}

// Fsck recomputes every reference count from the maps, checks the slot
// records and the index against them, and verifies every stored block's
// digest. With repair it rewrites slot records and rebuilds the index from
// the maps (blocks whose data is damaged cannot be repaired: they are
// reported). Writers wait while it runs.
func (e *Engine) Fsck(repair bool) (FsckReport, error) {
	var rep FsckReport
	if repair && e.opts.ReadOnly {
		return rep, fmt.Errorf("%w: fsck --repair", ErrReadOnly)
	}
	if err := e.commit(); err != nil {
		return rep, err
	}
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	e.epoch.Lock()
	defer e.epoch.Unlock()

	expected := map[uint64]uint32{}
	keyOf := map[uint64]index.Key{}
	e.devMu.RLock()
	maps := make([]*Map, 0, len(e.byID))
	for _, m := range e.byID {
		maps = append(maps, m)
	}
	e.devMu.RUnlock()
	rep.Devices = len(maps)
	for _, m := range maps {
		err := m.each(func(lba uint64, ent mapEntry) error {
			rep.MappedBlocks++
			if ent.isLost() {
				rep.LostBlocks++
				rep.problem("device %s block %d is quarantined (damaged map entry: its data is lost)", m.hdr.Name, lba)
				return nil
			}
			if k, ok := keyOf[ent.Slot]; ok && k != ent.Key {
				rep.TagMismatches++
				rep.problem("slot %d is mapped with two keys (%v by %s block %d, and %v)", ent.Slot, ent.Key, m.hdr.Name, lba, k)
			}
			keyOf[ent.Slot] = ent.Key
			expected[ent.Slot]++
			return nil
		})
		if err != nil {
			return rep, err
		}
	}

	e.alloc.mu.Lock()
	hwm := e.alloc.hwm
	e.alloc.mu.Unlock()
	for s := range expected {
		hwm = max(hwm, s+1)
	}
	if hwm > e.bs.Slots() {
		rep.problem("maps name slots up to %d, the store has %d", hwm-1, e.bs.Slots())
		return rep, fmt.Errorf("%w: maps name slots beyond the store", ErrCorrupt)
	}
	fixed := make(map[uint64]blockstore.Meta)
	live := map[index.Key]uint64{}
	const chunk = 1024
	recs := make([]blockstore.Meta, chunk)
	data := make([]byte, chunk*BlockSize)
	for first := uint64(0); first < hwm; first += chunk {
		n := min(chunk, hwm-first)
		err := e.bs.ReadMeta(blockstore.Slot(first), recs[:n])
		bad := map[uint64]bool{}
		var ce *blockstore.CorruptError
		if errors.As(err, &ce) {
			for _, s := range ce.Slots {
				bad[uint64(s)] = true
				rep.CorruptMeta++
				rep.problem("slot %d: record fails its checksum", s)
			}
		} else if err != nil {
			return rep, err
		}
		if err := e.bs.ReadAt(data[:n*BlockSize], blockstore.Slot(first)); err != nil {
			return rep, err
		}
		for i := range n {
			slot := first + i
			rep.SlotsChecked++
			r := recs[i]
			want := expected[slot]
			k, mapped := keyOf[slot]
			recKey, _ := index.DecodeKey(r.Tag[:])
			needFix := bad[slot]
			if r.Refs != want {
				rep.RefMismatches++
				rep.problem("slot %d: record says %d references, maps hold %d", slot, r.Refs, want)
				needFix = true
			}
			if mapped && !bad[slot] && recKey != k {
				rep.TagMismatches++
				rep.problem("slot %d: record key %v, maps say %v", slot, recKey, k)
				needFix = true
			}
			if want == 0 {
				if needFix {
					m := r
					m.Refs = 0
					fixed[slot] = m
				}
				continue
			}
			rep.LiveSlots++
			if got := e.sb.Hash.blockKey(data[i*BlockSize : (i+1)*BlockSize]); got != k {
				rep.BadData++
				rep.problem("slot %d: stored data does not match its digest %v (unrepairable: restore the block)", slot, k)
			}
			flags := r.Flags & blockstore.FlagIndexed
			if bad[slot] || r.IsZero() {
				flags = blockstore.FlagIndexed
			}
			if flags != 0 {
				if other, dup := live[k]; dup {
					rep.problem("key %v stored in slots %d and %d", k, other, slot)
					flags = 0
					needFix = true
				} else {
					live[k] = slot
				}
			}
			if needFix {
				m := blockstore.Meta{Refs: want, Flags: flags}
				k.Encode(m.Tag[:])
				fixed[slot] = m
			}
		}
	}
	// The index must hold exactly the live indexed slots.
	seen := 0
	err := e.ix.Each(func(ent index.Entry) error {
		if s, ok := live[ent.Key]; ok && s == ent.Slot {
			seen++
			return nil
		}
		rep.IndexStale++
		rep.problem("index entry %v -> slot %d names no live block", ent.Key, ent.Slot)
		return nil
	})
	if err != nil {
		return rep, err
	}
	if seen < len(live) {
		rep.IndexMissing = len(live) - seen
		rep.problem("%d live blocks are missing from the index", rep.IndexMissing)
	}
	if !repair || rep.OK() {
		return rep, nil
	}
	if err := e.repairLocked(fixed, expected, live, hwm); err != nil {
		return rep, err
	}
	rep.Repaired = true
	return rep, nil
}

// repairLocked rewrites slot records, reference counts, the free list and
// the index. The caller holds commitMu and the epoch.
func (e *Engine) repairLocked(fixed map[uint64]blockstore.Meta, expected map[uint64]uint32, live map[index.Key]uint64, hwm uint64) error {
	slots := make([]uint64, 0, len(fixed))
	for s := range fixed {
		slots = append(slots, s)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	for _, s := range slots {
		if err := e.bs.WriteMeta(blockstore.Slot(s), []blockstore.Meta{fixed[s]}); err != nil {
			return err
		}
	}
	if err := e.bs.Sync(); err != nil {
		return err
	}
	entries := make([]index.Entry, 0, len(live))
	for k, s := range live {
		entries = append(entries, index.Entry{Key: k, Slot: s})
	}
	if err := e.ix.Reset(entries); err != nil {
		return err
	}
	e.reuseMu.Lock()
	defer e.reuseMu.Unlock()
	e.alloc.mu.Lock()
	defer e.alloc.mu.Unlock()
	e.alloc.free = e.alloc.free[:0]
	e.alloc.hwm = hwm
	var unique int64
	e.dirtyMu.Lock()
	clear(e.unindexed)
	for s := uint64(0); s < hwm; s++ {
		n := expected[s]
		*e.refs.ptr(s) = n
		if n == 0 {
			e.alloc.free = append(e.alloc.free, s)
		} else {
			unique++
		}
	}
	indexed := make(map[uint64]bool, len(live))
	for _, s := range live {
		indexed[s] = true
	}
	for s, n := range expected {
		if n > 0 && !indexed[s] {
			e.unindexed[s] = true
		}
	}
	e.dirtyMu.Unlock()
	sort.Slice(e.alloc.free, func(i, j int) bool { return e.alloc.free[i] > e.alloc.free[j] })
	e.unique.Store(unique)
	return nil
}
