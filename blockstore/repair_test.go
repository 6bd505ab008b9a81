package blockstore

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRepairExtents(t *testing.T) {
	const size = 16 * BlockSize
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
		fixed  int // files RepairExtents reports
	}{
		{"healthy", func(string) error { return nil }, 0},
		{"meta short", func(d string) error { return os.Truncate(filepath.Join(d, "extent-000001.meta"), 10) }, 1},
		{"meta missing", func(d string) error { return os.Remove(filepath.Join(d, "extent-000000.meta")) }, 1},
		{"data short", func(d string) error { return os.Truncate(filepath.Join(d, "extent-000002.dat"), 0) }, 1},
		{"data long", func(d string) error { return os.Truncate(filepath.Join(d, "extent-000002.dat"), size+1) }, 1},
		{"data missing in the middle", func(d string) error { return os.Remove(filepath.Join(d, "extent-000001.dat")) }, 1},
		{"data a directory", func(d string) error {
			p := filepath.Join(d, "extent-000001.dat")
			os.Remove(p)
			return os.Mkdir(p, 0o700)
		}, 2}, // moved aside, then recreated
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenExtents(dir, size)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := s.Grow(); err != nil {
					t.Fatal(err)
				}
			}
			blk := make([]byte, BlockSize)
			blk[0] = 7
			if err := s.WriteAt(blk, 0); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteMeta(0, []Meta{{Refs: 1}}); err != nil {
				t.Fatal(err)
			}
			s.Sync()
			s.Close()
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			done, err := RepairExtents(dir, size)
			if err != nil || len(done) != tc.fixed {
				t.Fatalf("repair: %v %q, want %d files fixed", err, done, tc.fixed)
			}
			s, err = OpenExtents(dir, size)
			if err != nil {
				t.Fatalf("open after repair: %v", err)
			}
			defer s.Close()
			if s.Slots() != 3*16 {
				t.Fatalf("%d slots after repair, want 48", s.Slots())
			}
			recs := make([]Meta, 48)
			if err := s.ReadMeta(0, recs); err != nil {
				t.Fatalf("read records after repair: %v", err)
			}
			if again, _ := RepairExtents(dir, size); len(again) != 0 {
				t.Fatalf("a second repair changed %q", again)
			}
		})
	}
}
