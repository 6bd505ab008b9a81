//go:build rados

package rados

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// qHost writes content n at lba n with queued index inserts.
type qHost struct {
	*simHost
	q *InsertQueue
}

func (h *qHost) write(n int) error {
	key := testKey(n)
	var loc Loc
	err := h.refs.Do(func() error {
		found, err := h.x.Lookup([][]byte{key})
		if err != nil {
			return err
		}
		if loc = found[0]; loc == 0 {
			loc = h.q.Pending(key)
		}
		if loc == 0 {
			mine, err := h.st.Put([][]byte{key}, contentBlock(n))
			if err != nil {
				return err
			}
			loc = mine[0]
			h.q.Add(key, loc)
		}
		h.refs.Add(loc)
		return nil
	})
	if err != nil {
		return err
	}
	return h.mapTo(n, loc, n)
}

// flushAndMerge inserts the queued entries and re-points this host's
// lbas from its own copies of lost keys to the winners'.
func (h *qHost) flushAndMerge(minKeys int) (int, error) {
	var lost []Lost
	err := h.refs.Do(func() error {
		var err error
		if lost, err = h.q.Flush(minKeys); err != nil {
			return err
		}
		for _, l := range lost {
			h.refs.Add(l.Winner) // before a GC round can miss it
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	h.mmu.Lock()
	defer h.mmu.Unlock()
	byLoc := map[Loc]int{}
	for lba, l := range h.m {
		byLoc[l] = lba
	}
	for _, l := range lost {
		lba, ok := byLoc[l.Mine]
		if !ok || !bytes.Equal(testKey(h.which[lba]), l.Key) {
			h.refs.Drop(l.Winner) // not mapped any more
			continue
		}
		h.m[lba] = l.Winner
		if err := h.refs.Drop(l.Mine); err != nil {
			return 0, err
		}
	}
	return len(lost), nil
}

// Two hosts import the same content at the same time with queued index
// inserts: both store it, one wins each key, the merge points the other's
// maps at the winner, and GC takes the losing copies back: the pool holds
// each block about once.
func TestQueuedInsertsMergeAndCollect(t *testing.T) {
	ns := testNamespace(t)
	const contents = 256
	hosts := []*qHost{}
	for id := uint16(1); id <= 2; id++ {
		h := newSimHost(t, ns, id, 16)
		hosts = append(hosts, &qHost{h, h.x.NewInsertQueue()})
	}
	var wg sync.WaitGroup
	lost := make([]int, 2)
	for i, h := range hosts {
		wg.Go(func() {
			for n := range contents {
				if err := h.write(n); err != nil {
					t.Error(err)
					return
				}
				if n%64 == 63 { // a flush now and then, shards with 4+ keys
					k, err := h.flushAndMerge(4)
					if err != nil {
						t.Error(err)
						return
					}
					lost[i] += k
				}
			}
			k, err := h.flushAndMerge(1)
			if err != nil {
				t.Error(err)
			}
			lost[i] += k
			if err := h.st.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if hosts[0].q.Len()+hosts[1].q.Len() != 0 {
		t.Fatal("entries left queued")
	}
	for n := range contents {
		if hosts[0].m[n] != hosts[1].m[n] {
			t.Fatalf("content %d: host 1 maps %v, host 2 %v", n, hosts[0].m[n], hosts[1].m[n])
		}
		for _, h := range hosts {
			if err := h.check(n); err != nil {
				t.Fatalf("host %d content %d: %v", h.id, n, err)
			}
		}
	}
	leader := testConn(t, ns, 20*time.Second)
	stored := func() int {
		packs, err := leader.packs()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, id := range packs {
			ps, err := leader.ReadPackState(id)
			if err != nil {
				t.Fatal(err)
			}
			n += len(ps.Keys)
		}
		return n
	}
	before := stored()
	var st GCStats
	for range 2 {
		s, err := leader.Collect(hosts[0].x, []uint16{1, 2}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st.PacksDeleted += s.PacksDeleted
		st.Dead = s.Dead
	}
	after := stored()
	rep, err := leader.Check(hosts[0].x, []uint16{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 || rep.Contents != contents || rep.Referenced != contents || rep.Garbage != st.Dead {
		t.Fatalf("check: %+v", rep)
	}
	t.Logf("%d contents from two hosts at once: %d races lost (host 1 %d, host 2 %d), %d blocks stored before GC, %d after (%d packs deleted, %d dead blocks left in partly live packs)",
		contents, lost[0]+lost[1], lost[0], lost[1], before, after, st.PacksDeleted, st.Dead)
	if after-st.Dead != contents {
		t.Fatalf("%d live blocks stored for %d contents", after-st.Dead, contents)
	}
	for n := range contents {
		for _, h := range hosts {
			if err := h.check(n); err != nil {
				t.Fatalf("after GC: host %d content %d: %v", h.id, n, err)
			}
		}
	}

	// Compaction: the live blocks of partly dead packs go to the leader's
	// packs (host 3, which serves rounds too), the hosts follow the
	// forwards in their next round, and the old packs die.
	lh := newSimHost(t, ns, 3, 16)
	cs, err := leader.Compact(lh.x, []uint16{1, 2, 3}, lh.st, 1, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := lh.st.Close(); err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for range 2 {
		s, err := leader.Collect(lh.x, []uint16{1, 2, 3}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		deleted += s.PacksDeleted
	}
	compacted := stored()
	rep, err = leader.Check(lh.x, []uint16{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := leader.Forwards()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction: %d packs, %d blocks copied; then %d packs deleted: %d blocks stored for %d contents (%d forwards left)",
		cs.Packs, cs.Copied, deleted, compacted, contents, len(fwd))
	if len(rep.Problems) > 0 || compacted != contents || rep.Garbage != 0 || len(fwd) != 0 {
		t.Fatalf("after compaction: %d blocks stored, check %+v, %d forwards", compacted, rep, len(fwd))
	}
	for n := range contents {
		for _, h := range hosts {
			if err := h.check(n); err != nil {
				t.Fatalf("after compaction: host %d content %d: %v", h.id, n, err)
			}
		}
	}
}
