package engine

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"blockhash/blockstore"
	"blockhash/index"
)

func testRecord() *record {
	k := index.Key{CRC: 7}
	k.Sum[0] = 1
	m := blockstore.Meta{Refs: 3, Flags: blockstore.FlagIndexed}
	k.Encode(m.Tag[:])
	return &record{
		Seq:     9,
		Maps:    []mapChange{{Dev: 1, LBA: 5, Entry: mapEntry{Key: k, Slot: 12}}, {Dev: 2, LBA: 6}},
		Slots:   []slotChange{{Slot: 12, Meta: m}, {Slot: 13, Meta: blockstore.Meta{}}},
		Deletes: []uint32{4},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := testRecord()
	b := r.encode()
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.encode(), b) {
		t.Fatal("record does not survive a round trip")
	}
	// Every truncation and every single bit flip is detected.
	for i := 1; i < len(b); i++ {
		if _, err := decodeRecord(b[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, err := decodeRecord(c); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bit flip at %d not detected", i)
		}
	}
	if r, err := decodeRecord(nil); r != nil || err != nil {
		t.Fatal("empty journal is not 'no record'")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(testRecord().encode())
	f.Add((&record{}).encode())
	f.Add([]byte("BHJ1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil || r == nil {
			return
		}
		if _, err := decodeRecord(r.encode()); err != nil {
			t.Fatalf("re-encoded record fails: %v", err)
		}
	})
}

func TestSuperblock(t *testing.T) {
	good := Superblock{Version: FormatVersion, BlockSize: BlockSize, Hash: SHA256, ExtentSize: 1 << 30, Created: time.Unix(0, 42)}
	b := good.Encode()
	got, err := DecodeSuperblock(b)
	if err != nil || got != good {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	tests := []struct {
		name string
		sb   Superblock
		want error
	}{
		{"future version", Superblock{Version: 2, BlockSize: BlockSize, Hash: SHA256, ExtentSize: 1 << 30}, ErrFormat},
		{"other block size", Superblock{Version: 1, BlockSize: 512, Hash: SHA256, ExtentSize: 1 << 30}, ErrFormat},
		{"unknown hash", Superblock{Version: 1, BlockSize: BlockSize, Hash: 9, ExtentSize: 1 << 30}, ErrFormat},
		{"bad extent size", Superblock{Version: 1, BlockSize: BlockSize, Hash: SHA1, ExtentSize: 100}, ErrCorrupt},
	}
	for _, tc := range tests {
		if _, err := DecodeSuperblock(tc.sb.Encode()); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	b[9] ^= 1
	if _, err := DecodeSuperblock(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bit flip: %v", err)
	}
}

func FuzzDecodeSuperblock(f *testing.F) {
	f.Add((&Superblock{Version: 1, BlockSize: BlockSize, Hash: SHA256, ExtentSize: 1 << 30}).Encode())
	f.Add(make([]byte, superblockSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSuperblock(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Encode(), b) {
			t.Fatal("superblock does not re-encode to its input")
		}
	})
}

func FuzzDecodeMapHeader(f *testing.F) {
	f.Add((&mapHeader{ID: 1, Size: 1 << 20, Name: "vm1"}).encode())
	f.Add(make([]byte, mapHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeMapHeader(b)
		if err != nil {
			return
		}
		if h2, err := decodeMapHeader(h.encode()); err != nil || h2 != h {
			t.Fatalf("header does not survive re-encoding: %v", err)
		}
	})
}

func FuzzDecodeMapEntry(f *testing.F) {
	b := make([]byte, mapEntrySize)
	mapEntry{Key: index.Key{CRC: 1}, Slot: 5}.encode(b)
	f.Add(b)
	f.Add(make([]byte, mapEntrySize))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := decodeMapEntry(b)
		if !ok {
			return
		}
		out := make([]byte, mapEntrySize)
		e.encode(out)
		if e2, ok := decodeMapEntry(out); !ok || e2 != e {
			t.Fatal("entry does not survive re-encoding")
		}
	})
}
