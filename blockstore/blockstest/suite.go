// Package blockstest is the conformance suite of blockstore.Blocks: the
// local SlotBlocks and the RADOS store (package rados, build tag rados)
// both run it. An implementation's test calls Run with a constructor of
// fresh, empty stores and, if it can, one that reopens a store from the
// same medium.
package blockstest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"blockhash/blockstore"
)

// Run runs the suite. open returns an empty store; reopen, if not nil,
// closes s and opens it again from the same medium.
func Run(t *testing.T, open func(t *testing.T) blockstore.Blocks, reopen func(t *testing.T, s blockstore.Blocks) blockstore.Blocks) {
	t.Run("PutGetRoundTrip", func(t *testing.T) {
		s := open(t)
		tags, data := blocks(1, 40)
		locs := mustPut(t, s, tags, data)
		checkAll(t, s, locs, tags, data)
	})
	t.Run("LocationsAreDistinctAndNonZero", func(t *testing.T) {
		s := open(t)
		seen := map[blockstore.Loc]bool{}
		for i := range 5 {
			tags, data := blocks(uint64(i), 30)
			for _, l := range mustPut(t, s, tags, data) {
				if l == 0 || seen[l] {
					t.Fatalf("location %d given twice or zero", l)
				}
				seen[l] = true
			}
		}
	})
	t.Run("HeldLocationsAreNeverReused", func(t *testing.T) {
		s := open(t)
		tags, data := blocks(2, 100)
		locs := mustPut(t, s, tags, data)
		var dropped []blockstore.Loc
		held := map[blockstore.Loc]int{}
		for i, l := range locs {
			if i%2 == 1 {
				dropped = append(dropped, l)
			} else {
				held[l] = i
			}
		}
		if err := s.Drop(dropped); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		tags2, data2 := blocks(3, 100)
		locs2 := mustPut(t, s, tags2, data2)
		for _, l := range locs2 {
			if _, ok := held[l]; ok {
				t.Fatalf("location %d given again while held", l)
			}
			held[l] = -1
		}
		if len(held) != 150 {
			t.Fatalf("%d distinct locations held, want 150", len(held))
		}
		checkAll(t, s, locs2, tags2, data2)
		for l, i := range held {
			if i < 0 {
				continue
			}
			check(t, s, l, tags[i], data[i*blockstore.BlockSize:(i+1)*blockstore.BlockSize])
		}
	})
	t.Run("NoBlockIsErrNoBlock", func(t *testing.T) {
		s := open(t)
		tags, data := blocks(4, 1)
		mustPut(t, s, tags, data)
		p := make([]byte, blockstore.BlockSize)
		for _, l := range []blockstore.Loc{0, 1 << 40, ^blockstore.Loc(0) >> 1} {
			if _, err := s.Get(l, p); !errors.Is(err, blockstore.ErrNoBlock) {
				t.Errorf("get %d: %v, want ErrNoBlock", l, err)
			}
		}
	})
	t.Run("BadPutChangesNothing", func(t *testing.T) {
		s := open(t)
		tags, data := blocks(5, 3)
		for name, tc := range map[string]struct {
			tags [][blockstore.TagSize]byte
			data []byte
		}{
			"none":        {nil, nil},
			"short data":  {tags, data[:len(data)-1]},
			"fewer tags":  {tags[:2], data},
			"no data":     {tags, nil},
			"not aligned": {tags[:1], data[:100]},
		} {
			if _, err := s.Put(tc.tags, tc.data); err == nil {
				t.Errorf("%s: put succeeded", name)
			}
		}
		locs := mustPut(t, s, tags, data) // the store still works
		checkAll(t, s, locs, tags, data)
	})
	t.Run("ConcurrentPuts", func(t *testing.T) {
		s := open(t)
		const workers, puts, per = 6, 8, 5
		type put struct {
			locs []blockstore.Loc
			tags [][blockstore.TagSize]byte
			data []byte
		}
		res := make([][]put, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for p := range puts {
					tags, data := blocks(uint64(100+w*puts+p), per)
					locs, err := s.Put(tags, data)
					if err != nil {
						t.Error(err)
						return
					}
					res[w] = append(res[w], put{locs, tags, data})
				}
			})
		}
		wg.Wait()
		seen := map[blockstore.Loc]bool{}
		for _, ps := range res {
			for _, p := range ps {
				for _, l := range p.locs {
					if seen[l] {
						t.Fatalf("location %d given to two puts", l)
					}
					seen[l] = true
				}
				checkAll(t, s, p.locs, p.tags, p.data)
			}
		}
		if len(seen) != workers*puts*per {
			t.Fatalf("%d locations, want %d", len(seen), workers*puts*per)
		}
	})
	if reopen == nil {
		return
	}
	t.Run("SurvivesReopen", func(t *testing.T) {
		s := open(t)
		tags, data := blocks(6, 20)
		locs := mustPut(t, s, tags, data)
		if err := s.Drop(locs[10:]); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		s = reopen(t, s)
		checkAll(t, s, locs[:10], tags[:10], data[:10*blockstore.BlockSize])
		// After the reopen, held locations are still not given out.
		tags2, data2 := blocks(7, 40)
		for _, l := range mustPut(t, s, tags2, data2) {
			for _, h := range locs[:10] {
				if l == h {
					t.Fatalf("location %d given again after reopen while held", l)
				}
			}
		}
		checkAll(t, s, locs[:10], tags[:10], data[:10*blockstore.BlockSize])
	})
}

// blocks returns n random blocks and tags made from seed.
func blocks(seed uint64, n int) ([][blockstore.TagSize]byte, []byte) {
	r := rand.New(rand.NewPCG(seed, 77))
	tags := make([][blockstore.TagSize]byte, n)
	data := make([]byte, n*blockstore.BlockSize)
	for i := range tags {
		copy(tags[i][:], fmt.Sprintf("tag %d/%d", seed, i))
		tags[i][blockstore.TagSize-1] = byte(r.Uint32()) | 1
	}
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return tags, data
}

func mustPut(t *testing.T, s blockstore.Blocks, tags [][blockstore.TagSize]byte, data []byte) []blockstore.Loc {
	t.Helper()
	locs, err := s.Put(tags, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) != len(tags) {
		t.Fatalf("put of %d blocks gave %d locations", len(tags), len(locs))
	}
	return locs
}

func check(t *testing.T, s blockstore.Blocks, l blockstore.Loc, tag [blockstore.TagSize]byte, want []byte) {
	t.Helper()
	p := make([]byte, blockstore.BlockSize)
	got, err := s.Get(l, p)
	if err != nil {
		t.Fatalf("get %d: %v", l, err)
	}
	if got != tag || !bytes.Equal(p, want) {
		t.Fatalf("get %d: tag or data differ", l)
	}
}

func checkAll(t *testing.T, s blockstore.Blocks, locs []blockstore.Loc, tags [][blockstore.TagSize]byte, data []byte) {
	t.Helper()
	for i, l := range locs {
		check(t, s, l, tags[i], data[i*blockstore.BlockSize:(i+1)*blockstore.BlockSize])
	}
}
