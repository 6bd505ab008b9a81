package blockstore

import (
	"fmt"
	"sync"
)

// SlotBlocks is Blocks over a Store of numbered slots (the local extent
// files): a location is a slot number + 1. A put block's slot record
// holds its tag with a reference count of 1 (the count is only a live
// mark here: references are counted by the caller); a dropped slot's
// record is zeroed, and the slot is reused only after the Sync that made
// the zeroed record durable, so a crash never leaves a live record over
// another block's data. Open rebuilds the free slots from the records.
//
// A block put but never synced can leave a live record after a crash
// that no committed state names: the caller's fsck drops such locations.
type SlotBlocks struct {
	st Store

	// mu guards free, hwm, live and dropping; never held across I/O
	// except Grow, which the allocator needs before it can hand out slots.
	mu       sync.Mutex
	free     []Slot   // reusable, the lowest last
	hwm      Slot     // slots at or above were never used
	live     []uint64 // bit per slot: holds a block
	dropping []Slot   // dropped since the last Sync: reusable after the next
}

// OpenSlotBlocks opens Blocks over st, reading every slot record. A
// record failing its checksum is an error (fsck repairs it).
func OpenSlotBlocks(st Store) (*SlotBlocks, error) {
	b := &SlotBlocks{st: st}
	n := st.Slots()
	b.live = make([]uint64, (n+63)/64)
	const chunk = 4096
	recs := make([]Meta, chunk)
	for first := uint64(0); first < n; first += chunk {
		m := min(chunk, n-first)
		if err := st.ReadMeta(Slot(first), recs[:m]); err != nil {
			return nil, fmt.Errorf("blockstore: reading slot records: %w", err)
		}
		for i := range m {
			if !recs[i].IsZero() {
				s := first + i
				b.live[s/64] |= 1 << (s % 64)
				b.hwm = Slot(s + 1)
			}
		}
	}
	for s := int64(b.hwm) - 1; s >= 0; s-- {
		if !b.isLive(Slot(s)) {
			b.free = append(b.free, Slot(s))
		}
	}
	return b, nil
}

func (b *SlotBlocks) isLive(s Slot) bool {
	return uint64(s)/64 < uint64(len(b.live)) && b.live[s/64]&(1<<(s%64)) != 0
}

func (b *SlotBlocks) setLive(s Slot, on bool) {
	for uint64(len(b.live)) <= uint64(s)/64 {
		b.live = append(b.live, 0)
	}
	if on {
		b.live[s/64] |= 1 << (s % 64)
	} else {
		b.live[s/64] &^= 1 << (s % 64)
	}
}

// alloc takes n slots, marking them live, growing the store as needed.
func (b *SlotBlocks) alloc(n int) ([]Slot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Slot, 0, n)
	for len(out) < n && len(b.free) > 0 {
		s := b.free[len(b.free)-1]
		b.free = b.free[:len(b.free)-1]
		out = append(out, s)
	}
	for len(out) < n {
		if uint64(b.hwm) >= b.st.Slots() {
			if err := b.st.Grow(); err != nil {
				b.free = append(b.free, out...) // give back; order does not matter for safety
				return nil, err
			}
			continue
		}
		out = append(out, b.hwm)
		b.hwm++
	}
	for _, s := range out {
		b.setLive(s, true)
	}
	return out, nil
}

// Put implements Blocks.
func (b *SlotBlocks) Put(tags [][TagSize]byte, data []byte) ([]Loc, error) {
	if len(tags) == 0 || len(data) != len(tags)*BlockSize {
		return nil, fmt.Errorf("blockstore: put of %d tags with %d bytes", len(tags), len(data))
	}
	slots, err := b.alloc(len(tags))
	if err != nil {
		return nil, err
	}
	locs := make([]Loc, len(slots))
	for i := 0; i < len(slots); {
		j := i + 1 // a run of consecutive slots: one data write, one record write
		for j < len(slots) && slots[j] == slots[j-1]+1 {
			j++
		}
		err := b.st.WriteAt(data[i*BlockSize:j*BlockSize], slots[i])
		if err == nil {
			recs := make([]Meta, j-i)
			for k := range recs {
				recs[k] = Meta{Tag: tags[i+k], Refs: 1}
			}
			err = b.st.WriteMeta(slots[i], recs)
		}
		if err != nil {
			b.abandon(slots)
			return nil, err
		}
		for k := i; k < j; k++ {
			locs[k] = Loc(slots[k] + 1)
		}
		i = j
	}
	return locs, nil
}

// abandon gives back the slots of a failed Put: their records are zeroed
// where possible and they are reused only after a Sync, as dropped ones.
func (b *SlotBlocks) abandon(slots []Slot) {
	zeroed := slots[:0:0]
	for _, s := range slots {
		if b.st.WriteMeta(s, []Meta{{}}) == nil {
			zeroed = append(zeroed, s)
		}
	}
	b.mu.Lock()
	for _, s := range zeroed { // the others stay live: leaked until fsck
		b.setLive(s, false)
	}
	b.dropping = append(b.dropping, zeroed...)
	b.mu.Unlock()
}

// slotOf checks loc and returns its slot.
func (b *SlotBlocks) slotOf(loc Loc) (Slot, error) {
	if loc == 0 || uint64(loc) > b.st.Slots() {
		return 0, fmt.Errorf("%w: %d", ErrNoBlock, loc)
	}
	return Slot(loc - 1), nil
}

// Get implements Blocks.
func (b *SlotBlocks) Get(loc Loc, p []byte) ([TagSize]byte, error) {
	s, err := b.slotOf(loc)
	if err != nil {
		return [TagSize]byte{}, err
	}
	rec := make([]Meta, 1)
	if err := b.st.ReadMeta(s, rec); err != nil {
		return [TagSize]byte{}, err
	}
	if rec[0].IsZero() {
		return [TagSize]byte{}, fmt.Errorf("%w: slot %d is free", ErrNoBlock, s)
	}
	if len(p) != BlockSize {
		return [TagSize]byte{}, fmt.Errorf("blockstore: get into %d bytes", len(p))
	}
	if err := b.st.ReadAt(p, s); err != nil {
		return [TagSize]byte{}, err
	}
	return rec[0].Tag, nil
}

// Drop implements Blocks. A location that holds no block is ErrNoBlock
// and nothing is dropped.
func (b *SlotBlocks) Drop(locs []Loc) error {
	slots := make([]Slot, len(locs))
	b.mu.Lock()
	for i, l := range locs {
		s, err := b.slotOf(l)
		if err == nil && !b.isLive(s) {
			err = fmt.Errorf("%w: slot %d is free", ErrNoBlock, s)
		}
		if err != nil {
			b.mu.Unlock()
			return err
		}
		slots[i] = s
	}
	for _, s := range slots { // out of Put's reach from here on
		b.setLive(s, false)
	}
	b.mu.Unlock()
	// A slot whose zeroed record could not be written is never reused
	// (it would still read as live after a crash): it leaks until fsck.
	var first error
	zeroed := slots[:0:0]
	for _, s := range slots {
		if err := b.st.WriteMeta(s, []Meta{{}}); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		zeroed = append(zeroed, s)
	}
	b.mu.Lock()
	b.dropping = append(b.dropping, zeroed...)
	b.mu.Unlock()
	return first
}

// Sync implements Blocks: the store is synced, then the slots dropped
// before it are reusable.
func (b *SlotBlocks) Sync() error {
	b.mu.Lock()
	done := b.dropping
	b.dropping = nil
	b.mu.Unlock()
	if err := b.st.Sync(); err != nil {
		b.mu.Lock()
		b.dropping = append(b.dropping, done...)
		b.mu.Unlock()
		return err
	}
	b.mu.Lock()
	b.free = append(b.free, done...)
	b.mu.Unlock()
	return nil
}

// Close implements Blocks.
func (b *SlotBlocks) Close() error { return b.st.Close() }
