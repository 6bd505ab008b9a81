package vfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"blockhash/vfs"
)

func TestOS(t *testing.T) {
	dir := t.TempDir()
	c := vfs.OS
	name := filepath.Join(dir, "f")
	f := mustOpen(t, c, name, rw|os.O_EXCL)
	defer f.Close()
	must(t, f.Allocate(0, 8192))
	if n, err := f.Size(); err != nil || n != 8192 {
		t.Fatalf("size after allocate: %d %v", n, err)
	}
	a, b := bytes.Repeat([]byte{1}, 4096), bytes.Repeat([]byte{2}, 4096)
	must(t, f.WriteBuffers([][]byte{a, b}, 4096))
	must(t, f.Sync())
	got := make([]byte, 8192)
	if _, err := f.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4096], a) || !bytes.Equal(got[4096:], b) {
		t.Fatal("vectored write read back differs")
	}
	// A hole before data: DataRegion skips it where the file system can.
	s := mustOpen(t, c, filepath.Join(dir, "sparse"), rw)
	defer s.Close()
	must(t, s.Truncate(1<<20))
	write(t, s, "x", 512<<10)
	data, hole, err := s.DataRegion(0, 1<<20)
	must(t, err)
	if data > 512<<10 || hole <= 512<<10 {
		t.Fatalf("data region [%d, %d) misses the data at %d", data, hole, 512<<10)
	}
	st, err := c.Stat(filepath.Join(dir, "sparse"))
	must(t, err)
	if st.Size != 1<<20 || st.Allocated <= 0 {
		t.Fatalf("stat %+v", st)
	}
	d := mustOpen(t, c, name, os.O_RDWR|vfs.Direct)
	defer d.Close()
	buf := vfs.AlignedBuf(4096)
	if !vfs.IsAligned(buf) {
		t.Fatal("AlignedBuf not aligned")
	}
	if _, err := d.ReadAt(buf, 4096); err != nil || !bytes.Equal(buf, a) {
		t.Fatalf("direct read (direct=%v): %v", d.Direct(), err)
	}
	l, err := c.Lock(filepath.Join(dir, "LOCK"))
	must(t, err)
	// flock locks belong to the open file description: a second open in
	// this process conflicts just as another process would.
	if _, err := c.Lock(filepath.Join(dir, "LOCK")); !errors.Is(err, vfs.ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	must(t, l.Close())
	must(t, vfs.WriteFileDurable(c, filepath.Join(dir, "small"), []byte("abc")))
	if got := content(t, c, filepath.Join(dir, "small")); got != "abc" {
		t.Fatalf("durable write read back %q", got)
	}
	ents, err := c.ReadDir(dir)
	must(t, err)
	if len(ents) != 4 { // f, sparse, LOCK, small
		t.Fatalf("readdir: %+v", ents)
	}
}
