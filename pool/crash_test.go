//go:build rados

package pool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockhash/blockstore"
	"blockhash/rados"
)

// The child side of TestHostKilledDuringCommits: a host that writes and
// flushes until it is killed.
func TestMain(m *testing.M) {
	if os.Getenv("BLOCKHASH_POOL_CHILD") != "" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

const (
	crashDevice = "crash"
	crashShards = 3
	crashSpan   = 128 // blocks written in each shard
)

// crashBlocks are the blocks the victim writes: the first crashSpan of
// each of crashShards shards, so that most flushes are several shard
// writes and a kill can land some of them.
func crashBlocks() []uint64 {
	var out []uint64
	for s := range uint64(crashShards) {
		for i := range uint64(crashSpan) {
			out = append(out, s*ShardBlocks+i)
		}
	}
	return out
}

// crashChild is host "victim": it takes the device and writes batches of
// numbered writes, each batch flushed. Before each write it prints "W
// seq first n zero"; after each successful Flush, "F seq": every write up
// to seq is durable. Before each Flush it prints "B seq".
func crashChild() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := rados.Config{ConfFile: os.Getenv("BLOCKHASH_CEPH_CONF"), Pool: os.Getenv("BLOCKHASH_CEPH_POOL"),
		Namespace: os.Getenv("BLOCKHASH_POOL_CHILD"), Timeout: 20 * time.Second, WatchTimeout: 3 * time.Second}
	if cfg.Pool == "" {
		cfg.Pool = "bh"
	}
	p, err := Open(Options{Config: cfg, Host: "victim", HandoverTimeout: 2 * time.Second, MergeEvery: 100 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	d, err := p.Open(crashDevice)
	if err != nil {
		return fail(err)
	}
	if _, err := d.Take(); err != nil {
		return fail(err)
	}
	seq, _ := strconv.ParseUint(os.Getenv("BLOCKHASH_POOL_FIRST"), 10, 64)
	r := rand.New(rand.NewPCG(seq, 11))
	blocks := crashBlocks()
	out := bufio.NewWriter(os.Stdout)
	for {
		for range 1 + r.IntN(12) {
			seq++
			i := r.IntN(len(blocks))
			n := 1 + r.IntN(4)
			if i+n > len(blocks) || blocks[i+n-1] != blocks[i]+uint64(n-1) {
				n = 1
			}
			first := blocks[i]
			zero := r.IntN(12) == 0
			fmt.Fprintf(out, "W %d %d %d %v\n", seq, first, n, zero)
			out.Flush()
			if zero {
				err = d.WriteZeroes(int64(first)*BlockSize, int64(n)*BlockSize)
			} else {
				b := make([]byte, 0, n*BlockSize)
				for k := range uint64(n) {
					b = append(b, seqBlock(seq, first+k)...)
				}
				_, err = d.WriteAt(b, int64(first)*BlockSize)
			}
			if err != nil {
				return fail(err)
			}
		}
		fmt.Fprintf(out, "B %d\n", seq) // a flush begins
		out.Flush()
		if err := d.Flush(); err != nil {
			return fail(err)
		}
		fmt.Fprintf(out, "F %d\n", seq)
		out.Flush()
	}
}

// crashLog follows the child's lines: its writes, and which a Flush
// acknowledged.
type crashLog struct {
	*blockLog
	pending []crashWrite // written, not acknowledged yet
	flushed int          // F lines seen
	last    uint64       // the last seq written
}

type crashWrite struct {
	seq    uint64
	blocks []uint64
}

func (c *crashLog) line(s string) {
	var seq, first, n uint64
	var zero bool
	if _, err := fmt.Sscanf(s, "W %d %d %d %v", &seq, &first, &n, &zero); err == nil {
		bs := make([]uint64, n)
		for k := range bs {
			bs[k] = first + uint64(k)
		}
		c.issue(seq, bs, zero)
		c.pending = append(c.pending, crashWrite{seq, bs})
		c.last = max(c.last, seq)
		return
	}
	if _, err := fmt.Sscanf(s, "F %d", &seq); err == nil {
		acked := map[uint64]uint64{}
		k := 0
		for _, w := range c.pending {
			if w.seq > seq {
				c.pending[k] = w
				k++
				continue
			}
			for _, b := range w.blocks {
				acked[b] = max(acked[b], w.seq)
			}
		}
		c.pending = c.pending[:k]
		c.ack(acked)
		c.flushed++
	}
	// a line cut by the kill is no write: it was printed before sending
}

// settle makes what the rescuer read the floor of each block: it is
// durable now (the pool's copy), so no later round may read older.
func (c *crashLog) settle(b uint64, p []byte) {
	seq, _, zero, _ := parseSeqBlock(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if zero {
		// the earliest zero write at or after the floor (any of them
		// reads the same)
		for _, w := range c.writes[b] {
			if w.zero && w.seq >= c.acked[b] {
				seq = w.seq
				break
			}
		}
		if seq == 0 {
			return
		}
	}
	c.acked[b] = max(c.acked[b], seq)
}

// TestHostKilledDuringCommits SIGKILLs a host (the test binary re-run as
// a child) at random moments while it writes and flushes; another host
// then takes the device (fencing the dead holder once its watch
// expired), and every write the child saw flushed reads back, no block
// older than its last flushed write. The next round's child takes the
// device back by hand-over and writes on.
func TestHostKilledDuringCommits(t *testing.T) {
	cfg := testStore(t)
	rescuer := testHost(t, cfg, "rescuer")
	if err := rescuer.Create(crashDevice, crashShards*ShardBlocks*BlockSize); err != nil {
		t.Fatal(err)
	}
	d, err := rescuer.Open(crashDevice)
	if err != nil {
		t.Fatal(err)
	}
	rounds := 6
	if s := os.Getenv("BLOCKHASH_POOL_CRASH_ROUNDS"); s != "" {
		if rounds, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	} else if testing.Short() {
		rounds = 2
	}
	log := &crashLog{blockLog: newBlockLog()}
	blocks := crashBlocks()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	var takeovers []time.Duration
	beyond := 0
	buf := make([]byte, BlockSize)
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BLOCKHASH_POOL_CHILD="+cfg.Namespace, "BLOCKHASH_CEPH_POOL="+cfg.Pool,
			fmt.Sprintf("BLOCKHASH_POOL_FIRST=%d", log.last+1))
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it after a random number of flushes: in every other round
		// a random moment into the next flush (its shard writes in
		// flight), else a random moment into the next batch.
		target := log.flushed + 1 + r.IntN(60)
		sc := bufio.NewScanner(pipe)
		for log.flushed < target && sc.Scan() {
			log.line(sc.Text())
		}
		if round%2 == 0 {
			for sc.Scan() {
				log.line(sc.Text())
				if strings.HasPrefix(sc.Text(), "B ") {
					break
				}
			}
			time.Sleep(time.Duration(r.IntN(1500)) * time.Microsecond)
		} else {
			time.Sleep(time.Duration(r.IntN(10000)) * time.Microsecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() {
			log.line(sc.Text())
		}
		_ = cmd.Wait()
		if stderr.Len() > 0 {
			t.Fatalf("round %d: the victim failed before it was killed: %s", round, stderr.String())
		}
		if log.flushed < target {
			t.Fatalf("round %d: the victim stopped after %d flushes", round, log.flushed)
		}
		if d.Held() {
			t.Fatalf("round %d: the rescuer still holds the device the victim took", round)
		}
		start := time.Now()
		how, err := d.Take()
		if err != nil {
			t.Fatalf("round %d: takeover: %v", round, err)
		}
		takeovers = append(takeovers, time.Since(start))
		if how != rados.TookFence {
			t.Fatalf("round %d: took the dead victim's device by %q, want a fence", round, how)
		}
		for _, b := range blocks {
			if _, err := d.ReadAt(buf, int64(b)*BlockSize); err != nil {
				t.Fatalf("round %d: block %d: %v", round, b, err)
			}
			if err := log.judge(b, buf, log.acked[b]); err != nil {
				t.Fatalf("round %d (last write %d): %v", round, log.last, err)
			}
			if seq, _, zero, _ := parseSeqBlock(buf); !zero && seq > log.acked[b] {
				beyond++ // a write not acknowledged yet that landed
			}
			log.settle(b, buf)
		}
		log.pending = nil
	}
	rep, err := rescuer.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("check: %v", rep.Problems)
	}
	t.Logf("%d kills: %d writes, %d flushes acknowledged, all read back after each takeover (%d blocks held writes not acknowledged yet: landed before the kill); takeover (watch expiry, fence, map load) %v; check: %d mapped, %d stored, %d packs (%d open)",
		rounds, log.last, log.flushed, beyond, takeovers, rep.MappedBlocks, rep.StoredBlocks, rep.Packs, rep.OpenPacks)
}

// TestFencedHostWritesRefused: a host whose device is taken from it by
// a fence (the host blocklisted by FenceHost first, or found with no
// watch, as a cut-off host is) cannot change the device any more: its
// writes or its flushes fail, and the device reads as the new holder
// found it. Its Close returns.
func TestFencedHostWritesRefused(t *testing.T) {
	for _, how := range []string{"FenceHost", "watch expired"} {
		t.Run(how, func(t *testing.T) {
			cfg := testStore(t)
			old, err := Open(Options{Config: cfg, Host: "old", HandoverTimeout: 2 * time.Second, MergeEvery: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			defer func() {
				go func() { closed <- old.Close() }()
				select {
				case <-closed:
				case <-time.After(60 * time.Second):
					t.Error("the fenced host's Close did not return in 60 s")
				}
			}()
			nw := testHost(t, cfg, "new")
			if err := old.Create("dev", 1<<20); err != nil {
				t.Fatal(err)
			}
			d1, err := old.Open("dev")
			if err != nil {
				t.Fatal(err)
			}
			want := image(100, 16)
			if _, err := d1.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			if err := d1.Flush(); err != nil {
				t.Fatal(err)
			}
			d3, err := nw.Open("dev")
			if err != nil {
				t.Fatal(err)
			}
			if how == "FenceHost" {
				if err := nw.FenceHost("old"); err != nil {
					t.Fatal(err)
				}
			} else if err := d1.watch.Stop(); err != nil { // cut off: its watch is gone
				t.Fatal(err)
			}
			start := time.Now()
			took, err := d3.Take()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("taken by %q in %v", took, time.Since(start))
			if took != rados.TookFence {
				t.Fatalf("taken by %q, want a fence", took)
			}
			// the old holder still thinks it holds the device: a new
			// content (a pack write) and a duplicate of one it holds (a
			// map change only) must both fail, at the write or the flush
			for i, p := range [][]byte{randBytes(BlockSize), want[3*BlockSize : 4*BlockSize]} {
				_, werr := d1.WriteAt(p, int64(8+i)*BlockSize)
				ferr := d1.Flush()
				if werr == nil && ferr == nil {
					t.Fatalf("write %d of the fenced host was acknowledged", i)
				}
				t.Logf("fenced write %d: write %v; flush %v", i, werr, ferr)
				if werr == nil && !errors.Is(ferr, ErrLost) && !errors.Is(ferr, rados.ErrFenced) {
					t.Errorf("flush of the fenced host: %v, want ErrLost or ErrFenced", ferr)
				}
			}
			if got := readAll(t, d3); !bytes.Equal(got[:len(want)], want) || !blockstore.IsZero(got[len(want):]) {
				t.Fatal("the device changed after its holder was fenced")
			}
			rep, err := nw.Check()
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) > 0 {
				t.Fatalf("check: %v", rep.Problems)
			}
		})
	}
}
