package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"blockhash/blockstore"
	"blockhash/vfs"
)

// A SHA-1 store byte-compares before sharing, whatever its superblock says:
// SHA-1 collisions can be built and a CRC-32C forced with four chosen bytes,
// so two different blocks with one key must not share a slot. The test
// stands a damaged stored copy in for the colliding block: a slot whose
// key names content it does not hold.
func TestSHA1ImpliesVerify(t *testing.T) {
	dir := t.TempDir()
	if err := Create(dir, Options{Hash: SHA1, ExtentSize: 64 * BlockSize}); err != nil {
		t.Fatal(err)
	}
	sb, err := readSuperblock(vfs.OS, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sb.Verify {
		t.Fatal("a new sha1 store is not marked verify")
	}
	// A store made by an older blockhash: sha1 without the verify flag.
	sb.Verify = false
	if err := blockstore.WriteFileDurable(filepath.Join(dir, superblockName), sb.Encode()); err != nil {
		t.Fatal(err)
	}
	e := reopen(t, dir, nil, Options{})
	if !e.Superblock().Verify {
		t.Fatal("an old sha1 store opens without verify")
	}
	a, err := e.CreateDevice("a", 16*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	want := block(1)
	if _, err := a.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	ent, err := a.m.get(0)
	if err != nil {
		t.Fatal(err)
	}
	e = reopen(t, dir, e, Options{})
	// Another block under the same key: change the stored copy.
	f, err := os.OpenFile(filepath.Join(dir, "blocks", "extent-000000.dat"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Clone(want)
	other[100] ^= 0xff
	if _, err := f.WriteAt(other, int64(ent.Slot)*BlockSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := e.CreateDevice("b", 16*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, b, 0, BlockSize); !bytes.Equal(got, want) {
		t.Fatal("a block was shared with a different block of the same sha1 key")
	}
}
