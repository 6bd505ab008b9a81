//go:build rados

package rados

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestPackAppendReadSeal(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	p, err := c.NewPack(3, 10)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	var locs []Loc
	next := 0
	for _, n := range []int{1, 255, 768} { // 1,024: full
		keys := make([][]byte, n)
		for i := range keys {
			keys[i] = testKey(next + i)
		}
		next += n
		data := randBlocks(n)
		l, err := p.Append(keys, data)
		if err != nil {
			t.Fatal(err)
		}
		all, locs = append(all, data...), append(locs, l...)
	}
	if p.Free() != 0 || len(locs) != PackBlocks {
		t.Fatalf("free %d after %d blocks", p.Free(), len(locs))
	}
	if _, err := p.Append([][]byte{testKey(0)}, randBlocks(1)); !errors.Is(err, ErrPackFull) {
		t.Fatalf("append to a full pack: %v, want ErrPackFull", err)
	}
	buf := make([]byte, BlockSize)
	for _, i := range []int{0, 1, 255, 256, 1023} {
		if locs[i].Pack() != p.ID() || locs[i].Block() != i {
			t.Fatalf("location %d is %v", i, locs[i])
		}
		if err := c.ReadBlock(locs[i], buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, all[i*BlockSize:(i+1)*BlockSize]) {
			t.Fatalf("block %d reads back different", i)
		}
	}
	st, err := c.ReadPackState(p.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st.Sealed || len(st.Keys) != PackBlocks || st.Size != PackBlocks*BlockSize {
		t.Fatalf("before seal: sealed %v, %d keys, %d bytes", st.Sealed, len(st.Keys), st.Size)
	}
	for i, k := range st.Keys {
		if !bytes.Equal(k, testKey(i)) {
			t.Fatalf("pack omap: block %d has the key of another", i)
		}
	}
	if err := p.Seal(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append([][]byte{testKey(0)}, randBlocks(1)); !errors.Is(err, ErrSealed) {
		t.Fatalf("append to a sealed pack: %v, want ErrSealed", err)
	}
	st, err = c.ReadPackState(p.ID())
	if err != nil || !st.Sealed || st.Count != PackBlocks {
		t.Fatalf("after seal: %+v %v", st.Sealed, err)
	}
	// A block past the end of a pack is not there.
	q, err := c.NewPack(3, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append([][]byte{testKey(1)}, randBlocks(1)); err != nil {
		t.Fatal(err)
	}
	short, _ := MakeLoc(q.ID(), 5)
	if err := c.ReadBlock(short, buf); !errors.Is(err, ErrBadValue) {
		t.Fatalf("read past a pack's end: %v, want ErrBadValue", err)
	}
}

// A pack name an earlier run created is skipped, never reused.
func TestPackNamesAreNeverReused(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	a, err := c.NewPack(1, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.NewPack(1, 7)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != (PackID{1, 7}) || b.ID() != (PackID{1, 8}) {
		t.Fatalf("packs %v and %v, want 1.7 and 1.8", a.ID(), b.ID())
	}
	other, err := c.NewPack(2, 7) // another host's sequence is its own
	if err != nil || other.ID() != (PackID{2, 7}) {
		t.Fatalf("host 2: %v %v", other, err)
	}
}

func TestPackRefusesBadAppends(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	p, err := c.NewPack(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		keys [][]byte
		data []byte
	}{
		"no blocks":           {nil, nil},
		"short data":          {[][]byte{testKey(1)}, make([]byte, 100)},
		"short key":           {[][]byte{testKey(1)[:10]}, randBlocks(1)},
		"more keys than data": {[][]byte{testKey(1), testKey(2)}, randBlocks(1)},
	} {
		if _, err := p.Append(tc.keys, tc.data); !errors.Is(err, ErrArg) {
			t.Errorf("%s: %v, want ErrArg", name, err)
		}
	}
	// Nothing was written by the refused appends.
	st, err := c.ReadPackState(p.ID())
	if err != nil || len(st.Keys) != 0 || st.Size != 0 {
		t.Fatalf("after refused appends: %+v %v", st, err)
	}
}
