//go:build rados

package pool

import (
	"fmt"
	"testing"
	"time"
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
