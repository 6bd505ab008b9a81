//go:build rados

package rados

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestStoreRollsPacks(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	s, err := c.OpenStore(4)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	var locs []Loc
	for b := range 5 { // 1,500 blocks: a full pack and 476 in the next
		keys := keysFrom(b*300, 300)
		data := randBlocks(300)
		l, err := s.Put(keys, data)
		if err != nil {
			t.Fatal(err)
		}
		all, locs = append(all, data...), append(locs, l...)
	}
	first, second := locs[0].Pack(), locs[1499].Pack()
	if first == second || locs[1023].Pack() != first || locs[1024].Pack() != second || locs[1024].Block() != 0 {
		t.Fatalf("packs: block 0 in %v, 1023 in %v, 1024 in %v, 1499 in %v", first, locs[1023], locs[1024], second)
	}
	st, err := c.ReadPackState(first)
	if err != nil || !st.Sealed || st.Count != PackBlocks {
		t.Fatalf("first pack: sealed %v count %d (%v)", st.Sealed, st.Count, err)
	}
	buf := make([]byte, BlockSize)
	for _, i := range []int{0, 1023, 1024, 1499} {
		if err := c.ReadBlock(locs[i], buf); err != nil || !bytes.Equal(buf, all[i*BlockSize:(i+1)*BlockSize]) {
			t.Fatalf("block %d at %v: %v", i, locs[i], err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = c.ReadPackState(second)
	if err != nil || !st.Sealed || st.Count != 476 {
		t.Fatalf("second pack after Close: sealed %v count %d (%v)", st.Sealed, st.Count, err)
	}
}

// A host that died with a pack open: its next run seals that pack with
// the blocks it holds and writes on in a new one; nothing is overwritten.
func TestStoreResumesAfterCrash(t *testing.T) {
	ns := testNamespace(t)
	c1 := testConn(t, ns, 20*time.Second)
	s1, err := c1.OpenStore(5)
	if err != nil {
		t.Fatal(err)
	}
	data := randBlocks(10)
	before, err := s1.Put(keysFrom(0, 10), data)
	if err != nil {
		t.Fatal(err)
	}
	c1.Close() // the process dies: no Close of the store, the pack stays open

	c2 := testConn(t, ns, 20*time.Second)
	st, err := c2.ReadPackState(before[0].Pack())
	if err != nil || st.Sealed {
		t.Fatalf("before restart: sealed %v (%v)", st.Sealed, err)
	}
	s2, err := c2.OpenStore(5)
	if err != nil {
		t.Fatal(err)
	}
	st, err = c2.ReadPackState(before[0].Pack())
	if err != nil || !st.Sealed || st.Count != 10 {
		t.Fatalf("after restart: sealed %v count %d (%v)", st.Sealed, st.Count, err)
	}
	after, err := s2.Put(keysFrom(100, 5), randBlocks(5))
	if err != nil {
		t.Fatal(err)
	}
	if after[0].Pack().Seq <= before[0].Pack().Seq {
		t.Fatalf("new blocks went to %v, the dead run wrote %v", after[0].Pack(), before[0].Pack())
	}
	buf := make([]byte, BlockSize)
	for i, l := range before {
		if err := c2.ReadBlock(l, buf); err != nil || !bytes.Equal(buf, data[i*BlockSize:(i+1)*BlockSize]) {
			t.Fatalf("block %d written before the crash: %v", i, err)
		}
	}
	// A second restart finds the new pack open and seals it too.
	s3, err := c2.OpenStore(5)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c2.ReadPackState(after[0].Pack()); err != nil || !st.Sealed || st.Count != 5 {
		t.Fatalf("second restart: sealed %v count %d (%v)", st.Sealed, st.Count, err)
	}
	_ = s3.Close()
}

// A pack recorded open whose data and keys disagree is reported, not
// sealed; one recorded but never created is nothing to seal.
func TestStoreOpenChecksTheFoundPack(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	if _, err := c.OpenStore(0); !errors.Is(err, ErrArg) {
		t.Fatalf("host 0: %v", err)
	}
	record := func(seq uint64) {
		t.Helper()
		if err := c.io.SetOmap(hostObject(6), map[string][]byte{openKey: {0, 0, 0, 0, 0, 0, 0, byte(seq)}}); err != nil {
			t.Fatal(err)
		}
	}
	record(3) // never created
	s, err := c.OpenStore(6)
	if err != nil {
		t.Fatalf("open pack never created: %v", err)
	}
	if _, err := s.Put(keysFrom(0, 1), randBlocks(1)); err != nil {
		t.Fatal(err)
	}
	// Bytes without their key (not something Append writes).
	bad := PackID{Host: 6, Seq: 9}
	if err := c.io.Write(bad.Object(), randBlocks(2), 0); err != nil {
		t.Fatal(err)
	}
	record(9)
	if _, err := c.OpenStore(6); !errors.Is(err, ErrBadValue) {
		t.Fatalf("open pack with data but no keys: %v, want ErrBadValue", err)
	}
	if st, err := c.ReadPackState(bad); err != nil || st.Sealed {
		t.Fatalf("the bad pack: sealed %v (%v)", st.Sealed, err)
	}
}

// Closing a connection twice (a test that kills a host by closing its
// connection, then the cleanup closing it again) must not free librados'
// handles twice.
func TestConnCloseTwice(t *testing.T) {
	ns := testNamespace(t)
	for range 20 {
		c := testConn(t, ns, 20*time.Second)
		if err := c.io.WriteFull("x", []byte("x")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		c.Close()
	}
	c := testConn(t, ns, 20*time.Second)
	for i := range 200 {
		if err := c.io.SetOmap("y", map[string][]byte{"k": {byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
}
