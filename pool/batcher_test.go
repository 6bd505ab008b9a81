package pool

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"blockhash/blockstore"
)

// fakePutter hands out locations in order, one op per Put, slowly enough
// that concurrent puts queue behind it.
type fakePutter struct {
	mu    sync.Mutex
	next  uint64
	ops   int
	max   int
	fail  error
	inOps atomic.Int32
}

func (f *fakePutter) Put(tags [][blockstore.TagSize]byte, data []byte) ([]blockstore.Loc, error) {
	if f.inOps.Add(1) != 1 {
		panic("two appends at once")
	}
	defer f.inOps.Add(-1)
	time.Sleep(time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(data) != len(tags)*BlockSize {
		panic("data and tags disagree")
	}
	f.ops++
	f.max = max(f.max, len(tags))
	if f.fail != nil {
		return nil, f.fail
	}
	out := make([]blockstore.Loc, len(tags))
	for i := range tags {
		f.next++
		out[i] = blockstore.Loc(f.next)
		// the block's first byte is its tag's: locations must come back
		// to the request whose block they store
		if data[i*BlockSize] != tags[i][0] {
			panic("block and tag apart")
		}
	}
	return out, nil
}

func TestPutBatcherCoalesces(t *testing.T) {
	f := &fakePutter{}
	b := &putBatcher{blocks: f}
	const writers, each = 32, 50
	locs := make([][]uint64, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range each {
				n := 1 + w%3
				tags := make([][blockstore.TagSize]byte, n)
				data := make([]byte, n*BlockSize)
				for i := range n {
					tags[i][0] = byte(w)
					data[i*BlockSize] = byte(w)
				}
				l, err := b.put(tags, data)
				if err != nil || len(l) != n {
					t.Errorf("put: %v %v", l, err)
					return
				}
				locs[w] = append(locs[w], l...)
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	total := 0
	for _, ls := range locs {
		for _, l := range ls {
			if l == 0 || seen[l] {
				t.Fatalf("location %d given twice or zero", l)
			}
			seen[l] = true
			total++
		}
	}
	if f.ops >= writers*each || f.max > maxBatchBlocks {
		t.Fatalf("%d ops for %d puts (largest %d blocks): nothing coalesced, or a batch too big", f.ops, writers*each, f.max)
	}
	t.Logf("%d puts of %d blocks in %d ops (largest %d blocks)", writers*each, total, f.ops, f.max)
}

func TestPutBatcherError(t *testing.T) {
	boom := errors.New("boom")
	b := &putBatcher{blocks: &fakePutter{fail: boom}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := b.put(make([][blockstore.TagSize]byte, 1), make([]byte, BlockSize)); !errors.Is(err, boom) {
				t.Errorf("err %v, want boom", err)
			}
		})
	}
	wg.Wait()
}
