//go:build rados

package pool

import (
	"errors"
	"testing"
)

// TestDeleteWhileOpenElsewhere: a device deleted by one host while
// another has it open is gone for both: the other host's next write
// fails with ErrNotFound and leaves no object behind (a lock on the
// deleted header made an empty one, and the map shard locks new shards),
// and list goes on working.
func TestDeleteWhileOpenElsewhere(t *testing.T) {
	cfg := testStore(t)
	a := testHost(t, cfg, "a")
	b := testHost(t, cfg, "b")
	if err := a.Create("gone", 1<<20); err != nil {
		t.Fatal(err)
	}
	da, err := a.Open("gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := da.WriteAt(randBytes(8192), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete("gone"); err != nil { // takes it from a, deletes it
		t.Fatal(err)
	}
	if _, err := da.WriteAt(randBytes(4096), 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write to a deleted device: %v, want ErrNotFound", err)
	}
	l, err := a.List()
	if err != nil || len(l) != 0 {
		t.Fatalf("list after delete: %+v %v", l, err)
	}
	objs, err := a.c.Objects("bh.dev.")
	if err != nil {
		t.Fatal(err)
	}
	shards, err := a.c.Objects(mapPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs)+len(shards) != 0 {
		t.Fatalf("left behind: %v %v", objs, shards)
	}
}
