//go:build rados

package pool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	importBlocks = 2048
	sharedBlocks = importBlocks * 3 / 4
)

// importImage is host i's image: the shared 75% (the same contents at the
// same places), then 25% of its own.
func importImage(i int) []byte {
	b := image(0, sharedBlocks)
	return append(b, image(1_000_000*(i+1), importBlocks-sharedBlocks)...)
}

// importInto writes img to device name of p in 64-block writes and
// flushes.
func importInto(p *Pool, name string, img []byte) error {
	d, err := p.Open(name)
	if err != nil {
		return err
	}
	const step = 64 * BlockSize
	for off := 0; off < len(img); off += step {
		if _, err := d.WriteAt(img[off:off+step], int64(off)); err != nil {
			return err
		}
	}
	return d.Flush()
}

// flushAll flushes every device p has open (a merge's re-pointing
// becomes durable).
func flushAll(t *testing.T, p *Pool) {
	t.Helper()
	for _, d := range p.devices() {
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// settled: no device of hosts has an entry to flush.
func settled(hosts []*Pool) bool {
	for _, p := range hosts {
		for _, d := range p.devices() {
			if m := d.getMap(); m != nil && m.dirtyLen() > 0 {
				return false
			}
		}
	}
	return true
}

func check(t *testing.T, p *Pool) Report {
	t.Helper()
	rep, err := p.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("check: %v", rep.Problems)
	}
	return rep
}

// TestTwoHostsImportOverlapping: two hosts import images sharing 75% of
// their content at the same time; after the merges and a collection
// with compaction the pool stores each content about once (within 2% of
// the distinct contents), and its footprint is within 2% of one host
// importing both images.
func TestTwoHostsImportOverlapping(t *testing.T) {
	cfg := testStore(t)
	hosts := []*Pool{testHost(t, cfg, "a"), testHost(t, cfg, "b")}
	var wg sync.WaitGroup
	for i, p := range hosts {
		name := fmt.Sprintf("img%d", i)
		if err := p.Create(name, importBlocks*BlockSize); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := importInto(p, name, importImage(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	distinct := sharedBlocks + 2*(importBlocks-sharedBlocks)
	imported := check(t, hosts[0])
	// Merge until settled: nothing left to re-point (the background
	// merge loops included) and every re-pointing flushed.
	merged := 0
	for k := 0; ; k++ {
		n := 0
		for _, p := range hosts {
			m, err := p.Merge()
			if err != nil {
				t.Fatal(err)
			}
			n += m
			flushAll(t, p)
		}
		merged += n
		if n == 0 && settled(hosts) {
			break
		}
		if k == 20 {
			t.Fatal("the merges do not settle")
		}
		time.Sleep(200 * time.Millisecond)
	}
	before := check(t, hosts[0])
	var gcs []GCStats
	after := before
	for k := range 4 {
		st, err := hosts[k%2].GC(0.9) // the hosts lead in turn (a leader does not compact its own packs)
		if err != nil {
			t.Fatal(err)
		}
		gcs = append(gcs, st)
		flushAll(t, hosts[0])
		flushAll(t, hosts[1])
		after = check(t, hosts[0])
	}
	for i, p := range hosts {
		d, err := p.Open(fmt.Sprintf("img%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, d), importImage(i)) {
			t.Fatalf("host %d reads its image back changed after GC", i)
		}
	}

	// The same images imported by one host, in a store of their own.
	one := testHost(t, testStore(t), "solo")
	for i := range hosts {
		name := fmt.Sprintf("img%d", i)
		if err := one.Create(name, importBlocks*BlockSize); err != nil {
			t.Fatal(err)
		}
		if err := importInto(one, name, importImage(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := one.Merge(); err != nil {
		t.Fatal(err)
	}
	solo := check(t, one)

	t.Logf("two hosts importing %d-block images (%d distinct contents) at once: %d stored after the import, %d re-pointed by merges, %d stored before GC (%d garbage, %d live), after GC %d stored (%d garbage, %d live, %d packs, %d open); GC %+v",
		importBlocks, distinct, imported.StoredBlocks, merged, before.StoredBlocks, before.Garbage, before.LiveBlocks,
		after.StoredBlocks, after.Garbage, after.LiveBlocks, after.Packs, after.OpenPacks, gcs)
	t.Logf("footprint: two hosts %d blocks, one host importing both %d blocks (%+.1f%%)",
		after.StoredBlocks, solo.StoredBlocks, 100*(float64(after.StoredBlocks)/float64(solo.StoredBlocks)-1))
	if after.LiveBlocks != distinct {
		t.Errorf("%d live blocks for %d distinct contents", after.LiveBlocks, distinct)
	}
	// GC(0.9) leaves packs more than 90% live as they are: what is left
	// is their dead blocks. Compaction of every pack with a dead block
	// (maxLive 1) takes them back.
	if float64(after.StoredBlocks) > 1.02*float64(distinct) {
		for k := range 2 {
			if _, err := hosts[k%2].GC(1); err != nil {
				t.Fatal(err)
			}
			flushAll(t, hosts[0])
			flushAll(t, hosts[1])
		}
		for k := range 2 { // the old packs die once the maps name the copies
			if _, err := hosts[k%2].GC(0); err != nil {
				t.Fatal(err)
			}
		}
		after = check(t, hosts[0])
		t.Logf("after GC(1) from each host: %d stored (%d garbage, %d live, %d packs, %d open): %+.1f%% against one host",
			after.StoredBlocks, after.Garbage, after.LiveBlocks, after.Packs, after.OpenPacks, 100*(float64(after.StoredBlocks)/float64(solo.StoredBlocks)-1))
	}
	if float64(after.StoredBlocks) > 1.02*float64(distinct) {
		t.Errorf("%d blocks stored for %d distinct contents: more than 2%% over", after.StoredBlocks, distinct)
	}
	if float64(after.StoredBlocks) > 1.02*float64(solo.StoredBlocks) {
		t.Errorf("footprint %d blocks against %d for one host: more than 2%% over", after.StoredBlocks, solo.StoredBlocks)
	}
	for i, p := range hosts {
		d, err := p.Open(fmt.Sprintf("img%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, d), importImage(i)) {
			t.Fatalf("host %d reads its image back changed at the end", i)
		}
	}
}

// gcContent is content n of the GC-while-writing test: few enough that
// the hosts write duplicates of each other's blocks.
func gcContent(n int) []byte { return image(500_000+n, 1) }

// TestGCWhileHostsWrite runs GC rounds back to back (a collection, and a
// compaction every third) while two hosts write their devices
// (overwrites, duplicates within and across hosts, zeroes), flush, and
// read back against a model of each device: no read fails or returns
// other data. After the writers stop, garbage goes down as GC runs, and
// the pool checks clean.
func TestGCWhileHostsWrite(t *testing.T) {
	cfg := testStore(t)
	hosts := []*Pool{testHost(t, cfg, "a"), testHost(t, cfg, "b")}
	const devBlocks = 512
	devs := make([]*Device, 2)
	for i, p := range hosts {
		name := fmt.Sprintf("d%d", i)
		if err := p.Create(name, devBlocks*BlockSize); err != nil {
			t.Fatal(err)
		}
		d, err := p.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		devs[i] = d
	}
	models := make([][]int, 2) // block -> content, -1: zero
	for i := range models {
		models[i] = make([]int, devBlocks)
		for b := range models[i] {
			models[i][b] = -1
		}
	}
	dur := 5 * time.Second
	if testing.Short() {
		dur = 2 * time.Second
	}
	var stop atomic.Bool
	var writes, reads, flushes [2]atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			d, m := devs[i], models[i]
			buf := make([]byte, 16*BlockSize)
			for !stop.Load() {
				b := r.IntN(devBlocks - 16)
				n := 1 + r.IntN(16)
				switch p := r.IntN(10); {
				case p < 5: // write: contents from a small set
					data := make([]byte, 0, n*BlockSize)
					cs := make([]int, n)
					for k := range n {
						cs[k] = r.IntN(400)
						data = append(data, gcContent(cs[k])...)
					}
					if _, err := d.WriteAt(data, int64(b)*BlockSize); err != nil {
						t.Errorf("host %d write: %v", i, err)
						return
					}
					copy(m[b:], cs)
					writes[i].Add(1)
				case p < 6:
					if err := d.WriteZeroes(int64(b)*BlockSize, int64(n)*BlockSize); err != nil {
						t.Errorf("host %d zeroes: %v", i, err)
						return
					}
					for k := range n {
						m[b+k] = -1
					}
					writes[i].Add(1)
				case p < 7:
					if err := d.Flush(); err != nil {
						t.Errorf("host %d flush: %v", i, err)
						return
					}
					flushes[i].Add(1)
				default:
					if _, err := d.ReadAt(buf[:n*BlockSize], int64(b)*BlockSize); err != nil {
						t.Errorf("host %d read of blocks %d-%d: %v", i, b, b+n-1, err)
						return
					}
					for k := range n {
						want := make([]byte, BlockSize)
						if m[b+k] >= 0 {
							want = gcContent(m[b+k])
						}
						if !bytes.Equal(buf[k*BlockSize:(k+1)*BlockSize], want) {
							t.Errorf("host %d block %d reads other data than content %d", i, b+k, m[b+k])
							return
						}
					}
					reads[i].Add(1)
				}
			}
		})
	}
	var rounds int
	var gcErr error
	var total GCStats
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) && !t.Failed() {
		maxLive := 0.0
		if rounds%3 == 2 {
			maxLive = 0.9
		}
		st, err := hosts[rounds%2].GC(maxLive) // either host leads
		if err != nil {
			gcErr = err
			break
		}
		total.Dead += st.Dead
		total.PacksDeleted += st.PacksDeleted
		total.Resurrected += st.Resurrected
		total.Compacted += st.Compacted
		total.Copied += st.Copied
		rounds++
	}
	stop.Store(true)
	wg.Wait()
	if gcErr != nil {
		t.Fatalf("GC round %d: %v", rounds, gcErr)
	}
	if t.Failed() {
		return
	}
	for _, p := range hosts {
		if _, err := p.Merge(); err != nil {
			t.Fatal(err)
		}
		flushAll(t, p)
	}
	stopped := check(t, hosts[0])
	var final Report
	for k := range 4 {
		if _, err := hosts[k%2].GC(0.9); err != nil {
			t.Fatal(err)
		}
		// the holders flush the entries compaction moved: the pool's
		// copies stop naming the old packs, which then die
		flushAll(t, hosts[0])
		flushAll(t, hosts[1])
		final = check(t, hosts[0])
	}
	// every block reads its model's content, through both hosts
	for i, m := range models {
		for _, p := range hosts {
			d, err := p.Open(fmt.Sprintf("d%d", i))
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, d)
			for b, c := range m {
				want := make([]byte, BlockSize)
				if c >= 0 {
					want = gcContent(c)
				}
				if !bytes.Equal(got[b*BlockSize:(b+1)*BlockSize], want) {
					t.Fatalf("device %d block %d through host %s: not content %d", i, b, p.HostName(), c)
				}
			}
		}
	}
	t.Logf("%v of GC back to back: %d GCs (%d dead blocks, %d packs deleted, %d resurrected, %d packs compacted, %d blocks copied) while the hosts did %d+%d writes, %d+%d flushes, %d+%d reads, no read failing",
		dur, rounds, total.Dead, total.PacksDeleted, total.Resurrected, total.Compacted, total.Copied,
		writes[0].Load(), writes[1].Load(), flushes[0].Load(), flushes[1].Load(), reads[0].Load(), reads[1].Load())
	t.Logf("writers stopped: %d stored, %d garbage, %d live; after four more GCs: %d stored, %d garbage, %d live (%d packs, %d open)",
		stopped.StoredBlocks, stopped.Garbage, stopped.LiveBlocks, final.StoredBlocks, final.Garbage, final.LiveBlocks, final.Packs, final.OpenPacks)
	if rounds < 3 {
		t.Errorf("only %d GCs ran", rounds)
	}
	if stopped.Garbage > 0 && final.Garbage >= stopped.Garbage {
		t.Errorf("garbage %d after GC, %d before: no space returned", final.Garbage, stopped.Garbage)
	}
}
