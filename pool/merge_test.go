//go:build rados

package pool

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"blockhash/rados"
)

// TestMergeRacesLetGo: a host writes contents another host indexed
// first and lets the device go while its periodic merge is sending the
// inserts. Every entry must be re-pointed to the other host's copy
// before the map is let go: the pool then names each content once.
// tests/ceph/hosts found the pool naming most of two hosts' common
// blocks twice: letting go merged an empty queue (the periodic merge
// had taken its entries) and the periodic merge's lost races came back
// after the map was gone.
func TestMergeRacesLetGo(t *testing.T) {
	cfg := testStore(t)
	a := testHost(t, cfg, "a")
	b, err := Open(Options{Config: cfg, Host: "b", HandoverTimeout: 2 * time.Second, MergeEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	const n = 256
	img := image(0, n)
	da := createOpen(t, a, "da", n*BlockSize)
	if _, err := da.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if err := da.Release(); err != nil { // merges: a's copies are indexed
		t.Fatal(err)
	}
	const rounds = 8
	for i := range rounds {
		d := createOpen(t, b, fmt.Sprintf("db%d", i), n*BlockSize)
		for off := 0; off < len(img); off += 16 * BlockSize {
			if _, err := d.WriteAt(img[off:off+16*BlockSize], int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Release(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := b.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) > 0 {
		t.Fatalf("check: %v", r.Problems)
	}
	if r.MappedBlocks != (rounds+1)*n || r.LiveBlocks != n {
		t.Fatalf("%d devices of the same %d blocks map %d blocks at %d locations, want %d at %d",
			rounds+1, n, r.MappedBlocks, r.LiveBlocks, (rounds+1)*n, n)
	}
}

func createOpen(t *testing.T, p *Pool, name string, size int64) *Device {
	t.Helper()
	if err := p.Create(name, size); err != nil {
		t.Fatal(err)
	}
	d, err := p.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCompactIdleDevice: compaction copies the live blocks of a pack
// half dead; the device naming them is held by no host. Its map must
// follow the forwards, so that the old pack dies: the pool then holds
// each live block once. tests/ceph/hosts found the old packs kept for
// good beside their copies (40,960 stored blocks for 20,480 live).
func TestCompactIdleDevice(t *testing.T) {
	cfg := testStore(t)
	a := testHost(t, cfg, "a")
	b := testHost(t, cfg, "b") // leads GC, holds nothing
	const n = rados.PackBlocks
	d := createOpen(t, a, "d", 2*n*BlockSize)
	want := image(0, n) // fills a's first pack
	if _, err := d.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	over := image(n, n/2) // half of it overwritten: into a's next pack
	if _, err := d.WriteAt(over, 0); err != nil {
		t.Fatal(err)
	}
	copy(want, over)
	if err := d.Close(); err != nil { // flushed, let go: nobody holds d
		t.Fatal(err)
	}
	st, err := b.GC(0.9999)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Check()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc %+v; pool %+v", st, r)
	if len(r.Problems) > 0 {
		t.Fatalf("check: %v", r.Problems)
	}
	if st.Compacted == 0 {
		t.Fatal("nothing compacted")
	}
	if r.StoredBlocks != r.LiveBlocks || r.LiveBlocks != n {
		t.Fatalf("%d blocks stored, %d live, want %d and %d", r.StoredBlocks, r.LiveBlocks, n, n)
	}
	db, err := b.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, db); !bytes.Equal(got[:len(want)], want) {
		t.Fatal("the device reads back different data after compaction")
	}
}
