package engine

import (
	"errors"
	"slices"
	"testing"

	"blockhash/blockstore"
	"blockhash/index"
)

// Metadata inconsistencies fsck must find, list and repair. Each case
// damages the store through the engine's internals (as a bug or a lost
// write would), then: fsck reports the problem and the device blocks that
// lost data; fsck --repair leaves a consistent store; only the listed
// blocks fail to read.
func TestFsckFindsAndRepairs(t *testing.T) {
	keyOf := func(b []byte) index.Key { return SHA256.blockKey(b) }
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, e *Engine)
		check  func(r FsckReport) bool
		lost   []DamagedRange
	}{
		{"key stored in two slots", func(t *testing.T, e *Engine) {
			// The index forgets block 1 (as the old replay did for its
			// filter); writing it again stores it a second time.
			a, _ := e.Device("a")
			ent, _ := a.m.get(0)
			if err := e.ix.Apply([]index.Op{{Key: ent.Key, Slot: ent.Slot, Delete: true}}); err != nil {
				t.Fatal(err)
			}
			e.ix.Reload()
			d, _ := e.CreateDevice("dup", 1<<20)
			writeBlocks(t, d, 0, block(1))
		}, func(r FsckReport) bool { return r.Duplicates == 1 }, nil},
		{"stale index entry", func(t *testing.T, e *Engine) {
			if err := e.ix.Apply([]index.Op{{Key: keyOf(block(99)), Slot: 2}}); err != nil {
				t.Fatal(err)
			}
		}, func(r FsckReport) bool { return r.IndexStale == 1 }, nil},
		{"index entry missing", func(t *testing.T, e *Engine) {
			a, _ := e.Device("a")
			ent, _ := a.m.get(2)
			if err := e.ix.Apply([]index.Op{{Key: ent.Key, Slot: ent.Slot, Delete: true}}); err != nil {
				t.Fatal(err)
			}
		}, func(r FsckReport) bool { return r.IndexMissing == 1 }, nil},
		{"reference count wrong", func(t *testing.T, e *Engine) {
			a, _ := e.Device("a")
			ent, _ := a.m.get(1)
			m := blockstore.Meta{Refs: 7, Flags: blockstore.FlagIndexed}
			ent.Key.Encode(m.Tag[:])
			if err := e.bs.WriteMeta(blockstore.Slot(ent.Slot), []blockstore.Meta{m}); err != nil {
				t.Fatal(err)
			}
		}, func(r FsckReport) bool { return r.RefMismatches == 1 }, nil},
		{"slot mapped with two keys", func(t *testing.T, e *Engine) {
			// b block 2 names a's slot of block 3 with its own key (the
			// old torn-journal fault left this).
			a, _ := e.Device("a")
			b, _ := e.Device("b")
			ea, _ := a.m.get(2)
			eb, _ := b.m.get(2)
			if err := b.m.writeEntries(map[uint64]mapEntry{2: {Key: eb.Key, Slot: ea.Slot}}); err != nil {
				t.Fatal(err)
			}
		}, func(r FsckReport) bool { return r.TagMismatches == 1 && r.OtherBlock == 1 },
			[]DamagedRange{{Device: "b", FirstLBA: 2, Blocks: 1, Why: WhyOtherBlock}}},
		{"entry names a slot beyond the store", func(t *testing.T, e *Engine) {
			c, _ := e.Device("c")
			if err := c.m.writeEntries(map[uint64]mapEntry{0: {Key: keyOf(block(7)), Slot: 1 << 40}, 1: {Key: keyOf(block(8)), Slot: 1<<40 + 1}}); err != nil {
				t.Fatal(err)
			}
		}, func(r FsckReport) bool { return r.BeyondStore == 2 },
			[]DamagedRange{{Device: "c", FirstLBA: 0, Blocks: 2, Why: WhyBeyondStore}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, want := threeDevices(t)
			e := openOK(t, dir)
			tc.damage(t, e)
			e.Close()
			e = openRepair(t, dir)
			rep, err := e.Fsck(false)
			if err != nil || rep.Consistent() || !tc.check(rep) {
				t.Fatalf("fsck: %v %+v", err, rep)
			}
			if !equalRanges(rep.Damaged, tc.lost) {
				t.Fatalf("damaged %v, want %v", rep.Damaged, tc.lost)
			}
			if rep, err = e.Fsck(true); err != nil || !rep.Repaired {
				t.Fatalf("fsck --repair: %v %+v", err, rep)
			}
			e.Close()
			e = openOK(t, dir)
			rep, err = e.Fsck(false)
			// Repair quarantined the entries that lost their data.
			quarantined := slices.Clone(tc.lost)
			for i := range quarantined {
				quarantined[i].Why = WhyLostEntry
			}
			if err != nil || !rep.Consistent() || !equalRanges(rep.Damaged, quarantined) {
				t.Fatalf("fsck after repair: %v %+v", err, rep)
			}
			var skip []string
			for _, r := range tc.lost {
				skip = append(skip, r.Device)
				d, _ := e.Device(r.Device)
				if _, err := d.ReadAt(make([]byte, BlockSize), int64(r.FirstLBA)*BlockSize); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("read of lost block %v: %v", r, err)
				}
			}
			checkDevices(t, e, want, skip...)
			// The store works on: new data, dedup included.
			d, _ := e.CreateDevice("after", 1<<20)
			writeBlocks(t, d, 0, block(1), block(200))
			if err := e.Flush(); err != nil {
				t.Fatal(err)
			}
			checkDevices(t, e, want, skip...)
			if rep, err = e.Fsck(false); err != nil || !rep.Consistent() {
				t.Fatalf("fsck after new writes: %v %+v", err, rep)
			}
		})
	}
}

func equalRanges(a, b []DamagedRange) bool { return slices.Equal(a, b) }
