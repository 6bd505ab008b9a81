package pool

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// fakeRefs is a host's reference counts for the devMap tests: a count
// per location. A drop of a location it does not count is recorded as a
// defect (rados.Refs refuses it and the pool logs an error).
type fakeRefs struct {
	n   map[uint64]int
	bad []string
}

func newFakeRefs() *fakeRefs { return &fakeRefs{n: map[uint64]int{}} }

func (f *fakeRefs) add(l uint64) {
	if l != 0 {
		f.n[l]++
	}
}

func (f *fakeRefs) dropRef(l uint64) {
	if f.n[l] == 0 {
		f.bad = append(f.bad, fmt.Sprintf("drop of %#x, not counted", l))
		return
	}
	if f.n[l]--; f.n[l] == 0 {
		delete(f.n, l)
	}
}

// remap moves counts along moved, as rados.Refs.Remap does before the
// maps follow.
func (f *fakeRefs) remap(moved map[uint64]uint64) {
	for old, nw := range moved {
		if c := f.n[old]; c > 0 {
			f.n[nw] += c
			delete(f.n, old)
		}
	}
}

// mapHarness drives one devMap the way Device and Pool do (the caller
// counts a written block's reference before set; a flush takes the dirty
// blocks, reads each shard job's entries, then lands or fails it; remap
// only between flushes) and keeps a reference model beside it: the
// expected entries, the pool's copy built from what landed, the dirty
// blocks and the flight.
type mapHarness struct {
	t    testing.TB
	m    *devMap
	refs *fakeRefs
	log  []string // the steps so far, for a failure's message

	cur   map[uint64]Entry // what every read must see
	pool  map[uint64]Entry // the pool's copy: what landed
	dirty map[uint64]bool  // changed since their last landing
	fly   map[uint64]Entry // the flight's blocks and the values it writes
	jobs  [][]uint64       // the flight's shard writes not ended yet
	moved map[uint64]bool  // locations compaction moved (the pool's copy may name them: forwards keep them)

	nextLoc uint64
	nextKey uint64
}

func newMapHarness(t testing.TB) *mapHarness {
	r := newFakeRefs()
	return &mapHarness{t: t, m: newDevMap(r), refs: r, cur: map[uint64]Entry{}, pool: map[uint64]Entry{},
		dirty: map[uint64]bool{}, fly: map[uint64]Entry{}, moved: map[uint64]bool{}, nextLoc: 0x1000, nextKey: 1}
}

func (h *mapHarness) fail(format string, args ...any) {
	h.t.Helper()
	tail := h.log
	if len(tail) > 40 {
		tail = tail[len(tail)-40:]
	}
	h.t.Fatalf("%s\nlast steps:\n  %s", fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
}

func (h *mapHarness) step(format string, args ...any) {
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

func keyOf(n uint64) (k [KeySize]byte) {
	binary.LittleEndian.PutUint64(k[:], n)
	return k
}

// fresh is an entry of a new content at a new location (a miss stored
// in the host's pack).
func (h *mapHarness) fresh() Entry {
	h.nextLoc++
	h.nextKey++
	return Entry{Key: keyOf(h.nextKey), Loc: h.nextLoc}
}

func (h *mapHarness) flying() bool { return len(h.jobs) > 0 }

// set writes e to block b (zero Loc: zeroes it), counting its reference
// first.
func (h *mapHarness) set(b uint64, e Entry) {
	h.step("set %d -> %#x", b, e.Loc)
	h.refs.add(e.Loc)
	h.m.setIf(b, []Entry{e}, nil)
	if e.Loc == 0 {
		delete(h.cur, b)
	} else {
		h.cur[b] = e
	}
	h.dirty[b] = true
}

// take starts a flush; split cuts shards into several jobs (a flush
// splits a shard's entries into ops of flushOpEntries).
func (h *mapHarness) take(split func(n int) int) {
	h.t.Helper()
	if h.flying() {
		h.fail("take during a flight")
	}
	byShard := h.m.takeDirty()
	h.step("take: %d shards", len(byShard))
	got := map[uint64]bool{}
	for s, bs := range byShard {
		for _, b := range bs {
			if b/ShardBlocks != s {
				h.fail("takeDirty put block %d in shard %d", b, s)
			}
			if got[b] {
				h.fail("takeDirty gave block %d twice", b)
			}
			got[b] = true
		}
	}
	if !maps.Equal(got, h.dirty) {
		h.fail("takeDirty gave %v, want the dirty blocks %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(h.dirty)))
	}
	for b := range h.dirty {
		h.fly[b] = h.cur[b]
	}
	clear(h.dirty)
	for _, s := range slices.Sorted(maps.Keys(byShard)) {
		bs := byShard[s]
		slices.Sort(bs)
		for len(bs) > 0 {
			k := len(bs)
			if split != nil {
				k = max(1, min(k, split(k)))
			}
			h.jobs = append(h.jobs, bs[:k])
			bs = bs[k:]
		}
	}
}

// end ends the flight's job i: its shard write landed (ok) or failed.
func (h *mapHarness) end(i int, ok bool) {
	h.t.Helper()
	bs := h.jobs[i]
	h.jobs = slices.Delete(h.jobs, i, i+1)
	h.step("end job %v ok=%v", bs, ok)
	ents := h.m.flightOf(bs)
	for k, b := range bs {
		if ents[k] != h.fly[b] {
			h.fail("flightOf block %d: %#x, want %#x", b, ents[k].Loc, h.fly[b].Loc)
		}
	}
	if ok {
		h.m.landed(bs)
		for k, b := range bs {
			if ents[k].Loc == 0 {
				delete(h.pool, b)
			} else {
				h.pool[b] = ents[k]
			}
			delete(h.fly, b)
		}
		return
	}
	h.m.failed(bs)
	for _, b := range bs {
		delete(h.fly, b)
		h.dirty[b] = true
	}
}

// repoint is a merge: every entry naming a key of to names its value.
func (h *mapHarness) repoint(to map[uint64]uint64) {
	h.t.Helper()
	h.step("repoint %v", to)
	want := 0
	for b, e := range h.cur {
		if nw, ok := to[e.Loc]; ok && nw != e.Loc {
			e.Loc = nw
			h.cur[b] = e
			h.dirty[b] = true
			want++
		}
	}
	if n := h.m.repoint(to, h.refs.add); n != want {
		h.fail("repoint changed %d entries, want %d", n, want)
	}
}

// remap follows compaction's moves (counts first, as a round answer).
func (h *mapHarness) remap(moved map[uint64]uint64) {
	h.t.Helper()
	if h.flying() {
		h.fail("remap during a flight")
	}
	h.step("remap %v", moved)
	want := 0
	for b, e := range h.cur {
		if nw, ok := moved[e.Loc]; ok {
			e.Loc = nw
			h.cur[b] = e
			h.dirty[b] = true
			want++
		}
	}
	for o := range moved {
		h.moved[o] = true
	}
	h.refs.remap(moved)
	if n := h.m.remap(moved); n != want {
		h.fail("remap changed %d entries, want %d", n, want)
	}
}

// flushAll is a whole flush that lands.
func (h *mapHarness) flushAll() {
	h.t.Helper()
	h.take(nil)
	for h.flying() {
		h.end(0, true)
	}
}

// roles counts, per location, the references devMap's bookkeeping says
// it holds: every current entry, every dirty entry's old location, every
// in-flight block's old location.
func (h *mapHarness) roles() map[uint64]int {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	out := map[uint64]int{}
	for _, e := range h.m.cur {
		out[e.Loc]++
	}
	for _, old := range h.m.dirty {
		if old != 0 {
			out[old]++
		}
	}
	for _, f := range h.m.fly {
		if f.old != 0 {
			out[f.old]++
		}
	}
	return out
}

// check asserts the invariants that hold after every step.
func (h *mapHarness) check() {
	h.t.Helper()
	if len(h.refs.bad) > 0 {
		h.fail("%v", h.refs.bad)
	}
	if r := h.roles(); !maps.Equal(r, h.refs.n) {
		h.fail("reference counts %v, the map's roles %v", h.refs.n, r)
	}
	for b := uint64(0); b < 3*ShardBlocks; b += ShardBlocks {
		for i := b; i < b+16; i++ {
			if got := h.m.get(i); got != h.cur[i] {
				h.fail("block %d reads %#x, want %#x", i, got.Loc, h.cur[i].Loc)
			}
		}
	}
	if h.m.mapped() != len(h.cur) {
		h.fail("mapped %d, want %d", h.m.mapped(), len(h.cur))
	}
	if n := h.m.dirtyLen(); n != len(h.dirty)+len(h.fly) {
		h.fail("dirtyLen %d, want %d dirty + %d in flight", n, len(h.dirty), len(h.fly))
	}
	// Safety: whatever a read returns now, whatever a flight may land,
	// and whatever the pool's copy names (unless compaction moved it: a
	// forward keeps that) is referenced.
	need := func(what string, b uint64, l uint64) {
		if l != 0 && h.refs.n[l] == 0 {
			h.fail("block %d: %s location %#x is not referenced", b, what, l)
		}
	}
	for b, e := range h.cur {
		need("current", b, e.Loc)
	}
	for b, e := range h.fly {
		need("in-flight", b, e.Loc)
	}
	for b, e := range h.pool {
		if !h.moved[e.Loc] {
			need("the pool copy's", b, e.Loc)
		}
	}
	// Settled (nothing dirty, nothing in flight): the pool's copy is the
	// map, and the counts are exactly its entries (no leak).
	if len(h.dirty) == 0 && !h.flying() {
		if !maps.Equal(h.pool, h.cur) {
			h.fail("settled, but the pool's copy (%d entries) differs from the map (%d)", len(h.pool), len(h.cur))
		}
		want := map[uint64]int{}
		for _, e := range h.cur {
			want[e.Loc]++
		}
		if !maps.Equal(want, h.refs.n) {
			h.fail("settled: counts %v, want one per entry %v", h.refs.n, want)
		}
	}
}

// release ends the map as letGo does: a last flush, then every location
// locs names dropped; nothing may stay counted.
func (h *mapHarness) release() {
	h.t.Helper()
	for h.flying() {
		h.end(0, false)
	}
	h.step("release")
	for _, l := range h.m.locs() {
		h.refs.dropRef(l)
	}
	if len(h.refs.bad) > 0 {
		h.fail("release: %v", h.refs.bad)
	}
	if len(h.refs.n) > 0 {
		h.fail("release left counts %v", h.refs.n)
	}
}

// heldLoc is a location the host references (and its key), for a
// dedup hit; ok false if none.
func (h *mapHarness) heldLoc(r *rand.Rand) (Entry, bool) {
	if len(h.cur) == 0 {
		return Entry{}, false
	}
	bs := slices.Sorted(maps.Keys(h.cur))
	return h.cur[bs[r.IntN(len(bs))]], true
}

// TestDevMapModel runs random sequences of writes, zeroes, flushes that
// land or fail per shard (with writes and merges during the flight),
// merges and compaction moves against the reference model.
func TestDevMapModel(t *testing.T) {
	seqs, steps := 300, 400
	if testing.Short() {
		seqs = 60
	}
	for seed := range uint64(seqs) {
		h := newMapHarness(t)
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		h.step("seed %d", seed)
		block := func() uint64 { return uint64(r.IntN(3))*ShardBlocks + uint64(r.IntN(16)) }
		for range steps {
			switch p := r.IntN(100); {
			case p < 45: // a write: new content, a dedup hit, or zeroes
				var e Entry
				switch q := r.IntN(10); {
				case q < 2:
				case q < 5:
					if held, ok := h.heldLoc(r); ok {
						e = held
						break
					}
					fallthrough
				default:
					e = h.fresh()
				}
				h.set(block(), e)
			case p < 55:
				if !h.flying() {
					h.take(func(n int) int { return 1 + r.IntN(n) })
				}
			case p < 80:
				if h.flying() {
					h.end(r.IntN(len(h.jobs)), r.IntN(4) != 0)
				}
			case p < 88: // a merge: some of this host's locations lose to another copy
				to := map[uint64]uint64{}
				for range 1 + r.IntN(3) {
					if e, ok := h.heldLoc(r); ok {
						if o, ok := h.heldLoc(r); ok && r.IntN(2) == 0 {
							to[e.Loc] = o.Loc // a location it holds already
						} else {
							to[e.Loc] = h.fresh().Loc
						}
					}
				}
				h.repoint(to)
			case p < 95: // compaction moved some blocks (only between flushes)
				if !h.flying() {
					moved := map[uint64]uint64{}
					for l := range h.refs.n {
						if r.IntN(4) == 0 {
							moved[l] = h.fresh().Loc
						}
					}
					h.remap(moved)
				}
			default:
				if !h.flying() {
					h.flushAll()
				}
			}
			h.check()
		}
		for h.flying() {
			h.end(0, true)
			h.check()
		}
		h.flushAll()
		h.check()
		h.release()
	}
}

// TestDevMapCases pins the edge cases one by one: the final reference
// counts and the pool's copy after each script.
func TestDevMapCases(t *testing.T) {
	a := Entry{Key: keyOf(1), Loc: 0xa}
	b := Entry{Key: keyOf(2), Loc: 0xb}
	c := Entry{Key: keyOf(3), Loc: 0xc}
	s1 := uint64(ShardBlocks) // block 0 of shard 1
	cases := []struct {
		name   string
		run    func(h *mapHarness)
		counts map[uint64]int // after the script
	}{
		{"write then flush", func(h *mapHarness) { h.set(1, a); h.flushAll() }, map[uint64]int{0xa: 1}},
		{"overwrite before flush drops the unflushed value", func(h *mapHarness) {
			h.set(1, a)
			h.set(1, b)
		}, map[uint64]int{0xb: 1}},
		{"overwrite of a flushed block keeps the old until it lands", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.set(1, b)
		}, map[uint64]int{0xa: 1, 0xb: 1}},
		{"rewrite of the same location (a dedup hit) counts twice, then once", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.set(1, a)
			h.check()
			if h.refs.n[0xa] != 2 {
				h.fail("count %d, want 2 before the flush", h.refs.n[0xa])
			}
			h.flushAll()
		}, map[uint64]int{0xa: 1}},
		{"zero of an unmapped block is dirty and lands as nothing", func(h *mapHarness) {
			h.set(5, Entry{})
			h.flushAll()
		}, map[uint64]int{}},
		{"zero of a flushed block drops it when it lands", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.set(1, Entry{})
			h.check()
			h.flushAll()
		}, map[uint64]int{}},
		{"write during the flight, flight lands", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.set(1, b)
			h.take(nil)
			h.set(1, c) // b becomes the old value of the next flush
			h.check()
			h.end(0, true)
		}, map[uint64]int{0xb: 1, 0xc: 1}},
		{"write during the flight, flight fails", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.set(1, b)
			h.take(nil)
			h.set(1, c)
			h.check()
			h.end(0, false) // b never reached the pool: gone; a is the old again
		}, map[uint64]int{0xa: 1, 0xc: 1}},
		{"two writes during a failed flight", func(h *mapHarness) {
			h.set(1, a)
			h.take(nil)
			h.set(1, b)
			h.set(1, c)
			h.check()
			h.end(0, false)
			h.check()
			h.flushAll()
		}, map[uint64]int{0xc: 1}},
		{"zero during the flight, flight lands", func(h *mapHarness) {
			h.set(1, a)
			h.take(nil)
			h.set(1, Entry{})
			h.check()
			h.end(0, true)
			h.check()
			h.flushAll()
		}, map[uint64]int{}},
		{"one shard lands, the other fails", func(h *mapHarness) {
			h.set(1, a)
			h.set(s1, b)
			h.flushAll()
			h.set(1, c)
			h.set(s1, c)
			h.take(nil)
			h.end(0, true)  // shard 0
			h.end(0, false) // shard 1
			h.check()
			if !h.dirty[s1] || h.dirty[1] {
				h.fail("dirty %v, want shard 1's block only", h.dirty)
			}
		}, map[uint64]int{0xb: 1, 0xc: 2}},
		{"failed flush retried", func(h *mapHarness) {
			h.set(1, a)
			h.take(nil)
			h.end(0, false)
			h.check()
			h.flushAll()
		}, map[uint64]int{0xa: 1}},
		{"remap of a clean entry: dirty, nothing old to drop", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.remap(map[uint64]uint64{0xa: 0xd})
			h.check()
			h.flushAll()
		}, map[uint64]int{0xd: 1}},
		{"remap of a dirty entry's old location", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.set(1, b)
			h.remap(map[uint64]uint64{0xa: 0xd})
			h.check()
			h.flushAll()
		}, map[uint64]int{0xb: 1}},
		{"remapped clean entry overwritten before its flush", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.remap(map[uint64]uint64{0xa: 0xd})
			h.set(1, b) // the pool still names 0xa: its forward keeps 0xd
			h.check()
			h.flushAll()
		}, map[uint64]int{0xb: 1}},
		{"repoint of a clean entry keeps the old until it lands", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.repoint(map[uint64]uint64{0xa: 0xe})
			h.check()
			if h.refs.n[0xa] != 1 || h.refs.n[0xe] != 1 {
				h.fail("counts %v", h.refs.n)
			}
			h.flushAll()
		}, map[uint64]int{0xe: 1}},
		{"repoint of a dirty entry drops the unflushed copy", func(h *mapHarness) {
			h.set(1, a)
			h.repoint(map[uint64]uint64{0xa: 0xe})
			h.flushAll()
		}, map[uint64]int{0xe: 1}},
		{"repoint during the flight", func(h *mapHarness) {
			h.set(1, a)
			h.set(2, a)
			h.take(nil)
			h.repoint(map[uint64]uint64{0xa: 0xe})
			h.check()
			h.end(0, true)
			h.check()
			h.flushAll()
		}, map[uint64]int{0xe: 2}},
		{"repoint to the same location changes nothing", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			h.repoint(map[uint64]uint64{0xa: 0xa})
			if len(h.dirty) != 0 || h.m.dirtyLen() != 0 {
				h.fail("a no-op repoint made block 1 dirty")
			}
		}, map[uint64]int{0xa: 1}},
		{"nothing dirty: no flight", func(h *mapHarness) {
			h.set(1, a)
			h.flushAll()
			if bs := h.m.takeDirty(); bs != nil {
				h.fail("takeDirty of a clean map: %v", bs)
			}
		}, map[uint64]int{0xa: 1}},
		{"loaded entries are clean", func(h *mapHarness) {
			h.refs.add(a.Loc)
			h.m.load(3, a)
			h.cur[3], h.pool[3] = a, a
			h.set(3, b)
			h.flushAll()
		}, map[uint64]int{0xb: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newMapHarness(t)
			c.run(h)
			h.check()
			if !maps.Equal(h.refs.n, c.counts) {
				h.fail("counts %v, want %v", h.refs.n, c.counts)
			}
			h.flushAll()
			h.check()
			h.release()
		})
	}
}
