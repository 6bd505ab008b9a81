package engine

import (
	"bytes"
	"errors"
	"testing"

	"blockhash/index"
)

// copyVolume receives every block of src into st the way a replica
// receiver does: link what the store holds, write the rest.
func copyVolume(t *testing.T, src *Device, st *Staging) (linked, written int) {
	t.Helper()
	n := uint64(src.Size() / BlockSize)
	keys := make([]index.Key, n)
	if err := src.Keys(0, keys); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, BlockSize)
	for lba, k := range keys {
		if k.IsZero() {
			if err := st.Zero(uint64(lba), 1); err != nil {
				t.Fatal(err)
			}
			continue
		}
		ok, err := st.Link(uint64(lba), k)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			linked++
			continue
		}
		if _, err := src.ReadAt(buf, int64(lba)*BlockSize); err != nil {
			t.Fatal(err)
		}
		if err := st.Write([]uint64{uint64(lba)}, buf, keys[lba:lba+1]); err != nil {
			t.Fatal(err)
		}
		written++
	}
	return linked, written
}

func TestReceiveFullIncrementalAndResume(t *testing.T) {
	_, a := newStore(t, Options{})
	bdir, b := newStore(t, Options{})
	const blocks = 3 * mapPerPage
	src, err := a.CreateDevice("vm", blocks*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, blocks*BlockSize)
	for lba := range int64(blocks) {
		if lba%7 != 3 { // some holes
			copy(img[lba*BlockSize:], block(uint64(lba+1)))
		}
	}
	writeBlocks(t, src, 0, split(img)...)
	if err := a.Snapshot("vm", "s1"); err != nil {
		t.Fatal(err)
	}
	s1, _ := a.Device("vm@s1")
	// B already holds a third of the blocks under another name.
	sib, _ := b.CreateDevice("sibling", blocks*BlockSize)
	writeBlocks(t, sib, 0, split(img[:blocks/3*BlockSize])...)

	spec := ReceiveSpec{Device: "vm", Size: s1.Size(), Snap: "s1", GUID: s1.GUID()}
	st, err := b.BeginReceive(spec)
	if err != nil {
		t.Fatal(err)
	}
	if st.Resumed {
		t.Fatal("a first receive resumed")
	}
	// Until Finish the device does not exist.
	if _, err := b.Device("vm"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("device before finish: %v", err)
	}
	for _, n := range b.Devices() {
		if hidden(n) {
			t.Fatalf("staging volume listed: %s", n)
		}
	}
	// Half the device, then a crash (close without finishing).
	half := uint64(blocks / 2)
	keys := make([]index.Key, half)
	if err := s1.Keys(0, keys); err != nil {
		t.Fatal(err)
	}
	for lba := range half {
		if keys[lba].IsZero() {
			continue
		}
		if ok, _ := st.Link(lba, keys[lba]); !ok {
			if err := st.Write([]uint64{lba}, img[lba*BlockSize:(lba+1)*BlockSize], keys[lba:lba+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	b = reopen(t, bdir, b, Options{})
	st, err = b.BeginReceive(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Resumed {
		t.Fatal("the rerun did not resume")
	}
	if r := b.Receiving(); len(r) != 1 || r[0].Device != "vm" || r[0].DataBlocks == 0 {
		t.Fatalf("receiving %+v", r)
	}
	linked, written := copyVolume(t, s1, st)
	secondHalf := 0
	for lba := half; lba < blocks; lba++ {
		if lba%7 != 3 {
			secondHalf++
		}
	}
	if written > secondHalf || linked == 0 {
		t.Fatalf("the resumed receive wrote %d blocks (linked %d): the first half travelled again", written, linked)
	}
	// A block that does not match its key is refused, nothing written.
	k := []index.Key{keys[1]}
	if err := st.Write([]uint64{0}, block(999), k); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("mismatched block: %v, want ErrCorrupt", err)
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	d, err := b.Device("vm")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, d, 0, int64(len(img))); !bytes.Equal(got, img) {
		t.Fatal("replica differs from its source")
	}
	snaps, _ := b.Snapshots("vm")
	if len(snaps) != 1 || snaps[0].Name != "s1" || snaps[0].GUID != s1.GUID() {
		t.Fatalf("replica snapshots %+v", snaps)
	}
	fsckOK(t, b)
	if r := b.Receiving(); len(r) != 0 {
		t.Fatalf("receiving after finish %+v", r)
	}
	// Received again: refused as done.
	if _, err := b.BeginReceive(spec); !errors.Is(err, ErrExists) {
		t.Fatalf("second receive of s1: %v", err)
	}

	// Incremental: change a few blocks, snapshot s2, send the diff.
	writeBlocks(t, src, 5, block(5000), block(5001))
	if err := src.WriteZeroes(20*BlockSize, BlockSize); err != nil {
		t.Fatal(err)
	}
	if err := a.Snapshot("vm", "s2"); err != nil {
		t.Fatal(err)
	}
	s2, _ := a.Device("vm@s2")
	ranges, err := a.Diff("vm@s1", "vm@s2")
	if err != nil {
		t.Fatal(err)
	}
	// The replica was written locally: refused unless forced.
	d2, _ := b.Device("vm")
	writeBlocks(t, d2, 100, block(7777))
	ispec := ReceiveSpec{Device: "vm", Size: s2.Size(), Snap: "s2", GUID: s2.GUID(), BaseGUID: s1.GUID()}
	if _, err := b.BeginReceive(ispec); !errors.Is(err, ErrBusy) {
		t.Fatalf("incremental over a changed replica: %v, want ErrBusy", err)
	}
	ispec.Force = true
	st, err = b.BeginReceive(ispec)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, BlockSize)
	for _, r := range ranges {
		for lba := r.Start; lba < r.Start+r.Blocks; lba++ {
			var k [1]index.Key
			if err := s2.Keys(lba, k[:]); err != nil {
				t.Fatal(err)
			}
			if k[0].IsZero() {
				if err := st.Zero(lba, 1); err != nil {
					t.Fatal(err)
				}
				continue
			}
			mustReadInto(t, s2, buf, lba)
			if err := st.Write([]uint64{lba}, buf, k[:]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	want := mustRead(t, s2, 0, s2.Size())
	d, _ = b.Device("vm")
	if got := mustRead(t, d, 0, d.Size()); !bytes.Equal(got, want) {
		t.Fatal("incremental replica differs from its source")
	}
	old, _ := b.Device("vm@s1")
	if got := mustRead(t, old, 0, old.Size()); !bytes.Equal(got, img) {
		t.Fatal("the base snapshot changed")
	}
	if err := b.DeleteDevice("sibling"); err != nil {
		t.Fatal(err)
	}
	waitDeletes(b)
	fsckOK(t, b)
	b = reopen(t, bdir, b, Options{})
	d, _ = b.Device("vm")
	if got := mustRead(t, d, 0, d.Size()); !bytes.Equal(got, want) {
		t.Fatal("replica differs after reopen")
	}
	fsckOK(t, b)
}

func mustReadInto(t *testing.T, d *Device, buf []byte, lba uint64) {
	t.Helper()
	if _, err := d.ReadAt(buf, int64(lba)*BlockSize); err != nil {
		t.Fatal(err)
	}
}

func TestReceiveRefusals(t *testing.T) {
	_, e := newStore(t, Options{})
	if _, err := e.CreateDevice("vm", 1<<20); err != nil {
		t.Fatal(err)
	}
	g := newGUID()
	for _, c := range []struct {
		name string
		spec ReceiveSpec
		want error
	}{
		{"bad name", ReceiveSpec{Device: ".recv-x", Size: 1 << 20}, ErrInvalid},
		{"bad size", ReceiveSpec{Device: "x", Size: 1000}, ErrInvalid},
		{"exists", ReceiveSpec{Device: "vm", Size: 1 << 20, Snap: "a", GUID: g}, ErrExists},
		{"no base", ReceiveSpec{Device: "vm", Size: 1 << 20, Snap: "a", GUID: g, BaseGUID: newGUID()}, ErrNotFound},
		{"no device", ReceiveSpec{Device: "nope", Size: 1 << 20, Snap: "a", GUID: g, BaseGUID: newGUID()}, ErrNotFound},
	} {
		if _, err := e.BeginReceive(c.spec); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if len(e.Devices()) != 1 {
		t.Fatalf("refused receives left volumes: %v", e.Devices())
	}
}

// TestStatsCountStagingBlocks: the blocks a receive's staging volume holds
// count in the store's figures (regression: they did not, and a receive
// under way made duplicate blocks read 0).
func TestStatsCountStagingBlocks(t *testing.T) {
	_, e := newStore(t, Options{})
	d, err := e.CreateDevice("a", 10*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]byte
	keys := make([]index.Key, 10)
	for i := range 10 {
		blocks = append(blocks, block(uint64(i)+1))
	}
	writeBlocks(t, d, 0, blocks...)
	if err := d.Keys(0, keys); err != nil {
		t.Fatal(err)
	}
	st, err := e.BeginReceive(ReceiveSpec{Device: "b", Size: 10 * BlockSize, GUID: newGUID()})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if ok, err := st.Link(uint64(i), k); !ok || err != nil {
			t.Fatalf("link %d: %v %v", i, ok, err)
		}
	}
	s, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.DataBlocks != 20 || s.UniqueBlocks != 10 || s.DuplicateBlocks != 10 || len(s.Devices) != 1 {
		t.Fatalf("data %d unique %d duplicate %d devices %d, want 20 10 10 1", s.DataBlocks, s.UniqueBlocks, s.DuplicateBlocks, len(s.Devices))
	}
}

// TestAbandonLeavesNothing: a rejected stream's staging volume is gone,
// its space released, when Abandon returns (regression: it was released
// in the background, and a store closed meanwhile listed it as being
// deleted after the refusal).
func TestAbandonLeavesNothing(t *testing.T) {
	_, e := newStore(t, Options{})
	st, err := e.BeginReceive(ReceiveSpec{Device: "vm", Size: 3 * tableBlocks * BlockSize, GUID: newGUID()})
	if err != nil {
		t.Fatal(err)
	}
	for tb := range uint64(3) {
		b := block(tb + 1)
		if err := st.Write([]uint64{tb * tableBlocks}, b, e.hashBlocks(e.doms.def, b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Abandon(); err != nil {
		t.Fatal(err)
	}
	if d := e.Deleting(); len(d) != 0 {
		t.Fatalf("still being deleted after Abandon: %+v", d)
	}
	if r := e.Receiving(); len(r) != 0 {
		t.Fatalf("still receiving after Abandon: %+v", r)
	}
	fsckOK(t, e)
}

// TestLinkRunsReadTheIndexOnce: linking a run of blocks the store holds
// side by side reads LevelDB for the run's first block only; the slot
// records after it prime the index's cache, as a write of the same run
// would (a receive into a store holding the image linked with one LevelDB
// read a block). Every block still links, and reads back intact.
func TestLinkRunsReadTheIndexOnce(t *testing.T) {
	dir, e := newStore(t, Options{})
	const blocks = 4 * prefetchWindow
	img := make([]byte, blocks*BlockSize)
	for lba := range int64(blocks) {
		copy(img[lba*BlockSize:], block(uint64(lba+1)))
	}
	src, err := e.CreateDevice("vm", blocks*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, src, 0, split(img)...)
	// Reopened, the index's overlay and cache are empty: a lookup goes
	// to LevelDB unless the cache was primed.
	e = reopen(t, dir, e, Options{})
	src, _ = e.Device("vm")
	keys := make([]index.Key, blocks)
	if err := src.Keys(0, keys); err != nil {
		t.Fatal(err)
	}
	st, err := e.BeginReceive(ReceiveSpec{Device: "copy", Size: blocks * BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	before := e.IndexStats().DiskReads
	for lba, k := range keys {
		ok, err := st.Link(uint64(lba), k)
		if err != nil || !ok {
			t.Fatalf("link %d: %v %v", lba, ok, err)
		}
	}
	reads := e.IndexStats().DiskReads - before
	if limit := uint64(blocks / prefetchWindow * 2); reads > limit {
		t.Errorf("linking %d stored blocks read LevelDB %d times, want at most %d", blocks, reads, limit)
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	cp, err := e.Device("copy")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, cp, 0, blocks*BlockSize); !bytes.Equal(got, img) {
		t.Fatal("the linked copy reads back different")
	}
	if rep, err := e.Fsck(false); err != nil || !rep.OK() {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
}

// TestLinkRange links ranges that mix blocks the store holds, blocks it
// lacks, zero keys, a damaged block and blocks linked already (a resumed
// receive), and ranges over an incremental staging volume whose blocks
// hold other data: each answer is Link's, every reference taken or
// dropped is counted (fsck clean, before and after a reopen), and the
// replica reads back.
func TestLinkRange(t *testing.T) {
	dir, e := newStore(t, Options{})
	const blocks = 40
	held := func(i int) []byte { return block(uint64(1000 + i)) }
	sib, err := e.CreateDevice("sibling", blocks*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blocks {
		writeBlocks(t, sib, int64(i), held(i))
	}
	damagedKey := e.sb.Hash.blockKey(held(7))
	hit, err := e.ix.Lookup(damagedKey)
	if err != nil || !hit.Found {
		t.Fatal("held block 7 is not indexed", err)
	}
	e.markDamaged(hit.Slot, damagedKey)
	lacking := e.sb.Hash.blockKey(block(99999))

	// The image received: block i holds held(i), except the holes, a
	// block the store lacks, the damaged block and a duplicate.
	img := make([][]byte, blocks)
	keys := make([]index.Key, blocks)
	for i := range blocks {
		img[i] = held(i)
		switch {
		case i%9 == 4:
			img[i] = make([]byte, BlockSize)
		case i == 11:
			img[i] = block(99999)
		case i == 12:
			img[i] = held(3)
		}
		if i%9 != 4 {
			keys[i] = e.sb.Hash.blockKey(img[i])
		}
	}
	if keys[11] != lacking {
		t.Fatal("test setup: block 11's key")
	}
	st, err := e.BeginReceive(ReceiveSpec{Device: "vm", Size: blocks * BlockSize, Snap: "s1", GUID: newGUID()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.LinkRange(0, keys[:3], make([]bool, 2)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("answers of the wrong length: %v, want ErrInvalid", err)
	}
	if err := st.LinkRange(blocks-2, keys[:3], make([]bool, 3)); !errors.Is(err, ErrRange) {
		t.Fatalf("a range past the end: %v, want ErrRange", err)
	}
	want := func(i int) bool { return i%9 != 4 && i != 11 && i != 7 }
	linked := make([]bool, blocks)
	for _, r := range [][2]int{{0, 10}, {10, 13}, {13, blocks}, {0, blocks}} { // the last: all again
		if err := st.LinkRange(uint64(r[0]), keys[r[0]:r[1]], linked[r[0]:r[1]]); err != nil {
			t.Fatal(err)
		}
		for i := r[0]; i < r[1]; i++ {
			if linked[i] != want(i) {
				t.Fatalf("range %v: block %d linked %v, want %v", r, i, linked[i], want(i))
			}
		}
	}
	// Link agrees, block by block.
	for i := range blocks {
		ok, err := st.Link(uint64(i), keys[i])
		if err != nil || ok != want(i) {
			t.Fatalf("Link of block %d: %v %v, want %v", i, ok, err, want(i))
		}
	}
	for _, i := range []int{7, 11} {
		if err := st.Write([]uint64{uint64(i)}, img[i], keys[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	wantImg := bytes.Join(img, nil)
	d, _ := e.Device("vm")
	if got, want := d.m.stats().DataBlocks, uint64(blocks-4); got != want { // 4 holes
		t.Fatalf("the replica counts %d data blocks, want %d", got, want)
	}
	if got := mustRead(t, d, 0, blocks*BlockSize); !bytes.Equal(got, wantImg) {
		t.Fatal("the replica reads back different")
	}
	s1, _ := e.Device("vm@s1")

	// Incremental: the staging volume is a clone of s1; linking other
	// stored blocks over its blocks releases theirs.
	keys2 := make([]index.Key, blocks)
	img2 := make([][]byte, blocks)
	for i := range blocks {
		img2[i] = held((i + 1) % blocks) // every block moves
		keys2[i] = e.sb.Hash.blockKey(img2[i])
	}
	st, err = e.BeginReceive(ReceiveSpec{Device: "vm", Size: blocks * BlockSize, Snap: "s2", GUID: newGUID(), BaseGUID: s1.GUID()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.LinkRange(0, keys2, linked); err != nil {
		t.Fatal(err)
	}
	for i := range blocks {
		if !linked[i] { // (block 7's damage was healed by its write above)
			t.Fatalf("incremental: block %d linked %v", i, linked[i])
		}
		if !linked[i] {
			if err := st.Write([]uint64{uint64(i)}, img2[i], keys2[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	d, _ = e.Device("vm")
	if got := mustRead(t, d, 0, blocks*BlockSize); !bytes.Equal(got, bytes.Join(img2, nil)) {
		t.Fatal("the incremental replica reads back different")
	}
	if got := mustRead(t, s1, 0, blocks*BlockSize); !bytes.Equal(got, wantImg) {
		t.Fatal("the base snapshot changed")
	}
	waitDeletes(e)
	fsckOK(t, e)
	e = reopen(t, dir, e, Options{})
	fsckOK(t, e)
}
