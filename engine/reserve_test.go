package engine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"blockhash/blockstore"
	"blockhash/vfs"
)

// The reserve is made at init, released by a space-freeing open on a full
// file system (and only then), and made again once there is room. The
// file system's free space is played by a fake.
func TestReserve(t *testing.T) {
	const size = 1 << 20
	free := int64(1 << 40)
	saved := freeBytes
	freeBytes = func(vfs.FS, string) (int64, error) { return free, nil }
	t.Cleanup(func() { freeBytes = saved })
	have := func(dir string) int64 {
		b, err := blockstore.AllocatedBytes(filepath.Join(dir, reserveName))
		if errors.Is(err, fs.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	o := Options{ReserveBytes: size, CommitInterval: -1}
	dir, e := newStore(t, o)
	if have(dir) < size {
		t.Fatalf("init made a reserve of %d bytes, want %d", have(dir), size)
	}
	e.Close()

	steps := []struct {
		name    string
		free    int64
		freeing bool
		during  bool // reserve present while open
		after   bool // reserve present after Close
	}{
		{"full, not freeing", 0, false, true, true},
		{"room, freeing", 1 << 30, true, true, true},
		{"full, freeing", size - 1, true, false, false},
		{"still full", size, false, false, false},
		{"room for it but not twice", 2*size - 1, false, false, false},
		{"room again", 2 * size, false, true, true},
	}
	for _, s := range steps {
		free = s.free
		o.FreeingSpace = s.freeing
		e, err := Open(dir, o)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := have(dir) >= size; got != s.during {
			t.Fatalf("%s: reserve present while open: %v, want %v", s.name, got, s.during)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if got := have(dir) >= size; got != s.after {
			t.Fatalf("%s: reserve present after close: %v, want %v", s.name, got, s.after)
		}
	}
	// A read-only open never touches it.
	os.Remove(filepath.Join(dir, reserveName))
	o.ReadOnly, o.FreeingSpace = true, false
	e, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if have(dir) != 0 {
		t.Fatal("a read-only open made a reserve")
	}
	// No room at init: a clear error, no store.
	free = size
	if err := Create(filepath.Join(t.TempDir(), "s"), Options{ReserveBytes: size}); !errors.Is(err, blockstore.ErrFull) {
		t.Fatalf("init on a full file system: %v, want ErrFull", err)
	}
}
