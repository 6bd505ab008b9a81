//go:build rados

package rados

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// contentBlock is the 4 KiB block of content id n (testKey(n) is its key).
func contentBlock(n int) []byte {
	b := bytes.Repeat([]byte{byte(n)}, BlockSize)
	binary.LittleEndian.PutUint64(b, uint64(n))
	return b
}

// simHost is a host for GC tests: a map of lbas to locations (its devices)
// kept in its Refs, new blocks in its own packs, the shared index.
type simHost struct {
	id   uint16
	c    *Conn
	st   *Store
	x    *Index
	refs *Refs
	srv  *RoundServer
	// mmu guards m and which: the writer and the round answer (Remap)
	// both change them.
	mmu   sync.Mutex
	m     map[int]Loc // lba -> location
	which map[int]int // lba -> content
}

// answer is the host's part of a GC round: follow compaction's forwards,
// then publish.
func (h *simHost) answer(r uint64) error {
	h.mmu.Lock() // references and map move together
	moved, err := h.refs.Remap()
	if err == nil {
		for lba, l := range h.m {
			if nw, ok := moved[l]; ok {
				h.m[lba] = nw
			}
		}
	}
	h.mmu.Unlock()
	if err != nil {
		return err
	}
	return h.refs.Publish(r)
}

func newSimHost(t *testing.T, ns string, id uint16, packBlocks int) *simHost {
	t.Helper()
	c := testConn(t, ns, 20*time.Second)
	st, err := c.OpenStore(id)
	if err != nil {
		t.Fatal(err)
	}
	st.max = packBlocks
	x, err := c.NewIndex(8)
	if err != nil {
		t.Fatal(err)
	}
	h := &simHost{id: id, c: c, st: st, x: x, refs: c.NewRefs(id), m: map[int]Loc{}, which: map[int]int{}}
	if h.srv, err = c.ServeRounds(id, h.answer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.srv.Stop() })
	return h
}

// write maps lba to content n: a dedup hit if the index has it, else a
// new block in the host's pack, inserted if absent (a lost race takes the
// winner's location).
func (h *simHost) write(lba, n int) error {
	key := testKey(n)
	var loc Loc
	err := h.refs.Do(func() error {
		found, err := h.x.Lookup([][]byte{key})
		if err != nil {
			return err
		}
		if loc = found[0]; loc == 0 {
			mine, err := h.st.Put([][]byte{key}, contentBlock(n))
			if err != nil {
				return err
			}
			got, _, err := h.x.PutIfAbsent([][]byte{key}, mine)
			if err != nil {
				return err
			}
			loc = got[0]
		}
		h.refs.Add(loc)
		return nil
	})
	if err != nil {
		return err
	}
	return h.mapTo(lba, loc, n)
}

// mapTo points lba at loc (content n) and drops the reference of what it
// named before.
func (h *simHost) mapTo(lba int, loc Loc, n int) error {
	h.mmu.Lock()
	defer h.mmu.Unlock()
	if old := h.m[lba]; old != 0 {
		if err := h.refs.Drop(old); err != nil {
			return err
		}
	}
	h.m[lba], h.which[lba] = loc, n
	return nil
}

// check reads lba back.
func (h *simHost) check(lba int) error {
	h.mmu.Lock()
	loc, ok := h.m[lba]
	n := h.which[lba]
	h.mmu.Unlock()
	if !ok {
		return nil
	}
	buf := make([]byte, BlockSize)
	if err := h.c.ReadBlock(loc, buf); err != nil {
		// compaction may have moved it and its old pack gone since we
		// looked: a reader follows the map's new entry, once
		h.mmu.Lock()
		now := h.m[lba]
		h.mmu.Unlock()
		if now == loc {
			return err
		}
		if err := h.c.ReadBlock(now, buf); err != nil {
			return err
		}
	}
	if !bytes.Equal(buf, contentBlock(n)) {
		return errors.New("read back other content")
	}
	return nil
}

// GC rounds back to back, no time margin, while two hosts write and read
// overlapping content: no read ever fails, and space comes back.
func TestCollectWhileHostsWrite(t *testing.T) {
	ns := testNamespace(t)
	hosts := []*simHost{newSimHost(t, ns, 1, 8), newSimHost(t, ns, 2, 8)}
	leader := testConn(t, ns, 20*time.Second)
	x, _ := leader.NewIndex(8)
	lh := newSimHost(t, ns, 3, 8) // the leader's own packs, for compaction
	const lbas, contents = 48, 160
	dur := 4 * time.Second
	var stop atomic.Bool
	var writes, reads atomic.Int64
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 9))
			for !stop.Load() {
				if err := h.write(r.IntN(lbas), r.IntN(contents)); err != nil {
					t.Errorf("host %d write: %v", h.id, err)
					return
				}
				writes.Add(1)
				for range 2 {
					lba := r.IntN(lbas)
					if err := h.check(lba); err != nil {
						t.Errorf("host %d read of lba %d: %v", h.id, lba, err)
						return
					}
					reads.Add(1)
				}
			}
		})
	}
	var total GCStats
	var compacted CompactStats
	var rounds int
	ids := []uint16{1, 2, 3}
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) && !t.Failed() {
		if rounds%3 == 2 {
			cs, err := leader.Compact(x, ids, lh.st, 0.75, 10*time.Second)
			if err != nil {
				t.Errorf("compact: %v", err)
				break
			}
			compacted.Packs += cs.Packs
			compacted.Copied += cs.Copied
		}
		st, err := leader.Collect(x, ids, 10*time.Second)
		if err != nil {
			t.Errorf("collect: %v", err)
			break
		}
		rounds++
		total.Candidates += st.Candidates
		total.Resurrected += st.Resurrected
		total.Dead += st.Dead
		total.PacksDeleted += st.PacksDeleted
	}
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		return
	}
	// Quiet: seal the open packs, collect twice, check everything.
	for _, h := range append(hosts, lh) {
		if err := h.st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		st, err := leader.Collect(x, ids, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		total.PacksDeleted += st.PacksDeleted
	}
	for _, h := range hosts {
		for lba := range lbas {
			if err := h.check(lba); err != nil {
				t.Fatalf("host %d lba %d after the last collection: %v", h.id, lba, err)
			}
		}
	}
	// Every index entry names a block that is there, with that key (no
	// entry dangles), every published reference holds a block. A mapped
	// content may lack an entry (a dedup loss, not a safety one: its entry
	// went with another copy), so that is counted, not asserted.
	rep, err := leader.Check(x, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("check: %d problems, first %s", len(rep.Problems), rep.Problems[0])
	}
	packs, blocks, entries := rep.Packs, rep.Blocks, rep.IndexEntries
	distinct := map[int]bool{}
	for _, h := range hosts {
		for _, n := range h.which {
			distinct[n] = true
		}
	}
	t.Logf("%d writes, %d reads, %d collections (%d candidates, %d resurrected, %d dead, %d packs deleted), %d packs compacted (%d blocks copied); left: %d packs holding %d blocks, %d index entries, %d distinct contents mapped",
		writes.Load(), reads.Load(), rounds, total.Candidates, total.Resurrected, total.Dead, total.PacksDeleted, compacted.Packs, compacted.Copied, packs, blocks, entries, len(distinct))
	if total.PacksDeleted == 0 {
		t.Fatal("no pack was ever deleted: space does not come back")
	}
}

// A host that does not acknowledge stops the collection before anything
// is deleted.
func TestCollectStopsAtUnackedHost(t *testing.T) {
	ns := testNamespace(t)
	h := newSimHost(t, ns, 1, 4)
	leader := testConn(t, ns, 20*time.Second)
	for lba := range 7 { // a full pack of 4 (sealed) and an open one of 3
		if err := h.write(lba, lba); err != nil {
			t.Fatal(err)
		}
	}
	for lba := range 7 { // everything unreferenced: all garbage
		if err := h.refs.Drop(h.m[lba]); err != nil {
			t.Fatal(err)
		}
	}
	before, err := leader.packs()
	if err != nil {
		t.Fatal(err)
	}
	_, err = leader.Collect(h.x, []uint16{1, 2}, 2*time.Second) // host 2 never serves
	if !errors.Is(err, ErrUnacked) {
		t.Fatalf("collect with a silent host: %v, want ErrUnacked", err)
	}
	after, err := leader.packs()
	if err != nil || len(after) != len(before) {
		t.Fatalf("packs %d before, %d after a stopped collection (%v)", len(before), len(after), err)
	}
	st, err := leader.Collect(h.x, []uint16{1}, 5*time.Second)
	if err != nil || st.PacksDeleted != 1 || st.Dead != 4 {
		t.Fatalf("collect with host 1 alone: %+v %v, want the sealed pack of 4 deleted", st, err)
	}
}
