package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"blockhash/blockstore"
)

// A store that fills its file system while serving keeps working: the
// commit that runs out of space for metadata (map pages, slot records,
// the journal, LevelDB) finishes with the reserve's space instead of
// failing the store, new blocks then get ErrFull (a no-space error for the
// guest), duplicates and reads still work, and once space is freed new
// blocks are stored again.
func TestFullFileSystemWhileServing(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "fs")
	os.Mkdir(mnt, 0o700)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d", 40<<20)); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): needs root", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	dir := filepath.Join(mnt, "store")
	if err := Create(dir, Options{ExtentSize: 256 * BlockSize}); err != nil {
		t.Fatal(err)
	}
	e, err := Open(dir, Options{CommitInterval: -1, CommitChanges: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	a, _ := e.CreateDevice("a", 64<<20)
	b, _ := e.CreateDevice("b", 64<<20)
	chunk := func(i int) []byte {
		p := make([]byte, 256<<10)
		for j := range 64 {
			copy(p[j*BlockSize:], block(uint64(i*64+j)))
		}
		return p
	}
	var written int
	for ; written < 256; written++ {
		if _, err := a.WriteAt(chunk(written), int64(written)*(256<<10)); err != nil {
			if !errors.Is(err, blockstore.ErrFull) || errors.Is(err, ErrFailed) {
				t.Fatalf("write %d on a full file system: %v, want ErrFull and a store still working", written, err)
			}
			break
		}
	}
	if written == 256 {
		t.Fatal("the file system never filled")
	}
	if err := e.Flush(); err != nil {
		t.Fatalf("flush on a full file system: %v", err)
	}
	// Reads, and writes of blocks already stored, still work.
	for i := range written {
		if got := mustRead(t, a, int64(i)*(256<<10), 256<<10); !bytes.Equal(got, chunk(i)) {
			t.Fatalf("chunk %d reads wrong", i)
		}
	}
	if _, err := b.WriteAt(chunk(0), 0); err != nil {
		t.Fatalf("a duplicate write on a full file system: %v", err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	// Space freed: new blocks are stored again.
	if err := e.DeleteDevice("a"); err != nil {
		t.Fatalf("delete on a full file system: %v", err)
	}
	if _, err := b.WriteAt(chunk(1000), 1<<20); err != nil {
		t.Fatalf("a new block after space was freed: %v", err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	fsckOK(t, e)
}
