package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

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
// journal record (the commit point), apply it to maps, slot records and the
// index, empty the journal, and hand the freed slots back for reuse.
func (e *Engine) commit() error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	if p := e.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrFailed, *p)
	}

	e.epoch.Lock()
	rec := &record{Seq: e.seq + 1}
	var sealed []sealedMap
	nmaps := 0
	e.devMu.RLock()
	for _, m := range e.byID {
		if s := m.seal(); s != nil {
			sealed = append(sealed, sealedMap{m, s})
			nmaps += len(s)
		}
	}
	e.devMu.RUnlock()
	rec.Maps = make([]mapChange, 0, nmaps)
	for _, s := range sealed {
		for lba, ent := range s.entries {
			rec.Maps = append(rec.Maps, mapChange{Dev: s.m.hdr.ID, LBA: lba, Entry: ent})
		}
	}
	e.ix.Seal()
	e.deletingMu.Lock()
	deleting := e.deleting
	e.deleting = nil
	e.deletingMu.Unlock()
	ss := e.slots.seal()
	rec.Slots = ss.changes
	puts, freeing := ss.puts, ss.freed
	for _, m := range deleting {
		rec.Deletes = append(rec.Deletes, m.hdr.ID)
	}
	e.changes.Store(0)
	e.epoch.Unlock()

	if len(rec.Maps) == 0 && len(rec.Slots) == 0 && len(rec.Deletes) == 0 {
		return nil
	}
	e.reserveFor(rec, puts, sealed)
	err := e.persist(rec, puts, sealed)
	if err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, blockstore.ErrFull)) && e.useReserve() {
		err = e.persist(rec, puts, sealed) // every step is idempotent
	}
	if err != nil {
		e.fail(err)
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	e.seq = rec.Seq
	if len(freeing) > 0 {
		// Cached neighbourhoods read before this point may name these slots.
		e.ix.Invalidate()
		e.reuseMu.Lock()
		e.slots.reuse(freeing)
		e.reuseMu.Unlock()
	}
	return nil
}

func (e *Engine) persist(rec *record, puts []index.Op, sealed []sealedMap) error {
	if err := e.bs.Sync(); err != nil {
		return err
	}
	if err := e.jn.write(rec); err != nil {
		return err
	}
	if e.crashHook != nil && e.crashHook("journaled") {
		return errSimulatedCrash
	}
	if err := e.applyRecordOps(rec, puts); err != nil {
		return err
	}
	for _, s := range sealed {
		s.m.dropSealed()
	}
	return e.jn.reset()
}

// applyRecord applies a journal record (at replay: index puts for every
// live indexed slot, since the record does not say which were new).
func (e *Engine) applyRecord(rec *record, replay bool) error {
	var puts []index.Op
	for _, c := range rec.Slots {
		if c.Meta.Refs > 0 && c.Meta.Flags&blockstore.FlagIndexed != 0 {
			k, _ := index.DecodeKey(c.Meta.Tag[:])
			puts = append(puts, index.Op{Key: k, Slot: c.Slot})
		}
	}
	return e.applyRecordOps(rec, puts)
}

func (e *Engine) applyRecordOps(rec *record, puts []index.Op) error {
	deleted := map[uint32]bool{}
	for _, id := range rec.Deletes {
		deleted[id] = true
	}
	// Maps.
	byDev := map[uint32]map[uint64]mapEntry{}
	for _, c := range rec.Maps {
		if deleted[c.Dev] {
			continue
		}
		if byDev[c.Dev] == nil {
			byDev[c.Dev] = map[uint64]mapEntry{}
		}
		byDev[c.Dev][c.LBA] = c.Entry
	}
	e.devMu.RLock()
	maps := make(map[uint32]*Map, len(byDev))
	for id := range byDev {
		maps[id] = e.byID[id]
	}
	e.devMu.RUnlock()
	for id, entries := range byDev {
		m := maps[id]
		if m == nil {
			if e.opts.Repair { // repair.go: its map was lost; fsck lists it
				e.log.Error().Uint32("device_id", id).Int("entries", len(entries)).Msg("repair: journal names a device whose map is lost: its changes are dropped")
				continue
			}
			return fmt.Errorf("%w: journal names device id %d, which has no map (%s); run blockhash fsck --repair", ErrCorrupt, id, e.brokenNames())
		}
		if err := m.writeEntries(entries); err != nil {
			return err
		}
	}
	// Slot records, in runs of consecutive slots.
	sort.Slice(rec.Slots, func(i, j int) bool { return rec.Slots[i].Slot < rec.Slots[j].Slot })
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
	if err := e.bs.Sync(); err != nil {
		return err
	}
	if len(ops) > 0 {
		puts = append(append(make([]index.Op, 0, len(ops)+len(puts)), ops...), puts...)
	}
	if err := e.ix.Apply(puts); err != nil {
		return err
	}
	// Deleted devices.
	if len(rec.Deletes) > 0 {
		e.devMu.Lock()
		for _, id := range rec.Deletes {
			if m := e.byID[id]; m != nil {
				m.close()
				delete(e.byID, id)
				if e.byName[m.hdr.Name] == m { // a replayed delete
					delete(e.byName, m.hdr.Name)
				}
			}
		}
		e.devMu.Unlock()
		dir := filepath.Join(e.dir, "devices")
		ents, _ := e.fs.ReadDir(dir)
		for _, de := range ents {
			path := filepath.Join(dir, de.Name)
			if filepath.Ext(path) != ".map" {
				continue
			}
			f, err := e.fs.OpenFile(path, os.O_RDONLY, 0)
			if err != nil {
				continue
			}
			hb := make([]byte, mapHeaderSize)
			_, rerr := f.ReadAt(hb, 0)
			f.Close()
			if rerr != nil {
				continue
			}
			if h, err := decodeMapHeader(hb); err == nil && deleted[h.ID] {
				if err := e.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("engine: remove map: %w", err)
				}
			}
		}
		if err := e.fs.SyncDir(dir); err != nil {
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
