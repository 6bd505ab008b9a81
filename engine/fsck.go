package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"blockhash/blockstore"
	"blockhash/index"
)

// FsckReport is what Fsck found (and, with repair, fixed).
type FsckReport struct {
	Devices        int    `json:"devices"`
	OfflineDevices int    `json:"offline_devices"` // maps that could not be opened
	MappedBlocks   uint64 `json:"mapped_blocks"`
	SlotsChecked   uint64 `json:"slots_checked"`
	LiveSlots      uint64 `json:"live_slots"`
	RefMismatches  int    `json:"ref_mismatches"`
	TagMismatches  int    `json:"tag_mismatches"`
	FlagMismatches int    `json:"flag_mismatches"`
	CorruptMeta    int    `json:"corrupt_slot_records"`
	BadData        int    `json:"bad_data"`      // stored blocks newly found failing their digest
	KnownDamaged   int    `json:"known_damaged"` // stored blocks already marked damaged
	IndexMissing   int    `json:"index_missing"`
	IndexStale     int    `json:"index_stale"`
	Duplicates     int    `json:"duplicates"`   // a key stored and indexed in two slots
	LostBlocks     int    `json:"lost_blocks"`  // quarantined map entries
	BeyondStore    int    `json:"beyond_store"` // map entries naming slots the store lacks
	OtherBlock     int    `json:"other_block"`  // map entries naming a slot that holds another block
	MapsRebuilt    int    `json:"maps_rebuilt"` // map headers rebuilt by repair
	MapsLost       int    `json:"maps_lost"`    // maps repair could not rebuild
	// Damaged lists the device blocks whose data is lost or damaged, in
	// ranges (at most 10000; DamagedTruncated says some were left out).
	Damaged          []DamagedRange `json:"damaged,omitempty"`
	DamagedBlocks    uint64         `json:"damaged_blocks"`
	DamagedTruncated bool           `json:"damaged_truncated,omitempty"`
	Repaired         bool           `json:"repaired"`
	Problems         []string       `json:"problems,omitempty"` // the first 100
}

// Consistent reports whether the metadata needs no repair: reference
// counts, slot records, the index and the maps agree. Blocks already
// quarantined or marked damaged may remain (DataLost).
func (r *FsckReport) Consistent() bool {
	return r.OfflineDevices+r.RefMismatches+r.TagMismatches+r.FlagMismatches+r.CorruptMeta+r.BadData+
		r.IndexMissing+r.IndexStale+r.Duplicates+r.BeyondStore+r.OtherBlock == 0
}

// DataLost reports whether some device blocks are lost or damaged.
func (r *FsckReport) DataLost() bool { return r.DamagedBlocks > 0 || r.MapsLost > 0 }

// OK reports whether nothing at all was wrong.
func (r *FsckReport) OK() bool { return r.Consistent() && !r.DataLost() && r.MapsRebuilt == 0 }

func (r *FsckReport) problem(format string, a ...any) {
	if len(r.Problems) < 100 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
	}
}

// Fsck checks the store: it recounts every reference from the maps, checks
// each slot record and index entry against them, and verifies every stored
// block's digest. Damaged and lost blocks are reported as device block
// ranges. With repair it rebuilds what can be derived and quarantines what
// cannot (see fsck.run). Writers wait while it runs.
//
// Memory: 12 bytes and 1 bit per slot of the store (an expected reference
// count and a fingerprint of the key the maps name for the slot, and a bit
// for "the index names this slot"), plus a map of the damaged slots only.
func (e *Engine) Fsck(repair bool) (FsckReport, error) {
	var rep FsckReport
	if repair && e.opts.ReadOnly {
		return rep, fmt.Errorf("%w: fsck --repair", ErrReadOnly)
	}
	// The check runs on a committed state, writers and deletes held off
	// until it ends (commitThen).
	var f *fsck
	var err error
	if cerr := e.commitThen(func() error {
		f, err = e.fsckLocked(&rep, repair)
		return nil
	}); cerr != nil {
		return rep, cerr
	}
	if n := len(f.ranges.ranges); n > 0 {
		sort.SliceStable(f.ranges.ranges, func(i, j int) bool {
			a, b := f.ranges.ranges[i], f.ranges.ranges[j]
			if a.Device != b.Device {
				return a.Device < b.Device
			}
			return a.FirstLBA < b.FirstLBA
		})
	}
	rep.Damaged, rep.DamagedBlocks, rep.DamagedTruncated = f.ranges.ranges, f.ranges.blocks, f.ranges.truncated
	return rep, err
}

// fsckLocked runs the check; the caller holds commitMu and the epoch.
func (e *Engine) fsckLocked(rep *FsckReport, repair bool) (*fsck, error) {
	f := &fsck{e: e, rep: rep, repair: repair}
	err := f.run()
	if repair && errors.Is(err, errIndexDamaged) {
		// A damaged LevelDB table: start an empty index and check again,
		// which rebuilds it from the slot records.
		cause := err
		if err = e.replaceIndex(cause); err == nil {
			first := *rep
			*rep = FsckReport{MapsRebuilt: first.MapsRebuilt}
			rep.Problems = first.Problems
			rep.problem("%v: moved aside and rebuilt from the slot records", cause)
			// (maps the first run moved aside are listed again by listLostMaps)
			f = &fsck{e: e, rep: rep, repair: repair}
			err = f.run()
			rep.IndexStale++ // the damaged index was stale
			rep.Repaired = err == nil
		}
	}
	return f, err
}

// errIndexDamaged marks an index read that failed on damaged LevelDB data.
var errIndexDamaged = errors.New("index is damaged")

func indexErr(err error) error {
	if errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", errIndexDamaged, err)
	}
	return err
}

// fsck is one run's state.
type fsck struct {
	e      *Engine
	rep    *FsckReport
	repair bool
	maps   []*Map
	n      uint64   // slots in the store
	exp    []uint32 // references the maps hold, per slot (saturating)
	fp     []uint64 // keyFP of the key the maps name for the slot (0: none)
	ixd    bitset   // the index names the slot
	bad    map[uint64]*badSlot
	ranges rangeList
	// repair's pending work, flushed in bounded batches
	ixOps []index.Op
	ixPut map[index.Key]uint64 // the puts in ixOps, for lookups
	quar  map[uint64]mapEntry  // map entries to rewrite (of one map)
	// rescan holds the maps repair rewrote entries of: their counts of
	// mapped and quarantined blocks are taken again.
	rescan map[*Map]bool
}

// badSlot is a live slot whose data or mapping is wrong: the maps are
// walked again to name its device blocks.
type badSlot struct {
	// conflict: the maps name the slot with two keys. Entries with the key
	// of the data it holds (data) are kept; the others name a block it
	// does not hold and are quarantined.
	conflict bool
	data     index.Key
	// damaged: the data fails the digest of the key the maps name (key,
	// known once haveKey).
	damaged bool
	known   bool // already marked damaged before this run
	key     index.Key
	haveKey bool
	refs    uint32 // conflict: references to data, recounted by the second walk
	flags   uint32 // record flags besides FlagDamaged
	// ixKey is the key under which the index names a conflicting slot.
	ixKey    index.Key
	ixKeySet bool
}

type bitset []uint64

func newBitset(n uint64) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) get(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i uint64)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) clearBit(i uint64) { b[i/64] &^= 1 << (i % 64) }
func keyFP(k index.Key) uint64 {
	return (binary.LittleEndian.Uint64(k.Sum[:8]) ^ uint64(k.CRC)<<17) | 1
}

func (f *fsck) run() error {
	e, rep := f.e, f.rep
	if f.repair {
		for _, msg := range e.rebuilt {
			rep.MapsRebuilt++
			rep.problem("%s", msg)
		}
		e.rebuilt = nil
		e.rebuildBrokenMaps(rep, &f.ranges)
	}
	e.devMu.RLock()
	for _, m := range e.byID {
		f.maps = append(f.maps, m)
	}
	for _, b := range e.broken {
		rep.OfflineDevices++
		f.ranges.addRange(DamagedRange{Device: b.Name, Why: "device offline: " + b.Err.Error()})
		rep.problem("device %s is offline: %v (fsck --repair rebuilds its map header; until then reference counts it holds look leaked)", b.Name, b.Err)
	}
	e.devMu.RUnlock()
	f.listLostMaps()
	sort.Slice(f.maps, func(i, j int) bool { return f.maps[i].full < f.maps[j].full })
	rep.Devices = len(f.maps)
	f.n = e.bs.Slots()
	f.exp = make([]uint32, f.n)
	f.fp = make([]uint64, f.n)
	f.ixd = newBitset(f.n)
	f.bad = map[uint64]*badSlot{}
	f.ixPut = map[index.Key]uint64{}

	if err := f.walkMaps(); err != nil {
		return err
	}
	if err := f.walkIndex(); err != nil {
		return err
	}
	if err := f.walkSlots(); err != nil {
		return err
	}
	if len(f.bad) > 0 {
		if err := f.walkBad(); err != nil {
			return err
		}
	}
	if !f.repair {
		return nil
	}
	if err := f.flushIndex(); err != nil {
		return err
	}
	if err := e.bs.Sync(); err != nil {
		return err
	}
	if err := e.reloadSlots(); err != nil {
		return err
	}
	for m := range f.rescan {
		if err := m.scan(nil); err != nil {
			return err
		}
	}
	rep.Repaired = !rep.Consistent() || rep.MapsRebuilt+rep.MapsLost > 0
	return nil
}

// listLostMaps lists the devices whose maps repair moved aside (until the
// moved files are deleted): their data is lost.
func (f *fsck) listLostMaps() {
	ents, _ := f.e.fs.ReadDir(filepath.Join(f.e.dir, "devices"))
	for _, de := range ents {
		name, _, ok := strings.Cut(de.Name, ".map.damaged-")
		if !ok || slices.ContainsFunc(f.ranges.ranges, func(r DamagedRange) bool { return r.Device == name && r.Blocks == 0 }) {
			continue
		}
		f.rep.MapsLost++
		f.ranges.addRange(DamagedRange{Device: name, Why: WhyMapLost + " (moved aside to devices/" + de.Name + "; delete it to forget the device)"})
	}
}

// walkMaps counts every map's references per slot and notes the key each
// slot is mapped with. Quarantined entries and entries naming slots the
// store does not have are listed; repair rewrites both as quarantined.
func (f *fsck) walkMaps() error {
	rep := f.rep
	// A leaf shared by several volumes holds one reference per entry, not
	// one per volume: it is counted for the first volume that names it.
	countedBy := map[uint32]*Map{}
	for _, m := range f.maps {
		var fnErr error
		err := m.scanLeaves(func(lba uint64, ent mapEntry, page uint32) {
			if fnErr != nil {
				return
			}
			if by := countedBy[page]; by != nil && by != m && live(page) {
				if ent.isLost() { // listed for every volume that names it
					rep.LostBlocks++
					f.ranges.add(m.full, lba, WhyLostEntry)
				}
				rep.MappedBlocks++
				return
			}
			countedBy[page] = m
			fnErr = f.walkEntry(m, lba, ent)
		})
		if err == nil {
			err = fnErr
		}
		if err == nil {
			err = f.flushQuarantine(m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// walkEntry counts one entry of a leaf not counted before.
func (f *fsck) walkEntry(m *Map, lba uint64, ent mapEntry) error {
	rep := f.rep
	rep.MappedBlocks++
	if ent.isLost() {
		rep.LostBlocks++
		f.ranges.add(m.full, lba, WhyLostEntry)
		return f.quarantine(m, lba)
	}
	s := ent.Slot
	if s >= f.n {
		rep.BeyondStore++
		f.ranges.add(m.full, lba, WhyBeyondStore)
		rep.problem("device %s block %d names slot %d, the store has %d", m.full, lba, s, f.n)
		return f.quarantine(m, lba)
	}
	k := keyFP(ent.Key)
	switch f.fp[s] {
	case 0:
		f.fp[s] = k
	case k:
	default:
		b := f.badSlot(s)
		if !b.conflict {
			b.conflict = true
			rep.TagMismatches++
			rep.problem("slot %d is mapped with two keys (device %s block %d says %v)", s, m.full, lba, ent.Key)
		}
	}
	if f.exp[s] < blockstore.MaxRefs {
		f.exp[s]++
	}
	return nil
}

func (f *fsck) badSlot(s uint64) *badSlot {
	b := f.bad[s]
	if b == nil {
		b = &badSlot{}
		f.bad[s] = b
	}
	return b
}

// quarantine queues lba of m to be rewritten as a quarantined entry.
func (f *fsck) quarantine(m *Map, lba uint64) error {
	if !f.repair {
		return nil
	}
	if f.quar == nil {
		f.quar = map[uint64]mapEntry{}
	}
	f.quar[lba] = quarantined
	if len(f.quar) >= 1<<16 {
		return f.flushQuarantine(m)
	}
	return nil
}

func (f *fsck) flushQuarantine(m *Map) error {
	if len(f.quar) == 0 {
		return nil
	}
	err := m.writeEntries(f.quar)
	clear(f.quar)
	if f.rescan == nil {
		f.rescan = map[*Map]bool{}
	}
	f.rescan[m] = true
	return err
}

// walkIndex checks every index entry (in key order) against the maps: it
// must name a live slot mapped with its key, and one the index names
// under no other key. Stale entries are deleted by repair.
func (f *fsck) walkIndex() error {
	rep := f.rep
	return indexErr(f.e.ix.Each(func(ent index.Entry) error {
		s := ent.Slot
		if s < f.n && f.exp[s] > 0 && f.fp[s] == keyFP(ent.Key) && !f.ixd.get(s) {
			f.ixd.set(s)
			if b := f.bad[s]; b != nil && b.conflict {
				b.ixKey, b.ixKeySet = ent.Key, true
			}
			return nil
		}
		rep.IndexStale++
		rep.problem("index entry %v -> slot %d names no live block of that key", ent.Key, s)
		return f.indexOp(index.Op{Key: ent.Key, Slot: s, Delete: true})
	}))
}

func (f *fsck) indexOp(op index.Op) error {
	if !f.repair {
		return nil
	}
	f.ixOps = append(f.ixOps, op)
	if !op.Delete {
		f.ixPut[op.Key] = op.Slot
	}
	if len(f.ixOps) >= 8192 {
		return f.flushIndex()
	}
	return nil
}

func (f *fsck) flushIndex() error {
	if len(f.ixOps) == 0 {
		return nil
	}
	err := f.e.ix.Apply(f.ixOps)
	f.ixOps = f.ixOps[:0]
	clear(f.ixPut)
	return indexErr(err)
}

// indexed returns the live slot the index (or repair's pending puts) names
// for k, if any.
func (f *fsck) indexed(k index.Key) (uint64, bool, error) {
	if s, ok := f.ixPut[k]; ok {
		return s, true, nil
	}
	s, ok, err := f.e.ix.Get(k)
	if err != nil || !ok {
		return 0, false, indexErr(err)
	}
	if s >= f.n || !f.ixd.get(s) || f.fp[s] != keyFP(k) {
		return 0, false, nil // stale (repair deletes it)
	}
	return s, true, nil
}

// walkSlots reads every slot record and every live slot's data, chunk by
// chunk, and checks them against the maps and the index. Repair rewrites
// the records of each chunk that needs it and queues index fixes.
func (f *fsck) walkSlots() error {
	e, rep := f.e, f.rep
	hwm := uint64(0)
	hwm = e.slots.highWater()
	for s := f.n; s > hwm; s-- {
		if f.exp[s-1] > 0 {
			hwm = s
			break
		}
	}
	hwm = min(hwm, f.n)
	const chunk = 1024
	recs := make([]blockstore.Meta, chunk)
	data := blockstore.AlignedBuf(chunk * BlockSize)
	// Records are read to the end of the store: a corrupt record beyond
	// the last live slot must be found too.
	for first := uint64(0); first < f.n; first += chunk {
		n := min(chunk, f.n-first)
		err := e.bs.ReadMeta(blockstore.Slot(first), recs[:n])
		badRec := map[uint64]bool{}
		var ce *blockstore.CorruptError
		if errors.As(err, &ce) {
			for _, s := range ce.Slots {
				badRec[uint64(s)] = true
			}
		} else if err != nil {
			return err
		}
		if first < hwm {
			if err := e.bs.ReadAt(data[:n*BlockSize], blockstore.Slot(first)); err != nil {
				return err
			}
		}
		dirty := false
		for i := range n {
			s := first + i
			rep.SlotsChecked++
			fix, err := f.checkSlot(s, &recs[i], badRec[s], data[i*BlockSize:(i+1)*BlockSize])
			if err != nil {
				return err
			}
			dirty = dirty || fix
		}
		if dirty && f.repair {
			if err := e.bs.WriteMeta(blockstore.Slot(first), recs[:n]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSlot checks one slot; it updates *rec to what it must be and
// reports whether that changed it.
func (f *fsck) checkSlot(s uint64, rec *blockstore.Meta, recBad bool, data []byte) (bool, error) {
	rep := f.rep
	if recBad {
		rep.CorruptMeta++
		rep.problem("slot %d: record fails its checksum", s)
	}
	want := f.exp[s]
	if want == 0 {
		if rec.Refs != 0 {
			rep.RefMismatches++
			rep.problem("slot %d: record says %d references, maps hold none", s, rec.Refs)
			rec.Refs = 0
			return true, nil
		}
		return recBad, nil // a corrupt record of a free slot: written zero
	}
	rep.LiveSlots++
	recKey, _ := index.DecodeKey(rec.Tag[:])
	recOK := !recBad && !rec.IsZero()
	// The data's key in the domain of the volumes naming the slot.
	d, _ := f.e.doms.match(data, func(k index.Key) bool { return keyFP(k) == f.fp[s] })
	b := f.bad[s]
	switch {
	case b != nil && b.conflict:
		// Resolved by the second walk: entries with the data's key stay.
		b.data = d
		if recOK {
			b.flags = rec.Flags &^ blockstore.FlagDamaged
		} else {
			b.flags = blockstore.FlagIndexed
		}
		return false, nil
	case keyFP(d) != f.fp[s]:
		b = f.badSlot(s)
		b.damaged = true
		b.known = recOK && rec.Flags&blockstore.FlagDamaged != 0
		if recOK && keyFP(recKey) == f.fp[s] {
			b.key, b.haveKey = recKey, true
		}
		b.flags = blockstore.FlagIndexed
		if recOK {
			b.flags = rec.Flags&^blockstore.FlagDamaged | blockstore.FlagIndexed
		}
		if b.known {
			rep.KnownDamaged++
		} else {
			rep.BadData++
			rep.problem("slot %d: stored data fails its digest (its device blocks are listed as damaged)", s)
		}
		return false, nil
	}
	// The data is the block the maps name: the record must say so.
	flags := blockstore.FlagIndexed
	if f.ixd.get(s) {
		// the index names it
	} else if o, ok, err := f.indexed(d); err != nil {
		return false, err
	} else if ok && o != s {
		if recOK && rec.Flags&blockstore.FlagIndexed == 0 {
			flags = 0 // a verify-mode collision, stored beside the indexed copy
		} else {
			rep.Duplicates++
			rep.problem("key %v stored in slots %d and %d (the index names %d)", d, o, s, o)
			flags = 0
		}
	} else if !ok {
		rep.IndexMissing++
		rep.problem("slot %d (key %v) is missing from the index", s, d)
		f.ixd.set(s)
		if err := f.indexOp(index.Op{Key: d, Slot: s}); err != nil {
			return false, err
		}
	}
	fix := recBad
	if !recBad && rec.IsZero() {
		rep.RefMismatches++
		rep.problem("slot %d: record is empty, maps hold %d references", s, want)
		fix = true
	} else if !recBad && rec.Refs != want {
		rep.RefMismatches++
		rep.problem("slot %d: record says %d references, maps hold %d", s, rec.Refs, want)
		fix = true
	}
	if !recBad && !rec.IsZero() && recKey != d {
		rep.TagMismatches++
		rep.problem("slot %d: record key %v, the maps and the data say %v", s, recKey, d)
		fix = true
	}
	if !recBad && !rec.IsZero() && rec.Flags != flags {
		rep.FlagMismatches++
		if rec.Flags&blockstore.FlagDamaged != 0 {
			rep.problem("slot %d: marked damaged but its data is good", s)
		} else {
			rep.problem("slot %d: record flags %#x, want %#x", s, rec.Flags, flags)
		}
		fix = true
	}
	if fix {
		*rec = blockstore.Meta{Refs: want, Flags: flags}
		d.Encode(rec.Tag[:])
	}
	return fix, nil
}

// walkBad walks the maps again for the bad slots alone: it lists the
// device blocks that name them, recounts their references, quarantines
// entries naming a block their slot does not hold, and (repair) writes
// their records.
func (f *fsck) walkBad() error {
	countedBy := map[uint32]*Map{} // as in walkMaps: a shared leaf counts once
	for _, m := range f.maps {
		var fnErr error
		err := m.scanLeaves(func(lba uint64, ent mapEntry, page uint32) {
			if fnErr != nil || !ent.holds() || ent.Slot >= f.n {
				return
			}
			first := countedBy[page] == nil || countedBy[page] == m || !live(page)
			if first {
				countedBy[page] = m
			}
			fnErr = f.walkBadEntry(m, lba, ent, first)
		})
		if err == nil {
			err = fnErr
		}
		if err == nil {
			err = f.flushQuarantine(m)
		}
		if err != nil {
			return err
		}
	}
	return f.writeBad()
}

// walkBadEntry handles one entry naming a bad slot; first is unset when
// another volume's walk counted the entry's leaf already.
func (f *fsck) walkBadEntry(m *Map, lba uint64, ent mapEntry, first bool) error {
	rep := f.rep
	b := f.bad[ent.Slot]
	if b == nil {
		return nil
	}
	switch {
	case b.conflict && ent.Key != b.data:
		rep.OtherBlock++
		f.ranges.add(m.full, lba, WhyOtherBlock)
		return f.quarantine(m, lba)
	case b.conflict:
		if first {
			b.refs++
		}
	default:
		if !b.haveKey {
			b.key, b.haveKey = ent.Key, true
		}
		f.ranges.add(m.full, lba, WhyDamagedData)
	}
	return nil
}

// writeBad writes (repair) the records of the bad slots.
func (f *fsck) writeBad() error {
	if !f.repair {
		return nil
	}
	slots := make([]uint64, 0, len(f.bad))
	for s := range f.bad {
		slots = append(slots, s)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	for _, s := range slots {
		b := f.bad[s]
		var rec blockstore.Meta
		switch {
		case b.conflict && b.refs == 0:
			// No entry names the block the slot holds: it is free.
			if b.ixKeySet {
				if err := f.indexOp(index.Op{Key: b.ixKey, Slot: s, Delete: true}); err != nil {
					return err
				}
			}
		case b.conflict:
			if b.ixKeySet && b.ixKey != b.data {
				if err := f.indexOp(index.Op{Key: b.ixKey, Slot: s, Delete: true}); err != nil {
					return err
				}
				f.ixd.clearBit(s)
			}
			rec = blockstore.Meta{Refs: b.refs, Flags: b.flags}
			b.data.Encode(rec.Tag[:])
			if rec.Flags&blockstore.FlagIndexed != 0 && !f.ixd.get(s) {
				if o, ok, err := f.indexed(b.data); err != nil {
					return err
				} else if !ok {
					if err := f.indexOp(index.Op{Key: b.data, Slot: s}); err != nil {
						return err
					}
				} else if o != s {
					rec.Flags = 0
				}
			}
		default:
			// Damaged: kept, referenced and indexed, marked so a write
			// of the same content heals it in place.
			rec = blockstore.Meta{Refs: f.exp[s], Flags: b.flags | blockstore.FlagDamaged}
			b.key.Encode(rec.Tag[:])
			if !f.ixd.get(s) {
				if _, ok, err := f.indexed(b.key); err != nil {
					return err
				} else if !ok {
					if err := f.indexOp(index.Op{Key: b.key, Slot: s}); err != nil {
						return err
					}
				} else {
					rec.Flags &^= blockstore.FlagIndexed
				}
			}
		}
		if err := f.e.bs.WriteMeta(blockstore.Slot(s), []blockstore.Meta{rec}); err != nil {
			return err
		}
	}
	return nil
}
