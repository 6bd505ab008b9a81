package engine

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeCost is what one write and its commit cost on disk.
type writeCost struct {
	MetaBytes    int64 `json:"meta_bytes"` // map pages + volume files + journal
	PageBytes    int64 `json:"map_page_bytes"`
	VolumeBytes  int64 `json:"volume_file_bytes"`
	JournalBytes int64 `json:"journal_bytes"`
	SlotBytes    int64 `json:"slot_record_bytes"`
	NewPages     int   `json:"new_map_pages"`
}

// shareCost is what a snapshot or a clone costs.
type shareCost struct {
	Seconds      float64 `json:"seconds"`
	MetaBytes    int64   `json:"meta_bytes"` // map pages + volume files + journal
	PageBytes    int64   `json:"map_page_bytes"`
	VolumeBytes  int64   `json:"volume_file_bytes"`
	JournalBytes int64   `json:"journal_bytes"`
	AllBytes     int64   `json:"all_bytes"` // every file, index included
	Syncs        int64   `json:"syncs"`
}

// snapshotBench is what BenchmarkSnapshotCosts reports (text and JSON).
type snapshotBench struct {
	DeviceBytes   int64     `json:"device_bytes"`
	PoolBlocks    uint64    `json:"pool_blocks"`
	FillSeconds   float64   `json:"fill_seconds"`
	FillMBs       float64   `json:"fill_mb_s"`
	MapPages      int       `json:"map_pages"`     // leaves and tables in use
	UniqueBlocks  uint64    `json:"unique_blocks"` // after the fill
	WriteNoSnap   writeCost `json:"write_no_snapshot"`
	Snapshot      shareCost `json:"snapshot"`
	CloneDevice   shareCost `json:"clone_device"`
	CloneSnapshot shareCost `json:"clone_snapshot"`
	// The first write after the snapshot, first in its table's region;
	// then to another leaf of that region; then to the first leaf again.
	FirstWriteRegion writeCost `json:"first_write_after_snapshot_new_region"`
	FirstWriteLeaf   writeCost `json:"first_write_after_snapshot_same_region"`
	SecondWrite      writeCost `json:"second_write_same_leaf"`

	ChangedBlocks     uint64  `json:"diff_changed_blocks"`   // 1% of the device, in 1 MiB runs
	DiffLeaves        int     `json:"diff_leaves_differing"` // leaves whose pointers differ (what a diff reads, twice)
	DiffTables        int     `json:"diff_tables_differing"`
	DiffSeconds       float64 `json:"diff_seconds"`
	DiffBlocks        uint64  `json:"diff_blocks"`
	DiffRanges        int     `json:"diff_ranges"`
	DiffPageReads     int64   `json:"diff_page_reads"`
	DiffPageReadBytes int64   `json:"diff_page_read_bytes"`
	ScanSeconds       float64 `json:"full_scan_diff_seconds"`
	ScanPageReads     int64   `json:"full_scan_diff_page_reads"`
	ScanPageReadBytes int64   `json:"full_scan_diff_page_read_bytes"`

	UnderWrites underWrites `json:"snapshot_under_writes"`

	DeleteClonesSeconds   float64 `json:"delete_clones_seconds"`    // the two clones, which share every page
	RollbackSeconds       float64 `json:"rollback_release_seconds"` // the device's tree released after a rollback to an empty snapshot
	DeleteSnapshotSeconds float64 `json:"delete_snapshot_seconds"`  // the snapshot, then the sole holder of the 100 GiB
	DeleteLeaves          int     `json:"delete_snapshot_leaves"`
	DeleteBlocks          int64   `json:"delete_snapshot_block_refs"`
	DeleteHeapBaseMiB     float64 `json:"delete_heap_base_mib"`
	DeleteHeapPeakMiB     float64 `json:"delete_heap_peak_mib"`      // heap in use, garbage included
	DeleteLivePeakMiB     float64 `json:"delete_heap_live_peak_mib"` // live heap found by the collections during the delete
	DeleteMaxRecordBytes  int64   `json:"delete_max_journal_record_bytes"`
	DeleteJournalBytes    int64   `json:"delete_journal_bytes"`
	DeleteCommits         int64   `json:"delete_commits"`
	UniqueBlocksAfter     uint64  `json:"unique_blocks_after"`
}

func envInt(b *testing.B, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// BenchmarkSnapshotCosts fills a device with 100 GiB (BLOCKHASH_BENCH_GIB)
// drawn from a pool of 2^20 distinct blocks (BLOCKHASH_BENCH_POOL) through
// the engine's write path, then measures snapshot and clone (time, bytes
// written), the first writes after a snapshot, a diff after 1% of the
// device changed against a full scan, and the delete of a snapshot that
// alone holds the 100 GiB (time, heap peak). Run it once: -benchtime 1x
// (make bench). The figures are printed, never asserted.
func BenchmarkSnapshotCosts(b *testing.B) {
	size := envInt(b, "BLOCKHASH_BENCH_GIB", 100) << 30
	pool := newContentPool(uint64(envInt(b, "BLOCKHASH_BENCH_POOL", 1<<20)))
	blocks := uint64(size / BlockSize)
	res := snapshotBench{DeviceBytes: size, PoolBlocks: pool.n}
	e, cfs, err := openCounted(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	d, err := e.CreateDevice("d", size)
	if err != nil {
		b.Fatal(err)
	}
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	must(e.Snapshot("d", "empty"))

	fmt.Printf("snapshot costs: writing %d GiB from a pool of %d blocks...\n", size>>30, pool.n)
	start := time.Now()
	must(pool.fillRun(d, 0, blocks, 4))
	must(d.Flush())
	res.FillSeconds = time.Since(start).Seconds()
	res.FillMBs = float64(size) / res.FillSeconds / 1e6
	res.MapPages = livePages(e)
	st, err := e.Stats()
	must(err)
	res.UniqueBlocks = st.UniqueBlocks

	write := func(lba, id uint64) writeCost {
		b.Helper()
		pages := livePages(e)
		_, s, err := measured(cfs, func() error { return pool.writeOne(d, lba, id) })
		must(err)
		return writeCost{MetaBytes: s.metaBytes(), PageBytes: s[kindPages].WriteBytes, VolumeBytes: s[kindVolumes].WriteBytes,
			JournalBytes: s[kindJournal].WriteBytes, SlotBytes: s[kindSlots].WriteBytes, NewPages: livePages(e) - pages}
	}
	share := func(fn func() error) shareCost {
		b.Helper()
		t, s, err := measured(cfs, fn)
		must(err)
		return shareCost{Seconds: t.Seconds(), MetaBytes: s.metaBytes(), PageBytes: s[kindPages].WriteBytes,
			VolumeBytes: s[kindVolumes].WriteBytes, JournalBytes: s[kindJournal].WriteBytes, AllBytes: s.allBytes(),
			Syncs: func() (n int64) {
				for _, f := range s {
					n += f.Syncs
				}
				return
			}()}
	}
	res.WriteNoSnap = write(7, 1)
	res.Snapshot = share(func() error { return e.Snapshot("d", "s1") })
	res.CloneDevice = share(func() error { return e.Clone("d", "c1") })
	res.CloneSnapshot = share(func() error { return e.Clone("d@s1", "c2") })
	region := blocks / 2 / tableBlocks * tableBlocks
	res.FirstWriteRegion = write(region+5, 2)
	res.FirstWriteLeaf = write(region+3*mapPerPage, 2)
	res.SecondWrite = write(region+6, 2)

	// 1% of the device changes in 1 MiB runs at random places.
	fmt.Println("snapshot costs: changing 1% of the device...")
	r := rand.New(rand.NewPCG(5, 6))
	const run = (1 << 20) / BlockSize
	for range blocks / 100 / run {
		first := r.Uint64N(blocks/run) * run
		must(pool.fillRunShifted(d, first, run, 1, 1))
		res.ChangedBlocks += run
	}
	must(d.Flush())
	res.DiffLeaves, res.DiffTables = treeDifference(e, volumeOf(e, "d@s1"), volumeOf(e, "d"))
	var rs []Range
	t, s, err := measured(cfs, func() error {
		var err error
		rs, err = e.Diff("d@s1", "d")
		return err
	})
	must(err)
	res.DiffSeconds, res.DiffRanges = t.Seconds(), len(rs)
	res.DiffPageReads, res.DiffPageReadBytes = s[kindPages].Reads, s[kindPages].ReadBytes
	for _, rg := range rs {
		res.DiffBlocks += rg.Blocks
	}
	var n uint64
	t, s, err = measured(cfs, func() error {
		var err error
		n, err = fullScanDiff(e, volumeOf(e, "d@s1"), volumeOf(e, "d"))
		return err
	})
	must(err)
	if n != res.DiffBlocks {
		b.Fatalf("the full-scan diff finds %d blocks, the diff %d", n, res.DiffBlocks)
	}
	res.ScanSeconds = t.Seconds()
	res.ScanPageReads, res.ScanPageReadBytes = s[kindPages].Reads, s[kindPages].ReadBytes

	// A snapshot while the device takes writes: how long it takes (the
	// writes pending are committed first) and the longest write meanwhile,
	// against the longest in the second before.
	fmt.Println("snapshot costs: a snapshot under writes...")
	res.UnderWrites = snapshotUnderWrites(b, e, d, pool, blocks)

	// The snapshot alone holds the 100 GiB once the clones and the other
	// snapshot are deleted and the device is rolled back to its empty
	// snapshot.
	fmt.Println("snapshot costs: deleting...")
	t, _, err = measured(cfs, func() error {
		for _, v := range []string{"c1", "c2", "d@s2"} {
			if err := e.DeleteDevice(v); err != nil {
				return err
			}
		}
		return nil
	})
	must(err)
	res.DeleteClonesSeconds = t.Seconds()
	t, _, err = measured(cfs, func() error {
		if err := e.Rollback("d", "empty"); err != nil {
			return err
		}
		waitDeletes(e)
		return e.Flush()
	})
	must(err)
	res.RollbackSeconds = t.Seconds()
	s1 := volumeOf(e, "d@s1")
	res.DeleteBlocks = s1.mapped.Load()
	e.pages.mu.RLock()
	for _, tp := range s1.root {
		if live(tp) && e.pages.refs[tp] == 1 {
			for _, lp := range e.pages.tables[tp] {
				if live(lp) && e.pages.refs[lp] == 1 {
					res.DeleteLeaves++
				}
			}
		}
	}
	e.pages.mu.RUnlock()
	base := heapInUse()
	stop := heapPeak(10 * time.Millisecond)
	t, s, err = measured(cfs, func() error { return e.DeleteDevice("d@s1") })
	peak, live := stop()
	must(err)
	res.DeleteSnapshotSeconds = t.Seconds()
	res.DeleteHeapBaseMiB, res.DeleteHeapPeakMiB = float64(base)/(1<<20), float64(peak)/(1<<20)
	res.DeleteLivePeakMiB = float64(live) / (1 << 20)
	res.DeleteMaxRecordBytes, res.DeleteJournalBytes = s[kindJournal].MaxWrite, s[kindJournal].WriteBytes
	res.DeleteCommits = s[kindJournal].Writes
	st, err = e.Stats()
	must(err)
	res.UniqueBlocksAfter = st.UniqueBlocks

	b.ReportMetric(res.Snapshot.Seconds, "snapshot_s")
	b.ReportMetric(float64(res.Snapshot.MetaBytes), "snapshot_meta_B")
	b.ReportMetric(res.CloneDevice.Seconds, "clone_s")
	b.ReportMetric(float64(res.CloneDevice.MetaBytes), "clone_meta_B")
	b.ReportMetric(float64(res.FirstWriteRegion.PageBytes), "first_write_page_B")
	b.ReportMetric(float64(res.DiffPageReads), "diff_page_reads")
	b.ReportMetric(res.DeleteSnapshotSeconds, "delete_snapshot_s")
	b.ReportMetric(res.DeleteHeapPeakMiB-res.DeleteHeapBaseMiB, "delete_heap_growth_MiB")
	// Printed, not logged: a benchmark's log is cut to a few lines.
	fmt.Println("snapshot costs:" + res.text())
	js, _ := json.Marshal(res)
	fmt.Printf("snapshot costs json: %s\n", js)
}

// underWrites is a snapshot taken while writers write.
type underWrites struct {
	Writers          int     `json:"writers"`
	Seconds          float64 `json:"seconds"` // the Snapshot call, pending writes committed first
	MaxWriteBefore   float64 `json:"max_write_seconds_before"`
	MaxWriteDuring   float64 `json:"max_write_seconds_during"`
	WritesDuring     int64   `json:"writes_during"`
	WrittenMiBBefore float64 `json:"written_mib_before"` // in the second before
}

// snapshotUnderWrites takes snapshot d@s2 while two writers write 1 MiB
// requests at random places of d; it reports the snapshot's time and the
// longest write during it against the longest in the second before.
func snapshotUnderWrites(b *testing.B, e *Engine, d *Device, pool *contentPool, blocks uint64) underWrites {
	const writers, run = 2, (1 << 20) / BlockSize
	u := underWrites{Writers: writers}
	var phase atomic.Int32 // 0 before, 1 during, 2 after
	var maxLat [2]atomic.Int64
	var during, before atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			q := *pool
			q.shift = 2
			r := rand.New(rand.NewPCG(uint64(w), 9))
			buf := make([]byte, run*BlockSize)
			for ph := phase.Load(); ph < 2; ph = phase.Load() {
				first := r.Uint64N(blocks/run) * run
				for i := range uint64(run) {
					q.block(buf[i*BlockSize:], q.at(first+i))
				}
				start := time.Now()
				if _, err := d.WriteAt(buf, int64(first)*BlockSize); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				lat := int64(time.Since(start))
				if ph == 1 || phase.Load() == 1 {
					ph = 1
					during.Add(1)
				} else {
					before.Add(1)
				}
				for m := maxLat[ph].Load(); lat > m && !maxLat[ph].CompareAndSwap(m, lat); m = maxLat[ph].Load() {
				}
			}
		})
	}
	time.Sleep(time.Second)
	phase.Store(1)
	start := time.Now()
	err := e.Snapshot("d", "s2")
	u.Seconds = time.Since(start).Seconds()
	phase.Store(2)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	if p := firstErr.Load(); p != nil {
		b.Fatal(*p)
	}
	if err := d.Flush(); err != nil {
		b.Fatal(err)
	}
	u.MaxWriteBefore = time.Duration(maxLat[0].Load()).Seconds()
	u.MaxWriteDuring = time.Duration(maxLat[1].Load()).Seconds()
	u.WritesDuring = during.Load()
	u.WrittenMiBBefore = float64(before.Load())
	return u
}

// treeDifference counts the leaves and tables whose pointers differ
// between two volumes' trees.
func treeDifference(e *Engine, a, b *Map) (leaves, tables int) {
	ps := e.pages
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	for t := range max(len(a.root), len(b.root)) {
		ta, tb := a.root[t], b.root[t]
		if ta == tb {
			continue
		}
		tables++
		for l := range ptrsPerPage {
			if tablePtr(ps, ta, l) != tablePtr(ps, tb, l) {
				leaves++
			}
		}
	}
	return leaves, tables
}

// fillRunShifted is fillRun with pool block at(lba)+shift: different
// content from what fillRun wrote there.
func (p *contentPool) fillRunShifted(d *Device, first, n uint64, writers int, shift uint64) error {
	q := *p
	q.shift = shift
	return q.fillRun(d, first, n, writers)
}

func (w writeCost) text() string {
	return fmt.Sprintf("%d B of map metadata (map pages %d, volume files %d, journal %d), slot records %d B, %d new map pages",
		w.MetaBytes, w.PageBytes, w.VolumeBytes, w.JournalBytes, w.SlotBytes, w.NewPages)
}

func (c shareCost) text() string {
	return fmt.Sprintf("%.3f s, %d B of map metadata (map pages %d, volume files %d, journal %d), %d B written in all, %d syncs",
		c.Seconds, c.MetaBytes, c.PageBytes, c.VolumeBytes, c.JournalBytes, c.AllBytes, c.Syncs)
}

func (r snapshotBench) text() string {
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	return fmt.Sprintf(`
device:                          %d GiB written from a pool of %d distinct blocks (%d stored) in %.1f s (%.0f MB/s); %d map pages (%.0f MiB)
write, no snapshot:              %s
snapshot:                        %s
clone of the device:             %s
clone of the snapshot:           %s
first write after the snapshot:  %s
  another leaf, same region:     %s
  the same leaf again:           %s
diff after 1%% changed:           %.3f s, %d page reads (%.1f MiB); %d blocks in %d ranges (%d blocks written); %d leaves and %d tables differ
full-scan diff:                  %.3f s, %d page reads (%.1f MiB)
snapshot under writes:           %.3f s with %d writers of 1 MiB requests (%.0f MiB written in the second before); longest write %.3f s during it, %.3f s in the second before
delete of the clones and d@s2:   %.3f s
rollback's release:              %.3f s
delete of the snapshot:          %.1f s for %d exclusive leaves and %d block references; heap in use %.0f MiB before, %.0f MiB at peak (live heap at most %.0f MiB); %d commits, largest journal record %.2f MiB, journal %.0f MiB in all; %d stored blocks left`,
		r.DeviceBytes>>30, r.PoolBlocks, r.UniqueBlocks, r.FillSeconds, r.FillMBs, r.MapPages, mib(int64(r.MapPages)*mapPageSize),
		r.WriteNoSnap.text(), r.Snapshot.text(), r.CloneDevice.text(), r.CloneSnapshot.text(),
		r.FirstWriteRegion.text(), r.FirstWriteLeaf.text(), r.SecondWrite.text(),
		r.DiffSeconds, r.DiffPageReads, mib(r.DiffPageReadBytes), r.DiffBlocks, r.DiffRanges, r.ChangedBlocks, r.DiffLeaves, r.DiffTables,
		r.ScanSeconds, r.ScanPageReads, mib(r.ScanPageReadBytes),
		r.UnderWrites.Seconds, r.UnderWrites.Writers, r.UnderWrites.WrittenMiBBefore, r.UnderWrites.MaxWriteDuring, r.UnderWrites.MaxWriteBefore,
		r.DeleteClonesSeconds, r.RollbackSeconds,
		r.DeleteSnapshotSeconds, r.DeleteLeaves, r.DeleteBlocks, r.DeleteHeapBaseMiB, r.DeleteHeapPeakMiB, r.DeleteLivePeakMiB,
		r.DeleteCommits, mib(r.DeleteMaxRecordBytes), mib(r.DeleteJournalBytes), r.UniqueBlocksAfter)
}
