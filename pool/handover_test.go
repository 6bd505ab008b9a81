//go:build rados

package pool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"blockhash/blockstore"
)

// seqBlock is the content of write seq to block b: it names both (first
// 16 bytes), the rest is filled from them, so no two writes store the
// same content.
func seqBlock(seq, b uint64) []byte {
	p := make([]byte, BlockSize)
	binary.LittleEndian.PutUint64(p, seq)
	binary.LittleEndian.PutUint64(p[8:], b)
	r := rand.New(rand.NewPCG(seq, b))
	for i := 16; i < BlockSize; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
	return p
}

// parseSeqBlock reads a block written by seqBlock: its write and block;
// zero: a zero block.
func parseSeqBlock(p []byte) (seq, b uint64, zero bool, err error) {
	if blockstore.IsZero(p) {
		return 0, 0, true, nil
	}
	seq, b = binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:])
	if !bytes.Equal(p, seqBlock(seq, b)) {
		return 0, 0, false, fmt.Errorf("content names write %d block %d but is not its content", seq, b)
	}
	return seq, b, false, nil
}

// blockLog is the reference model of a device written by numbered
// writes: for each block, the writes to it in order.
type blockLog struct {
	mu     sync.Mutex
	writes map[uint64][]blockWrite // block -> its writes, in seq order
	done   map[uint64]uint64       // block -> the latest completed write's seq
	acked  map[uint64]uint64       // block -> the latest write a Flush acknowledged
}

type blockWrite struct {
	seq  uint64
	zero bool
}

func newBlockLog() *blockLog {
	return &blockLog{writes: map[uint64][]blockWrite{}, done: map[uint64]uint64{}, acked: map[uint64]uint64{}}
}

// issue records write seq to blocks (before it is sent).
func (l *blockLog) issue(seq uint64, blocks []uint64, zero bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range blocks {
		l.writes[b] = append(l.writes[b], blockWrite{seq, zero})
	}
}

// complete records that write seq returned.
func (l *blockLog) complete(seq uint64, blocks []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range blocks {
		l.done[b] = max(l.done[b], seq)
	}
}

// ack records that a Flush covered every write up to seq.
func (l *blockLog) ack(blocks map[uint64]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for b, s := range blocks {
		l.acked[b] = max(l.acked[b], s)
	}
}

// floors copies the latest completed writes (what any read started now
// must see, or something later).
func (l *blockLog) floors() map[uint64]uint64 { return l.copyOf(l.done) }

// ackedFloors copies the latest acknowledged writes (what the pool's copy
// must hold, or something later).
func (l *blockLog) ackedFloors() map[uint64]uint64 { return l.copyOf(l.acked) }

func (l *blockLog) copyOf(m map[uint64]uint64) map[uint64]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint64]uint64, len(m))
	for b, s := range m {
		out[b] = s
	}
	return out
}

// judge checks block b's content p read after its floor write: it must
// be the floor write or a later write to b (never an older one, never
// another block's).
func (l *blockLog) judge(b uint64, p []byte, floor uint64) error {
	seq, nb, zero, err := parseSeqBlock(p)
	if err != nil {
		return fmt.Errorf("block %d: %w", b, err)
	}
	if !zero && nb != b {
		return fmt.Errorf("block %d holds write %d of block %d", b, seq, nb)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if zero && floor == 0 {
		return nil // never written before the read (or zeroed)
	}
	for _, w := range l.writes[b] {
		if w.seq >= floor && w.zero == zero && (zero || w.seq == seq) {
			return nil
		}
	}
	if zero {
		return fmt.Errorf("block %d reads zeros; its writes from %d on are not zeroes: %v", b, floor, l.writes[b])
	}
	return fmt.Errorf("block %d holds write %d, older than write %d that completed before the read", b, seq, floor)
}

// latest is block b's expected content once every write completed.
func (l *blockLog) latest(b uint64) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	ws := l.writes[b]
	if len(ws) == 0 || ws[len(ws)-1].zero {
		return make([]byte, BlockSize)
	}
	return seqBlock(ws[len(ws)-1].seq, b)
}

// handoverBlocks are the blocks the writer writes: 192 in each of the
// first two shards.
func handoverBlocks() []uint64 {
	var out []uint64
	for _, s := range []uint64{0, 1} {
		for i := range uint64(192) {
			out = append(out, s*ShardBlocks+i)
		}
	}
	return out
}

// TestHandoverWhileWriting hands a device back and forth between two
// hosts while a writer writes numbered blocks to it and flushes after
// each batch: each hand-over is the other host's first write (the
// holder flushes and lets go), and the writer goes on through the new
// holder. Right after each hand-over, the new holder reads every block:
// none is older than the write that completed last before the read. At
// the end every block reads its latest write through both hosts (no
// write lost, none applied twice, none older resurrected), and the pool
// checks clean.
func TestHandoverWhileWriting(t *testing.T) {
	cfg := testStore(t)
	hosts := []*Pool{testHost(t, cfg, "a"), testHost(t, cfg, "b")}
	const name = "migrating"
	if err := hosts[0].Create(name, (ShardBlocks+256)*BlockSize); err != nil {
		t.Fatal(err)
	}
	devs := make([]*Device, 2)
	for i, p := range hosts {
		d, err := p.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		devs[i] = d
	}
	blocks := handoverBlocks()
	// the hand-over writes go to a block the writer never writes
	const markBlock = 1000

	log := newBlockLog()
	var seq atomic.Uint64
	var cur atomic.Int32 // the host the writer writes through
	var stop atomic.Bool
	var writes, flushes atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		for !stop.Load() {
			var d *Device
			batch := map[uint64]uint64{}
			for range 1 + r.IntN(8) {
				d = devs[cur.Load()]
				i := r.IntN(len(blocks) - 4)
				n := 1 + r.IntN(4)
				if blocks[i+n-1] != blocks[i]+uint64(n-1) {
					n = 1 // the two shards' ranges are not adjacent
				}
				bs := make([]uint64, n)
				for k := range bs {
					bs[k] = blocks[i] + uint64(k)
				}
				s := seq.Add(1)
				zero := r.IntN(10) == 0
				log.issue(s, bs, zero)
				var err error
				if zero {
					err = d.WriteZeroes(int64(bs[0])*BlockSize, int64(n)*BlockSize)
				} else {
					p := make([]byte, 0, n*BlockSize)
					for _, b := range bs {
						p = append(p, seqBlock(s, b)...)
					}
					_, err = d.WriteAt(p, int64(bs[0])*BlockSize)
				}
				if err != nil {
					t.Errorf("write %d through host %s: %v", s, d.p.HostName(), err)
					return
				}
				log.complete(s, bs)
				for _, b := range bs {
					batch[b] = s
				}
				writes.Add(1)
			}
			// the flush goes through the host that took the last write; a
			// hand-over since then flushed that write already
			if err := d.Flush(); err != nil {
				t.Errorf("flush through host %s: %v", d.p.HostName(), err)
				return
			}
			log.ack(batch)
			flushes.Add(1)
		}
	})
	stopWriter := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopWriter()

	handovers := 6
	if testing.Short() {
		handovers = 2
	}
	var pauses []time.Duration
	buf := make([]byte, BlockSize)
	for h := range handovers {
		time.Sleep(150 * time.Millisecond)
		if t.Failed() {
			break
		}
		to := 1 - cur.Load()
		d := devs[to]
		if d.Held() {
			t.Fatalf("hand-over %d: host %s holds the device already", h, d.p.HostName())
		}
		// The writer moves to the new host now (as a migrated VM's I/O
		// does): its next write waits for the hand-over too.
		cur.Store(to)
		s := seq.Add(1)
		log.issue(s, []uint64{markBlock}, false)
		start := time.Now()
		if _, err := d.WriteAt(seqBlock(s, markBlock), markBlock*BlockSize); err != nil {
			t.Fatalf("hand-over %d: the first write of host %s: %v", h, d.p.HostName(), err)
		}
		pauses = append(pauses, time.Since(start))
		log.complete(s, []uint64{markBlock})
		// the new holder sees every write completed before now, or a
		// later one
		floors := log.floors()
		for _, b := range append(blocks, markBlock) {
			if _, err := d.ReadAt(buf, int64(b)*BlockSize); err != nil {
				t.Fatalf("hand-over %d: read of block %d through host %s: %v", h, b, d.p.HostName(), err)
			}
			if err := log.judge(b, buf, floors[b]); err != nil {
				t.Fatalf("hand-over %d, host %s: %v", h, d.p.HostName(), err)
			}
		}
		// the old holder reads the pool's copy: every write a flush
		// acknowledged is there (or a later one)
		old := devs[1-to]
		acked := log.ackedFloors()
		for _, b := range blocks {
			if _, err := old.ReadAt(buf, int64(b)*BlockSize); err != nil {
				t.Fatalf("hand-over %d: read of block %d through host %s: %v", h, b, old.p.HostName(), err)
			}
			if err := log.judge(b, buf, acked[b]); err != nil {
				t.Fatalf("hand-over %d, the pool's copy through host %s: %v", h, old.p.HostName(), err)
			}
		}
	}
	time.Sleep(150 * time.Millisecond)
	stopWriter()
	if t.Failed() {
		return
	}
	holder := devs[cur.Load()]
	if err := holder.Flush(); err != nil {
		t.Fatal(err)
	}
	if !holder.Held() || devs[1-cur.Load()].Held() {
		t.Fatalf("at the end host a holds %v, host b %v", devs[0].Held(), devs[1].Held())
	}
	// Every block reads its latest write, through the holder (its map in
	// RAM) and through the other host (the pool's copy).
	for _, d := range devs {
		for _, b := range append(blocks, markBlock) {
			if _, err := d.ReadAt(buf, int64(b)*BlockSize); err != nil {
				t.Fatalf("host %s block %d: %v", d.p.HostName(), b, err)
			}
			if want := log.latest(b); !bytes.Equal(buf, want) {
				_, _, _, perr := parseSeqBlock(buf)
				t.Fatalf("host %s block %d: not its latest write (%v); %v", d.p.HostName(), b, perr, log.judge(b, buf, log.floors()[b]))
			}
		}
	}
	for _, p := range hosts {
		if _, err := p.Merge(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := hosts[0].Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("check: %v", rep.Problems)
	}
	var sum, most time.Duration
	for _, p := range pauses {
		sum += p
		most = max(most, p)
	}
	t.Logf("%d hand-overs with a writer: %d writes in %d flushed batches, all read back; hand-over pause (the new holder's first write) %v, mean %v, max %v; check: %d mapped, %d live, %d stored, %d garbage",
		len(pauses), writes.Load(), flushes.Load(), pauses, sum/time.Duration(len(pauses)), most, rep.MappedBlocks, rep.LiveBlocks, rep.StoredBlocks, rep.Garbage)
}

// TestIdleHolderHandsOver: a holder that is alive but idle for longer
// than the watch timeout hands the device over when asked; it is not
// taken for dead and fenced. (librados pings a watch once per objecter
// tick, 5 s by default: with the tests' 3 s watch timeout every idle
// holder's watch expired and the next Take fenced a live host.)
func TestIdleHolderHandsOver(t *testing.T) {
	cfg := testStore(t)
	a, b := testHost(t, cfg, "a"), testHost(t, cfg, "b")
	if err := a.Create("d", 1<<20); err != nil {
		t.Fatal(err)
	}
	da, err := a.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	want := image(7, 4)
	if _, err := da.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	idle := 2*cfg.WatchTimeout + time.Second
	time.Sleep(idle)
	how, err := db.Take()
	if err != nil {
		t.Fatal(err)
	}
	if how != "hand-over" {
		t.Fatalf("a holder idle for %v was taken by %q, want a hand-over", idle, how)
	}
	if da.Held() {
		t.Fatal("the old holder still holds the device")
	}
	// it let go cleanly: its unflushed write was flushed, and it can
	// take the device back
	if got := readAll(t, db); !bytes.Equal(got[:len(want)], want) {
		t.Fatal("the hand-over lost the holder's write")
	}
	if _, err := da.WriteAt(want[:BlockSize], 8*BlockSize); err != nil {
		t.Fatalf("the old holder cannot take the device back: %v", err)
	}
}

// TestTakeoverLoadsWholeShard: a device with more mapped blocks in a
// shard than the OSD returns per omap read (osd_max_omap_entries_per_request,
// 1,024 by default) reads back whole after a hand-over, and the whole
// map counts in a check. (Map entry keys were 4 bytes big endian, so
// every key of a shard began with a NUL byte; librados takes the key to
// read after as a C string, so each page restarted from the first key,
// and a takeover loaded only the first 1,000 entries of each shard: the
// rest read as zeros.)
func TestTakeoverLoadsWholeShard(t *testing.T) {
	cfg := testStore(t)
	a, b := testHost(t, cfg, "a"), testHost(t, cfg, "b")
	const n = 3000
	if err := a.Create("big", n*BlockSize); err != nil {
		t.Fatal(err)
	}
	da, err := a.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	want := image(0, n)
	if _, err := da.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := da.Flush(); err != nil {
		t.Fatal(err)
	}
	db, err := b.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Take(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, db); !bytes.Equal(got, want) {
		bad := 0
		for i := range n {
			if !bytes.Equal(got[i*BlockSize:(i+1)*BlockSize], want[i*BlockSize:(i+1)*BlockSize]) {
				bad++
			}
		}
		t.Fatalf("after the hand-over %d of %d blocks read other data", bad, n)
	}
	rep, err := b.Check()
	if err != nil {
		t.Fatal(err)
	}
	if rep.MappedBlocks != n || rep.LiveBlocks != n || len(rep.Problems) > 0 {
		t.Fatalf("check: %d mapped, %d live for %d blocks written; %v", rep.MappedBlocks, rep.LiveBlocks, n, rep.Problems)
	}
}
