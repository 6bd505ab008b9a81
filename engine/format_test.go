package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
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
	init := make([]byte, mapPageSize)
	mapEntry{Key: k, Slot: 11}.encode(init[2*mapEntrySize:])
	tbl := &ptrPage{3, 0, 5}
	h := mapHeader{ID: 4, Size: 1 << 20, Created: time.Unix(1700000000, 7), Name: "vm1@s", Kind: kindDevice, Origin: "a@b"}
	return &record{
		Seq: 9,
		Leaves: []leafWrite{
			{Page: 3, Entries: []leafEntry{{Idx: 5, Entry: mapEntry{Key: k, Slot: 12}}, {Idx: 6}}},
			{Page: 5, Zero: true, Entries: []leafEntry{{Idx: 84, Entry: quarantined}}},
			{Page: 6, Init: init},
		},
		Tables:  []tableWrite{{Page: 2, Ptrs: tbl}},
		Vols:    []volWrite{{ID: 4, Content: encodeVolume(h, []uint32{2})}},
		Roots:   []rootChange{{Vol: 1, Index: 0, Page: 2}},
		Removes: []uint32{7},
		Slots:   []slotChange{{Slot: 12, Meta: m}, {Slot: 13, Meta: blockstore.Meta{}}},
	}
}

// recordParts is testRecord cut into records of one part each: leaf
// writes of the three kinds (in place, from zeros, from a first content),
// tables, volume files, root pointers, removes and slot records.
func recordParts() []*record {
	full := testRecord()
	// A volume file of a few bytes: the record does not check its content
	// (testRecord has a whole one).
	small := &record{Seq: 2, Vols: []volWrite{{ID: 4, Content: []byte("vol")}}}
	return []*record{
		{Seq: 1, Leaves: full.Leaves[:1]},
		{Seq: 1, Leaves: full.Leaves[1:2]},
		{Seq: 1, Leaves: full.Leaves[2:]},
		{Seq: 1, Tables: full.Tables},
		small,
		{Seq: 1, Roots: append(full.Roots, rootChange{Vol: 2, Index: 1022, Page: lostPage})},
		{Seq: 1, Removes: full.Removes},
		{Seq: 1, Slots: full.Slots},
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
	for i, r := range recordParts() {
		b := r.encode()
		got, err := decodeRecord(b)
		if err != nil || !bytes.Equal(got.encode(), b) {
			t.Fatalf("record part %d does not survive a round trip: %v", i, err)
		}
	}
}

// The fuzzers of checksummed formats take the bytes before the checksum
// and a flag: with fix set the checksum is made to match, so the fuzzer
// reaches the checks behind it (a random mutation passes a CRC-32C once in
// four billion tries); without it the bytes are decoded as they are.
// Inputs stay small (a 4 KiB input costs the fuzzer seconds to minimise):
// a map header is the input padded with zeros to 4 KiB.

// journalBytes builds a journal from a record body; with fix, the header's
// length and checksums match the body.
func journalBytes(body []byte, seq uint64, fix bool) []byte {
	if !fix {
		return body
	}
	b := make([]byte, journalHeaderSize+len(body))
	copy(b, journalMagic[:])
	binary.LittleEndian.PutUint64(b[4:], seq)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(body, castagnoli))
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	copy(b[journalHeaderSize:], body)
	return b
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(testRecord().encode()[journalHeaderSize:], uint64(9), true)
	f.Add((&record{}).encode()[journalHeaderSize:], uint64(1), true)
	// Each part of a record on its own, so that small inputs reach each.
	for _, r := range recordParts() {
		f.Add(r.encode()[journalHeaderSize:], r.Seq, true)
	}
	f.Add(testRecord().encode(), uint64(0), false)
	f.Add([]byte("BHJ1"), uint64(0), false)
	f.Add([]byte{1, 0, 0, 0}, uint64(0), true)
	f.Fuzz(func(t *testing.T, body []byte, seq uint64, fix bool) {
		b := journalBytes(body, seq, fix)
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if r == nil {
			if len(b) != 0 {
				t.Fatal("a non-empty journal decoded to no record")
			}
			return
		}
		if fix && r.Seq != seq {
			t.Fatalf("sequence %d, want %d", r.Seq, seq)
		}
		enc := r.encode()
		r2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("re-encoded record fails: %v", err)
		}
		if !bytes.Equal(r2.encode(), enc) {
			t.Fatal("record does not survive re-encoding")
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
		{"future version", Superblock{Version: FormatVersion + 1, BlockSize: BlockSize, Hash: SHA256, ExtentSize: 1 << 30}, ErrFormat},
		{"older version (flat maps)", Superblock{Version: 1, BlockSize: BlockSize, Hash: SHA256, ExtentSize: 1 << 30}, ErrFormat},
		{"other block size", Superblock{Version: FormatVersion, BlockSize: 512, Hash: SHA256, ExtentSize: 1 << 30}, ErrFormat},
		{"unknown hash", Superblock{Version: FormatVersion, BlockSize: BlockSize, Hash: 9, ExtentSize: 1 << 30}, ErrFormat},
		{"bad extent size", Superblock{Version: FormatVersion, BlockSize: BlockSize, Hash: SHA1, ExtentSize: 100}, ErrCorrupt},
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

// withCRC returns b cut or zero-padded to n-4 bytes followed by the
// CRC-32C of those bytes (little endian).
func withCRC(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out[:n-4], b)
	binary.LittleEndian.PutUint32(out[n-4:], crc32.Checksum(out[:n-4], castagnoli))
	return out
}

func FuzzDecodeSuperblock(f *testing.F) {
	good := (&Superblock{Version: 1, BlockSize: BlockSize, Hash: SHA256, Verify: true, ExtentSize: 1 << 30}).Encode()
	f.Add(good[:superblockSize-4], true)
	f.Add(good, false)
	f.Add(make([]byte, superblockSize), false)
	f.Add([]byte("BLKHASH\x00"), true)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = withCRC(b, superblockSize)
		}
		s, err := DecodeSuperblock(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is neither ErrCorrupt nor ErrFormat", err)
			}
			return
		}
		if s.Hash != SHA256 && s.Hash != SHA1 || s.ExtentSize <= 0 || s.ExtentSize%BlockSize != 0 {
			t.Fatalf("accepted out-of-range superblock %+v", s)
		}
		if !bytes.Equal(s.Encode(), b) {
			t.Fatal("superblock does not re-encode to its input")
		}
	})
}

func FuzzDecodeMapHeader(f *testing.F) {
	good := (&mapHeader{ID: 1, Size: 1 << 20, Name: "vm1"}).encode()
	f.Add(good[:40], true)
	f.Add(good[:40], false)
	f.Add([]byte{}, true)
	// Every field of format 2: a snapshot (kind, parent), a clone being
	// deleted (flags, origin), a device of several root pointers.
	snap := (&mapHeader{ID: 3, Size: 1 << 30, Created: time.Unix(1700000000, 5), Name: "s1", Kind: kindSnapshot, Parent: 1}).encode()
	f.Add(snap[:50], true)
	clone := (&mapHeader{ID: 4, Size: 1 << 20, Name: "c1", Deleting: true, Origin: "vm1@s1"}).encode()
	f.Add(clone[:120], true)
	big := (&mapHeader{ID: 5, Size: 5000 * tableBlocks * BlockSize, Name: "big"}).encode()
	f.Add(big[:50], true)
	f.Add([]byte("BHMAP\x00\x00\x01"), true) // format 1
	dom := (&mapHeader{ID: 6, Size: 1 << 20, Name: "d1", Domain: "tenant-a", Secret: [SecretSize]byte{1, 2, 3}}).encode()
	f.Add(dom[:460], true)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = withCRC(b, mapHeaderSize)
		}
		h, err := decodeMapHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is neither ErrCorrupt nor ErrFormat", err)
			}
			return
		}
		if h.Size <= 0 || h.Size%BlockSize != 0 || len(h.Name) == 0 || len(h.Name) > maxNameLen ||
			len(h.Origin) > maxOriginLen || h.ID == 0 || h.Kind > kindSnapshot || (h.Kind == kindSnapshot) != (h.Parent != 0) {
			t.Fatalf("accepted out-of-range header %+v", h)
		}
		if h2, err := decodeMapHeader(h.encode()); err != nil || h2 != h {
			t.Fatalf("header does not survive re-encoding: %v", err)
		}
	})
}

func FuzzDecodeMapEntry(f *testing.F) {
	b := make([]byte, mapEntrySize)
	mapEntry{Key: index.Key{CRC: 1}, Slot: 5}.encode(b)
	f.Add(b[:44], true)
	f.Add(b, false)
	f.Add(make([]byte, mapEntrySize), false)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = withCRC(b, mapEntrySize)
		}
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
