package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func stampBlock(cid uint64) []byte {
	b := make([]byte, stampBlockSize)
	encodeStamp(b, cid)
	return b
}

func TestStampEncoding(t *testing.T) {
	scratch := make([]byte, stampBlockSize)
	for _, cid := range []uint64{1, stampPool, stampPool + 1, 1 << 40} {
		got, err := decodeStamp(stampBlock(cid), scratch)
		if err != nil || got != cid {
			t.Errorf("decode(encode(%d)) = %d, %v", cid, got, err)
		}
	}
	if !bytes.Equal(stampBlock(7), stampBlock(7)) || bytes.Equal(stampBlock(7), stampBlock(8)) {
		t.Fatal("a stamp block must be a function of its cid alone, different per cid")
	}
	if got, err := decodeStamp(make([]byte, stampBlockSize), scratch); err != nil || got != 0 {
		t.Errorf("zeros decode as %d, %v; want 0", got, err)
	}
	bad := map[string][]byte{}
	flip := stampBlock(99)
	flip[2000] ^= 1
	bad["flipped filler byte"] = flip
	torn := stampBlock(99)
	copy(torn[512:], stampBlock(100)[512:]) // new first sector, old rest
	bad["torn between two writes"] = torn
	zeroCid := stampBlock(5)
	copy(zeroCid[8:16], make([]byte, 8))
	bad["magic with cid 0"] = zeroCid
	half := make([]byte, stampBlockSize)
	copy(half, stampBlock(3)[:2048])
	bad["half written"] = half
	noise := make([]byte, stampBlockSize)
	rand.New(rand.NewSource(1)).Read(noise)
	bad["noise"] = noise
	for name, b := range bad {
		if cid, err := decodeStamp(b, scratch); !errors.Is(err, errGarbage) {
			t.Errorf("%s: decode = %d, %v; want errGarbage", name, cid, err)
		}
	}
}

func TestStampStateRoundTrip(t *testing.T) {
	s := newStampState(10)
	s.next = 500
	s.cids[3], s.cids[9] = 7, 499
	got, err := decodeStampState(s.encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.blocks != 10 || got.next != 500 || fmt.Sprint(got.cids) != fmt.Sprint(s.cids) {
		t.Fatalf("round trip: %+v, want %+v", got, s)
	}
	for name, text := range map[string]string{
		"empty":            "",
		"bad header":       "stamp-state v2\nblocks 10\nnext 65\n",
		"zero blocks":      "stamp-state v1\nblocks 0\nnext 65\n",
		"next in pool":     "stamp-state v1\nblocks 10\nnext 3\n",
		"lba out of range": "stamp-state v1\nblocks 10\nnext 65\nL 10 5\n",
		"cid not yet out":  "stamp-state v1\nblocks 10\nnext 65\nL 1 65\n",
		"junk line":        "stamp-state v1\nblocks 10\nnext 65\nX\n",
	} {
		if _, err := decodeStampState([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// memDev is a device image in memory (block -> content; absent = zeros).
type memDev struct{ img []byte }

func (m *memDev) ReadAt(p []byte, off int64) (int, error) { return copy(p, m.img[off:]), nil }

func newMemDev(blocks int64, content map[int64][]byte) *memDev {
	m := &memDev{img: make([]byte, blocks*stampBlockSize)}
	for lba, b := range content {
		copy(m.img[lba*stampBlockSize:], b)
	}
	return m
}

func TestCheckStamps(t *testing.T) {
	const blocks = 8
	garbage := stampBlock(101)
	garbage[100] ^= 0xff
	base := newStampState(blocks)
	base.next = 200
	base.cids[6] = 150
	tests := []struct {
		name    string
		base    bool // start from base (block 6 holds 150) instead of a fresh state
		log     string
		dev     map[int64][]byte
		want    string // "" = passes; else a substring of the first problem
		wantErr bool   // a bad log, not a mismatch
	}{
		{name: "fresh device, no log"},
		{name: "acknowledged write reads back", log: "W 1 100\nF\n", dev: map[int64][]byte{1: stampBlock(100)}},
		{name: "acknowledged write lost", log: "W 1 100\nF\n", want: "block 1: holds zeros; want flushed cid 100"},
		{name: "older generation after an acknowledged flush", log: "W 1 100\nF\nW 1 101\nF\n",
			dev: map[int64][]byte{1: stampBlock(100)}, want: "cid 100 (an older write"},
		{name: "unflushed write landed", log: "W 1 100\nF\nW 1 101\nW 1 102\n",
			dev: map[int64][]byte{1: stampBlock(101)}},
		{name: "unflushed write lost", log: "W 1 100\nF\nW 1 101\n", dev: map[int64][]byte{1: stampBlock(100)}},
		{name: "unflushed write of a never flushed block lost", log: "W 2 100\n"},
		{name: "garbage", log: "W 1 101\nF\n", dev: map[int64][]byte{1: garbage}, want: "block 1: holds not a stamp block"},
		{name: "garbage where an unflushed write went", log: "W 1 101\n", dev: map[int64][]byte{1: garbage}, want: "not a stamp block"},
		{name: "content never written to that block", log: "W 1 100\nW 2 101\nF\n",
			dev: map[int64][]byte{1: stampBlock(101), 2: stampBlock(101)}, want: "cid 101 (never written to this block)"},
		{name: "write landed on a block never written", dev: map[int64][]byte{3: stampBlock(5)}, want: "block 3: holds cid 5"},
		{name: "shared patterns (dedup)", log: "W 2 5\nW 3 5\nF\nW 4 5\n",
			dev: map[int64][]byte{2: stampBlock(5), 3: stampBlock(5), 4: stampBlock(5)}},
		{name: "torn last log line ignored", log: "W 1 100\nF\nW 1 10", dev: map[int64][]byte{1: stampBlock(100)}},
		{name: "torn flush line is no flush", log: "W 1 100\nF", dev: map[int64][]byte{}},
		{name: "base state holds", base: true, dev: map[int64][]byte{6: stampBlock(150)}},
		{name: "base state lost", base: true, want: "block 6: holds zeros; want flushed cid 150"},
		{name: "base overwritten and flushed, old base back", base: true, log: "W 6 200\nF\n",
			dev: map[int64][]byte{6: stampBlock(150)}, want: "cid 150 (an older write"},
		{name: "bad log line", log: "W 1\n", wantErr: true},
		{name: "block out of range", log: "W 8 100\n", wantErr: true},
		{name: "cid handed out before this log", base: true, log: "W 1 150\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newStampState(blocks)
			if tc.base {
				st = base
			}
			r, next, err := checkStamps(newMemDev(blocks, tc.dev), make([]byte, 3*stampBlockSize), st, []byte(tc.log))
			switch {
			case tc.wantErr:
				if err == nil || errors.Is(err, errStampMismatch) {
					t.Fatalf("err = %v, want a log error", err)
				}
			case tc.want == "":
				if err != nil {
					t.Fatalf("rejected: %v %v", err, r.problems)
				}
				for lba := int64(0); lba < blocks; lba++ {
					want := uint64(0)
					if b, ok := tc.dev[lba]; ok {
						want, _ = decodeStamp(b, make([]byte, stampBlockSize))
					}
					if next.cids[lba] != want {
						t.Errorf("next state block %d = %d, want %d (what was read)", lba, next.cids[lba], want)
					}
				}
			default:
				if !errors.Is(err, errStampMismatch) || len(r.problems) == 0 || !strings.Contains(r.problems[0], tc.want) {
					t.Fatalf("err = %v, problems %q; want a mismatch with %q", err, r.problems, tc.want)
				}
			}
		})
	}
}

// cacheDev is a disk with a volatile write cache: writes land in the
// cache, Sync moves the cache to the medium; powerCut keeps the medium
// plus a random subset of the cached writes. cutAfter > 0 makes every
// operation fail once that many writes were issued (the writer stops, as
// under a power cut). With lossySync, Sync forgets the last cached write:
// a device that acknowledges a flush it did not do.
type cacheDev struct {
	mu        sync.Mutex // guards everything: the writer writes from several goroutines
	medium    []byte
	cache     []cachedWrite
	issued    int
	cutAfter  int
	lossySync bool
}

type cachedWrite struct {
	off  int64
	data []byte
}

var errCut = errors.New("power cut")

func (d *cacheDev) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cutAfter > 0 && d.issued >= d.cutAfter {
		return 0, errCut
	}
	d.issued++
	d.cache = append(d.cache, cachedWrite{off, append([]byte(nil), p...)})
	return len(p), nil
}

func (d *cacheDev) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cutAfter > 0 && d.issued >= d.cutAfter {
		return errCut
	}
	if d.lossySync && len(d.cache) > 0 {
		d.cache = d.cache[:len(d.cache)-1]
	}
	for _, w := range d.cache {
		copy(d.medium[w.off:], w.data)
	}
	d.cache = nil
	return nil
}

func (d *cacheDev) powerCut(rng *rand.Rand) {
	for _, i := range rng.Perm(len(d.cache)) {
		if rng.Intn(2) == 0 {
			copy(d.medium[d.cache[i].off:], d.cache[i].data)
		}
	}
	d.cache, d.issued = nil, 0
}

func (d *cacheDev) ReadAt(p []byte, off int64) (int, error) { return copy(p, d.medium[off:]), nil }

// TestStampPowerCuts: cycles of writer, power cut at a random write, check,
// on a device that keeps its flush promises: every check passes and the
// state carries over. The same on a device whose flush loses a write: the
// check catches it.
func TestStampPowerCuts(t *testing.T) {
	const blocks = 64
	rng := rand.New(rand.NewSource(42))
	dev := &cacheDev{medium: make([]byte, blocks*stampBlockSize)}
	st := newStampState(blocks)
	landed := 0
	for cycle := 0; cycle < 200; cycle++ {
		dev.cutAfter = 1 + rng.Intn(100)
		var log bytes.Buffer
		w, err := newStampWriter(dev, &log, st, 4, 1+rng.Intn(8), 1+rng.Intn(3), 30, rng.Int63())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.run(0); !errors.Is(err, errCut) {
			t.Fatalf("cycle %d: writer ended with %v, want the cut", cycle, err)
		}
		dev.powerCut(rng)
		r, next, err := checkStamps(dev, make([]byte, 5*stampBlockSize), st, log.Bytes())
		if err != nil {
			t.Fatalf("cycle %d: %v: %+v\nlog:\n%s", cycle, err, r, log.String())
		}
		landed += r.landed
		st = next
	}
	if landed == 0 {
		t.Fatal("no unflushed write ever landed: the cut model is not exercised")
	}

	// A flush that forgets a write must not pass: one batch, one flush, cut.
	lossy := &cacheDev{medium: make([]byte, blocks*stampBlockSize), lossySync: true}
	st = newStampState(blocks)
	var log bytes.Buffer
	w, _ := newStampWriter(lossy, &log, st, 4, 16, 1, 0, 1)
	if err := w.run(16); err != nil {
		t.Fatal(err)
	}
	lossy.powerCut(rng)
	r, _, err := checkStamps(lossy, make([]byte, 5*stampBlockSize), newStampState(blocks), log.Bytes())
	if !errors.Is(err, errStampMismatch) || r.bad != 1 {
		t.Fatalf("lossy flush: err %v, %d bad; want exactly the forgotten block caught", err, r.bad)
	}
}

// TestStampCommand drives init, write and check on a plain file.
func TestStampCommand(t *testing.T) {
	dir := t.TempDir()
	dev, state, log := filepath.Join(dir, "dev"), filepath.Join(dir, "state"), filepath.Join(dir, "log")
	if err := os.WriteFile(dev, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	stamp := func(args ...string) error { out.Reset(); return runStamp(args, &out) }
	if err := stamp("init", "-state", state, "-size", "1M"); err != nil {
		t.Fatal(err)
	}
	if err := stamp("write", "-dev", dev, "-state", state, "-log", log, "-count", "500", "-sync-every", "3"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "500 writes") {
		t.Fatalf("write said %q", out.String())
	}
	if err := stamp("write", "-dev", dev, "-state", state, "-log", log, "-count", "1"); err == nil {
		t.Fatal("write appended to a log that was not checked")
	}
	if err := stamp("check", "-dev", dev, "-state", state, "-log", log); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if !strings.Contains(out.String(), "256 blocks read; log: 500 writes") {
		t.Fatalf("check said %q", out.String())
	}
	st, err := loadStampState(state)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := st.written(); n == 0 || st.next <= stampPool+1 {
		t.Fatalf("state after check: %d blocks written, next %d", n, st.next)
	}
	// Damage a written block: the next check fails and keeps the state.
	lba := int64(0)
	for st.cids[lba] == 0 {
		lba++
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad}, lba*stampBlockSize+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Remove(log)
	before, _ := os.ReadFile(state)
	if err := stamp("check", "-dev", dev, "-state", state, "-log", log); !errors.Is(err, errStampMismatch) {
		t.Fatalf("check of a damaged block: %v", err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("block %d: holds not a stamp block", lba)) {
		t.Fatalf("check said %q", out.String())
	}
	if after, _ := os.ReadFile(state); !bytes.Equal(before, after) {
		t.Fatal("a failed check rewrote the state")
	}
	for _, args := range [][]string{nil, {"bogus"}, {"write"}, {"init", "-state", state}, {"check", "-dev", dev}} {
		if err := stamp(args...); err == nil {
			t.Errorf("stamp %q succeeded", args)
		}
	}
}
