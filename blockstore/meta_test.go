package blockstore

import "testing"

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

func FuzzDecodeMeta(f *testing.F) {
	b := make([]byte, MetaSize)
	(&Meta{Refs: 3, Flags: FlagIndexed}).Encode(b)
	f.Add(b)
	f.Add(make([]byte, MetaSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, ok := DecodeMeta(in)
		if !ok {
			return
		}
		out := make([]byte, MetaSize)
		m.Encode(out)
		if m2, ok2 := DecodeMeta(out); !ok2 || m2 != m {
			t.Fatalf("re-encoded record does not decode to itself")
		}
	})
}
