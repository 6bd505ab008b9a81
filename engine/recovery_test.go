package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"blockhash/blockstore"
)

// Regression tests for the faults of issue 8 that a crash or damage leaves
// behind. A "crash" here stops a commit right after its journal record is
// durable (crashHook) and closes the store without applying it, as a
// process killed at that instant would.

// crashAfterJournal makes the next commit of e stop at its commit point,
// then closes e without applying anything.
func crashAfterJournal(t *testing.T, e *Engine) {
	t.Helper()
	e.crashHook = func(stage string) bool { return stage == "journaled" }
	if err := e.Flush(); !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("flush with a crash at the commit point: %v", err)
	}
	e.Close()
}

func openOK(t *testing.T, dir string) *Engine {
	t.Helper()
	e, err := Open(dir, Options{CommitInterval: -1})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func fsckOK(t *testing.T, e *Engine) {
	t.Helper()
	rep, err := e.Fsck(false)
	if err != nil || !rep.OK() {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
}

func writeBlocks(t *testing.T, d *Device, lba int64, blocks ...[]byte) {
	t.Helper()
	if _, err := d.WriteAt(bytes.Join(blocks, nil), lba*BlockSize); err != nil {
		t.Fatal(err)
	}
}

// Item 2: a torn journal record left by one crash, then a second crash
// right after the next (shorter) record's commit point: the committed
// record must be replayed, not dropped as torn because of the first one's
// leftover tail.
func TestTornJournalThenSecondCrash(t *testing.T) {
	dir, e := newStore(t, Options{})
	d, _ := e.CreateDevice("d", 1<<20)
	writeBlocks(t, d, 0, block(1), block(2), block(3))
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	// A torn record: a valid header announcing a body that never arrived.
	torn := (&record{Seq: 99, Maps: make([]mapChange, 200)}).encode()
	if err := os.WriteFile(filepath.Join(dir, journalName), torn[:len(torn)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	e = openOK(t, dir)
	d, _ = e.Device("d")
	writeBlocks(t, d, 1, block(20))
	crashAfterJournal(t, e)

	e = openOK(t, dir)
	d, _ = e.Device("d")
	want := bytes.Join([][]byte{block(1), block(20), block(3)}, nil)
	if got := mustRead(t, d, 0, 3*BlockSize); !bytes.Equal(got, want) {
		t.Fatal("the committed write was lost: the journal record was dropped as torn")
	}
	fsckOK(t, e)
}

// Item 3: a map page torn by the crash while its journal record is
// pending must not stop the store from opening: the replay repairs it.
func TestTornMapPageRepairedByReplay(t *testing.T) {
	dir, e := newStore(t, Options{})
	d, _ := e.CreateDevice("d", 1<<20)
	writeBlocks(t, d, 0, block(1), block(2), block(3))
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, d, 1, block(30))
	crashAfterJournal(t, e)
	// The crash tore the page while the record was being applied: block
	// 1's entry straddles the first sector boundary... damage it.
	path := filepath.Join(dir, "devices", "d.map")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, entryOffset(1)+10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e = openOK(t, dir)
	d, _ = e.Device("d")
	want := bytes.Join([][]byte{block(1), block(30), block(3)}, nil)
	if got := mustRead(t, d, 0, 3*BlockSize); !bytes.Equal(got, want) {
		t.Fatal("device does not read its committed content after the replay")
	}
	fsckOK(t, e)
}

// Item 4: after a replay, level one of the index must know the replayed
// entries, or a block written again is stored a second time.
func TestReplayFeedsIndexFilter(t *testing.T) {
	dir, e := newStore(t, Options{})
	d, _ := e.CreateDevice("d", 1<<20)
	writeBlocks(t, d, 0, block(7), block(8))
	crashAfterJournal(t, e)

	e = openOK(t, dir)
	d2, err := e.CreateDevice("d2", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, d2, 5, block(7), block(8))
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	s, _ := e.Stats()
	if s.UniqueBlocks != 2 {
		t.Fatalf("%d unique blocks stored, want 2: the replayed blocks were stored again", s.UniqueBlocks)
	}
	fsckOK(t, e)
}

// Item 5: a reference count at its maximum saturates instead of wrapping
// to zero and freeing a block still in use.
func TestRefCountSaturates(t *testing.T) {
	_, e := newStore(t, Options{})
	d, _ := e.CreateDevice("d", 1<<20)
	writeBlocks(t, d, 0, block(5))
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	ent, err := d.m.get(0)
	if err != nil {
		t.Fatal(err)
	}
	// Pretend 2^32-2 other references exist (16 TiB of this block).
	e.slots.setRefs(ent.Slot, blockstore.MaxRefs-1)
	for lba := int64(1); lba <= 3; lba++ {
		writeBlocks(t, d, lba, block(5))
	}
	if n := e.slots.refCount(ent.Slot); n != blockstore.MaxRefs {
		t.Fatalf("count %d after passing the maximum, want it saturated at %d", n, uint32(blockstore.MaxRefs))
	}
	for lba := int64(0); lba <= 3; lba++ {
		writeBlocks(t, d, lba, block(100+uint64(lba)))
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := e.slots.refCount(ent.Slot); n != blockstore.MaxRefs {
		t.Fatalf("count %d after releases, want it kept at the maximum", n)
	}
	if e.slots.isFree(ent.Slot) {
		t.Fatal("a saturated slot was freed")
	}
}

// Item 9: in verify mode, requests that share each other's new blocks in
// crossing order must not deadlock (cat xa xb xb xa, imported by
// concurrent 1 MiB writes).
func TestVerifyCrossingDuplicatesNoDeadlock(t *testing.T) {
	for round := range 20 {
		_, e := newStore(t, Options{Verify: true, ExtentSize: 1024 * BlockSize})
		d, _ := e.CreateDevice("d", 4<<20)
		xa, xb := make([]byte, 512<<10), make([]byte, 512<<10)
		for i := range 128 {
			copy(xa[i*BlockSize:], block(uint64(round*1000+i)))
			copy(xb[i*BlockSize:], block(uint64(round*1000+500+i)))
		}
		// Two requests of 1 MiB, as import issues them: xa xb, then xb xa.
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, p := range [][]byte{append(xa, xb...), append(xb, xa...)} {
			wg.Go(func() {
				_, err := d.WriteAt(p, int64(i)*int64(len(p)))
				errs <- err
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: concurrent verify-mode writes of crossing duplicates deadlocked", round)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got := mustRead(t, d, 0, 2<<20)
		if !bytes.Equal(got, bytes.Join([][]byte{xa, xb, xb, xa}, nil)) {
			t.Fatalf("round %d: read back differs", round)
		}
		if s, _ := e.Stats(); s.UniqueBlocks != 256 {
			t.Fatalf("round %d: %d unique blocks, want 256", round, s.UniqueBlocks)
		}
		e.Close()
	}
}

// damageSlot flips a byte of the block stored in slot.
func damageSlot(t *testing.T, dir string, e *Engine, slot uint64) {
	t.Helper()
	per := uint64(e.sb.ExtentSize / BlockSize)
	path := filepath.Join(dir, "blocks", "extent-"+pad6(slot/per)+".dat")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := int64(slot%per)*BlockSize + 100
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func pad6(n uint64) string {
	s := []byte("000000")
	for i := 5; i >= 0 && n > 0; i-- {
		s[i] = byte('0' + n%10)
		n /= 10
	}
	return string(s)
}

// Item 10: a damaged stored block heals when its content is written
// again, by any device, and the damage found by a read survives a restart.
func TestDamagedBlockHeals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verify  bool
		restart bool // reopen between the detection and the healing write
		sameLBA bool // heal by writing the content again where it was
	}{
		{"other device", false, false, false},
		{"same block", false, false, true},
		{"after restart", false, true, false},
		{"verify mode, undetected", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, e := newStore(t, Options{Verify: tc.verify})
			a, _ := e.CreateDevice("a", 1<<20)
			writeBlocks(t, a, 0, block(1), block(2))
			if err := e.Flush(); err != nil {
				t.Fatal(err)
			}
			ent, _ := a.m.get(1)
			damageSlot(t, dir, e, ent.Slot)
			if !tc.verify {
				if _, err := a.ReadAt(make([]byte, BlockSize), BlockSize); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("read of a damaged block: %v, want ErrCorrupt", err)
				}
			}
			if tc.restart {
				e.Close()
				e = openOK(t, dir)
				a, _ = e.Device("a")
			}
			if tc.sameLBA {
				writeBlocks(t, a, 1, block(2))
			} else {
				b, err := e.CreateDevice("b", 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				writeBlocks(t, b, 9, block(2))
			}
			if err := e.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := mustRead(t, a, BlockSize, BlockSize); !bytes.Equal(got, block(2)) {
				t.Fatal("the damaged block did not heal")
			}
			if s, _ := e.Stats(); s.UniqueBlocks != 2 {
				t.Fatalf("%d unique blocks, want 2 (healed in place)", s.UniqueBlocks)
			}
			e.Close()
			e = openOK(t, dir)
			if n := e.slots.damagedCount(); n != 0 {
				t.Fatalf("%d slots still marked damaged after the heal was committed", n)
			}
			fsckOK(t, e)
		})
	}
}

// Item 8: a damaged entry in one device's map quarantines that block
// only: the store opens, the rest of the device and other devices work,
// and writing the block again brings it back.
func TestDamagedMapEntryQuarantinesOneBlock(t *testing.T) {
	dir, e := newStore(t, Options{})
	a, _ := e.CreateDevice("a", 1<<20)
	b, _ := e.CreateDevice("b", 1<<20)
	writeBlocks(t, a, 0, block(1), block(2), block(3))
	writeBlocks(t, b, 0, block(2), block(4))
	e.Close()
	f, err := os.OpenFile(filepath.Join(dir, "devices", "a.map"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, entryOffset(1)+5)
	f.Close()

	e = openOK(t, dir)
	a, _ = e.Device("a")
	b, _ = e.Device("b")
	if _, err := a.ReadAt(make([]byte, BlockSize), BlockSize); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a quarantined block: %v, want ErrCorrupt", err)
	}
	if got := mustRead(t, a, 2*BlockSize, BlockSize); !bytes.Equal(got, block(3)) {
		t.Fatal("a healthy block of the damaged device reads wrong")
	}
	if got := mustRead(t, b, 0, 2*BlockSize); !bytes.Equal(got, append(block(2), block(4)...)) {
		t.Fatal("another device reads wrong")
	}
	writeBlocks(t, a, 1, block(9))
	if got := mustRead(t, a, BlockSize, BlockSize); !bytes.Equal(got, block(9)) {
		t.Fatal("a quarantined block does not take a new write")
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
}

// A map cut short loses the entries past its end: those blocks read as
// errors (never as zeros), read-only or read-write, and the rest of the
// device still reads.
func TestTruncatedMapQuarantinesItsTail(t *testing.T) {
	for _, readOnly := range []bool{true, false} {
		dir, e := newStore(t, Options{})
		d, _ := e.CreateDevice("d", 1<<20) // 256 blocks: 4 pages
		for lba := int64(0); lba < 256; lba += 50 {
			writeBlocks(t, d, lba, block(uint64(lba+1)))
		}
		e.Close()
		// Cut inside block 100's entry (page 1).
		cut := entryOffset(100) + 20
		if err := os.Truncate(filepath.Join(dir, "devices", "d.map"), cut); err != nil {
			t.Fatal(err)
		}
		e, err := Open(dir, Options{CommitInterval: -1, ReadOnly: readOnly})
		if err != nil {
			t.Fatalf("readOnly=%v: open: %v", readOnly, err)
		}
		d, _ = e.Device("d")
		if got := mustRead(t, d, 50*BlockSize, BlockSize); !bytes.Equal(got, block(51)) {
			t.Fatalf("readOnly=%v: a block before the cut reads wrong", readOnly)
		}
		for _, lba := range []int64{100, 120, 200, 255} {
			if _, err := d.ReadAt(make([]byte, BlockSize), lba*BlockSize); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("readOnly=%v: block %d past the cut: %v, want ErrCorrupt", readOnly, lba, err)
			}
		}
		if n := d.Stats().LostBlocks; n != 156 {
			t.Fatalf("readOnly=%v: %d lost blocks, want 156", readOnly, n)
		}
		e.Close()
	}
}
