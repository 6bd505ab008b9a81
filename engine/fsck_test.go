package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Regression tests for fsck and repair (issue 8 items 8 and 10). Each uses
// only Open, Fsck and device I/O, so each ran (and failed) on the old code.

// threeDevices makes a store with devices a, b and c: a holds blocks 1-4,
// b shares block 2 and holds 5-6, c holds 7-8.
func threeDevices(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir, e := newStore(t, Options{})
	want := map[string][]byte{}
	for _, d := range []struct {
		name   string
		blocks []uint64
	}{{"a", []uint64{1, 2, 3, 4}}, {"b", []uint64{2, 5, 6}}, {"c", []uint64{7, 8}}} {
		dev, err := e.CreateDevice(d.name, 16*BlockSize)
		if err != nil {
			t.Fatal(err)
		}
		img := make([]byte, 16*BlockSize)
		for i, s := range d.blocks {
			copy(img[i*BlockSize:], block(s))
		}
		writeBlocks(t, dev, 0, img)
		want[d.name] = img
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, want
}

func openRepair(t *testing.T, dir string) *Engine {
	t.Helper()
	e, err := Open(dir, Options{CommitInterval: -1, Repair: true})
	if err != nil {
		t.Fatalf("open for repair: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// checkDevices compares every device but skip with its image.
func checkDevices(t *testing.T, e *Engine, want map[string][]byte, skip ...string) {
	t.Helper()
	for name, img := range want {
		if slices.Contains(skip, name) {
			continue
		}
		d, err := e.Device(name)
		if err != nil {
			t.Fatalf("device %s: %v", name, err)
		}
		if got := mustRead(t, d, 0, int64(len(img))); !bytes.Equal(got, img) {
			t.Fatalf("device %s reads wrong after repair", name)
		}
	}
}

// repairAndCheck runs fsck --repair, reopens normally and checks that fsck
// is clean but for lost blocks and that the other devices are intact.
func repairAndCheck(t *testing.T, dir string, want map[string][]byte, damaged ...string) *Engine {
	t.Helper()
	e := openRepair(t, dir)
	if _, err := e.Fsck(true); err != nil {
		t.Fatalf("fsck --repair: %v", err)
	}
	e.Close()
	e = openOK(t, dir)
	rep, err := e.Fsck(false)
	if err != nil || !rep.Consistent() {
		t.Fatalf("fsck after repair: %v %+v", err, rep)
	}
	checkDevices(t, e, want, damaged...)
	return e
}

// Item 10: fsck names the devices and blocks a damaged stored block
// belongs to, and --repair marks it, so writing the content again heals it
// even if nothing read it before (old: repair left it unmarked, the write
// was deduplicated onto the damaged copy).
func TestFsckRepairMarksDamagedData(t *testing.T) {
	dir, want := threeDevices(t)
	e := openOK(t, dir)
	a, _ := e.Device("a")
	ent, _ := a.m.get(1) // block(2), shared with b block 0
	e.Close()
	damageSlot(t, dir, e, ent.Slot)

	e = repairAndCheck(t, dir, want, "a", "b")
	b, _ := e.Device("b")
	if _, err := b.ReadAt(make([]byte, BlockSize), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of the damaged block: %v", err)
	}
	c, _ := e.CreateDevice("heal", 1<<20)
	writeBlocks(t, c, 0, block(2))
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	checkDevices(t, e, want)
	fsckOK(t, e)
}

// Item 8: a deleted index CURRENT file. Old: Open failed with "file
// missing [file=MANIFEST-000000]" (a file that never existed), and so did
// fsck --repair: the store could not be opened at all. Now Open refuses
// naming CURRENT, and repair moves the index aside and rebuilds it from
// the slot records.
func TestIndexCurrentMissing(t *testing.T) {
	dir, want := threeDevices(t)
	if err := os.Remove(filepath.Join(dir, "index", "CURRENT")); err != nil {
		t.Fatal(err)
	}
	if e, err := Open(dir, Options{CommitInterval: -1}); err == nil {
		e.Close()
		t.Fatal("a store whose index lost CURRENT opened")
	} else if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("CURRENT")) {
		t.Fatalf("open: %v, want ErrCorrupt naming CURRENT", err)
	}
	e := repairAndCheck(t, dir, want)
	d, _ := e.CreateDevice("again", 1<<20)
	writeBlocks(t, d, 0, block(1), block(7))
	if s, _ := e.Stats(); s.UniqueBlocks != 8 {
		t.Fatalf("%d unique blocks after writing known content again, want 8", s.UniqueBlocks)
	}
}

// Item 8: a truncated .meta (slot records). Old: every command, fsck
// --repair included, failed with "read meta: EOF". Now repair rebuilds the
// records from the maps.
func TestTruncatedMetaRebuilt(t *testing.T) {
	dir, want := threeDevices(t)
	if err := os.Truncate(filepath.Join(dir, "blocks", "extent-000000.meta"), 100); err != nil {
		t.Fatal(err)
	}
	e := repairAndCheck(t, dir, want)
	if s, _ := e.Stats(); s.UniqueBlocks != 8 {
		t.Fatalf("%d unique blocks after the rebuild, want 8", s.UniqueBlocks)
	}
}

// Item 8: a damaged volume header is read from its copy (and rewritten);
// with both damaged the device is offline, and repair brings it back, data
// whole, under a name of its own (the name was in the header).
func TestMapHeaderRebuilt(t *testing.T) {
	dir, want := threeDevices(t)
	path := filepath.Join(dir, "devices", "1.vol") // a
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0x42}, 40)
	f.Close()
	e := repairAndCheck(t, dir, want)
	if len(e.Broken()) != 0 {
		t.Fatalf("devices still offline: %v", e.Broken())
	}
	e.Close()

	f, _ = os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt([]byte{0x42}, 40)
	f.WriteAt([]byte{0x42}, mapHeaderSize+40)
	f.Close()
	e = openOK(t, dir)
	if b := e.Broken(); len(b) != 1 || b[0].Name != "1" {
		t.Fatalf("broken %v, want volume 1", b)
	}
	if _, err := e.Device("a"); err == nil {
		t.Fatal("a device with both headers damaged is online")
	}
	e.Close()
	img := want["a"]
	delete(want, "a")
	e = repairAndCheck(t, dir, want)
	d, err := e.Device("recovered-1")
	if err != nil {
		t.Fatalf("the rebuilt device: %v", err)
	}
	if got := mustRead(t, d, 0, int64(len(img))); !bytes.Equal(got, img) {
		t.Fatal("the rebuilt device reads wrong")
	}
}

// fsck lists a damaged map entry as its device and block, repair rewrites
// it quarantined (stable: listed again, the store consistent).
func TestFsckListsQuarantinedEntries(t *testing.T) {
	dir, want := threeDevices(t)
	path, off := entryLoc(t, dir, "c", 1)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff, 0xfe}, off+3)
	f.Close()
	e := openOK(t, dir)
	rep, err := e.Fsck(false)
	if err != nil {
		t.Fatal(err)
	}
	wantR := DamagedRange{Device: "c", FirstLBA: 1, Blocks: 1, Why: WhyLostEntry}
	if len(rep.Damaged) != 1 || rep.Damaged[0] != wantR {
		t.Fatalf("damaged %v, want %v", rep.Damaged, wantR)
	}
	e.Close()
	e = repairAndCheck(t, dir, want, "c")
	rep, _ = e.Fsck(false)
	if len(rep.Damaged) != 1 || rep.Damaged[0] != wantR || !rep.DataLost() {
		t.Fatalf("after repair: damaged %v, want %v", rep.Damaged, wantR)
	}
}

// A damaged volume header while a committed journal record names the
// device: the header is read from its copy, the record replayed.
func TestMapHeaderDamagedWithPendingJournal(t *testing.T) {
	dir, want := threeDevices(t)
	e := openOK(t, dir)
	a, _ := e.Device("a")
	writeBlocks(t, a, 5, block(50))
	crashAfterJournal(t, e)
	f, err := os.OpenFile(filepath.Join(dir, "devices", "1.vol"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0x42}, 40)
	f.Close()
	copy(want["a"][5*BlockSize:], block(50))
	e = openOK(t, dir)
	checkDevices(t, e, want)
	fsckOK(t, e)
}

// A check-only fsck opens past a corrupt slot record (Options.Check) and
// reports it, changing nothing; before, it could not open the store.
func TestFsckCheckReportsCorruptRecord(t *testing.T) {
	dir, want := threeDevices(t)
	meta := filepath.Join(dir, "blocks", "extent-000000.meta")
	f, _ := os.OpenFile(meta, os.O_RDWR, 0)
	f.WriteAt([]byte{0x99}, 48*2+7)
	f.Close()
	before, _ := os.ReadFile(meta)
	if _, err := Open(dir, Options{CommitInterval: -1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open: %v, want ErrCorrupt", err)
	}
	e, err := Open(dir, Options{CommitInterval: -1, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.Fsck(false)
	e.Close()
	if err != nil || rep.CorruptMeta != 1 || rep.Consistent() {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
	if after, _ := os.ReadFile(meta); !bytes.Equal(before, after) {
		t.Fatal("a check-only fsck changed the slot records")
	}
	repairAndCheck(t, dir, want)
}
