package engine

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"blockhash/vfs"
)

// What snapshots, clones, copy-on-write, diff and delete cost in map
// metadata, counted at the file layer (countFS). TestSnapshotCosts checks
// the counts on a small device in every `make test`;
// BenchmarkSnapshotCosts (snapshot_bench_test.go) reports them, with
// times and memory, for a device with 100 GiB written in `make bench`.

// contentPool makes the content of n distinct blocks; block lba of a filled
// device holds pool block at(lba), so that every window of n consecutive
// blocks holds each pool block once (at is a bijection mod n when n and
// the multiplier are coprime; n is a power of two here).
type contentPool struct {
	base  []byte
	n     uint64
	shift uint64 // added to at's draw: other content for the same blocks
}

func newContentPool(n uint64) *contentPool {
	b := make([]byte, BlockSize)
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return &contentPool{base: b, n: n}
}

func (p *contentPool) at(lba uint64) uint64 { return (lba*0x9E3779B1 + p.shift) % p.n }

// block writes pool block id into dst (BlockSize bytes).
func (p *contentPool) block(dst []byte, id uint64) {
	copy(dst, p.base)
	binary.LittleEndian.PutUint64(dst, id+1)
	binary.LittleEndian.PutUint64(dst[8:], id*0xD6E8FEB86659FD93)
}

// fillRun writes blocks first..first+n-1 of d from the pool in requests of
// at most 1 MiB, with writers goroutines.
func (p *contentPool) fillRun(d *Device, first, n uint64, writers int) error {
	const per = (1 << 20) / BlockSize
	var next atomic.Uint64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			buf := make([]byte, per*BlockSize)
			for firstErr.Load() == nil {
				c := next.Add(per) - per
				if c >= n {
					return
				}
				k := min(per, n-c)
				for i := range k {
					p.block(buf[i*BlockSize:], p.at(first+c+i))
				}
				if _, err := d.WriteAt(buf[:k*BlockSize], int64(first+c)*BlockSize); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return *e
	}
	return nil
}

// writeOne writes pool block id at lba and commits.
func (p *contentPool) writeOne(d *Device, lba, id uint64) error {
	b := make([]byte, BlockSize)
	p.block(b, id)
	if _, err := d.WriteAt(b, int64(lba)*BlockSize); err != nil {
		return err
	}
	return d.Flush()
}

// openCounted makes and opens a store on a counting file system.
func openCounted(dir string, o Options) (*Engine, *countFS, error) {
	cfs := newCountFS(vfs.OS, dir)
	o.FS = cfs
	if err := Create(dir, o); err != nil {
		return nil, nil, err
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = -1
	}
	e, err := Open(dir, o)
	return e, cfs, err
}

// measured runs fn and returns its wall time and what it did on disk.
func measured(cfs *countFS, fn func() error) (time.Duration, ioSnap, error) {
	s0 := cfs.snap()
	cfs.resetMax()
	start := time.Now()
	err := fn()
	return time.Since(start), cfs.snap().since(s0), err
}

// livePages counts the map pages in use (leaves and tables).
func livePages(e *Engine) int {
	ps := e.pages
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	n := 0
	for _, r := range ps.refs {
		if r > 0 {
			n++
		}
	}
	return n
}

// volumeOf returns the open volume called name.
func volumeOf(e *Engine, name string) *Map {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	return e.byName[name]
}

// fullScanDiff is a diff that reads every leaf of both volumes (what a
// diff costs without shared pages): it returns the number of blocks that
// differ.
func fullScanDiff(e *Engine, a, b *Map) (uint64, error) {
	blocks := max(a.blocks, b.blocks)
	ea, eb := make([]mapEntry, mapPerPage), make([]mapEntry, mapPerPage)
	var n uint64
	for first := uint64(0); first < blocks; first += mapPerPage {
		e.pages.mu.RLock()
		la, lb := e.pages.leafOf(a.root, first), e.pages.leafOf(b.root, first)
		e.pages.mu.RUnlock()
		if err := e.pages.readEntries(la, 0, ea); err != nil {
			return 0, err
		}
		if err := e.pages.readEntries(lb, 0, eb); err != nil {
			return 0, err
		}
		for i := range uint64(mapPerPage) {
			if first+i < blocks && ea[i].Key != eb[i].Key {
				n++
			}
		}
	}
	return n, nil
}

// heapPeak samples the heap until stop is called, which returns the
// highest figures seen: the heap in use (garbage not yet collected
// included) and the live heap (what the last collection found reachable).
func heapPeak(every time.Duration) (stop func() (inUse, live uint64)) {
	var peakInUse, peakLive uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakInUse = max(peakInUse, ms.HeapInuse)
		m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(m)
		if m[0].Value.Kind() == metrics.KindUint64 {
			peakLive = max(peakLive, m[0].Value.Uint64())
		}
	}
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() (uint64, uint64) {
		close(done)
		wg.Wait()
		sample()
		return peakInUse, peakLive
	}
}

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestSnapshotCosts checks, by counting what reaches the files, that a
// snapshot and a clone write no map page and one volume file, whatever the
// device holds; that the first write to a block after a snapshot copies
// one leaf (and, first in its 340 MiB region, one table), while a write
// without one changes one entry in place; and that a diff reads only the
// leaves that differ. Counts only, no times.
func TestSnapshotCosts(t *testing.T) {
	const size = 1 << 30 // 262,144 blocks: 3,085 leaves under 4 tables
	blocks := uint64(size / BlockSize)
	e, cfs, err := openCounted(t.TempDir(), Options{ExtentSize: 1 << 24})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d, err := e.CreateDevice("vm", size)
	if err != nil {
		t.Fatal(err)
	}
	pool := newContentPool(64)
	// One block in every leaf: the map has its full shape (every table
	// and leaf) for a few MiB of writes.
	buf := make([]byte, BlockSize)
	for lba := uint64(0); lba < blocks; lba += mapPerPage {
		pool.block(buf, pool.at(lba))
		if _, err := d.WriteAt(buf, int64(lba)*BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	leaves := int((blocks + mapPerPage - 1) / mapPerPage)
	tables := rootsFor(blocks)
	if got := livePages(e); got != leaves+tables {
		t.Fatalf("%d map pages in use, want %d leaves and %d tables", got, leaves, tables)
	}
	volBytes := int64(len(encodeVolume(volumeOf(e, "vm").hdr, make([]uint32, tables))))

	// A write without a snapshot changes one entry in place.
	step := func(name string, fn func() error) ioSnap {
		t.Helper()
		_, s, err := measured(cfs, fn)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %s", name, s)
		return s
	}
	pages := livePages(e)
	s := step("write, no snapshot", func() error { return pool.writeOne(d, 7, 1) })
	if got := s[kindPages].WriteBytes; got != mapEntrySize {
		t.Errorf("a write without a snapshot wrote %d bytes of map pages, want one entry (%d)", got, mapEntrySize)
	}
	if s[kindVolumes].WriteBytes != 0 || livePages(e) != pages {
		t.Errorf("a write without a snapshot changed the tree: %d bytes of volume files, %d pages in use (was %d)", s[kindVolumes].WriteBytes, livePages(e), pages)
	}

	// Snapshot and clone: no map page, one volume file each.
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"snapshot", func() error { return e.Snapshot("vm", "s1") }},
		{"clone of the device", func() error { return e.Clone("vm", "c1") }},
		{"clone of the snapshot", func() error { return e.Clone("vm@s1", "c2") }},
	} {
		s := step(c.name, c.fn)
		if got := s[kindPages].WriteBytes; got != 0 {
			t.Errorf("%s wrote %d bytes of map pages, want none", c.name, got)
		}
		if got := s[kindVolumes].WriteBytes; got != volBytes {
			t.Errorf("%s wrote %d bytes of volume files, want one file (%d)", c.name, got, volBytes)
		}
		if got := s[kindJournal].WriteBytes; got > volBytes+1024 {
			t.Errorf("%s wrote %d bytes of journal, want one volume file and a few counts (%d)", c.name, got, volBytes)
		}
		if got := s.metaBytes(); got >= 1<<20 {
			t.Errorf("%s wrote %d bytes of metadata, want under 1 MiB", c.name, got)
		}
	}
	if got := livePages(e); got != leaves+tables {
		t.Fatalf("%d map pages in use after snapshot and clones, want %d (all shared)", got, leaves+tables)
	}

	// The first write after the snapshot: a copy of its leaf and, first
	// in its table's region, of the table (and one root page patched).
	cases := []struct {
		name          string
		lba           uint64
		newPages      int
		pageBytes     int64
		volumeBytes   int64
		journalLeaves int64 // bytes of leaf content in the journal, at least
	}{
		{"first write after the snapshot in a region", tableBlocks + 5, 2, 2 * mapPageSize, mapPageSize, 2 * mapPageSize},
		{"first write to another leaf of that region", tableBlocks + 3*mapPerPage, 1, 2 * mapPageSize, 0, 2 * mapPageSize},
		{"second write to the first leaf", tableBlocks + 6, 0, mapEntrySize, 0, 0},
	}
	for _, c := range cases {
		pages := livePages(e)
		s := step(c.name, func() error { return pool.writeOne(d, c.lba, 2) })
		if got := livePages(e) - pages; got != c.newPages {
			t.Errorf("%s: %d new map pages, want %d", c.name, got, c.newPages)
		}
		if got := s[kindPages].WriteBytes; got != c.pageBytes {
			t.Errorf("%s: %d bytes of map pages written, want %d", c.name, got, c.pageBytes)
		}
		if got := s[kindVolumes].WriteBytes; got != c.volumeBytes {
			t.Errorf("%s: %d bytes of volume files written, want %d", c.name, got, c.volumeBytes)
		}
		if got := s[kindJournal].WriteBytes; got < c.journalLeaves || got > c.journalLeaves+2*mapPageSize {
			t.Errorf("%s: %d bytes of journal, want about %d", c.name, got, c.journalLeaves)
		}
	}

	// Change 1% of the device in runs of 256 blocks; a diff reads the
	// leaves that differ, two reads each, and nothing else. snap and cur
	// model the two volumes' content (pool block id+1; 0: zeros).
	snap, cur := map[uint64]uint64{}, map[uint64]uint64{}
	for lba := uint64(0); lba < blocks; lba += mapPerPage {
		snap[lba], cur[lba] = pool.at(lba)+1, pool.at(lba)+1
	}
	snap[7], cur[7] = 2, 2
	changed := map[uint64]bool{} // leaves written since the snapshot
	for _, c := range cases {
		cur[c.lba] = 3
		changed[c.lba/mapPerPage] = true
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range blocks / 100 / 256 {
		first := r.Uint64N(blocks/256) * 256
		if err := pool.fillRun(d, first, 256, 1); err != nil {
			t.Fatal(err)
		}
		for lba := first; lba < first+256; lba++ {
			cur[lba] = pool.at(lba) + 1
			changed[lba/mapPerPage] = true
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	var wantL []uint64
	for lba := range cur {
		if cur[lba] != snap[lba] {
			wantL = append(wantL, lba)
		}
	}
	slices.Sort(wantL)
	var rs []Range
	s = step("diff after 1% changed", func() error {
		var err error
		rs, err = e.Diff("vm@s1", "vm")
		return err
	})
	var got []uint64
	for _, rg := range rs {
		for lba := rg.Start; lba < rg.Start+rg.Blocks; lba++ {
			got = append(got, lba)
		}
	}
	if !slices.Equal(got, wantL) {
		t.Fatalf("diff lists %d blocks, want %d", len(got), len(wantL))
	}
	if got, want := s[kindPages].Reads, int64(2*len(changed)); got != want {
		t.Errorf("diff read %d map pages, want %d (two per changed leaf, %d changed of %d)", got, want, len(changed), leaves)
	}
	var n uint64
	s = step("full-scan diff", func() error {
		var err error
		n, err = fullScanDiff(e, volumeOf(e, "vm@s1"), volumeOf(e, "vm"))
		return err
	})
	if n != uint64(len(wantL)) {
		t.Fatalf("full-scan diff finds %d blocks, want %d", n, len(wantL))
	}
	if got, want := s[kindPages].Reads, int64(2*leaves); got != want {
		t.Errorf("full-scan diff read %d map pages, want %d", got, want)
	}
}
