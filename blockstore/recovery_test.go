package blockstore_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockhash/blockstore"
)

// newGrown makes a store in a temp dir with n extents, one block written
// in each (byte i+1), and closes it.
func newGrown(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := blockstore.OpenExtents(dir, testExtent)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.Grow(); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, blockstore.BlockSize), blockstore.Slot(i*64)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return dir
}

func checkBlocks(t *testing.T, s blockstore.Store, n int) {
	t.Helper()
	got := make([]byte, blockstore.BlockSize)
	for i := range n {
		if err := s.ReadAt(got, blockstore.Slot(i*64)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1)}, blockstore.BlockSize)) {
			t.Fatalf("extent %d lost its block", i)
		}
	}
}

// TestOpenAfterInterruptedGrow: what a kill during Grow leaves must not
// brick the store (issue 8, item 1: older code left 0-byte files).
func TestOpenAfterInterruptedGrow(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]int64 // leftover file -> size
	}{
		{"empty dat and meta of older code", map[string]int64{"extent-000002.dat": 0, "extent-000002.meta": 0}},
		{"temp files", map[string]int64{"extent-000002.dat.tmp": 100, "extent-000002.meta.tmp": 48}},
		{"meta renamed, dat not yet", map[string]int64{"extent-000002.meta": 64 * blockstore.MetaSize, "extent-000002.dat.tmp": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newGrown(t, 2)
			for name, size := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := blockstore.OpenExtents(dir, testExtent)
			if err != nil {
				t.Fatalf("open after an interrupted grow: %v", err)
			}
			defer s.Close()
			if s.Slots() != 2*64 {
				t.Fatalf("%d slots, want %d", s.Slots(), 2*64)
			}
			checkBlocks(t, s, 2)
			for name := range tc.files {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					t.Errorf("leftover %s was not removed", name)
				}
			}
			if err := s.Grow(); err != nil {
				t.Fatalf("grow after recovery: %v", err)
			}
		})
	}
}

// TestMissingExtentIsNoticed: a lost extent file makes open fail with an
// error naming it (issue 8, item 6: a missing last extent went unnoticed).
func TestMissingExtentIsNoticed(t *testing.T) {
	tests := []struct {
		name   string
		remove []string
		named  string
	}{
		{"last extent", []string{"extent-000002.dat", "extent-000002.meta"}, "extent-000002.dat"},
		{"last data only", []string{"extent-000002.dat"}, "extent-000002.dat"},
		{"middle extent", []string{"extent-000001.dat", "extent-000001.meta"}, "extent-000001.dat"},
		{"a meta", []string{"extent-000000.meta"}, "extent-000000.meta"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newGrown(t, 3)
			for _, name := range tc.remove {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			s, err := blockstore.OpenExtents(dir, testExtent)
			if err == nil {
				s.Close()
				t.Fatal("store with a missing extent file opened")
			}
			if !errors.Is(err, blockstore.ErrCorrupt) || !strings.Contains(err.Error(), tc.named) {
				t.Fatalf("open: %v, want ErrCorrupt naming %s", err, tc.named)
			}
		})
	}
}

// TestTruncatedMetaIsNamed: a truncated .meta is a clear error naming the
// file, at open and when it is truncated under an open store (issue 8,
// item 8: it said only "read meta: EOF").
func TestTruncatedMetaIsNamed(t *testing.T) {
	dir := newGrown(t, 1)
	meta := filepath.Join(dir, "extent-000000.meta")
	s, err := blockstore.OpenExtents(dir, testExtent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(meta, 100); err != nil {
		t.Fatal(err)
	}
	err = s.ReadMeta(10, make([]blockstore.Meta, 4))
	s.Close()
	if !errors.Is(err, blockstore.ErrCorrupt) || !strings.Contains(err.Error(), "extent-000000.meta") {
		t.Fatalf("read of a truncated meta: %v, want ErrCorrupt naming the file", err)
	}
	s, err = blockstore.OpenExtents(dir, testExtent)
	if err == nil {
		s.Close()
		t.Fatal("store with a truncated meta opened")
	}
	if !errors.Is(err, blockstore.ErrCorrupt) || !strings.Contains(err.Error(), "extent-000000.meta") {
		t.Fatalf("open: %v, want ErrCorrupt naming the file", err)
	}
}
