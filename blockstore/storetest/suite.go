// Package storetest is the test suite every blockstore.Store implementation
// must pass. An implementation's test calls Run with a constructor that
// returns a fresh, empty store.
package storetest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"blockhash/blockstore"
)

// Run runs the suite. newStore returns an empty store; reopen, if not nil,
// closes a store and opens it again from the same medium.
func Run(t *testing.T, newStore func(t *testing.T) blockstore.Store, reopen func(t *testing.T, s blockstore.Store) blockstore.Store) {
	t.Run("EmptyHasNoSlots", func(t *testing.T) {
		s := newStore(t)
		if n := s.Slots(); n != 0 {
			t.Fatalf("new store has %d slots", n)
		}
		err := s.WriteAt(make([]byte, blockstore.BlockSize), 0)
		if !errors.Is(err, blockstore.ErrRange) {
			t.Fatalf("write to slot 0 of an empty store: %v, want ErrRange", err)
		}
	})
	t.Run("WriteReadRoundTrip", func(t *testing.T) {
		s := newStore(t)
		mustGrow(t, s)
		n := s.Slots()
		data := randBlocks(int(min(n, 64)))
		if err := s.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if err := s.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("read back differs")
		}
		// An unaligned, single-block read in the middle.
		one := make([]byte, blockstore.BlockSize+1)[1:]
		if err := s.ReadAt(one, 3); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(one, data[3*blockstore.BlockSize:4*blockstore.BlockSize]) {
			t.Fatal("unaligned read differs")
		}
	})
	t.Run("RangeAcrossExtents", func(t *testing.T) {
		s := newStore(t)
		mustGrow(t, s)
		mustGrow(t, s)
		per := s.Slots() / 2
		data := randBlocks(4)
		first := blockstore.Slot(per - 2)
		if err := s.WriteAt(data, first); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if err := s.ReadAt(got, first); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("read across extents differs")
		}
		if err := s.ReadAt(got, blockstore.Slot(s.Slots()-1)); !errors.Is(err, blockstore.ErrRange) {
			t.Fatalf("read past the end: %v, want ErrRange", err)
		}
	})
	t.Run("BadBufferSize", func(t *testing.T) {
		s := newStore(t)
		mustGrow(t, s)
		if err := s.WriteAt(make([]byte, 100), 0); err == nil {
			t.Fatal("write of 100 bytes succeeded")
		}
	})
	t.Run("MetaRoundTrip", func(t *testing.T) {
		s := newStore(t)
		mustGrow(t, s)
		recs := make([]blockstore.Meta, 10)
		for i := range recs {
			recs[i].Tag[0] = byte(i + 1)
			recs[i].Refs = uint32(i)
			recs[i].Flags = blockstore.FlagIndexed
		}
		if err := s.WriteMeta(5, recs); err != nil {
			t.Fatal(err)
		}
		got := make([]blockstore.Meta, 12)
		if err := s.ReadMeta(4, got); err != nil {
			t.Fatal(err)
		}
		if !got[0].IsZero() || !got[11].IsZero() {
			t.Fatal("untouched records are not zero")
		}
		for i := range recs {
			if got[i+1] != recs[i] {
				t.Fatalf("record %d: got %+v want %+v", i, got[i+1], recs[i])
			}
		}
	})
	t.Run("ConcurrentDistinctSlots", func(t *testing.T) {
		s := newStore(t)
		mustGrow(t, s)
		n := int(min(s.Slots(), 256))
		data := randBlocks(n)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					b := data[i*blockstore.BlockSize : (i+1)*blockstore.BlockSize]
					if err := s.WriteAt(b, blockstore.Slot(i)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if err := s.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("concurrent writes read back differently")
		}
	})
	testWriteBlocks(t, newStore)
	if reopen != nil {
		t.Run("SurvivesReopen", func(t *testing.T) {
			s := newStore(t)
			mustGrow(t, s)
			data := randBlocks(3)
			if err := s.WriteAt(data, 1); err != nil {
				t.Fatal(err)
			}
			m := []blockstore.Meta{{Refs: 7, Flags: blockstore.FlagIndexed}}
			m[0].Tag[35] = 9
			if err := s.WriteMeta(1, m); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			s = reopen(t, s)
			got := make([]byte, len(data))
			if err := s.ReadAt(got, 1); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("data changed across reopen")
			}
			gm := make([]blockstore.Meta, 1)
			if err := s.ReadMeta(1, gm); err != nil || gm[0] != m[0] {
				t.Fatalf("meta across reopen: %+v %v", gm[0], err)
			}
		})
	}
}

func mustGrow(t *testing.T, s blockstore.Store) {
	t.Helper()
	if err := s.Grow(); err != nil {
		t.Fatal(err)
	}
}

func randBlocks(n int) []byte {
	b := make([]byte, n*blockstore.BlockSize)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testWriteBlocks(t *testing.T, newStore func(t *testing.T) blockstore.Store) {
	t.Run("WriteBlocksVectored", func(t *testing.T) {
		s := newStore(t)
		mustGrow(t, s)
		mustGrow(t, s)
		per := s.Slots() / 2
		data := randBlocks(6)
		var bufs [][]byte
		for i := range 6 {
			bufs = append(bufs, data[i*blockstore.BlockSize:(i+1)*blockstore.BlockSize])
		}
		first := blockstore.Slot(per - 3) // spans two extents
		if err := s.WriteBlocks(first, bufs); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if err := s.ReadAt(got, first); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("vectored write read back differently")
		}
	})
}
