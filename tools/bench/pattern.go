package bench

import (
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"blockhash/blockstore"
)

// target is what the random 4 KiB patterns drive: a store's device
// (engine.Device) or a plain file (vfs.File).
type target struct {
	io.ReaderAt
	io.WriterAt
	flush  func() error // Device.Flush, or File.Sync (fdatasync)
	blocks uint64       // 4 KiB blocks the patterns address
}

// phase is what one timed pattern did.
type phase struct {
	ops      int64 // requests completed
	flushes  int64
	verified int64 // reads whose content was checked
	elapsed  time.Duration
}

func (p phase) iops() float64 { return float64(p.ops) / p.elapsed.Seconds() }

// content writes the block that a write of lba with generation gen (1, 2,
// ... per goroutine) stores; r is the writing goroutine's own source.
type content func(r *rand.Rand, b []byte, lba uint64, gen uint32)

var errNothingWritten = errors.New("bench: the write pattern wrote no block to read back (raise --device-time)")

// verifyEvery: each reader checks its first read and one in verifyEvery
// after it (a 4 KiB compare costs far less than the read, but the figure is
// the reads').
const verifyEvery = 8

// randWrite runs o.Inflight goroutines, each issuing synchronous 4 KiB
// writes at random block-aligned offsets of t for d, and a flush after
// every o.FlushEvery-th write over all goroutines (by the goroutine whose
// write it was, so that one request slot waits for it, as a guest's flush
// would), and a last flush at the end, counted in the time.
//
// Goroutine g writes only the blocks whose number is g modulo o.Inflight
// (the offsets are still uniform over the target), so no two writes of one
// block are ever in flight together and last, when not nil, records
// exactly the generation each block holds at the end (0: never written).
func randWrite(t target, o Options, d time.Duration, fill content, last []uint32) (phase, error) {
	w := uint64(o.Inflight)
	per := t.blocks / w
	var writes, flushes atomic.Int64
	var firstErr atomic.Pointer[error]
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for g := range w {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(g, uint64(start.UnixNano())))
			buf := blockstore.AlignedBuf(blockstore.BlockSize)
			// Every goroutine makes one request at least, however short d.
			for gen := uint32(1); (gen == 1 || time.Now().Before(deadline)) && firstErr.Load() == nil; gen++ {
				lba := r.Uint64N(per)*w + g
				fill(r, buf, lba, gen)
				if _, err := t.WriteAt(buf, int64(lba)*blockstore.BlockSize); err != nil {
					fail(err)
					return
				}
				if last != nil {
					last[lba] = gen
				}
				if writes.Add(1)%int64(o.FlushEvery) == 0 {
					if err := t.flush(); err != nil {
						fail(err)
						return
					}
					flushes.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return phase{}, *p
	}
	if err := t.flush(); err != nil {
		return phase{}, err
	}
	return phase{ops: writes.Load(), flushes: flushes.Load() + 1, elapsed: time.Since(start)}, nil
}

// written lists the blocks last records as written.
func written(last []uint32) []uint64 {
	var set []uint64
	for lba, gen := range last {
		if gen != 0 {
			set = append(set, uint64(lba))
		}
	}
	return set
}

// randRead runs o.Inflight goroutines, each issuing synchronous 4 KiB reads
// of random blocks of set for d, and checks a sample of what they read
// against last with s: a mismatch fails the pattern with ErrMismatch.
func randRead(t target, o Options, d time.Duration, set []uint64, s stamper, last []uint32) (phase, error) {
	if len(set) == 0 {
		return phase{}, errNothingWritten
	}
	var reads, verified atomic.Int64
	var firstErr atomic.Pointer[error]
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for g := range o.Inflight {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), uint64(start.UnixNano())))
			buf := blockstore.AlignedBuf(blockstore.BlockSize)
			scratch := make([]byte, blockstore.BlockSize)
			var n, checked int64
			for ; (n == 0 || time.Now().Before(deadline)) && firstErr.Load() == nil; n++ {
				lba := set[r.IntN(len(set))]
				if _, err := t.ReadAt(buf, int64(lba)*blockstore.BlockSize); err != nil {
					fail(err)
					return
				}
				if n%verifyEvery == 0 {
					if err := s.check(buf, scratch, lba, last[lba]); err != nil {
						fail(err)
						return
					}
					checked++
				}
			}
			reads.Add(n)
			verified.Add(checked)
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return phase{}, *p
	}
	return phase{ops: reads.Load(), verified: verified.Load(), elapsed: time.Since(start)}, nil
}
