package engine

import (
	"bytes"
	"fmt"
	"slices"
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
		return fmt.Errorf("%w: %s was deleted", ErrNotFound, m.full)
	}
	return nil
}

// pendingSlot is a slot allocated and indexed whose data is being written.
// A writer that deduplicates onto it waits for done before publishing.
type pendingSlot struct {
	done chan struct{}
	err  error // set before done is closed
	// data is a copy of the block being written, kept in verify mode so
	// that a request sharing the slot compares contents without waiting
	// for the write (waiting there, with block locks held, deadlocks two
	// requests that share each other's new blocks in crossing order).
	data []byte
}

// writeReq collects what one request did, to finish it in a few steps.
type writeReq struct {
	fresh    []freshBlock   // slots this request allocated (data not yet written)
	reserved []uint64       // consecutive free slots set aside for fresh blocks
	waits    []*pendingSlot // other requests' slots this one shares
	dirty    []dirtyMark
	acquired []mapEntry // references taken, to undo on failure
	heals    []heal     // damaged slots this request rewrites (damage.go)
}

type freshBlock struct {
	slot uint64
	data []byte
}

type dirtyMark struct {
	slot  uint64
	key   index.Key
	fresh bool
}

func (r *writeReq) owns(slot uint64) bool {
	for _, f := range r.fresh {
		if f.slot == slot {
			return true
		}
	}
	return false
}

// write stores p at off, or with zero set, zeros length bytes at off.
func (e *Engine) write(m *Map, p []byte, off int64, zero bool, length ...int64) error {
	n := int64(len(p))
	if zero {
		n = length[0]
	}
	return e.writeAt(m, p, off, n, zero, nil)
}

// writeAt is write with, optionally, the keys of p's whole blocks already
// computed.
func (e *Engine) writeAt(m *Map, p []byte, off, n int64, zero bool, keys []index.Key) error {
	if err := e.checkRange(m, off, n); err != nil {
		return err
	}
	if err := e.failedErr(); err != nil {
		return err
	}
	if m.readOnly() {
		return fmt.Errorf("%w: %s", ErrSnapshot, m.full)
	}
	if n == 0 {
		return nil
	}
	if err := e.writeLocked(m, p, off, n, zero, keys); err != nil {
		return err
	}
	return e.backPressure()
}

// backPressure wakes the committer once enough changed, and commits in
// the writer's stead once far too much did (bounding uncommitted state).
func (e *Engine) backPressure() error {
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

// writeBlocks stores whole blocks at scattered, strictly ascending lbas
// in one request (so their new slots are written together): block i is
// p[i*BlockSize:], its key keys[i].
func (e *Engine) writeBlocks(m *Map, lbas []uint64, p []byte, keys []index.Key) error {
	if len(p) != len(lbas)*BlockSize || len(keys) != len(lbas) {
		return fmt.Errorf("%w: %d bytes and %d keys for %d blocks", ErrInvalid, len(p), len(keys), len(lbas))
	}
	for i, lba := range lbas {
		if i > 0 && lba <= lbas[i-1] {
			return fmt.Errorf("%w: blocks not in ascending order", ErrInvalid)
		}
		if err := e.checkRange(m, int64(lba)*BlockSize, BlockSize); err != nil {
			return err
		}
	}
	if err := e.failedErr(); err != nil {
		return err
	}
	if m.readOnly() {
		return fmt.Errorf("%w: %s", ErrSnapshot, m.full)
	}
	if len(lbas) == 0 {
		return nil
	}
	if err := e.writeSet(m, lbas, p, keys); err != nil {
		return err
	}
	return e.backPressure()
}

func (e *Engine) writeSet(m *Map, lbas []uint64, p []byte, keys []index.Key) error {
	e.epoch.RLock()
	defer e.epoch.RUnlock()
	if m.deleted.Load() {
		return fmt.Errorf("%w: %s was deleted", ErrNotFound, m.full)
	}
	unlock := e.locks.lockBlockSet(m.hdr.ID, lbas)
	defer unlock()
	var (
		changed []uint64
		news    []mapEntry
		datas   [][]byte
		prev    []mapEntry
		heals   []heal
	)
	// The old entries, one read per leaf for each run of consecutive
	// blocks (a full stream's frames are mostly one run).
	olds := make([]mapEntry, len(lbas))
	for i := 0; i < len(lbas); {
		j := i + 1
		for j < len(lbas) && lbas[j] == lbas[j-1]+1 {
			j++
		}
		if err := m.getRange(lbas[i], olds[i:j]); err != nil {
			return err
		}
		i = j
	}
	for i, lba := range lbas {
		old := olds[i]
		data := p[i*BlockSize : (i+1)*BlockSize]
		if old.Key == keys[i] {
			if old.holds() && e.slots.isDamaged(old.Slot) {
				heals = append(heals, heal{slot: old.Slot, key: keys[i], data: data})
			}
			continue
		}
		changed = append(changed, lba)
		news = append(news, mapEntry{Key: keys[i]})
		datas = append(datas, data)
		prev = append(prev, old)
	}
	return e.applyBlocks(m, &writeReq{heals: heals}, changed, news, datas, prev)
}

func (e *Engine) writeLocked(m *Map, p []byte, off, n int64, zero bool, keys []index.Key) error {
	first, last := off/BlockSize, (off+n-1)/BlockSize
	// Whole blocks are hashed before any lock is taken, on every core for
	// large requests.
	if !zero && keys == nil {
		lo := (off + BlockSize - 1) / BlockSize
		hi := (off + n) / BlockSize
		if hi > lo {
			keys = e.hashBlocks(e.keyerOf(m), p[lo*BlockSize-off:hi*BlockSize-off])
		}
	}

	e.epoch.RLock()
	defer e.epoch.RUnlock()
	if m.deleted.Load() {
		return fmt.Errorf("%w: %s was deleted", ErrNotFound, m.full)
	}
	unlock := e.locks.lockBlocks(m.hdr.ID, uint64(first), uint64(last))
	defer unlock()

	olds := make([]mapEntry, last-first+1)
	if err := m.getRange(uint64(first), olds); err != nil {
		return err
	}
	var (
		lbas   []uint64
		news   []mapEntry
		datas  [][]byte
		prev   []mapEntry
		heals  []heal
		wholeI int
	)
	for b := first; b <= last; b++ {
		old := olds[b-first]
		bStart := b * BlockSize
		lo, hi := max(off, bStart), min(off+n, bStart+BlockSize)
		var k index.Key
		var data []byte
		switch {
		case lo == bStart && hi == bStart+BlockSize && zero:
		case lo == bStart && hi == bStart+BlockSize:
			k, data = keys[wholeI], p[bStart-off:bStart-off+BlockSize]
			wholeI++
		default: // partial block: read, modify, write
			data = make([]byte, BlockSize)
			if !old.isZero() {
				if err := e.readSlot(data, old); err != nil {
					return err
				}
			}
			if zero {
				clear(data[lo-bStart : hi-bStart])
			} else {
				copy(data[lo-bStart:], p[lo-off:hi-off])
			}
			k = e.keyerOf(m).blockKey(data)
		}
		if old.Key == k {
			if old.holds() && e.slots.isDamaged(old.Slot) {
				heals = append(heals, heal{slot: old.Slot, key: k, data: data})
			}
			continue // same content (or zero over zero)
		}
		lbas = append(lbas, uint64(b))
		news = append(news, mapEntry{Key: k})
		datas = append(datas, data)
		prev = append(prev, old)
	}
	return e.applyBlocks(m, &writeReq{heals: heals}, lbas, news, datas, prev)
}

// applyBlocks stores the changed blocks of one request (their block locks
// held): blocks lbas (ascending) get content datas, keyed news[j].Key,
// replacing prev. It takes the references, writes the new blocks, maps
// them and releases what they replaced.
func (e *Engine) applyBlocks(m *Map, r *writeReq, lbas []uint64, news []mapEntry, datas [][]byte, prev []mapEntry) error {
	if len(lbas) == 0 {
		return e.finishHeals(r)
	}
	// The leaves of the changed blocks become the volume's own (copied if
	// a snapshot or clone shares them) before anything is acquired.
	for i, lba := range lbas {
		if i == 0 || lba/mapPerPage != lbas[i-1]/mapPerPage {
			if err := e.ownLeaves(m, lba, lba); err != nil {
				return err
			}
		}
	}

	var err error
	for j := range news {
		if news[j].Key.IsZero() {
			continue
		}
		var slot uint64
		if slot, err = e.acquire(news[j].Key, datas[j], r, len(news)-j); err != nil {
			break
		}
		news[j].Slot = slot
		r.acquired = append(r.acquired, news[j])
	}
	e.slots.unreserve(r.reserved)
	r.reserved = nil
	// Write the new blocks (even after a failure above: another request may
	// already share one of them), in runs of consecutive slots.
	if werr := e.writeFresh(r.fresh); werr != nil {
		e.fail(werr)
		err = werr
	}
	e.slots.finishPending(r.fresh, err)
	if err == nil {
		err = e.finishHeals(r)
	}
	if err != nil {
		e.slots.markDirty(r.dirty)
		for _, a := range r.acquired {
			if rerr := e.release(a); rerr != nil {
				e.fail(rerr)
			}
		}
		return err
	}
	for _, w := range r.waits {
		<-w.done
		if w.err != nil {
			return w.err
		}
	}
	m.setMany(lbas, news)
	e.changes.Add(int64(len(lbas)))
	var delta int64
	for j := range news {
		switch {
		case prev[j].isZero() && !news[j].isZero():
			delta++
		case !prev[j].isZero() && news[j].isZero():
			delta--
		}
		if prev[j].isLost() {
			m.lost.Add(-1)
		}
	}
	m.mapped.Add(delta)
	e.slots.markDirty(r.dirty)
	for _, old := range prev {
		if !old.holds() {
			continue
		}
		if err := e.release(old); err != nil {
			e.fail(err)
			return err
		}
	}
	return nil
}

// acquire returns a slot holding data (whose key is k) with one more
// reference: an existing one if the block is stored, a new one if not. A new
// slot's data is written later by the request (writeFresh). remaining is
// how many blocks the request may still store, to reserve consecutive slots.
// It never waits for another request while holding k's lock; in verify
// mode it compares with another request's pending block in memory.
func (e *Engine) acquire(k index.Key, data []byte, r *writeReq, remaining int) (uint64, error) {
	kl := e.locks.keyLock(k)
	kl.Lock()
	defer kl.Unlock()
	hit, err := e.ix.Lookup(k)
	if err != nil {
		return 0, err
	}
	if !hit.Found {
		return e.store(k, data, true, r, remaining)
	}
	var ps *pendingSlot
	if hit.Overlay && !r.owns(hit.Slot) {
		ps = e.slots.pendingOf(hit.Slot)
	}
	if e.verify {
		same, damaged, err := e.sameContent(hit.Slot, k, data, r, ps)
		if err != nil {
			return 0, err
		}
		switch {
		case damaged:
			e.markDamaged(hit.Slot, k)
			r.heals = append(r.heals, heal{slot: hit.Slot, key: k, data: data})
		case !same:
			e.log.Warn().Stringer("key", k).Uint64("slot", hit.Slot).Msg("hash collision: storing the block unshared")
			return e.store(k, data, false, r, remaining)
		}
	} else if e.slots.isDamaged(hit.Slot) {
		r.heals = append(r.heals, heal{slot: hit.Slot, key: k, data: data})
	}
	e.slots.incRef(hit.Slot)
	r.dirty = append(r.dirty, dirtyMark{slot: hit.Slot, key: k})
	if ps != nil {
		r.waits = append(r.waits, ps)
	}
	if hit.Disk {
		e.prefetch(hit.Slot)
	}
	return hit.Slot, nil
}

// release drops one reference to the block in ent; a block no longer
// referenced leaves the index at once (its slot is reused after the next
// commit).
func (e *Engine) release(ent mapEntry) error {
	kl := e.locks.keyLock(ent.Key)
	kl.Lock()
	defer kl.Unlock()
	freed, indexed, err := e.slots.release(ent.Slot, ent.Key)
	if err != nil {
		return err
	}
	if freed && indexed {
		e.ix.Remove(ent.Key, ent.Slot)
	}
	return nil
}

// store allocates a slot for a new block; its data is written by the
// request before anything that names the slot is published. The caller
// holds k's lock.
func (e *Engine) store(k index.Key, data []byte, indexed bool, r *writeReq, remaining int) (uint64, error) {
	if len(r.reserved) == 0 {
		var err error
		if r.reserved, err = e.slots.allocRun(remaining); err != nil {
			return 0, err
		}
	}
	slot := r.reserved[0]
	r.reserved = r.reserved[1:]
	ps := &pendingSlot{done: make(chan struct{})}
	if e.verify {
		ps.data = slices.Clone(data)
	}
	e.slots.claim(slot, ps, indexed)
	if indexed {
		e.ix.Insert(k, slot)
	}
	r.fresh = append(r.fresh, freshBlock{slot: slot, data: data})
	r.dirty = append(r.dirty, dirtyMark{slot: slot, key: k, fresh: true})
	return slot, nil
}

// writeFresh writes the data of newly allocated slots, one call per run of
// consecutive slots.
func (e *Engine) writeFresh(fresh []freshBlock) error {
	if len(fresh) == 0 {
		return nil
	}
	sorted := slices.Clone(fresh)
	slices.SortFunc(sorted, func(a, b freshBlock) int { return int(int64(a.slot - b.slot)) })
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j].slot == sorted[j-1].slot+1 {
			j++
		}
		bufs := make([][]byte, j-i)
		for k := range bufs {
			bufs[k] = sorted[i+k].data
		}
		if err := e.bs.WriteBlocks(blockstore.Slot(sorted[i].slot), bufs); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// sameContent compares data with the block in slot: this request's own
// new block, another request's pending one (ps), or the stored copy. A
// stored copy that differs and does not match its own key either is
// damaged, not a collision.
func (e *Engine) sameContent(slot uint64, k index.Key, data []byte, r *writeReq, ps *pendingSlot) (same, damaged bool, err error) {
	for _, f := range r.fresh {
		if f.slot == slot {
			return bytes.Equal(f.data, data), false, nil
		}
	}
	if ps != nil {
		return bytes.Equal(ps.data, data), false, nil
	}
	buf := getBlock()
	defer putBlock(buf)
	if err := e.bs.ReadAt(buf, blockstore.Slot(slot)); err != nil {
		return false, false, err
	}
	if bytes.Equal(buf, data) {
		return true, false, nil
	}
	return false, !e.doms.verify(buf, k), nil
}

// finishHeals writes the request's heals (damage.go).
func (e *Engine) finishHeals(r *writeReq) error {
	if len(r.heals) == 0 {
		return nil
	}
	if err := e.writeHeals(r.heals); err != nil {
		e.fail(err)
		return err
	}
	return nil
}

// keyerOf is the keyer of m's dedup domain. A volume whose domain is not
// in the set was left offline at open (catalog.go): it is never written.
func (e *Engine) keyerOf(m *Map) *keyer {
	if kr := e.doms.get(m.hdr.Domain); kr != nil {
		return kr
	}
	return e.doms.def
}

// prefetchWindow is how many slot records around a hit are read into the
// index's cache: the blocks stored right after it were likely written next.
const prefetchWindow = 512

func (e *Engine) prefetch(hit uint64) {
	tok := e.ix.PrimeToken()
	hwm := e.slots.highWater()
	lo := hit - min(hit, 16)
	hi := min(hit+prefetchWindow, hwm)
	if hi <= lo {
		return
	}
	recs := make([]blockstore.Meta, hi-lo)
	e.bs.ReadMeta(blockstore.Slot(lo), recs) // a corrupt record reads as zero and is skipped
	entries := make([]index.Entry, 0, len(recs))
	for i := range recs {
		rec := &recs[i]
		slot := lo + uint64(i)
		if rec.Refs == 0 || rec.Flags&blockstore.FlagIndexed == 0 || slot == hit || e.slots.refCount(slot) == 0 {
			continue
		}
		k, _ := index.DecodeKey(rec.Tag[:])
		entries = append(entries, index.Entry{Key: k, Slot: slot})
	}
	e.ix.Prime(tok, entries)
}

// hashBlocks computes the keys of consecutive 4 KiB blocks, spreading large
// requests over the cores. Hashing holds one of the engine's hashing
// tokens (one per core): GOMAXPROCS is above the core count in the daemon
// (see cmd/blockhash), and more hashing goroutines than cores would only
// take turns on them.
func (e *Engine) hashBlocks(kr *keyer, p []byte) []index.Key {
	n := len(p) / BlockSize
	keys := make([]index.Key, n)
	hash := func(next *atomic.Int64) {
		e.hashTokens <- struct{}{}
		defer func() { <-e.hashTokens }()
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			keys[i] = kr.blockKey(p[i*BlockSize : (i+1)*BlockSize])
		}
	}
	var next atomic.Int64
	workers := min(cap(e.hashTokens), n/8)
	if workers <= 1 {
		hash(&next)
		return keys
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { hash(&next) })
	}
	wg.Wait()
	return keys
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, BlockSize); return &b }}

func getBlock() []byte  { return *(blockPool.Get().(*[]byte)) }
func putBlock(b []byte) { blockPool.Put(&b) }
