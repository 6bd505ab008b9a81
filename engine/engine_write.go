package engine

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"blockhash/blockstore"
	"blockhash/index"
)

// checkRange validates an I/O request against a device.
func (e *Engine) checkRange(m *Map, off, n int64) error {
	if off < 0 || n < 0 || off%SectorSize != 0 || n%SectorSize != 0 {
		return fmt.Errorf("%w: offset %d length %d not %d-byte aligned", ErrInvalid, off, n, SectorSize)
	}
	if off+n > m.hdr.Size || off+n < off {
		return fmt.Errorf("%w: %d+%d > %d", ErrRange, off, n, m.hdr.Size)
	}
	if m.deleted.Load() {
		return fmt.Errorf("%w: %s was deleted", ErrNotFound, m.hdr.Name)
	}
	return nil
}

// write stores p at off, or with zero set, zeros length bytes at off.
func (e *Engine) write(m *Map, p []byte, off int64, zero bool, length ...int64) error {
	n := int64(len(p))
	if zero {
		n = length[0]
	}
	if err := e.checkRange(m, off, n); err != nil {
		return err
	}
	if err := e.failedErr(); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	// Whole blocks are hashed before any lock is taken, on every core for
	// large requests.
	first, last := off/BlockSize, (off+n-1)/BlockSize
	wholeFrom, wholeTo := first, last+1 // [wholeFrom, wholeTo) are fully covered
	if off%BlockSize != 0 {
		wholeFrom++
	}
	if (off+n)%BlockSize != 0 {
		wholeTo--
	}
	var keys []index.Key
	if wholeTo > wholeFrom && !zero {
		start := (wholeFrom*BlockSize - off)
		keys = e.hashBlocks(p[start : start+(wholeTo-wholeFrom)*BlockSize])
	}

	e.epoch.RLock()
	if m.deleted.Load() {
		e.epoch.RUnlock()
		return fmt.Errorf("%w: %s was deleted", ErrNotFound, m.hdr.Name)
	}
	var err error
	for b := first; b <= last && err == nil; b++ {
		bStart := b * BlockSize
		lo, hi := max(off, bStart), min(off+n, bStart+BlockSize)
		if b >= wholeFrom && b < wholeTo {
			var k index.Key
			var data []byte
			if !zero {
				k = keys[b-wholeFrom]
				data = p[bStart-off : bStart-off+BlockSize]
			}
			err = e.writeBlock(m, uint64(b), k, data, nil)
			continue
		}
		// Partial block: read, modify, write under the block's lock.
		var src []byte
		if !zero {
			src = p[lo-off : hi-off]
		}
		err = e.writeBlock(m, uint64(b), index.Key{}, nil, func(old []byte) {
			if zero {
				clear(old[lo-bStart : hi-bStart])
			} else {
				copy(old[lo-bStart:], src)
			}
		})
	}
	e.epoch.RUnlock()
	if err != nil {
		return err
	}
	if c := e.changes.Load(); c >= int64(e.opts.CommitChanges) {
		if c >= 4*int64(e.opts.CommitChanges) {
			return e.commit() // back-pressure: bound the uncommitted state
		}
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// writeBlock sets logical block lba to (k, data); with modify set, it reads
// the block's current content, lets modify change it and stores the result.
// The caller holds the epoch shared.
func (e *Engine) writeBlock(m *Map, lba uint64, k index.Key, data []byte, modify func([]byte)) error {
	bl := e.blockLock(m.hdr.ID, lba)
	bl.Lock()
	defer bl.Unlock()
	old, err := m.get(lba)
	if err != nil {
		return err
	}
	if modify != nil {
		buf := make([]byte, BlockSize)
		if !old.isZero() {
			if err := e.readSlot(buf, old); err != nil {
				return err
			}
		}
		modify(buf)
		data, k = buf, e.sb.Hash.blockKey(buf)
	}
	if old.Key == k {
		return nil // same content (or zero over zero)
	}
	var ne mapEntry
	if !k.IsZero() {
		slot, err := e.acquire(k, data)
		if err != nil {
			return err
		}
		ne = mapEntry{Key: k, Slot: slot}
	}
	m.set(lba, ne)
	e.changes.Add(1)
	switch {
	case old.isZero() && !ne.isZero():
		m.mapped.Add(1)
	case !old.isZero() && ne.isZero():
		m.mapped.Add(-1)
	}
	if !old.isZero() {
		if err := e.release(old); err != nil {
			e.fail(err)
			return err
		}
	}
	return nil
}

// acquire returns a slot holding data (whose key is k) with one more
// reference: an existing one if the block is stored, a new one if not.
func (e *Engine) acquire(k index.Key, data []byte) (uint64, error) {
	kl := e.keyLock(k)
	kl.Lock()
	hit, err := e.ix.Lookup(k)
	if err != nil {
		kl.Unlock()
		return 0, err
	}
	if hit.Found && e.sb.Verify {
		same, err := e.sameContent(hit.Slot, data)
		if err != nil {
			kl.Unlock()
			return 0, err
		}
		if !same {
			e.log.Warn().Stringer("key", k).Uint64("slot", hit.Slot).Msg("hash collision: storing the block unshared")
			slot, err := e.store(k, data, false)
			kl.Unlock()
			return slot, err
		}
	}
	if hit.Found {
		p := e.refs.ptr(hit.Slot)
		if atomic.AddUint32(p, 1) == 1 {
			e.unique.Add(1) // cannot happen for an indexed key; kept for accounting
		}
		e.markDirty(hit.Slot, k, false)
		kl.Unlock()
		if hit.Disk {
			e.prefetch(hit.Slot)
		}
		return hit.Slot, nil
	}
	slot, err := e.store(k, data, true)
	kl.Unlock()
	return slot, err
}

// store writes data to a new slot. The caller holds k's lock.
func (e *Engine) store(k index.Key, data []byte, indexed bool) (uint64, error) {
	slot, err := e.allocSlot()
	if err != nil {
		return 0, err
	}
	if err := e.bs.WriteAt(data, blockstore.Slot(slot)); err != nil {
		e.unallocSlot(slot)
		return 0, err
	}
	atomic.StoreUint32(e.refs.ptr(slot), 1)
	e.unique.Add(1)
	if indexed {
		e.ix.Insert(k, slot)
	} else {
		e.dirtyMu.Lock()
		e.unindexed[slot] = true
		e.dirtyMu.Unlock()
	}
	e.markDirty(slot, k, true)
	return slot, nil
}

func (e *Engine) sameContent(slot uint64, data []byte) (bool, error) {
	buf := getBlock()
	defer putBlock(buf)
	if err := e.bs.ReadAt(buf, blockstore.Slot(slot)); err != nil {
		return false, err
	}
	return bytes.Equal(buf, data), nil
}

// prefetchWindow is how many slot records around a hit are read into the
// index's cache: the blocks stored right after it were likely written next.
const prefetchWindow = 512

func (e *Engine) prefetch(hit uint64) {
	tok := e.ix.PrimeToken()
	e.alloc.mu.Lock()
	hwm := e.alloc.hwm
	e.alloc.mu.Unlock()
	lo := hit - min(hit, 16)
	hi := min(hit+prefetchWindow, hwm)
	if hi <= lo {
		return
	}
	recs := make([]blockstore.Meta, hi-lo)
	e.bs.ReadMeta(blockstore.Slot(lo), recs) // a corrupt record reads as zero and is skipped
	entries := make([]index.Entry, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		slot := lo + uint64(i)
		if r.Refs == 0 || r.Flags&blockstore.FlagIndexed == 0 || slot == hit || e.refs.get(slot) == 0 {
			continue
		}
		k, _ := index.DecodeKey(r.Tag[:])
		entries = append(entries, index.Entry{Key: k, Slot: slot})
	}
	e.ix.Prime(tok, entries)
}

// hashBlocks computes the keys of consecutive 4 KiB blocks, spreading large
// requests over all cores (at most GOMAXPROCS goroutines per request).
func (e *Engine) hashBlocks(p []byte) []index.Key {
	n := len(p) / BlockSize
	keys := make([]index.Key, n)
	workers := min(runtime.GOMAXPROCS(0), n/8)
	if workers <= 1 {
		for i := range keys {
			keys[i] = e.sb.Hash.blockKey(p[i*BlockSize : (i+1)*BlockSize])
		}
		return keys
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				keys[i] = e.sb.Hash.blockKey(p[i*BlockSize : (i+1)*BlockSize])
			}
		})
	}
	wg.Wait()
	return keys
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, BlockSize); return &b }}

func getBlock() []byte  { return *(blockPool.Get().(*[]byte)) }
func putBlock(b []byte) { blockPool.Put(&b) }
