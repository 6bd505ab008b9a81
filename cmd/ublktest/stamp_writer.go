package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strconv"
	"sync"

	"blockhash/blockstore"
)

// stampDevice is what the writer writes to: the block device (or a plain
// file in tests).
type stampDevice interface {
	io.WriterAt
	Sync() error
}

// stampWriter writes stamp blocks at random blocks of a device in batches:
// a batch is logged (W lines), then written by up to jobs goroutines at
// once (distinct blocks, so their order does not matter); every syncEvery
// batches it fsyncs the device and logs F. Only run's goroutine touches
// its fields; the batch goroutines each own one buffer.
type stampWriter struct {
	dev       stampDevice
	log       io.Writer
	st        *stampState
	jobs      int
	batch     int
	syncEvery int
	dupPct    int // percent of writes that take a shared pattern (dedup)
	rng       *rand.Rand
	bufs      [][]byte // one aligned block buffer per job
	next      uint64   // next unique cid (st is left as loaded)

	writes, flushes int
}

func newStampWriter(dev stampDevice, log io.Writer, st *stampState, jobs, batch, syncEvery, dupPct int, seed int64) (*stampWriter, error) {
	if jobs < 1 || batch < 1 || syncEvery < 1 || dupPct < 0 || dupPct > 100 {
		return nil, errors.New("stamp write: -jobs, -batch, -sync-every must be >= 1 and -dup 0..100")
	}
	if int64(batch) > st.blocks {
		return nil, fmt.Errorf("stamp write: batch %d larger than the %d blocks", batch, st.blocks)
	}
	w := &stampWriter{dev: dev, log: log, st: st, jobs: jobs, batch: batch, syncEvery: syncEvery,
		dupPct: dupPct, rng: rand.New(rand.NewSource(seed)), next: st.next}
	for i := 0; i < jobs; i++ {
		w.bufs = append(w.bufs, blockstore.AlignedBuf(stampBlockSize))
	}
	return w, nil
}

// run writes count blocks (0: until killed), ending with a flush.
func (w *stampWriter) run(count int) error {
	lbas := make([]int64, w.batch)
	cids := make([]uint64, w.batch)
	var line []byte
	for b := 1; count == 0 || w.writes < count; b++ {
		n := w.batch
		if count > 0 {
			n = min(n, count-w.writes)
		}
		w.pick(lbas[:n], cids[:n])
		line = line[:0]
		for i := 0; i < n; i++ {
			line = append(line, "W "...)
			line = strconv.AppendInt(line, lbas[i], 10)
			line = append(line, ' ')
			line = strconv.AppendUint(line, cids[i], 10)
			line = append(line, '\n')
		}
		if _, err := w.log.Write(line); err != nil {
			return fmt.Errorf("stamp log: %w", err)
		}
		if err := w.writeBatch(lbas[:n], cids[:n]); err != nil {
			return err
		}
		w.writes += n
		if b%w.syncEvery == 0 || (count > 0 && w.writes >= count) {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *stampWriter) flush() error {
	if err := w.dev.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if _, err := w.log.Write([]byte("F\n")); err != nil {
		return fmt.Errorf("stamp log: %w", err)
	}
	w.flushes++
	return nil
}

// pick chooses distinct blocks and their new cids.
func (w *stampWriter) pick(lbas []int64, cids []uint64) {
	seen := make(map[int64]bool, len(lbas))
	for i := range lbas {
		lba := w.rng.Int63n(w.st.blocks)
		for seen[lba] {
			lba = w.rng.Int63n(w.st.blocks)
		}
		seen[lba] = true
		lbas[i] = lba
		if w.rng.Intn(100) < w.dupPct {
			cids[i] = 1 + uint64(w.rng.Intn(stampPool))
		} else {
			cids[i] = w.next
			w.next++
		}
	}
}

// writeBatch writes the blocks with up to len(w.bufs) goroutines at once.
func (w *stampWriter) writeBatch(lbas []int64, cids []uint64) error {
	jobs := min(len(w.bufs), len(lbas))
	errs := make([]error, jobs)
	var wg sync.WaitGroup
	for j := 0; j < jobs; j++ {
		wg.Add(1)
		go func(j int) {
			defer wg.Done()
			buf := w.bufs[j]
			for i := j; i < len(lbas); i += jobs {
				encodeStamp(buf, cids[i])
				if _, err := w.dev.WriteAt(buf, lbas[i]*stampBlockSize); err != nil {
					errs[j] = fmt.Errorf("write block %d: %w", lbas[i], err)
					return
				}
			}
		}(j)
	}
	wg.Wait()
	return errors.Join(errs...)
}
