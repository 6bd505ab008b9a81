package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/syndtr/goleveldb/leveldb"
)

func key(i int) Key {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return Key{Sum: sha256.Sum256(b[:]), CRC: uint32(i)}
}

func open(t *testing.T, dir string) *Index {
	t.Helper()
	ix, err := Open(dir, Options{CacheEntries: 64})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func mustLookup(t *testing.T, ix *Index, k Key) Hit {
	t.Helper()
	h, err := ix.Lookup(k)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	ix := open(t, dir)
	if h := mustLookup(t, ix, key(1)); h.Found {
		t.Fatal("empty index found a key")
	}
	ix.Insert(key(1), 10)
	ix.Insert(key(2), 20)
	if h := mustLookup(t, ix, key(1)); !h.Found || h.Slot != 10 || h.Disk {
		t.Fatalf("pending insert: %+v", h)
	}
	ix.Seal()
	ix.Insert(key(3), 30)
	if h := mustLookup(t, ix, key(2)); !h.Found || h.Slot != 20 {
		t.Fatalf("sealed insert not visible: %+v", h)
	}
	if err := ix.Apply([]Op{{Key: key(1), Slot: 10}, {Key: key(2), Slot: 20}}); err != nil {
		t.Fatal(err)
	}
	if h := mustLookup(t, ix, key(2)); !h.Found || h.Slot != 20 || !h.Disk {
		t.Fatalf("applied entry: %+v", h)
	}
	// Remove hides at once, even though LevelDB still has it.
	ix.Remove(key(2), 20)
	if h := mustLookup(t, ix, key(2)); h.Found {
		t.Fatalf("removed key found: %+v", h)
	}
	ix.Seal()
	ops := []Op{{Key: key(2), Slot: 20, Delete: true}, {Key: key(3), Slot: 30}}
	if err := ix.Apply(ops); err != nil {
		t.Fatal(err)
	}
	if err := ix.Apply(ops); err != nil { // replay is harmless
		t.Fatal(err)
	}
	// A delete naming another slot leaves the entry alone.
	if err := ix.Apply([]Op{{Key: key(3), Slot: 99, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	ix.Close()

	ix = open(t, dir)
	defer ix.Close()
	if s := ix.Stats(); s.Entries != 2 {
		t.Fatalf("reopened index has %d entries, want 2", s.Entries)
	}
	for _, c := range []struct {
		k     Key
		found bool
		slot  uint64
	}{{key(1), true, 10}, {key(2), false, 0}, {key(3), true, 30}, {key(4), false, 0}} {
		h := mustLookup(t, ix, c.k)
		if h.Found != c.found || h.Slot != c.slot {
			t.Fatalf("%v: %+v, want found=%v slot=%d", c.k, h, c.found, c.slot)
		}
	}
}

func TestPrimeAndForget(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	ix.Insert(key(1), 1)
	ix.Insert(key(2), 2)
	ix.Seal()
	if err := ix.Apply([]Op{{Key: key(1), Slot: 1}, {Key: key(2), Slot: 2}}); err != nil {
		t.Fatal(err)
	}
	tok := ix.PrimeToken()
	if !ix.Prime(tok, []Entry{{key(2), 2}}) {
		t.Fatal("prime refused")
	}
	before := ix.Stats().CacheHits
	if h := mustLookup(t, ix, key(2)); !h.Found || h.Disk || ix.Stats().CacheHits != before+1 {
		t.Fatalf("primed entry not served from the cache: %+v", h)
	}
	tok = ix.PrimeToken()
	ix.Remove(key(1), 1)
	if ix.Prime(tok, []Entry{{key(1), 1}}) {
		t.Fatal("prime after a removal was taken: it may hold a freed slot")
	}
	if h := mustLookup(t, ix, key(1)); h.Found {
		t.Fatal("removed key found")
	}
}

func TestReset(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	ix.Insert(key(1), 1)
	ix.Seal()
	ix.Apply([]Op{{Key: key(1), Slot: 1}})
	if err := ix.Reset([]Entry{{key(5), 50}}); err != nil {
		t.Fatal(err)
	}
	var got []Entry
	ix.Each(func(e Entry) error { got = append(got, e); return nil })
	if len(got) != 1 || got[0] != (Entry{key(5), 50}) {
		t.Fatalf("after reset: %+v", got)
	}
	if h := mustLookup(t, ix, key(1)); h.Found {
		t.Fatal("old entry survived reset")
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	ix := open(t, dir)
	defer ix.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func FuzzDecodeKey(f *testing.F) {
	b := make([]byte, KeySize)
	key(3).Encode(b)
	f.Add(b)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, in []byte) {
		k, ok := DecodeKey(in)
		if !ok {
			return
		}
		out := make([]byte, KeySize)
		k.Encode(out)
		if string(out) != string(in) {
			t.Fatal("key does not re-encode to its input")
		}
	})
}

// Apply and Reset write large updates (beyond goleveldb's 3000-record
// growth threshold) whole; every entry lands and survives a reopen.
func TestApplyLarge(t *testing.T) {
	for _, n := range []int{1, 2999, 3001, 20011} {
		dir := t.TempDir()
		ix := open(t, dir)
		ops := make([]Op, n)
		for i := range ops {
			ops[i] = Op{Key: key(i), Slot: uint64(i) + 1}
		}
		if err := ix.Apply(ops); err != nil {
			t.Fatal(err)
		}
		// delete every other one (the others keep their slot)
		var dels []Op
		for i := 0; i < n; i += 2 {
			dels = append(dels, Op{Key: key(i), Slot: uint64(i) + 1, Delete: true})
		}
		if err := ix.Apply(dels); err != nil {
			t.Fatal(err)
		}
		ix.Close()
		ix = open(t, dir)
		count := 0
		if err := ix.Each(func(e Entry) error {
			i := int(e.Slot) - 1
			if i%2 == 0 || e.Key != key(i) {
				t.Fatalf("n=%d: unexpected entry %+v", n, e)
			}
			count++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if count != n/2 {
			t.Fatalf("n=%d: %d entries after reopen, want %d", n, count, n/2)
		}
		entries := make([]Entry, n+5)
		for i := range entries {
			entries[i] = Entry{Key: key(100000 + i), Slot: uint64(i)}
		}
		if err := ix.Reset(entries); err != nil {
			t.Fatal(err)
		}
		count = 0
		ix.Each(func(Entry) error { count++; return nil })
		if count != len(entries) {
			t.Fatalf("n=%d: %d entries after reset, want %d", n, count, len(entries))
		}
		ix.Close()
	}
}

// The records batch encodes are byte for byte what goleveldb's own Batch
// holds for the same puts and deletes (its Dump), so Load reads them back.
func TestBatchFormat(t *testing.T) {
	var want leveldb.Batch
	got := newBatch(0)
	long := bytes.Repeat([]byte{7}, 300) // a length that takes two varint bytes
	for i, k := range [][]byte{dbKey(key(1)), []byte("x"), long, {}} {
		v := bytes.Repeat([]byte{byte(i)}, i*150)
		want.Put(k, v)
		got.put(k, v)
		want.Delete(k)
		got.del(k)
	}
	if !bytes.Equal(got.buf, want.Dump()) {
		t.Fatalf("batch records differ from goleveldb's:\n got %x\nwant %x", got.buf, want.Dump())
	}
	var lb leveldb.Batch
	if err := lb.Load(got.buf); err != nil || lb.Len() != 8 {
		t.Fatalf("Load: %v, %d records", err, lb.Len())
	}
}
