package blockstore

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

func TestMetaEncodeDecode(t *testing.T) {
	tests := []Meta{
		{},
		{Refs: 1},
		{Tag: [TagSize]byte{1, 2, 3}, Refs: 0xffffffff, Flags: FlagIndexed},
	}
	for _, m := range tests {
		b := make([]byte, MetaSize)
		m.Encode(b)
		got, ok := DecodeMeta(b)
		if !ok || got != m {
			t.Fatalf("round trip of %+v: %+v %v", m, got, ok)
		}
	}
	b := make([]byte, MetaSize)
	(&Meta{Refs: 5}).Encode(b)
	b[40] ^= 1
	if _, ok := DecodeMeta(b); ok {
		t.Fatal("flipped bit not detected")
	}
	if _, ok := DecodeMeta(b[:10]); ok {
		t.Fatal("short record accepted")
	}
}

// FuzzDecodeMeta takes the bytes before the checksum and a flag: with fix
// set the checksum is made to match, so the fuzzer reaches what lies
// behind it; without it the bytes are decoded as they are.
func FuzzDecodeMeta(f *testing.F) {
	b := make([]byte, MetaSize)
	(&Meta{Refs: 3, Flags: FlagIndexed}).Encode(b)
	f.Add(b[:MetaSize-4], true)
	f.Add(b, false)
	f.Add(make([]byte, MetaSize), false)
	f.Add([]byte{1, 2, 3}, false)
	f.Fuzz(func(t *testing.T, in []byte, fix bool) {
		if fix {
			c := make([]byte, MetaSize)
			copy(c[:MetaSize-4], in)
			binary.LittleEndian.PutUint32(c[MetaSize-4:], crc32.Checksum(c[:MetaSize-4], castagnoli))
			in = c
		}
		m, ok := DecodeMeta(in)
		if !ok {
			return
		}
		out := make([]byte, MetaSize)
		m.Encode(out)
		if m2, ok2 := DecodeMeta(out); !ok2 || m2 != m {
			t.Fatalf("re-encoded record does not decode to itself")
		}
		if fix && !m.IsZero() && !bytes.Equal(out, in) {
			t.Fatalf("record does not re-encode to its input")
		}
	})
}
