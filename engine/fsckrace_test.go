package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// Fsck while writers copy shared leaves and a deleted snapshot's space is
// released in the background (both change maps and references in memory
// between commits): it checks a committed state with both held off, so it
// finds nothing wrong (old: fsck committed, then took its locks, and what
// came in between showed as reference mismatches).
func TestFsckDuringCopyOnWriteAndDelete(t *testing.T) {
	_, e := newStore(t, Options{CommitInterval: -1})
	const blocks = 64 * mapPerPage
	d, _ := e.CreateDevice("vm", blocks*BlockSize)
	for lba := int64(0); lba < blocks; lba++ {
		writeBlocks(t, d, lba, block(uint64(lba+1)))
	}
	for round := range 10 {
		snap := fmt.Sprintf("s%d", round)
		if err := e.Snapshot("vm", snap); err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int64(0); !stop.Load(); i++ {
					lba := (i*4 + int64(w)) * mapPerPage % blocks
					d.WriteAt(block(uint64(round*1_000_000)+uint64(i*4+int64(w))), lba*BlockSize)
				}
			}()
		}
		if round > 0 {
			if err := e.DeleteDevice(fmt.Sprintf("vm@s%d", round-1), DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for range 5 {
			rep, err := e.Fsck(false)
			if err != nil || !rep.OK() {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("round %d: fsck during copy-on-write and a delete: %v %v", round, err, rep.Problems[:min(3, len(rep.Problems))])
			}
		}
		stop.Store(true)
		wg.Wait()
		waitDeletes(e)
	}
}
