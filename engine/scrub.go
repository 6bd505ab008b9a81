package engine

import (
	"context"
	"errors"
	"sort"
	"time"

	"blockhash/blockstore"
	"blockhash/index"
)

// ScrubOptions tune Scrub.
type ScrubOptions struct {
	// Rate bounds the block data read, in bytes per second (0: no bound).
	Rate int64
	// Progress, if set, is called about once a second while Scrub runs.
	Progress func(ScrubProgress)
}

// ScrubProgress is how far a scrub has come.
type ScrubProgress struct {
	Slots         uint64 `json:"slots"`          // slots of the store to scan
	SlotsScanned  uint64 `json:"slots_scanned"`  // slots scanned so far
	BlocksChecked uint64 `json:"blocks_checked"` // live blocks read and checked
	BytesRead     int64  `json:"bytes_read"`
	NewDamaged    int    `json:"new_damaged"` // blocks found damaged by this scrub
}

// ScrubReport is what a scrub found, the way `zpool scrub` and `zpool
// status -v` report it: what was checked, what is damaged, and where.
type ScrubReport struct {
	ScrubProgress
	KnownDamaged  int            `json:"known_damaged"`  // already marked damaged, not read again
	Skipped       int            `json:"skipped"`        // live slots whose record could not be read
	DamagedSlots  int            `json:"damaged_slots"`  // slots marked damaged when it ended
	Damaged       []DamagedRange `json:"damaged"`        // the device blocks that name them, and quarantined blocks
	DamagedBlocks uint64         `json:"damaged_blocks"` // device blocks in Damaged
	Truncated     bool           `json:"damaged_truncated,omitempty"`
	Seconds       float64        `json:"seconds"`
	Canceled      bool           `json:"canceled,omitempty"`
}

// Scrub reads every live stored block at a bounded rate and checks it
// against the key in its slot record; a block that fails is marked damaged
// (reads of it fail, a write of the same content heals it, and the next
// commit records it). It runs beside normal I/O: it holds reuseMu shared
// while it reads a chunk of slots, as reads do, never the epoch or
// commitMu, and skips free slots and slots being written. When it ends
// (done or canceled) it walks the maps to list the device blocks that name
// damaged slots, and the quarantined ones.
func (e *Engine) Scrub(ctx context.Context, o ScrubOptions) (ScrubReport, error) {
	var rep ScrubReport
	start := time.Now()
	defer func() { rep.Seconds = time.Since(start).Seconds() }()
	if err := e.failedErr(); err != nil {
		return rep, err
	}
	total := e.ScrubSlots()
	rep.Slots = total
	const chunk = 64
	recs := make([]blockstore.Meta, chunk)
	data := blockstore.AlignedBuf(chunk * BlockSize)
	keys := make([]index.Key, chunk)
	lastProgress := time.Now()
	for first := uint64(0); first < total; first += chunk {
		if ctx.Err() != nil {
			rep.Canceled = true
			break
		}
		n := min(chunk, total-first)
		read, err := e.scrubRead(first, recs[:n], keys[:n], data[:n*BlockSize], &rep)
		if err != nil {
			return rep, err
		}
		for i := range n {
			if keys[i].IsZero() {
				continue
			}
			rep.BlocksChecked++
			if e.doms.verify(data[i*BlockSize:(i+1)*BlockSize], keys[i]) {
				continue
			}
			if e.scrubConfirm(first+i, keys[i]) {
				e.markDamaged(first+i, keys[i])
				rep.NewDamaged++
			}
		}
		rep.SlotsScanned += n
		if read > 0 {
			rep.BytesRead += int64(read) * BlockSize
			if err := pace(ctx, start, rep.BytesRead, o.Rate); err != nil {
				rep.Canceled = true
				break
			}
		}
		if o.Progress != nil && time.Since(lastProgress) >= time.Second {
			lastProgress = time.Now()
			o.Progress(rep.ScrubProgress)
		}
	}
	if err := e.damagedRanges(&rep); err != nil {
		return rep, err
	}
	if o.Progress != nil {
		o.Progress(rep.ScrubProgress)
	}
	return rep, nil
}

// ScrubSlots is the number of slots a scrub started now would scan (every
// slot ever used).
func (e *Engine) ScrubSlots() uint64 {
	hwm := e.slots.highWater()
	return min(hwm, e.bs.Slots())
}

// scrubRead reads the records and data of slots first.. under reuseMu
// (shared) and sets keys[i] to the key slot first+i must hold, or zero to
// skip it (free, being written, known damaged, record unreadable). It
// returns the number of slots whose data it read.
func (e *Engine) scrubRead(first uint64, recs []blockstore.Meta, keys []index.Key, data []byte, rep *ScrubReport) (int, error) {
	e.reuseMu.RLock()
	defer e.reuseMu.RUnlock()
	n := uint64(len(recs))
	err := e.bs.ReadMeta(blockstore.Slot(first), recs)
	badRec := map[uint64]bool{}
	var ce *blockstore.CorruptError
	if errors.As(err, &ce) {
		for _, s := range ce.Slots {
			badRec[uint64(s)] = true
		}
	} else if err != nil {
		return 0, err
	}
	live := 0
	for i := range n {
		s := first + i
		keys[i] = index.Key{}
		k, ok := e.scrubKey(s, recs[i], badRec[s], rep)
		if ok {
			keys[i] = k
			live++
		}
	}
	if live == 0 {
		return 0, nil
	}
	if err := e.bs.ReadAt(data, blockstore.Slot(first)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// scrubKey returns the key slot s must hold, if it is to be checked now.
func (e *Engine) scrubKey(s uint64, rec blockstore.Meta, recBad bool, rep *ScrubReport) (index.Key, bool) {
	st := e.slots.state(s)
	if !st.live || st.pending {
		return index.Key{}, false
	}
	switch {
	case st.damaged:
		rep.KnownDamaged++
		return index.Key{}, false
	case st.dirty:
		return st.tag.key, !st.tag.key.IsZero()
	case recBad || rec.IsZero() || rec.Refs == 0:
		// Not committed yet (its dirty mark is on its way), or an
		// unreadable record: fsck's business.
		if recBad {
			rep.Skipped++
		}
		return index.Key{}, false
	}
	k, _ := index.DecodeKey(rec.Tag[:])
	return k, true
}

// scrubConfirm reads slot s again, a moment later, and reports whether it
// still fails the key it must hold: a write finishing between the record
// read and the data read is not damage.
func (e *Engine) scrubConfirm(s uint64, k index.Key) bool {
	time.Sleep(10 * time.Millisecond)
	e.reuseMu.RLock()
	defer e.reuseMu.RUnlock()
	var recs [1]blockstore.Meta
	if err := e.bs.ReadMeta(blockstore.Slot(s), recs[:]); err != nil {
		return false
	}
	var rep ScrubReport
	now, ok := e.scrubKey(s, recs[0], false, &rep)
	if !ok || now != k {
		return false
	}
	buf := blockstore.AlignedBuf(BlockSize)
	if err := e.bs.ReadAt(buf, blockstore.Slot(s)); err != nil {
		return false
	}
	return !e.doms.verify(buf, k)
}

// pace sleeps so that read bytes since start stay within rate per second.
func pace(ctx context.Context, start time.Time, read, rate int64) error {
	if rate <= 0 {
		return ctx.Err()
	}
	due := start.Add(time.Duration(float64(read) / float64(rate) * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// damagedRanges walks the maps and lists the device blocks that name a
// damaged slot, and the quarantined ones.
func (e *Engine) damagedRanges(rep *ScrubReport) error {
	bad := e.slots.damagedSlots()
	rep.DamagedSlots = len(bad)
	e.devMu.RLock()
	maps := make([]*Map, 0, len(e.byName))
	for _, m := range e.byName {
		maps = append(maps, m)
	}
	e.devMu.RUnlock()
	sort.Slice(maps, func(i, j int) bool { return maps[i].full < maps[j].full })
	var l rangeList
	for _, m := range maps {
		if m.lost.Load() == 0 && len(bad) == 0 {
			continue
		}
		err := m.each(func(lba uint64, ent mapEntry) error {
			switch {
			case ent.isLost():
				l.add(m.full, lba, WhyLostEntry)
			case bad[ent.Slot]:
				l.add(m.full, lba, WhyDamagedData)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	rep.Damaged, rep.DamagedBlocks, rep.Truncated = l.ranges, l.blocks, l.truncated
	return nil
}
