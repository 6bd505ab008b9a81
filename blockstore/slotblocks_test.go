package blockstore_test

import (
	"errors"
	"testing"

	"blockhash/blockstore"
	"blockhash/blockstore/blockstest"
)

func openSlotBlocks(t *testing.T, dir string) *blockstore.SlotBlocks {
	t.Helper()
	st, err := blockstore.OpenExtents(dir, testExtent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blockstore.OpenSlotBlocks(st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestSlotBlocksSuite(t *testing.T) {
	dirs := map[blockstore.Blocks]string{}
	blockstest.Run(t,
		func(t *testing.T) blockstore.Blocks {
			dir := t.TempDir()
			b := openSlotBlocks(t, dir)
			dirs[b] = dir
			return b
		},
		func(t *testing.T, b blockstore.Blocks) blockstore.Blocks {
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			return openSlotBlocks(t, dirs[b])
		})
}

// A dropped slot is reused, lowest first, but only after the Sync that
// made its zeroed record durable; a reopen finds the holes below the
// highest live slot.
func TestSlotBlocksReuseAfterSync(t *testing.T) {
	dir := t.TempDir()
	b := openSlotBlocks(t, dir)
	tags := make([][blockstore.TagSize]byte, 8)
	for i := range tags {
		tags[i][0] = byte(i + 1)
	}
	locs, err := b.Put(tags, make([]byte, 8*blockstore.BlockSize))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Drop([]blockstore.Loc{locs[2], locs[5]}); err != nil {
		t.Fatal(err)
	}
	if err := b.Drop([]blockstore.Loc{locs[2]}); !errors.Is(err, blockstore.ErrNoBlock) {
		t.Fatalf("second drop: %v, want ErrNoBlock", err)
	}
	one, err := b.Put(tags[:1], make([]byte, blockstore.BlockSize))
	if err != nil {
		t.Fatal(err)
	}
	if one[0] == locs[2] || one[0] == locs[5] {
		t.Fatalf("slot reused before the Sync that made its drop durable: %d", one[0])
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	two, err := b.Put(tags[:2], make([]byte, 2*blockstore.BlockSize))
	if err != nil {
		t.Fatal(err)
	}
	got := map[blockstore.Loc]bool{two[0]: true, two[1]: true}
	if !got[locs[2]] || !got[locs[5]] {
		t.Fatalf("after Sync: got %v, want the dropped %d and %d", two, locs[2], locs[5])
	}
	// Reopen: a hole below the highest live slot is found again.
	if err := b.Drop([]blockstore.Loc{locs[3]}); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = openSlotBlocks(t, dir)
	again, err := b.Put(tags[:1], make([]byte, blockstore.BlockSize))
	if err != nil {
		t.Fatal(err)
	}
	if again[0] != locs[3] {
		t.Fatalf("after reopen got %d, want the hole %d", again[0], locs[3])
	}
}
