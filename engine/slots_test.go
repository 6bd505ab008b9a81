package engine

import (
	"errors"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"blockhash/blockstore"
	"blockhash/index"
)

// setRefs sets slot's reference count (tests only).
func (s *slotSpace) setRefs(slot uint64, n uint32) { *s.refs.ptr(slot) = n }

// isFree reports whether the allocator may hand slot out now.
func (s *slotSpace) isFree(slot uint64) bool {
	s.allocMu.Lock()
	defer s.allocMu.Unlock()
	return slot >= s.hwm || slices.Contains(s.free, slot)
}

// memSlots is a slotBacking in memory: capacity grown in extents of per
// slots, up to limit (0: no limit), and slot records (corrupt ones read as
// zero and are reported).
type memSlots struct {
	per, n, limit uint64
	recs          map[uint64]blockstore.Meta
	corrupt       map[uint64]bool
	grows         int
}

func (m *memSlots) Slots() uint64 { return m.n }

func (m *memSlots) Grow() error {
	if m.limit > 0 && m.n+m.per > m.limit {
		return blockstore.ErrFull
	}
	m.n += m.per
	m.grows++
	return nil
}

func (m *memSlots) ReadMeta(first blockstore.Slot, recs []blockstore.Meta) error {
	var bad []blockstore.Slot
	for i := range recs {
		s := uint64(first) + uint64(i)
		recs[i] = m.recs[s]
		if m.corrupt[s] {
			recs[i] = blockstore.Meta{}
			bad = append(bad, blockstore.Slot(s))
		}
	}
	if len(bad) > 0 {
		return &blockstore.CorruptError{What: "slot record", File: "mem", Slots: bad}
	}
	return nil
}

const testPer = 16

// newTestSlots returns a slot space over a memSlots of capacity slots,
// loaded from recs.
func newTestSlots(t *testing.T, capacity uint64, recs map[uint64]blockstore.Meta) (*slotSpace, *memSlots) {
	t.Helper()
	back := &memSlots{per: testPer, n: capacity, recs: recs}
	s := newSlotSpace(back, testPer, zerolog.Nop())
	if err := s.load(false); err != nil {
		t.Fatal(err)
	}
	return s, back
}

func testKey(i byte) index.Key { return index.Key{CRC: uint32(i) + 1, Sum: [32]byte{i, 1}} }

func live(refs uint32, flags uint32) blockstore.Meta {
	return blockstore.Meta{Refs: refs, Flags: flags}
}

func TestSlotSpaceAllocRun(t *testing.T) {
	idx := blockstore.FlagIndexed
	for _, tc := range []struct {
		name      string
		capacity  uint64
		limit     uint64
		recs      map[uint64]blockstore.Meta
		n         int
		want      []uint64
		wantHWM   uint64
		wantGrows int
		wantErr   error
	}{
		{name: "empty store grows", n: 4, want: []uint64{0, 1, 2, 3}, wantHWM: 4, wantGrows: 1},
		{name: "zero asks for one", capacity: testPer, n: 0, want: []uint64{0}, wantHWM: 1},
		{name: "at most 256", capacity: 1024, n: 1000, want: seq(0, 256), wantHWM: 256},
		{name: "never-used slots after the last live one", capacity: testPer,
			recs: map[uint64]blockstore.Meta{0: live(1, idx), 1: live(2, idx)},
			n:    3, want: []uint64{2, 3, 4}, wantHWM: 5},
		{name: "up to the capacity without growing", capacity: testPer,
			recs: liveSlots(14),
			n:    4, want: []uint64{14, 15}, wantHWM: 16},
		{name: "freed slots first, lowest first", capacity: testPer,
			recs: map[uint64]blockstore.Meta{1: live(1, idx), 2: {Flags: idx}, 4: live(1, idx), 9: live(1, idx)},
			n:    3, want: []uint64{0, 2, 3}, wantHWM: 10},
		{name: "freed slots only, even if fewer than asked", capacity: testPer,
			recs: map[uint64]blockstore.Meta{0: live(1, idx), 2: live(1, idx)},
			n:    4, want: []uint64{1}, wantHWM: 3},
		{name: "full store grows", capacity: testPer,
			recs: liveSlots(testPer),
			n:    2, want: []uint64{16, 17}, wantHWM: 18, wantGrows: 1},
		{name: "growth refused", capacity: testPer, limit: testPer,
			recs: liveSlots(testPer),
			n:    2, wantHWM: 16, wantErr: blockstore.ErrFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, back := newTestSlots(t, tc.capacity, tc.recs)
			back.limit = tc.limit
			run, err := s.allocRun(tc.n)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(run, tc.want) {
				t.Fatalf("run %v, want %v", run, tc.want)
			}
			if got := s.highWater(); got != tc.wantHWM {
				t.Fatalf("high water mark %d, want %d", got, tc.wantHWM)
			}
			if back.grows != tc.wantGrows {
				t.Fatalf("%d grows, want %d", back.grows, tc.wantGrows)
			}
			for _, slot := range run {
				if s.refCount(slot) != 0 {
					t.Fatalf("slot %d handed out with references", slot)
				}
			}
		})
	}
}

// liveSlots is records of n live slots from slot 0.
func liveSlots(n uint64) map[uint64]blockstore.Meta {
	recs := map[uint64]blockstore.Meta{}
	for slot := range n {
		recs[slot] = live(1, blockstore.FlagIndexed)
	}
	return recs
}

func seq(from, n uint64) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = from + uint64(i)
	}
	return out
}

func TestSlotSpaceUnreserve(t *testing.T) {
	s, _ := newTestSlots(t, testPer, nil)
	run, err := s.allocRun(4)
	if err != nil {
		t.Fatal(err)
	}
	s.unreserve(run[1:]) // the request used slot 0 only
	again, err := s.allocRun(8)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 2, 3}; !slices.Equal(again, want) {
		t.Fatalf("after giving back %v: allocated %v, want %v", run[1:], again, want)
	}
}

func TestSlotSpaceRelease(t *testing.T) {
	k := testKey(7)
	for _, tc := range []struct {
		name        string
		refs        uint32
		unindexed   bool
		damaged     bool
		wantRefs    uint32
		wantFreed   bool
		wantIndexed bool
		wantDirty   bool
		wantErr     error
	}{
		{name: "shared block", refs: 3, wantRefs: 2, wantDirty: true},
		{name: "to zero", refs: 1, wantRefs: 0, wantFreed: true, wantIndexed: true, wantDirty: true},
		{name: "to zero, not indexed", refs: 1, unindexed: true, wantRefs: 0, wantFreed: true, wantDirty: true},
		{name: "to zero, damaged", refs: 1, damaged: true, wantRefs: 0, wantFreed: true, wantIndexed: true, wantDirty: true},
		{name: "saturated stays", refs: blockstore.MaxRefs, wantRefs: blockstore.MaxRefs},
		{name: "no references", refs: 0, wantRefs: 0, wantErr: ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := blockstore.FlagIndexed
			if tc.unindexed {
				flags = 0
			}
			if tc.damaged {
				flags |= blockstore.FlagDamaged
			}
			recs := map[uint64]blockstore.Meta{0: live(1, blockstore.FlagIndexed), 3: live(tc.refs, flags)}
			if tc.refs == 0 {
				recs[3] = blockstore.Meta{Flags: flags}
			}
			s, _ := newTestSlots(t, testPer, recs)
			s.setRefs(3, tc.refs)
			unique := s.uniqueCount()
			freed, indexed, err := s.release(3, k)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if freed != tc.wantFreed || indexed != tc.wantIndexed {
				t.Fatalf("freed %v indexed %v, want %v %v", freed, indexed, tc.wantFreed, tc.wantIndexed)
			}
			if got := s.refCount(3); got != tc.wantRefs {
				t.Fatalf("count %d, want %d", got, tc.wantRefs)
			}
			wantUnique := unique
			if tc.wantFreed {
				wantUnique--
			}
			if got := s.uniqueCount(); got != wantUnique {
				t.Fatalf("%d live slots, want %d", got, wantUnique)
			}
			if tc.wantFreed && (s.isDamaged(3) || s.damagedCount() != 0) {
				t.Fatal("a freed slot is still marked damaged")
			}
			sealed := s.seal()
			var rec *blockstore.Meta
			for i, c := range sealed.changes {
				if c.Slot == 3 {
					rec = &sealed.changes[i].Meta
				}
			}
			if (rec != nil) != tc.wantDirty {
				t.Fatalf("record sealed: %v, want %v", rec != nil, tc.wantDirty)
			}
			if rec != nil {
				if rec.Refs != tc.wantRefs {
					t.Fatalf("sealed record has %d references, want %d", rec.Refs, tc.wantRefs)
				}
				if got, _ := index.DecodeKey(rec.Tag[:]); got != k {
					t.Fatalf("sealed record names %v, want %v", got, k)
				}
			}
			if got := slices.Contains(sealed.freed, 3); got != tc.wantFreed {
				t.Fatalf("slot in the sealed freed list: %v, want %v", got, tc.wantFreed)
			}
		})
	}
}

// A slot freed by a release is handed out only after the commit that
// records it: seal, then reuse.
func TestSlotSpaceFreedReusedAfterCommit(t *testing.T) {
	s, _ := newTestSlots(t, testPer, nil)
	k := testKey(1)
	run, err := s.allocRun(1)
	if err != nil {
		t.Fatal(err)
	}
	slot := run[0]
	ps := &pendingSlot{done: make(chan struct{})}
	s.claim(slot, ps, true)
	if s.pendingOf(slot) != ps {
		t.Fatal("claimed slot is not pending")
	}
	s.finishPending([]freshBlock{{slot: slot}}, nil)
	if s.pendingOf(slot) != nil {
		t.Fatal("slot still pending after finishPending")
	}
	<-ps.done
	s.markDirty([]dirtyMark{{slot: slot, key: k, fresh: true}})
	if ss := s.seal(); len(ss.puts) != 1 || ss.puts[0].Slot != slot || ss.puts[0].Key != k {
		t.Fatalf("sealed index puts %+v, want the stored slot", ss.puts)
	}
	if freed, _, err := s.release(slot, k); err != nil || !freed {
		t.Fatalf("release: freed %v, %v", freed, err)
	}
	steps := []struct {
		name string
		do   func() []uint64 // returns freed slots to hand back
	}{
		{"after the release", func() []uint64 { return nil }},
		{"after the seal", func() []uint64 { return s.seal().freed }},
	}
	var freed []uint64
	for _, st := range steps {
		freed = append(freed, st.do()...)
		run, err := s.allocRun(4)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(run, slot) {
			t.Fatalf("%s: freed slot %d handed out again before its commit: %v", st.name, slot, run)
		}
		s.unreserve(run)
	}
	if !slices.Equal(freed, []uint64{slot}) {
		t.Fatalf("seal freed %v, want [%d]", freed, slot)
	}
	s.reuse(freed)
	run, err = s.allocRun(1)
	if err != nil {
		t.Fatal(err)
	}
	if run[0] != slot {
		t.Fatalf("after the commit allocated %v, want the freed slot %d", run, slot)
	}
}

func TestSlotSpaceIncRefSaturates(t *testing.T) {
	for _, tc := range []struct {
		from, want uint32
	}{
		{1, 2},
		{blockstore.MaxRefs - 2, blockstore.MaxRefs - 1},
		{blockstore.MaxRefs - 1, blockstore.MaxRefs},
		{blockstore.MaxRefs, blockstore.MaxRefs},
	} {
		s, _ := newTestSlots(t, testPer, map[uint64]blockstore.Meta{5: live(1, blockstore.FlagIndexed)})
		s.setRefs(5, tc.from)
		s.incRef(5)
		if got := s.refCount(5); got != tc.want {
			t.Fatalf("incRef from %d: %d, want %d", tc.from, got, tc.want)
		}
	}
	// Once saturated, no number of releases frees it.
	s, _ := newTestSlots(t, testPer, map[uint64]blockstore.Meta{5: live(blockstore.MaxRefs, blockstore.FlagIndexed)})
	for range 3 {
		if freed, _, err := s.release(5, testKey(5)); err != nil || freed {
			t.Fatalf("release of a saturated slot: freed %v, %v", freed, err)
		}
	}
	if s.refCount(5) != blockstore.MaxRefs || s.isFree(5) {
		t.Fatal("a saturated slot lost its count")
	}
}

func TestSlotSpaceLoad(t *testing.T) {
	idx, dmg := blockstore.FlagIndexed, blockstore.FlagDamaged
	for _, tc := range []struct {
		name          string
		capacity      uint64
		recs          map[uint64]blockstore.Meta
		corrupt       []uint64
		tolerate      bool
		wantErr       error
		wantHWM       uint64
		wantUnique    int64
		wantFree      []uint64 // in the order allocRun hands them out
		wantUnindexed []uint64
		wantDamaged   []uint64
	}{
		{name: "empty", capacity: testPer},
		{name: "live, freed and never used", capacity: 2 * testPer,
			recs:    map[uint64]blockstore.Meta{0: live(2, idx), 1: {Flags: idx}, 3: live(1, idx), 20: live(5, idx)},
			wantHWM: 21, wantUnique: 3, wantFree: append([]uint64{1, 2}, seq(4, 16)...)},
		{name: "unindexed and damaged", capacity: testPer,
			recs:    map[uint64]blockstore.Meta{0: live(1, 0), 1: live(1, idx|dmg), 2: live(1, dmg), 3: {Flags: dmg}},
			wantHWM: 4, wantUnique: 3, wantFree: []uint64{3},
			wantUnindexed: []uint64{0, 2}, wantDamaged: []uint64{1, 2}},
		{name: "corrupt record refused", capacity: testPer,
			recs: map[uint64]blockstore.Meta{0: live(1, idx)}, corrupt: []uint64{0},
			wantErr: blockstore.ErrCorrupt},
		{name: "corrupt record free for repair", capacity: testPer, tolerate: true,
			recs: map[uint64]blockstore.Meta{0: live(1, idx), 1: live(1, idx)}, corrupt: []uint64{0},
			wantHWM: 2, wantUnique: 1, wantFree: []uint64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			back := &memSlots{per: testPer, n: tc.capacity, recs: tc.recs, corrupt: map[uint64]bool{}}
			for _, c := range tc.corrupt {
				back.corrupt[c] = true
			}
			s := newSlotSpace(back, testPer, zerolog.Nop())
			err := s.load(tc.tolerate)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("load: %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			checkLoaded(t, s, back, tc.wantHWM, tc.wantUnique, tc.wantFree, tc.wantUnindexed, tc.wantDamaged)
		})
	}
}

// checkLoaded checks a loaded slot space against the records it came from.
func checkLoaded(t *testing.T, s *slotSpace, back *memSlots, hwm uint64, unique int64, free, unindexed, damaged []uint64) {
	t.Helper()
	if got := s.highWater(); got != hwm {
		t.Fatalf("high water mark %d, want %d", got, hwm)
	}
	if got := s.uniqueCount(); got != unique {
		t.Fatalf("%d live slots, want %d", got, unique)
	}
	for slot := range back.n {
		want := back.recs[slot].Refs
		if back.corrupt[slot] {
			want = 0
		}
		if got := s.refCount(slot); got != want {
			t.Fatalf("slot %d: count %d, want %d", slot, got, want)
		}
	}
	var gotDamaged []uint64
	for slot := range s.damagedSlots() {
		gotDamaged = append(gotDamaged, slot)
	}
	slices.Sort(gotDamaged)
	if !slices.Equal(gotDamaged, damaged) || s.damagedCount() != int64(len(damaged)) {
		t.Fatalf("damaged %v (count %d), want %v", gotDamaged, s.damagedCount(), damaged)
	}
	// The flags a live slot's record gets when it next changes.
	for slot := range hwm {
		s.markDirty([]dirtyMark{{slot: slot}})
	}
	for _, c := range s.seal().changes {
		if c.Meta.Refs == 0 {
			continue
		}
		if got, want := c.Meta.Flags&blockstore.FlagIndexed == 0, slices.Contains(unindexed, c.Slot); got != want {
			t.Fatalf("slot %d: unindexed %v, want %v", c.Slot, got, want)
		}
		if got, want := c.Meta.Flags&blockstore.FlagDamaged != 0, slices.Contains(damaged, c.Slot); got != want {
			t.Fatalf("slot %d: damaged %v, want %v", c.Slot, got, want)
		}
	}
	if free == nil {
		return
	}
	got, err := s.allocRun(len(free))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, free) {
		t.Fatalf("free slots %v, want %v", got, free)
	}
}

// reload forgets every change made since the load and reads the records
// again.
func TestSlotSpaceReload(t *testing.T) {
	idx := blockstore.FlagIndexed
	recs := map[uint64]blockstore.Meta{0: live(1, idx), 1: live(1, 0), 2: {Flags: idx}, 3: live(2, idx)}
	s, back := newTestSlots(t, testPer, recs)
	for range 3 { // the freed slot 2, the never-used 4..15, then it grows
		if _, err := s.allocRun(20); err != nil {
			t.Fatal(err)
		}
	}
	if back.grows != 1 {
		t.Fatalf("%d grows, want 1", back.grows)
	}
	s.markDamaged(0, testKey(0))
	s.incRef(3)
	if freed, _, err := s.release(1, testKey(1)); err != nil || !freed {
		t.Fatalf("release: %v %v", freed, err)
	}
	s.seal()
	if err := s.reload(false); err != nil {
		t.Fatal(err)
	}
	checkLoaded(t, s, back, 4, 3, []uint64{2}, []uint64{1}, nil)
}
