package blockstore_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"blockhash/blockstore"
	"blockhash/blockstore/storetest"
)

const testExtent = 64 * blockstore.BlockSize

func TestExtentsSuite(t *testing.T) {
	dirs := map[blockstore.Store]string{}
	storetest.Run(t,
		func(t *testing.T) blockstore.Store {
			dir := t.TempDir()
			s, err := blockstore.OpenExtents(dir, testExtent)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			dirs[s] = dir
			return s
		},
		func(t *testing.T, s blockstore.Store) blockstore.Store {
			dir := dirs[s]
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := blockstore.OpenExtents(dir, testExtent)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.Close() })
			return n
		})
}

func TestOpenRejectsBadLayout(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string) error
		size  int64
	}{
		{"wrong extent size", func(string) error { return nil }, 2 * testExtent},
		{"truncated extent", func(dir string) error {
			return os.Truncate(filepath.Join(dir, "extent-000000.dat"), 100)
		}, testExtent},
		{"gap in numbering", func(dir string) error {
			return os.Rename(filepath.Join(dir, "extent-000000.dat"), filepath.Join(dir, "extent-000003.dat"))
		}, testExtent},
		{"size not a block multiple", func(string) error { return nil }, 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := blockstore.OpenExtents(dir, testExtent)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Grow(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if err := tc.setup(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := blockstore.OpenExtents(dir, tc.size); err == nil {
				t.Fatal("open succeeded")
			}
		})
	}
}

func TestCorruptMetaIsReported(t *testing.T) {
	dir := t.TempDir()
	s, err := blockstore.OpenExtents(dir, testExtent)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Grow(); err != nil {
		t.Fatal(err)
	}
	recs := []blockstore.Meta{{Refs: 1}, {Refs: 2}}
	if err := s.WriteMeta(0, recs); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "extent-000000.meta"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, blockstore.MetaSize+36) // flip slot 1's refcount
	f.Close()
	got := make([]blockstore.Meta, 2)
	err = s.ReadMeta(0, got)
	var ce *blockstore.CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("got %v, want a CorruptError", err)
	}
	if len(ce.Slots) != 1 || ce.Slots[0] != 1 || got[0] != recs[0] {
		t.Fatalf("corrupt slots %v, record 0 %+v", ce.Slots, got[0])
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	f, err := blockstore.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// flock locks belong to the open file description: a second open in
	// this process conflicts just as another process would.
	if _, err := blockstore.LockDir(dir); !errors.Is(err, blockstore.ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
}

// TestGrowOnFullDisk fills a small tmpfs: Grow must fail with ErrFull and
// leave the extents written before intact.
func TestGrowOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	s, err := blockstore.OpenExtents(dir, 64*blockstore.BlockSize) // 256 KiB extents
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, blockstore.BlockSize)
	data[0] = 42
	var grown int
	for ; grown < 10; grown++ {
		if err := s.Grow(); err != nil {
			if !errors.Is(err, blockstore.ErrFull) {
				t.Fatalf("grow %d: %v, want ErrFull", grown, err)
			}
			break
		}
		if err := s.WriteAt(data, blockstore.Slot(s.Slots()-1)); err != nil {
			t.Fatal(err)
		}
	}
	if grown == 0 || grown == 10 {
		t.Fatalf("grew %d extents in 1 MiB", grown)
	}
	if s.Slots() != uint64(grown)*64 {
		t.Fatalf("slots %d after %d extents: the failed extent was kept", s.Slots(), grown)
	}
	got := make([]byte, blockstore.BlockSize)
	for i := range grown {
		if err := s.ReadAt(got, blockstore.Slot(i*64+63)); err != nil || got[0] != 42 {
			t.Fatalf("extent %d lost its data: %v", i, err)
		}
	}
}
