package engine

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"

	"blockhash/blockstore"
	"blockhash/index"
)

// errSimulatedCrash stops a commit where a test's crashHook asked.
var errSimulatedCrash = errors.New("engine: simulated crash")

type sealedMap struct {
	m       *Map
	entries map[uint64]mapEntry
}

// Flush commits every change made so far: when it returns, every write
// that completed before it survives a crash.
func (e *Engine) Flush() error { return e.commit() }

// commit makes every change made so far durable. Steps: seal the changes
// (briefly excluding writers), sync the new block data, write and sync the
// journal record (the commit point), apply it to map pages, volume files,
// slot records and the index, empty the journal, and hand the freed slots
// and pages back for reuse.
func (e *Engine) commit() error { return e.commitWith(nil) }

// commitThen commits and runs fn on the committed state, writers still
// held off (fsck: the maps in memory and on disk then agree with the slot
// records, however busy copy-on-write and deletes are).
func (e *Engine) commitThen(fn func() error) error {
	return e.commitOps(nil, fn)
}

// commitWith is a commit during which op changes the catalog (snapshot,
// clone, rollback, delete): op runs once the changes are sealed and adds
// its own to the record; writers wait until the record is applied, so no
// write copies a page the record has yet to write. An op that fails
// changes nothing; the sealed changes are committed all the same.
func (e *Engine) commitWith(op func(rec *record) error) error { return e.commitOps(op, nil) }

func (e *Engine) commitOps(op func(rec *record) error, then func() error) error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	if e.opts.ReadOnly {
		// Nothing to commit (what a read-only open found and would fix,
		// a lost table named by a root, stays in memory); then runs on
		// the state as it is.
		if op != nil {
			return fmt.Errorf("%w: %s", ErrReadOnly, e.dir)
		}
		if then != nil {
			e.epoch.Lock()
			defer e.epoch.Unlock()
			return then()
		}
		return nil
	}
	if p := e.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrFailed, *p)
	}
	start := time.Now()

	e.epoch.Lock()
	holding := true
	defer func() {
		if holding {
			e.epoch.Unlock()
		}
	}()
	rec := &record{Seq: e.seq + 1}
	var sealed []sealedMap
	e.devMu.RLock()
	for _, m := range e.byID {
		if s := m.seal(); s != nil {
			sealed = append(sealed, sealedMap{m, s})
		}
	}
	e.devMu.RUnlock()
	sp := e.pages.seal()
	if err := e.sealPages(rec, sealed, sp); err != nil {
		e.fail(err)
		return err
	}
	e.ix.Seal()
	ss := e.slots.seal()
	rec.Slots = ss.changes
	puts, freeing := ss.puts, ss.freed
	// (slices.SortFunc: a receive's commit sorts a record per linked block)
	slices.SortFunc(rec.Slots, func(a, b slotChange) int { return cmp.Compare(a.Slot, b.Slot) })
	var opErr error
	if op != nil {
		opErr = op(rec)
	}
	e.changes.Store(0)
	if op == nil && then == nil {
		e.epoch.Unlock()
		holding = false
	}

	if rec.empty() {
		e.pages.reuse(sp.frees)
		if opErr == nil && then != nil {
			return then()
		}
		return opErr
	}
	e.reserveFor(rec, puts)
	err := e.persist(rec, puts, sealed)
	if err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, blockstore.ErrFull)) && e.useReserve() {
		err = e.persist(rec, puts, sealed) // every step is idempotent
	}
	if err != nil {
		e.fail(err)
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	e.seq = rec.Seq
	for _, m := range e.closeAfter {
		m.close()
	}
	e.closeAfter = nil
	if len(freeing) > 0 || len(sp.frees) > 0 {
		// Cached neighbourhoods read before this point may name these slots.
		e.ix.Invalidate()
		e.reuseMu.Lock()
		e.slots.reuse(freeing)
		e.pages.reuse(sp.frees)
		e.reuseMu.Unlock()
	}
	if o := e.observer(); o != nil {
		o.Commit(time.Since(start))
	}
	if opErr == nil && then != nil {
		return then()
	}
	return opErr
}

// sealPages turns the sealed map changes and the page changes into the
// record's leaf, table and root writes. The caller holds the epoch
// exclusively: every changed entry's leaf is its volume's own by now.
func (e *Engine) sealPages(rec *record, sealed []sealedMap, sp sealedPages) error {
	ps := e.pages
	byPage := make(map[uint32]*leafWrite, len(sp.newLeaves))
	for n, init := range sp.newLeaves {
		lw := &leafWrite{Page: n, Init: init, Zero: init == nil}
		byPage[n] = lw
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, s := range sealed {
		for lba, ent := range s.entries {
			lp := ps.leafOf(s.m.root, lba)
			if !live(lp) {
				return fmt.Errorf("%w: volume %s block %d changed under no leaf (internal error)", ErrCorrupt, s.m.full, lba)
			}
			lw := byPage[lp]
			if lw == nil {
				lw = &leafWrite{Page: lp}
				byPage[lp] = lw
			}
			lw.Entries = append(lw.Entries, leafEntry{Idx: uint16(lba % mapPerPage), Entry: ent})
		}
	}
	rec.Leaves = make([]leafWrite, 0, len(byPage))
	for _, lw := range byPage {
		slices.SortFunc(lw.Entries, func(a, b leafEntry) int { return cmp.Compare(a.Idx, b.Idx) })
		rec.Leaves = append(rec.Leaves, *lw)
	}
	sort.Slice(rec.Leaves, func(i, j int) bool { return rec.Leaves[i].Page < rec.Leaves[j].Page })
	for n, p := range sp.tables {
		rec.Tables = append(rec.Tables, tableWrite{Page: n, Ptrs: p})
	}
	sort.Slice(rec.Tables, func(i, j int) bool { return rec.Tables[i].Page < rec.Tables[j].Page })
	e.devMu.RLock()
	for _, m := range e.byID {
		for t := range m.rootDirty {
			rec.Roots = append(rec.Roots, rootChange{Vol: m.hdr.ID, Index: t, Page: m.root[t]})
		}
		clear(m.rootDirty)
	}
	e.devMu.RUnlock()
	sort.Slice(rec.Roots, func(i, j int) bool {
		a, b := rec.Roots[i], rec.Roots[j]
		return a.Vol < b.Vol || a.Vol == b.Vol && a.Index < b.Index
	})
	return nil
}

func (e *Engine) persist(rec *record, puts []index.Op, sealed []sealedMap) error {
	if err := e.synced(SyncData, e.bs.Sync); err != nil {
		return err
	}
	if err := e.synced(SyncJournal, func() error { return e.jn.write(rec) }); err != nil {
		return err
	}
	if e.crashHook != nil && e.crashHook("journaled") {
		return errSimulatedCrash
	}
	if err := e.applyRecordOps(rec, puts, false); err != nil {
		return err
	}
	e.pages.applied() // before the overlays go: the file has both now
	for _, s := range sealed {
		s.m.dropSealed()
	}
	return e.synced(SyncJournalReset, e.jn.reset)
}

// applyRecord applies a journal record at replay (index puts for every
// live indexed slot, since the record does not say which were new).
func (e *Engine) applyRecord(rec *record) error {
	var puts []index.Op
	for _, c := range rec.Slots {
		if c.Meta.Refs > 0 && c.Meta.Flags&blockstore.FlagIndexed != 0 {
			k, _ := index.DecodeKey(c.Meta.Tag[:])
			puts = append(puts, index.Op{Key: k, Slot: c.Slot})
		}
	}
	return e.applyRecordOps(rec, puts, true)
}

func (e *Engine) applyRecordOps(rec *record, puts []index.Op, replay bool) error {
	if err := e.applyPages(rec); err != nil {
		return err
	}
	if err := e.applyVolumes(rec, replay); err != nil {
		return err
	}
	// Slot records, in runs of consecutive slots.
	var ops []index.Op
	for i := 0; i < len(rec.Slots); {
		j := i + 1
		for j < len(rec.Slots) && rec.Slots[j].Slot == rec.Slots[j-1].Slot+1 {
			j++
		}
		metas := make([]blockstore.Meta, j-i)
		for k := range metas {
			metas[k] = rec.Slots[i+k].Meta
		}
		if err := e.ensureSlots(rec.Slots[j-1].Slot); err != nil {
			return err
		}
		if err := e.bs.WriteMeta(blockstore.Slot(rec.Slots[i].Slot), metas); err != nil {
			return err
		}
		for _, c := range rec.Slots[i:j] {
			if c.Meta.Refs == 0 && c.Meta.Flags&blockstore.FlagIndexed != 0 {
				k, _ := index.DecodeKey(c.Meta.Tag[:])
				ops = append(ops, index.Op{Key: k, Slot: c.Slot, Delete: true})
			}
		}
		i = j
	}
	if err := e.synced(SyncSlots, e.bs.Sync); err != nil {
		return err
	}
	if len(ops) > 0 {
		puts = append(append(make([]index.Op, 0, len(ops)+len(puts)), ops...), puts...)
	}
	return e.synced(SyncIndex, func() error { return e.ix.Apply(puts) })
}

// applyPages writes the record's leaves and tables into the page file.
func (e *Engine) applyPages(rec *record) error {
	if len(rec.Leaves) == 0 && len(rec.Tables) == 0 {
		return nil
	}
	f := e.pages.f
	page := make([]byte, mapPageSize)
	eb := make([]byte, mapEntrySize)
	for _, lw := range rec.Leaves {
		off := int64(lw.Page) * mapPageSize
		if lw.Init == nil && !lw.Zero {
			for _, le := range lw.Entries {
				le.Entry.encode(eb)
				if _, err := f.WriteAt(eb, off+int64(le.Idx)*mapEntrySize); err != nil {
					return fmt.Errorf("engine: write map page: %w", err)
				}
			}
			continue
		}
		if lw.Init != nil {
			copy(page, lw.Init)
		} else {
			clear(page)
		}
		for _, le := range lw.Entries {
			le.Entry.encode(page[int(le.Idx)*mapEntrySize:])
		}
		if _, err := f.WriteAt(page, off); err != nil {
			return fmt.Errorf("engine: write map page: %w", err)
		}
	}
	for _, tw := range rec.Tables {
		tw.Ptrs.encode(page)
		if _, err := f.WriteAt(page, int64(tw.Page)*mapPageSize); err != nil {
			return fmt.Errorf("engine: write map table: %w", err)
		}
	}
	if err := e.synced(SyncPages, f.Sync); err != nil {
		return fmt.Errorf("engine: sync map pages: %w", err)
	}
	return nil
}

// applyVolumes writes the record's root pointers, volume files and
// removals. Root pointers are patched into the root page as it is on disk,
// checksum or not (a page torn by a crash during this very step holds, in
// every pointer the record does not name, the same value before and
// after); whole volume files come after them and win.
func (e *Engine) applyVolumes(rec *record, replay bool) error {
	if len(rec.Roots) == 0 && len(rec.Vols) == 0 && len(rec.Removes) == 0 {
		return nil
	}
	removed := map[uint32]bool{}
	for _, id := range rec.Removes {
		removed[id] = true
	}
	e.devMu.RLock()
	vols := maps.Clone(e.byID)
	e.devMu.RUnlock()
	page := make([]byte, mapPageSize)
	for i := 0; i < len(rec.Roots); {
		id := rec.Roots[i].Vol
		j := i
		for j < len(rec.Roots) && rec.Roots[j].Vol == id {
			j++
		}
		m := vols[id]
		switch {
		case m != nil:
			if err := m.patchRoot(rec.Roots[i:j], page); err != nil {
				return err
			}
		case removed[id] || e.opts.Repair:
			// removed by this record; or lost, and fsck lists it
		default:
			return fmt.Errorf("%w: journal names volume %d, which cannot be opened (%s); run blockhash fsck --repair", ErrCorrupt, id, e.brokenNames())
		}
		i = j
	}
	for _, v := range rec.Vols {
		path := volPath(e.dir, v.ID)
		if err := writeVolume(e.fs, path, v.Content); err != nil {
			return err
		}
		if m := vols[v.ID]; m != nil && !replay {
			if err := m.reopen(e.fs); err != nil {
				return err
			}
		}
	}
	for _, id := range rec.Removes {
		if err := e.fs.Remove(volPath(e.dir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("engine: remove volume: %w", err)
		}
	}
	if len(rec.Vols) > 0 || len(rec.Removes) > 0 {
		if err := e.fs.SyncDir(filepath.Join(e.dir, "devices")); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	return nil
}

// ensureSlots makes sure the store's capacity covers slot (a replayed
// record may name slots of an extent whose creation was not yet synced).
func (e *Engine) ensureSlots(slot uint64) error {
	for e.bs.Slots() <= slot {
		if err := e.bs.Grow(); err != nil {
			return err
		}
	}
	return nil
}
