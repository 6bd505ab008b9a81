package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"blockhash/blockstore"
	"blockhash/engine"
)

// smallFS mounts a tmpfs of size bytes for the test (root only; skipped
// where mount is not permitted).
func smallFS(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): needs root", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fill writes a file into dir until its file system is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for len(buf) > 0 { // the last partial pages
		if _, err := f.Write(buf); err != nil {
			buf = buf[:len(buf)/2]
		}
	}
	if free, err := blockstore.FreeBytes(dir); err != nil || free != 0 {
		t.Fatalf("file system not full: %d bytes free, %v", free, err)
	}
}

// files lists a store's files with sizes and modification times.
func files(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, fmt.Sprintf("%s:%d:%d", rel, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// On a full file system the store can still be read, checked and exported
// (read-only commands write nothing) and can free its own space: delete
// and fsck --repair release the store's reserve to run. The freed slots
// then take new data, and the reserve comes back once there is room.
func TestFullFileSystem(t *testing.T) {
	mnt := smallFS(t, 48<<20)
	dir := t.TempDir()
	store := filepath.Join(mnt, "store")
	mustCLI(t, store, "init", "--extent-size", "1M")
	mustCLI(t, store, "import", "d", image(t, dir, "d.img", 768))
	mustCLI(t, store, "import", "e", image(t, dir, "e.img", 256))
	fill(t, mnt)

	before := files(t, store)
	for _, args := range [][]string{
		{"stats"}, {"list"}, {"fsck"}, {"export", "d", filepath.Join(dir, "d.out")},
	} {
		if r := cli(t, store, args...); r.code != 0 {
			t.Fatalf("%v on a full file system: exit %d: %s", args, r.code, r.stderr)
		}
	}
	if after := files(t, store); after != before {
		t.Fatalf("read-only commands changed the store:\nbefore %s\nafter  %s", before, after)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "d.img"))
	if got, _ := os.ReadFile(filepath.Join(dir, "d.out")); string(got) != string(want) {
		t.Fatal("export on a full file system differs from the image")
	}
	if r := cli(t, store, "delete", "d"); r.code != 0 {
		t.Fatalf("delete on a full file system: exit %d: %s", r.code, r.stderr)
	}
	// The freed slots take new data without growing the store.
	mustCLI(t, store, "import", "f", image(t, dir, "f.img", 512))
	if r := cli(t, store, "fsck", "--repair"); r.code != 0 {
		t.Fatalf("fsck --repair on a full file system: exit %d: %s", r.code, r.stderr)
	}
	if out := mustCLI(t, store, "fsck"); !strings.Contains(out, "consistent") {
		t.Fatalf("fsck: %s", out)
	}
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, store, "create", "g", "--size", "1M")
	if b, err := blockstore.AllocatedBytes(filepath.Join(store, "reserve")); err != nil || b < engine.DefaultReserveBytes {
		t.Fatalf("reserve not recreated once there is room: %d bytes, %v", b, err)
	}
}

// An import that fills the file system fails with a clear error and takes
// the device it created away again; the store stays consistent.
func TestImportFillsFileSystem(t *testing.T) {
	mnt := smallFS(t, 48<<20)
	dir := t.TempDir()
	store := filepath.Join(mnt, "store")
	mustCLI(t, store, "init", "--extent-size", "1M")
	mustCLI(t, store, "import", "d", image(t, dir, "d.img", 256))
	r := cli(t, store, "import", "big", image(t, dir, "big.img", 20480))
	if r.code == 0 || !strings.Contains(r.stderr, "no space left") || !strings.Contains(r.stderr, "deleted again") {
		t.Fatalf("import beyond the file system: exit %d %q", r.code, r.stderr)
	}
	if out := mustCLI(t, store, "list"); strings.Contains(out, "big") {
		t.Fatalf("the failed import left its device behind:\n%s", out)
	}
	if out := mustCLI(t, store, "fsck"); !strings.Contains(out, "consistent") {
		t.Fatalf("fsck: %s", out)
	}
}
