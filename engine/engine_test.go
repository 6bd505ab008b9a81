package engine

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func newStore(t *testing.T, o Options) (string, *Engine) {
	t.Helper()
	dir := t.TempDir()
	if o.ExtentSize == 0 {
		o.ExtentSize = 256 * BlockSize
	}
	if err := Create(dir, o); err != nil {
		t.Fatal(err)
	}
	e := reopen(t, dir, nil, o)
	return dir, e
}

func reopen(t *testing.T, dir string, old *Engine, o Options) *Engine {
	t.Helper()
	if old != nil {
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = -1
	}
	e, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func block(seed uint64) []byte {
	b := make([]byte, BlockSize)
	r := rand.New(rand.NewPCG(seed, seed^0xabcdef))
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func mustRead(t *testing.T, d *Device, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatalf("read %d+%d: %v", off, n, err)
	}
	return b
}

func TestDedupAcrossDevices(t *testing.T) {
	_, e := newStore(t, Options{})
	a, _ := e.CreateDevice("a", 1<<20)
	b, _ := e.CreateDevice("b", 1<<20)
	data := append(block(1), block(2)...)
	for _, d := range []*Device{a, b} {
		if _, err := d.WriteAt(data, 8192); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := e.Stats()
	if s.UniqueBlocks != 2 || s.DataBlocks != 4 || s.DuplicateBlocks != 2 {
		t.Fatalf("stats %+v", s)
	}
	if got := mustRead(t, b, 8192, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if got := mustRead(t, b, 0, 8192); !bytes.Equal(got, make([]byte, 8192)) {
		t.Fatal("unwritten blocks are not zero")
	}
}

func TestZeroBlocksAreNotStored(t *testing.T) {
	_, e := newStore(t, Options{})
	d, _ := e.CreateDevice("z", 1<<20)
	if _, err := d.WriteAt(make([]byte, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	s, _ := e.Stats()
	if s.UniqueBlocks != 0 || s.DataBlocks != 0 || s.ZeroBlocks != 256 {
		t.Fatalf("zero write stored something: %+v", s)
	}
}

func TestBadRequests(t *testing.T) {
	_, e := newStore(t, Options{})
	d, _ := e.CreateDevice("d", 1<<20)
	tests := []struct {
		name string
		off  int64
		n    int
		want error
	}{
		{"unaligned offset", 100, 512, ErrInvalid},
		{"unaligned length", 0, 100, ErrInvalid},
		{"past the end", 1 << 20, 512, ErrRange},
		{"straddles the end", 1<<20 - 512, 1024, ErrRange},
		{"negative", -512, 512, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := d.WriteAt(make([]byte, tc.n), tc.off); !errors.Is(err, tc.want) {
				t.Fatalf("write: %v, want %v", err, tc.want)
			}
			if _, err := d.ReadAt(make([]byte, tc.n), tc.off); !errors.Is(err, tc.want) {
				t.Fatalf("read: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := e.CreateDevice("d", 1<<20); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	for _, bad := range []string{"", "a/b", "..", "-x", string(make([]byte, 70))} {
		if _, err := e.CreateDevice(bad, 1<<20); !errors.Is(err, ErrInvalid) {
			t.Fatalf("name %q: %v", bad, err)
		}
	}
	if _, err := e.CreateDevice("s", 1000); !errors.Is(err, ErrInvalid) {
		t.Fatalf("size 1000: %v", err)
	}
	if err := e.DeleteDevice("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
}

// TestModel drives random I/O at random 512-byte-aligned offsets against a
// byte-array reference model, across flushes and reopens.
func TestModel(t *testing.T) {
	for _, o := range []Options{{}, {Hash: SHA1, Verify: true}} {
		t.Run(o.Hash.String(), func(t *testing.T) {
			dir, e := newStore(t, o)
			const size = 256 << 10
			d, _ := e.CreateDevice("m", size)
			model := make([]byte, size)
			r := rand.New(rand.NewPCG(42, uint64(o.Hash)))
			pool := [][]byte{block(1), block(2), block(3), make([]byte, BlockSize)} // few contents: many duplicates
			for step := range 3000 {
				off := int64(r.IntN(size/SectorSize)) * SectorSize
				n := int64(r.IntN(24)+1) * SectorSize
				n = min(n, size-off)
				switch op := r.IntN(10); {
				case op < 6:
					p := make([]byte, n)
					for i := int64(0); i < n; i += SectorSize {
						src := pool[r.IntN(len(pool))]
						copy(p[i:i+SectorSize], src[(off+i)%BlockSize:])
					}
					if _, err := d.WriteAt(p, off); err != nil {
						t.Fatal(err)
					}
					copy(model[off:], p)
				case op < 7:
					if err := d.Discard(off, n); err != nil {
						t.Fatal(err)
					}
					clear(model[off : off+n])
				case op < 8:
					if err := d.WriteZeroes(off, n); err != nil {
						t.Fatal(err)
					}
					clear(model[off : off+n])
				default:
					if got := mustRead(t, d, off, n); !bytes.Equal(got, model[off:off+n]) {
						t.Fatalf("step %d: read %d+%d differs from the model", step, off, n)
					}
				}
				if step%500 == 499 {
					if r.IntN(2) == 0 {
						if err := d.Flush(); err != nil {
							t.Fatal(err)
						}
					} else {
						e = reopen(t, dir, e, o)
						d, _ = e.Device("m")
					}
				}
			}
			if got := mustRead(t, d, 0, size); !bytes.Equal(got, model) {
				t.Fatal("final content differs from the model")
			}
			rep, err := e.Fsck(false)
			if err != nil || !rep.OK() {
				t.Fatalf("fsck: %v %+v", err, rep)
			}
		})
	}
}

// TestNoSpaceLeak: write, overwrite, discard and delete return the store's
// used space to where it started, and freed slots are reused.
func TestNoSpaceLeak(t *testing.T) {
	dir, e := newStore(t, Options{})
	for round := range 3 {
		a, err := e.CreateDevice("a", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := e.CreateDevice("b", 1<<20)
		for i := range 64 {
			a.WriteAt(block(uint64(i)), int64(i)*BlockSize)
			b.WriteAt(block(uint64(i+32)), int64(i)*BlockSize)
		}
		for i := range 32 {
			a.WriteAt(block(uint64(1000+i)), int64(i)*BlockSize) // overwrite
		}
		a.Discard(32*BlockSize, 16*BlockSize)
		e.Flush()
		// a holds blocks 1000..1031 and 48..63; b holds 32..95: 32+64 unique.
		if s, _ := e.Stats(); s.UniqueBlocks != 96 || s.DataBlocks != 112 {
			t.Fatalf("round %d: %d unique of %d data blocks, want 96 of 112", round, s.UniqueBlocks, s.DataBlocks)
		}
		if err := e.DeleteDevice("a"); err != nil {
			t.Fatal(err)
		}
		if err := e.DeleteDevice("b"); err != nil {
			t.Fatal(err)
		}
		s, _ := e.Stats()
		if s.UniqueBlocks != 0 || s.StoredBytes != 0 {
			t.Fatalf("round %d: after deleting everything %d blocks remain", round, s.UniqueBlocks)
		}
		if round == 1 {
			e = reopen(t, dir, e, Options{})
		}
	}
	// Freed slots were reused: three rounds fit in the slots of one.
	if hwm := e.slots.highWater(); hwm > 200 {
		t.Fatalf("high water mark %d: freed slots are not reused", hwm)
	}
	rep, err := e.Fsck(false)
	if err != nil || !rep.OK() {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
}

func TestConcurrentWriters(t *testing.T) {
	_, e := newStore(t, Options{CommitChanges: 64})
	d, _ := e.CreateDevice("c", 4<<20)
	var wg sync.WaitGroup
	const writers = 8
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 300 {
				lba := int64(r.IntN(64)) // contended blocks
				// Every writer writes content derived from the LBA only,
				// so the final content is known whatever the order.
				if _, err := d.WriteAt(block(uint64(lba%7)), lba*BlockSize); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					if err := d.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for lba := int64(0); lba < 64; lba++ {
		got := mustRead(t, d, lba*BlockSize, BlockSize)
		if !bytes.Equal(got, block(uint64(lba%7))) && !bytes.Equal(got, make([]byte, BlockSize)) {
			t.Fatalf("block %d has foreign content", lba)
		}
	}
	rep, err := e.Fsck(false)
	if err != nil || !rep.OK() {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
}

func TestOpenErrors(t *testing.T) {
	dir, e := newStore(t, Options{})
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("second open of a locked store succeeded")
	}
	e.Close()
	if _, err := Open(t.TempDir(), Options{}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("open of an empty dir: %v", err)
	}
	if err := Create(dir, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("create over a store: %v", err)
	}
	_ = time.Second
}

// A big, mostly empty device: its map is almost all hole, and reopening the
// store (which scans every map) reads only the pages that hold entries, at
// the start, the middle and the end of the device, whatever their place
// relative to a chunk of the scan.
func TestSparseMapScan(t *testing.T) {
	dir, e := newStore(t, Options{})
	const size = 256 << 30 // a 3 GB map file, nearly all hole
	d, err := e.CreateDevice("big", size)
	if err != nil {
		t.Fatal(err)
	}
	lbas := []int64{0, 84, 85, 256*mapPerPage - 1, 256 * mapPerPage, size/BlockSize/2 + 7, size/BlockSize - 1}
	for i, lba := range lbas {
		if _, err := d.WriteAt(block(uint64(i)+1), lba*BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	e = reopen(t, dir, e, Options{})
	d, err = e.Device("big")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.DataBlocks != uint64(len(lbas)) {
		t.Fatalf("reopened: %d data blocks, want %d", st.DataBlocks, len(lbas))
	}
	for i, lba := range lbas {
		if !bytes.Equal(mustRead(t, d, lba*BlockSize, BlockSize), block(uint64(i)+1)) {
			t.Fatalf("block %d reads wrong after reopen", lba)
		}
	}
	if err := e.DeleteDevice("big"); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.Stats(); st.UniqueBlocks != 0 {
		t.Fatalf("%d blocks still stored after delete", st.UniqueBlocks)
	}
}

// TestMappedBlocks checks MappedBlocks against a model through uncommitted
// writes, overwrites, discards, zero writes, a commit and a reopen.
func TestMappedBlocks(t *testing.T) {
	dir, e := newStore(t, Options{})
	const size = 64 << 30
	d, err := e.CreateDevice("m", size)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]bool{}
	write := func(lba uint64, seed uint64) {
		t.Helper()
		if _, err := d.WriteAt(block(seed), int64(lba)*BlockSize); err != nil {
			t.Fatal(err)
		}
		want[lba] = true
	}
	check := func(stage string) {
		t.Helper()
		got := map[uint64]bool{}
		if err := d.MappedBlocks(func(lba uint64) error {
			if got[lba] {
				t.Errorf("%s: block %d reported twice", stage, lba)
			}
			got[lba] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d mapped blocks, want %d", stage, len(got), len(want))
		}
		for lba := range want {
			if !got[lba] {
				t.Errorf("%s: block %d not reported", stage, lba)
			}
		}
	}
	check("empty")
	last := uint64(size/BlockSize - 1)
	for i, lba := range []uint64{0, 1, 84, 85, 1000, 123456, last} {
		write(lba, uint64(i)+1)
	}
	check("uncommitted")
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	check("committed")
	// After the commit: discard one, zero one, overwrite one with zeros,
	// overwrite one with data, add one; uncommitted again.
	if err := d.Discard(1*BlockSize, BlockSize); err != nil {
		t.Fatal(err)
	}
	delete(want, 1)
	if err := d.WriteZeroes(84*BlockSize, 2*BlockSize); err != nil {
		t.Fatal(err)
	}
	delete(want, 84)
	delete(want, 85)
	if _, err := d.WriteAt(make([]byte, BlockSize), 1000*BlockSize); err != nil {
		t.Fatal(err)
	}
	delete(want, 1000)
	write(123456, 99)
	write(77777, 100)
	check("changed")
	e = reopen(t, dir, e, Options{})
	if d, err = e.Device("m"); err != nil {
		t.Fatal(err)
	}
	check("reopened")
	stop := errors.New("stop")
	n := 0
	if err := d.MappedBlocks(func(uint64) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("MappedBlocks after an error: %v, %d calls", err, n)
	}
}

// entryLoc finds where block lba of device name keeps its map entry in a
// closed store: the page file and the entry's offset in it.
func entryLoc(t *testing.T, dir, name string, lba uint64) (string, int64) {
	t.Helper()
	e, err := Open(dir, Options{ReadOnly: true, CommitInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d, err := e.Device(name)
	if err != nil {
		t.Fatal(err)
	}
	e.pages.mu.RLock()
	lp := e.pages.leafOf(d.m.root, lba)
	e.pages.mu.RUnlock()
	if !live(lp) {
		t.Fatalf("block %d of %s has no leaf", lba, name)
	}
	return filepath.Join(dir, pagesName), int64(lp)*mapPageSize + int64(lba%mapPerPage)*mapEntrySize
}

// Saved space counts what dedup saves of the data written: an empty
// device saves nothing (old: an empty 1 TiB device showed 100% saved,
// unwritten space counted as saved).
func TestSavedPercent(t *testing.T) {
	_, e := newStore(t, Options{})
	if _, err := e.CreateDevice("empty", 1<<40); err != nil {
		t.Fatal(err)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.SavedPercent != 0 {
		t.Fatalf("empty device: saved %.1f%%, want 0", st.SavedPercent)
	}
	d, _ := e.CreateDevice("d", 1<<20)
	writeBlocks(t, d, 0, block(1), block(1), block(1), block(2))
	st, _ = e.Stats()
	if st.SavedPercent != 50 || st.DataBytes != 4*BlockSize || st.DedupSavedBytes != 2*BlockSize {
		t.Fatalf("4 data blocks, 2 stored: saved %.1f%%, data %d, dedup saved %d", st.SavedPercent, st.DataBytes, st.DedupSavedBytes)
	}
}
