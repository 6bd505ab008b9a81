//go:build rados

package rados

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func keysFrom(first, n int) [][]byte {
	ks := make([][]byte, n)
	for i := range ks {
		ks[i] = testKey(first + i)
	}
	return ks
}

func locsOf(t *testing.T, host uint16, seq uint64, n int) []Loc {
	t.Helper()
	ls := make([]Loc, n)
	for i := range ls {
		l, err := MakeLoc(PackID{Host: host, Seq: seq + uint64(i/PackBlocks)}, i%PackBlocks)
		if err != nil {
			t.Fatal(err)
		}
		ls[i] = l
	}
	return ls
}

func TestIndexPutIfAbsent(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	x, err := c.NewIndex(16)
	if err != nil {
		t.Fatal(err)
	}
	keys := keysFrom(0, 1500) // more than one cmpomap batch in some shard? no: 16 shards, ~94 each
	mine := locsOf(t, 1, 1, len(keys))
	got, ins, err := x.PutIfAbsent(keys, mine)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if !ins[i] || got[i] != mine[i] {
			t.Fatalf("fresh key %d: inserted %v, got %v want %v", i, ins[i], got[i], mine[i])
		}
	}
	// The same keys again with other locations: nothing changes, each
	// caller learns the location that won. Mixed with new keys: those go in.
	keys2 := append(keysFrom(1000, 500), keysFrom(5000, 300)...)
	theirs := locsOf(t, 2, 1, len(keys2))
	got, ins, err = x.PutIfAbsent(keys2, theirs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys2 {
		old := i < 500
		switch {
		case old && (ins[i] || got[i] != mine[1000+i]):
			t.Fatalf("present key %d: inserted %v, got %v want %v", i, ins[i], got[i], mine[1000+i])
		case !old && (!ins[i] || got[i] != theirs[i]):
			t.Fatalf("new key %d: inserted %v, got %v want %v", i, ins[i], got[i], theirs[i])
		}
	}
	look, err := x.Lookup(append(keysFrom(0, 10), keysFrom(9000, 5)...))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range look {
		if want := Loc(0); i < 10 {
			want = mine[i]
			if l != want {
				t.Fatalf("lookup %d: %v want %v", i, l, want)
			}
		} else if l != 0 {
			t.Fatalf("lookup of an absent key: %v", l)
		}
	}
}

// A key repeated within one call is inserted once and the repeat gets the
// first one's location; a batch over cmpomap's 1,000-key limit is split.
func TestIndexRepeatsAndBigBatches(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	x, err := c.NewIndex(1)
	if err != nil {
		t.Fatal(err)
	}
	keys := append(keysFrom(0, 2500), testKey(7), testKey(2000))
	locs := locsOf(t, 1, 1, len(keys))
	got, ins, err := x.PutIfAbsent(keys, locs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2500 {
		if !ins[i] || got[i] != locs[i] {
			t.Fatalf("key %d: inserted %v got %v", i, ins[i], got[i])
		}
	}
	if ins[2500] || got[2500] != locs[7] || ins[2501] || got[2501] != locs[2000] {
		t.Fatalf("repeats: inserted %v %v, got %v %v", ins[2500], ins[2501], got[2500], got[2501])
	}
	look, err := x.Lookup(keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if look[i] != got[i] {
			t.Fatalf("lookup %d: %v want %v", i, look[i], got[i])
		}
	}
}

// Two hosts insert the same keys at the same time, each with its own
// locations: every key is inserted by exactly one of them, and both learn
// the same winner.
func TestIndexConcurrentHostsOneWinner(t *testing.T) {
	ns := testNamespace(t)
	hosts := []*Conn{testConn(t, ns, 20*time.Second), testConn(t, ns, 20*time.Second)}
	const n, parts = 4000, 8
	keys := keysFrom(0, n)
	type result struct {
		got []Loc
		ins []bool
	}
	res := make([][]result, len(hosts))
	var wg sync.WaitGroup
	for h, c := range hosts {
		x, err := c.NewIndex(4)
		if err != nil {
			t.Fatal(err)
		}
		res[h] = make([]result, parts)
		locs := locsOf(t, uint16(h+1), 1, n)
		for p := range parts { // each host: parts callers over the same keys, offset
			wg.Go(func() {
				lo := (p * n / parts)
				order := append(append([][]byte{}, keys[lo:]...), keys[:lo]...)
				ol := append(append([]Loc{}, locs[lo:]...), locs[:lo]...)
				got, ins, err := x.PutIfAbsent(order, ol)
				if err != nil {
					t.Error(err)
					return
				}
				// back to key order
				res[h][p] = result{append(append([]Loc{}, got[n-lo:]...), got[:n-lo]...), append(append([]bool{}, ins[n-lo:]...), ins[:n-lo]...)}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	x, _ := hosts[0].NewIndex(4)
	look, err := x.Lookup(keys)
	if err != nil {
		t.Fatal(err)
	}
	wins := [2]int{}
	for i := range keys {
		inserted := 0
		for h := range res {
			for p := range res[h] {
				r := res[h][p]
				if r.got[i] != look[i] {
					t.Fatalf("key %d: host %d caller %d got %v, index holds %v", i, h, p, r.got[i], look[i])
				}
				if r.ins[i] {
					inserted++
					wins[h]++
				}
			}
		}
		if inserted != 1 {
			t.Fatalf("key %d inserted %d times", i, inserted)
		}
	}
	t.Logf("wins: host 1 %d, host 2 %d", wins[0], wins[1])
}

func TestIndexRemoveIfUnchanged(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	x, err := c.NewIndex(8)
	if err != nil {
		t.Fatal(err)
	}
	keys := keysFrom(0, 100)
	locs := locsOf(t, 1, 1, 100)
	if _, _, err := x.PutIfAbsent(keys, locs); err != nil {
		t.Fatal(err)
	}
	// Remove the first half with their locations, the second half with
	// stale ones: only the first half goes.
	stale := locsOf(t, 9, 9, 50)
	if err := x.RemoveIf(keys, append(append([]Loc{}, locs[:50]...), stale...)); err != nil {
		t.Fatal(err)
	}
	look, err := x.Lookup(keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range look {
		if i < 50 && l != 0 || i >= 50 && l != locs[i] {
			t.Fatalf("key %d after RemoveIf: %v", i, l)
		}
	}
	// Removed keys can be inserted again.
	_, ins, err := x.PutIfAbsent(keys[:50], stale)
	if err != nil || !ins[0] || !ins[49] {
		t.Fatalf("reinsert: %v %v", ins[:1], err)
	}
	if err := x.RemoveIf(keysFrom(500, 3), locs[:3]); err != nil { // absent keys: nothing to do
		t.Fatal(err)
	}
}

func TestIndexRefusesBadInput(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	if _, err := c.NewIndex(12); !errors.Is(err, ErrArg) {
		t.Fatalf("12 shards: %v, want ErrArg", err)
	}
	x, _ := c.NewIndex(4)
	if _, _, err := x.PutIfAbsent([][]byte{testKey(1)[:8]}, []Loc{1 << 48}); !errors.Is(err, ErrArg) {
		t.Fatalf("short key: %v", err)
	}
	if _, _, err := x.PutIfAbsent([][]byte{testKey(1)}, []Loc{0}); !errors.Is(err, ErrArg) {
		t.Fatalf("location zero: %v", err)
	}
	if _, _, err := x.PutIfAbsent([][]byte{testKey(1)}, nil); !errors.Is(err, ErrArg) {
		t.Fatalf("count mismatch: %v", err)
	}
}

// A key given twice with two locations (two copies of one content, both
// garbage candidates) is removed if the index names either.
func TestIndexRemoveIfRepeatedKey(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	x, err := c.NewIndex(4)
	if err != nil {
		t.Fatal(err)
	}
	a, b := locsOf(t, 1, 1, 1)[0], locsOf(t, 2, 1, 1)[0]
	k := testKey(1)
	for _, order := range [][]Loc{{a, b}, {b, a}} {
		if _, _, err := x.PutIfAbsent([][]byte{k}, []Loc{a}); err != nil {
			t.Fatal(err)
		}
		if err := x.RemoveIf([][]byte{k, k}, order); err != nil {
			t.Fatal(err)
		}
		got, err := x.Lookup([][]byte{k})
		if err != nil || got[0] != 0 {
			t.Fatalf("RemoveIf(%v): the index still names %v (%v)", order, got[0], err)
		}
	}
}

// TestIndexListsPastOnePage: a shard of more entries than one omap
// listing page is listed whole (Check counts every entry). With binary
// omap keys the listing resumed after a key cut at its first NUL byte.
func TestIndexListsPastOnePage(t *testing.T) {
	c := testConn(t, testNamespace(t), 20*time.Second)
	x, err := c.NewIndex(1)
	if err != nil {
		t.Fatal(err)
	}
	keys := keysFrom(0, 3000)
	for i := range keys {
		keys[i][0] = 0 // every key starts with a NUL byte
	}
	if _, _, err := x.PutIfAbsent(keys, locsOf(t, 1, 1, len(keys))); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Check(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.IndexEntries != len(keys) {
		t.Fatalf("check listed %d index entries of %d", rep.IndexEntries, len(keys))
	}
}
