//go:build rados

package pool

import (
	"bytes"
	"testing"
)

// TestTakeLoadsWholeMap: a map shard of more entries than one omap
// listing page comes back whole at a takeover, and GC keeps every block
// of a device no host holds. The first version keyed entries by 4 binary
// bytes: the listing stopped at the first page (1,000 entries), so the
// new holder saw a fifth of the map and GC deleted the rest.
func TestTakeLoadsWholeMap(t *testing.T) {
	cfg := testStore(t)
	a := testHost(t, cfg, "a")
	const n = 5000
	if err := a.Create("big", n*BlockSize); err != nil {
		t.Fatal(err)
	}
	d, err := a.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	want := randBytes(n * BlockSize)
	if _, err := d.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GC(0.5); err != nil {
		t.Fatal(err)
	}
	b := testHost(t, cfg, "b")
	db, err := b.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Take(); err != nil {
		t.Fatal(err)
	}
	if m := db.getMap().mapped(); m != n {
		t.Fatalf("the new holder loaded %d entries of %d", m, n)
	}
	if got := readAll(t, db); !bytes.Equal(got, want) {
		t.Fatal("data differs after GC and takeover")
	}
	r, err := b.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) > 0 || r.MappedBlocks != n || r.IndexEntries != n || r.LiveBlocks != n {
		t.Fatalf("check: %+v", r)
	}
}
