package index

import (
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/syndtr/goleveldb/leveldb"

	"blockhash/vfs"
)

// TestStorageCrash cuts the power under LevelDB at random points while
// batches are applied (small memtables, so journals rotate and tables are
// compacted): every batch Apply acknowledged must be there after the
// crash, and after a second crash while the index reopens.
func TestStorageCrash(t *testing.T) {
	const dir = "/store/index"
	opts := func(c vfs.FS) Options {
		return Options{CacheEntries: 64, WriteBufferBytes: 16 << 10, BlockCacheBytes: 1 << 20, FS: c}
	}
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 1))
		c := vfs.NewCrashFS(seed)
		c.SetMode([]vfs.CrashMode{vfs.TearLast, vfs.KeepPrefix}[seed%2])
		ix, err := Open(dir, opts(c))
		if err != nil {
			t.Fatal(err)
		}
		c.CrashAfter(int64(r.IntN(3000)))
		acked := 0 // batches acknowledged
		for b := 0; ; b++ {
			ops := make([]Op, 100)
			for i := range ops {
				ops[i] = Op{Key: key(b*100 + i), Slot: uint64(b*100 + i)}
			}
			if err := ix.Apply(ops); err != nil {
				break
			}
			acked = b + 1
			if b == 200 {
				t.Fatalf("seed %d: no crash after 200 batches", seed)
			}
		}
		ix.Close()
		img := c.Crashed()
		// A second crash while the index opens on the image.
		img.CrashAfter(int64(r.IntN(40)))
		if ix2, err := Open(dir, opts(img)); err == nil {
			ix2.Close()
		}
		if img2 := img.Crashed(); img2 != nil {
			img = img2
		} else {
			img = img.Crash()
		}
		ix2, err := Open(dir, opts(img))
		if err != nil {
			t.Fatalf("seed %d: open after crashes: %v", seed, err)
		}
		for i := range acked * 100 {
			h, err := ix2.Lookup(key(i))
			if err != nil || !h.Found || h.Slot != uint64(i) {
				t.Fatalf("seed %d: %d batches acknowledged, key %d lost (%+v %v)", seed, acked, i, h, err)
			}
		}
		ix2.Close()
	}
}

// TestStorageCompatible: a directory made by goleveldb's own file storage
// opens through the vfs storage, and the reverse.
func TestStorageCompatible(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ix")
	db, err := leveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var val [8]byte
	binary.LittleEndian.PutUint64(val[:], 7)
	if err := db.Put(dbKey(key(1)), val[:], nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ix := open(t, dir)
	if h := mustLookup(t, ix, key(1)); !h.Found || h.Slot != 7 {
		t.Fatalf("key put by goleveldb: %+v", h)
	}
	if err := ix.Apply([]Op{{Key: key(2), Slot: 9}}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = leveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Get(dbKey(key(2)), nil); err != nil || binary.LittleEndian.Uint64(v) != 9 {
		t.Fatalf("key applied through vfs, read by goleveldb: %v", err)
	}
}
