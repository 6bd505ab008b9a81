package index

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An index directory whose CURRENT is gone is refused, naming the file;
// an empty or fresh one opens.
func TestOpenWithoutCurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ix")
	ix := open(t, dir)
	ix.Insert(key(1), 5)
	ix.Seal()
	if err := ix.Apply([]Op{{Key: key(1), Slot: 5}}); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "CURRENT") {
		t.Fatalf("open without CURRENT: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o700)
	ix2, err := Open(empty, Options{})
	if err != nil {
		t.Fatalf("open an empty directory: %v", err)
	}
	ix2.Close()
}

// Get reads LevelDB alone; Reload drops the overlays and the cache.
func TestGetAndReload(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	ix.Insert(key(1), 5)
	if _, ok, _ := ix.Get(key(1)); ok {
		t.Fatal("Get saw an uncommitted insert")
	}
	ix.Seal()
	if err := ix.Apply([]Op{{Key: key(1), Slot: 5}}); err != nil {
		t.Fatal(err)
	}
	if s, ok, err := ix.Get(key(1)); err != nil || !ok || s != 5 {
		t.Fatalf("Get: %d %v %v", s, ok, err)
	}
	ix.Insert(key(2), 6)
	if err := ix.Reload(); err != nil {
		t.Fatal(err)
	}
	if h := mustLookup(t, ix, key(2)); h.Found {
		t.Fatal("Reload kept an uncommitted insert")
	}
	if h := mustLookup(t, ix, key(1)); !h.Found || h.Slot != 5 {
		t.Fatalf("after Reload: %+v", h)
	}
}
