package engine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"blockhash/blockstore"
	"blockhash/index"
)

// slotSpace owns the in-memory state of the store's slots: reference
// counts, the allocator (free slots, the high water mark, slots freed
// since the last seal), slots whose data a request is still writing, the
// slot records changed since the last seal, and the unindexed and damaged
// sets. The engine changes it only through its methods; the block store
// behind it is reached through a slotBacking.
//
// Its mutexes come last in the engine's lock order (doc.go); among them
// the order is allocMu -> mu -> refs.mu, and pendMu is taken alone. The
// backing grows under allocMu.
type slotSpace struct {
	back slotBacking
	log  zerolog.Logger

	refs refTable

	// allocMu guards free, hwm and freeing.
	allocMu sync.Mutex
	free    []uint64 // freed slots, reusable; the lowest last
	hwm     uint64   // slots at or above hwm were never used
	freeing []uint64 // freed since the last seal: reusable once committed

	// pendMu guards pending: slots whose data a request is still writing.
	pendMu  sync.Mutex
	pending map[uint64]*pendingSlot

	// mu guards dirty, unindexed and damaged.
	mu        sync.Mutex
	dirty     map[uint64]slotTag // slots changed since the last seal
	unindexed map[uint64]bool    // live slots not in the index (verify collisions)
	damaged   map[uint64]bool    // live slots whose data fails its digest (damage.go)
	damagedN  atomic.Int64       // len(damaged), read without the lock

	unique atomic.Int64 // live slots
}

// slotBacking is what slotSpace needs of the block store: its capacity,
// growing it (the engine refuses while its reserve is released), and the
// slot records, read at open.
type slotBacking interface {
	Slots() uint64
	Grow() error
	ReadMeta(first blockstore.Slot, recs []blockstore.Meta) error
}

type slotTag struct {
	key   index.Key
	flags uint32
	fresh bool // stored in this epoch: its index entry is new
}

// refTable holds each slot's reference count in memory (4 bytes a slot).
type refTable struct {
	// mu guards chunks (append only; a chunk never moves).
	mu     sync.RWMutex
	chunks [][]uint32
	per    uint64
}

func (r *refTable) ptr(slot uint64) *uint32 {
	r.mu.RLock()
	c := r.chunks[slot/r.per]
	r.mu.RUnlock()
	return &c[slot%r.per]
}

func (r *refTable) get(slot uint64) uint32 { return atomic.LoadUint32(r.ptr(slot)) }

func (r *refTable) grow(slots uint64) {
	r.mu.Lock()
	for uint64(len(r.chunks))*r.per < slots {
		r.chunks = append(r.chunks, make([]uint32, r.per))
	}
	r.mu.Unlock()
}

// newSlotSpace returns an empty slot space over back; reference counts are
// kept in chunks of per slots (one extent's). load fills it.
func newSlotSpace(back slotBacking, per uint64, log zerolog.Logger) *slotSpace {
	return &slotSpace{back: back, log: log, refs: refTable{per: per},
		pending: map[uint64]*pendingSlot{}, dirty: map[uint64]slotTag{},
		unindexed: map[uint64]bool{}, damaged: map[uint64]bool{}}
}

// load reads every slot record: reference counts, free slots, the high
// water mark, the unindexed and damaged sets. With tolerateCorrupt, a
// corrupt record counts as free (for fsck); without, it is an error.
func (s *slotSpace) load(tolerateCorrupt bool) error {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	return s.loadLocked(tolerateCorrupt)
}

// reload forgets the in-memory state and loads it again from the slot
// records, after a repair rewrote them. The caller keeps readers and
// writers out (reuseMu, the epoch).
func (s *slotSpace) reload(tolerateCorrupt bool) error {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	s.refs.mu.Lock()
	for _, c := range s.refs.chunks {
		clear(c)
	}
	s.refs.mu.Unlock()
	s.free, s.freeing, s.hwm = nil, nil, 0
	s.mu.Lock()
	clear(s.unindexed)
	clear(s.damaged)
	s.damagedN.Store(0)
	s.mu.Unlock()
	return s.loadLocked(tolerateCorrupt)
}

// loadLocked is load; the caller holds allocMu.
func (s *slotSpace) loadLocked(tolerateCorrupt bool) error {
	total := s.back.Slots()
	s.refs.grow(total)
	const chunk = 4096
	recs := make([]blockstore.Meta, chunk)
	var unique int64
	defer func() {
		if n := s.damagedN.Load(); n > 0 {
			s.log.Error().Int64("slots", n).Msg("store holds damaged blocks: reads of them fail until the same content is written again (blockhash fsck lists the devices and blocks)")
		}
	}()
	for first := uint64(0); first < total; first += chunk {
		n := min(chunk, total-first)
		err := s.back.ReadMeta(blockstore.Slot(first), recs[:n])
		var ce *blockstore.CorruptError
		if errors.As(err, &ce) {
			if !tolerateCorrupt {
				return fmt.Errorf("%w (run blockhash fsck --repair)", err)
			}
			s.log.Warn().Int("records", len(ce.Slots)).Msg("corrupt slot records, treating as free for repair")
		} else if err != nil {
			return err
		}
		s.mu.Lock()
		for i := range n {
			r := &recs[i]
			slot := first + i
			if r.IsZero() {
				continue
			}
			s.hwm = slot + 1
			*s.refs.ptr(slot) = r.Refs
			if r.Refs > 0 {
				unique++
				if r.Flags&blockstore.FlagIndexed == 0 {
					s.unindexed[slot] = true
				}
				if r.Flags&blockstore.FlagDamaged != 0 {
					s.damaged[slot] = true
					s.damagedN.Add(1)
				}
			}
		}
		s.mu.Unlock()
	}
	for slot := range s.hwm {
		if s.refs.get(slot) == 0 {
			s.free = append(s.free, slot)
		}
	}
	// Hand out low slots first.
	sort.Slice(s.free, func(i, j int) bool { return s.free[i] > s.free[j] })
	s.unique.Store(unique)
	return nil
}

// allocRun returns up to n free slots: freed ones if any, else consecutive
// never-used ones (growing the backing if needed).
func (s *slotSpace) allocRun(n int) ([]uint64, error) {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	n = max(1, min(n, 256))
	if k := len(s.free); k > 0 {
		take := min(n, k)
		run := slices.Clone(s.free[k-take:])
		slices.Reverse(run)
		s.free = s.free[:k-take]
		return run, nil
	}
	if s.hwm >= s.back.Slots() {
		if err := s.back.Grow(); err != nil {
			return nil, err
		}
		s.refs.grow(s.back.Slots())
	}
	take := min(uint64(n), s.back.Slots()-s.hwm)
	run := make([]uint64, take)
	for i := range run {
		run[i] = s.hwm + uint64(i)
	}
	s.hwm += take
	return run, nil
}

// unreserve gives back slots allocRun returned that a request did not
// use; nothing refers to them.
func (s *slotSpace) unreserve(slots []uint64) {
	if len(slots) == 0 {
		return
	}
	s.allocMu.Lock()
	for i := len(slots) - 1; i >= 0; i-- {
		s.free = append(s.free, slots[i])
	}
	s.allocMu.Unlock()
}

// highWater is the number of slots ever used: every slot at or above it
// is free and was never written.
func (s *slotSpace) highWater() uint64 {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	return s.hwm
}

// refCount is slot's reference count.
func (s *slotSpace) refCount(slot uint64) uint32 { return s.refs.get(slot) }

// claim makes slot, just allocated, live with one reference while its data
// is written (ps, until finishPending). An unindexed slot (a verify-mode
// collision) is recorded as such. The caller holds the key's lock.
func (s *slotSpace) claim(slot uint64, ps *pendingSlot, indexed bool) {
	s.pendMu.Lock()
	s.pending[slot] = ps
	s.pendMu.Unlock()
	atomic.StoreUint32(s.refs.ptr(slot), 1)
	s.unique.Add(1)
	s.mu.Lock()
	if !indexed {
		s.unindexed[slot] = true
	}
	s.forgetDamagedLocked(slot) // a reused slot starts clean
	s.mu.Unlock()
}

// pendingOf is the pending write of slot, if its data is being written.
func (s *slotSpace) pendingOf(slot uint64) *pendingSlot {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	return s.pending[slot]
}

// finishPending ends the pending writes of the fresh slots with err.
func (s *slotSpace) finishPending(fresh []freshBlock, err error) {
	if len(fresh) == 0 {
		return
	}
	s.pendMu.Lock()
	for _, f := range fresh {
		if ps := s.pending[f.slot]; ps != nil {
			ps.err = err
			close(ps.done)
			delete(s.pending, f.slot)
		}
	}
	s.pendMu.Unlock()
}

// incRef adds a reference to slot, saturating: a slot that reaches
// blockstore.MaxRefs keeps it for good (release leaves it too), so a count
// can never wrap to zero and free a block still in use. The caller holds
// the key's lock.
func (s *slotSpace) incRef(slot uint64) {
	p := s.refs.ptr(slot)
	if n := atomic.LoadUint32(p); n < blockstore.MaxRefs {
		atomic.StoreUint32(p, n+1)
	}
}

// release drops one reference to slot, which holds the block k, and marks
// it dirty. A slot whose count reaches zero is freed: it becomes reusable
// after the next commit (seal, then reuse); freed says so, and indexed
// whether the index names it, so the caller removes the entry. A
// saturated count stays. The caller holds k's lock.
func (s *slotSpace) release(slot uint64, k index.Key) (freed, indexed bool, err error) {
	p := s.refs.ptr(slot)
	n := atomic.LoadUint32(p)
	if n == 0 {
		return false, false, fmt.Errorf("%w: slot %d released with no references", ErrCorrupt, slot)
	}
	if n == blockstore.MaxRefs {
		return false, false, nil // saturated: kept for good (see incRef)
	}
	atomic.StoreUint32(p, n-1)
	s.markDirty([]dirtyMark{{slot: slot, key: k}})
	if n > 1 {
		return false, false, nil
	}
	s.unique.Add(-1)
	s.mu.Lock()
	indexed = !s.unindexed[slot]
	delete(s.unindexed, slot)
	s.forgetDamagedLocked(slot)
	s.mu.Unlock()
	s.allocMu.Lock()
	s.freeing = append(s.freeing, slot)
	s.allocMu.Unlock()
	return true, indexed, nil
}

// markDirty records that the slot records of marks changed.
func (s *slotSpace) markDirty(marks []dirtyMark) {
	if len(marks) == 0 {
		return
	}
	s.mu.Lock()
	for _, d := range marks {
		t := s.dirty[d.slot]
		s.dirty[d.slot] = slotTag{key: d.key, flags: s.flagsLocked(d.slot), fresh: t.fresh || d.fresh}
	}
	s.mu.Unlock()
}

// flagsLocked is the flags slot's record must carry now. The caller holds
// mu.
func (s *slotSpace) flagsLocked(slot uint64) uint32 {
	flags := blockstore.FlagIndexed
	if s.unindexed[slot] {
		flags = 0
	}
	if s.damaged[slot] {
		flags |= blockstore.FlagDamaged
	}
	return flags
}

// markDamaged records that slot, which should hold the block k, fails its
// digest, and reports whether it was not known to be damaged before.
func (s *slotSpace) markDamaged(slot uint64, k index.Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.damaged[slot] {
		return false
	}
	s.damaged[slot] = true
	s.damagedN.Add(1)
	s.dirty[slot] = slotTag{key: k, flags: s.flagsLocked(slot), fresh: s.dirty[slot].fresh}
	return true
}

// isDamaged reports whether slot is known to be damaged. It costs one
// atomic load while nothing is damaged.
func (s *slotSpace) isDamaged(slot uint64) bool {
	if s.damagedN.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.damaged[slot]
}

// healed records that slot, which holds the block k, was rewritten with
// its good content, and reports whether it was damaged.
func (s *slotSpace) healed(slot uint64, k index.Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.forgetDamagedLocked(slot) {
		return false
	}
	s.dirty[slot] = slotTag{key: k, flags: s.flagsLocked(slot), fresh: s.dirty[slot].fresh}
	return true
}

// forgetDamagedLocked drops slot from the damaged set (it was healed,
// freed or reused). The caller holds mu.
func (s *slotSpace) forgetDamagedLocked(slot uint64) bool {
	if !s.damaged[slot] {
		return false
	}
	delete(s.damaged, slot)
	s.damagedN.Add(-1)
	return true
}

// damagedSlots is a copy of the damaged set.
func (s *slotSpace) damagedSlots() map[uint64]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := make(map[uint64]bool, len(s.damaged))
	for slot := range s.damaged {
		bad[slot] = true
	}
	return bad
}

// damagedCount is the number of damaged slots.
func (s *slotSpace) damagedCount() int64 { return s.damagedN.Load() }

// uniqueCount is the number of live slots.
func (s *slotSpace) uniqueCount() int64 { return s.unique.Load() }

// slotState is what scrub needs to know of one slot.
type slotState struct {
	live    bool    // it has references
	pending bool    // its data is being written
	dirty   bool    // its record changed since the last seal: tag says to what
	tag     slotTag // valid when dirty
	damaged bool
}

// state returns slot's state; the rest is left zero for a slot that is
// not live.
func (s *slotSpace) state(slot uint64) slotState {
	if s.refs.get(slot) == 0 {
		return slotState{}
	}
	st := slotState{live: true}
	s.pendMu.Lock()
	_, st.pending = s.pending[slot]
	s.pendMu.Unlock()
	if st.pending {
		return st
	}
	s.mu.Lock()
	st.tag, st.dirty = s.dirty[slot]
	st.damaged = s.damaged[slot]
	s.mu.Unlock()
	return st
}

// sealedSlots is what a commit takes from the slot space when it seals.
type sealedSlots struct {
	changes []slotChange // the slot records to journal
	puts    []index.Op   // index entries of the slots stored since the last seal
	freed   []uint64     // slots freed since the last seal: reuse them once committed
}

// seal takes the slot records changed since the last seal, and the slots
// freed since then. The caller holds the epoch exclusively: no count
// changes meanwhile.
func (s *slotSpace) seal() sealedSlots {
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = make(map[uint64]slotTag, len(dirty))
	s.mu.Unlock()
	out := sealedSlots{changes: make([]slotChange, 0, len(dirty)), puts: make([]index.Op, 0, len(dirty))}
	for slot, t := range dirty {
		m := blockstore.Meta{Refs: s.refs.get(slot), Flags: t.flags}
		t.key.Encode(m.Tag[:])
		out.changes = append(out.changes, slotChange{Slot: slot, Meta: m})
		if t.fresh && m.Refs > 0 && t.flags&blockstore.FlagIndexed != 0 {
			out.puts = append(out.puts, index.Op{Key: t.key, Slot: slot})
		}
	}
	s.allocMu.Lock()
	out.freed = s.freeing
	s.freeing = nil
	s.allocMu.Unlock()
	return out
}

// reuse hands slots a committed seal freed back to the allocator. The
// caller keeps readers of those slots out (reuseMu).
func (s *slotSpace) reuse(freed []uint64) {
	s.allocMu.Lock()
	s.free = append(s.free, freed...)
	s.allocMu.Unlock()
}
