package engine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"blockhash/index"
)

// Receiving a replica. A receive builds a hidden staging volume (a device
// named ".recv-…", which no user name can be, whose header names the
// device it will become and the snapshots it goes from and to): an empty
// one for a full stream, a clone of the base snapshot for an incremental
// one. Blocks arrive as data (hashed here and checked against the key the
// sender gave before anything is stored) or as keys this store already
// holds (linked: one more reference, no data). Finish swaps the staging
// tree in as the device in one commit and snapshots it under the
// sender's GUID; until then the device is its old version. A staging
// volume outlives a crash or a broken link, and a receive of the same
// snapshot from the same base carries on with it.

// stagingPrefix begins every staging volume's name.
const stagingPrefix = ".recv-"

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

func newGUID() [16]byte {
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return g
}

// SnapshotInfo describes one snapshot of a device.
type SnapshotInfo struct {
	Name    string // without the device's name
	GUID    [16]byte
	Created time.Time
}

// Snapshots lists dev's snapshots, oldest first.
func (e *Engine) Snapshots(dev string) ([]SnapshotInfo, error) {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	d, ok := e.byName[dev]
	if !ok || d.hdr.Kind != kindDevice || hidden(dev) {
		return nil, fmt.Errorf("%w: device %s", ErrNotFound, dev)
	}
	return e.snapshotsLocked(d), nil
}

func (e *Engine) snapshotsLocked(d *Map) []SnapshotInfo {
	var out []SnapshotInfo
	for _, m := range e.byID {
		if m.hdr.Kind == kindSnapshot && m.hdr.Parent == d.hdr.ID && !m.deleted.Load() && e.byName[m.full] == m {
			out = append(out, SnapshotInfo{Name: m.hdr.Name, GUID: m.hdr.GUID, Created: m.hdr.Created})
		}
	}
	sortSnapshots(out)
	return out
}

func sortSnapshots(s []SnapshotInfo) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Created.Before(s[j-1].Created); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Replicable refuses (ErrInvalid) a volume in a dedup domain other than
// the default: replication keeps to the default domain (see Keys).
func (d *Device) Replicable() error {
	return replicable(d.m)
}

func replicable(m *Map) error {
	if m.hdr.Domain != "" {
		return fmt.Errorf("%w: %s is in dedup domain %s, and replication keeps to the default domain", ErrInvalid, m.full, m.hdr.Domain)
	}
	return nil
}

// GUID is the snapshot's identity across stores (zero for a device, or a
// snapshot made before snapshots had one).
func (d *Device) GUID() [16]byte { return d.m.hdr.GUID }

// Keys fills out with the content keys of blocks first.. (the zero key
// for a block that reads as zeros). A block whose map entry is damaged is
// an ErrCorrupt error.
//
// The keys of a device in a dedup domain other than the default are its
// domain's secret digests: they mean nothing to another store, and a
// stream of them would tell it which blocks the domain holds. They are
// refused (ErrInvalid).
func (d *Device) Keys(first uint64, out []index.Key) error {
	if err := d.Replicable(); err != nil {
		return err
	}
	if first+uint64(len(out)) > d.m.blocks || first+uint64(len(out)) < first {
		return fmt.Errorf("%w: blocks %d+%d of %d", ErrRange, first, len(out), d.m.blocks)
	}
	ents := make([]mapEntry, len(out))
	if err := d.m.getRange(first, ents); err != nil {
		return err
	}
	for i, ent := range ents {
		if ent.isLost() {
			return fmt.Errorf("%w: %s: the map entry of block %d is damaged", ErrCorrupt, d.m.full, first+uint64(i))
		}
		out[i] = ent.Key
	}
	return nil
}

// LinksByKey reports whether this store maps a block it already holds
// from its key alone. It does with SHA-256; with SHA-1 (collisions can be
// built) or in verify mode (content compared on every dedup hit) every
// block must come with its data.
func (e *Engine) LinksByKey() bool { return e.sb.Hash == SHA256 && !e.verify }

// ReceiveSpec says what a receive makes.
type ReceiveSpec struct {
	Device string
	Size   int64
	// Snap, if set, is the snapshot made of the device at the end, with
	// GUID (the sender's snapshot's).
	Snap string
	GUID [16]byte
	// BaseGUID, if not zero, makes the receive incremental: the stream
	// holds the changes since Device's snapshot of that GUID.
	BaseGUID [16]byte
	// Force replaces a device that exists (full) or discards its changes
	// since the base snapshot (incremental).
	Force bool
}

// Staging is a receive under way.
type Staging struct {
	e    *Engine
	m    *Map
	spec ReceiveSpec
	// Resumed is set when an earlier receive of the same snapshot from
	// the same base had left its staging volume: blocks it stored are
	// found by key and need not travel again.
	Resumed bool
	// stale is the staging volume an interrupted receive of another
	// snapshot left: kept while this one runs (its blocks are linked by
	// key), deleted when this one finishes.
	stale *Map
}

// BeginReceive checks spec against the store and returns the staging
// volume to fill: the one an interrupted receive of the same stream left,
// or a new one.
func (e *Engine) BeginReceive(spec ReceiveSpec) (*Staging, error) {
	if err := ValidName(spec.Device); err != nil {
		return nil, err
	}
	if spec.Snap != "" {
		if err := ValidName(spec.Snap); err != nil {
			return nil, err
		}
	}
	if spec.Size <= 0 || spec.Size%BlockSize != 0 || spec.Size > maxDeviceSize {
		return nil, fmt.Errorf("%w: device size %d", ErrInvalid, spec.Size)
	}
	if err := e.failedErr(); err != nil {
		return nil, err
	}
	if e.opts.ReadOnly {
		return nil, fmt.Errorf("%w: %s", ErrReadOnly, e.dir)
	}
	var zero [16]byte
	e.devMu.RLock()
	target := e.byName[spec.Device]
	var base string
	var stale []*Map
	var found *Map
	err := func() error {
		if target != nil && target.hdr.Kind != kindDevice {
			return fmt.Errorf("%w: %s is not a device", ErrInvalid, spec.Device)
		}
		if target != nil {
			if err := replicable(target); err != nil {
				return err
			}
		}
		if spec.Snap != "" {
			if s, ok := e.byName[spec.Device+"@"+spec.Snap]; ok {
				if s.hdr.GUID == spec.GUID && spec.GUID != zero {
					return fmt.Errorf("%w: %s@%s was received already", ErrExists, spec.Device, spec.Snap)
				}
				return fmt.Errorf("%w: %s@%s exists and is another snapshot", ErrExists, spec.Device, spec.Snap)
			}
		}
		if spec.BaseGUID == zero {
			if target != nil && !spec.Force {
				return fmt.Errorf("%w: device %s exists (a full stream replaces it only when forced)", ErrExists, spec.Device)
			}
		} else {
			if target == nil {
				return fmt.Errorf("%w: device %s (an incremental stream needs its base snapshot here)", ErrNotFound, spec.Device)
			}
			for _, s := range e.snapshotsLocked(target) {
				if s.GUID == spec.BaseGUID {
					base = spec.Device + "@" + s.Name
				}
			}
			if base == "" {
				return fmt.Errorf("%w: device %s has no snapshot with the stream's base GUID %s", ErrNotFound, spec.Device, hex.EncodeToString(spec.BaseGUID[:]))
			}
		}
		for _, m := range e.byID {
			if m.hdr.Target == spec.Device && !m.deleted.Load() && e.byName[m.full] == m {
				if m.hdr.GUID == spec.GUID && m.hdr.BaseGUID == spec.BaseGUID && m.hdr.Size == spec.Size && spec.GUID != zero {
					found = m
				} else {
					stale = append(stale, m)
				}
			}
		}
		return nil
	}()
	e.devMu.RUnlock()
	if err != nil {
		return nil, err
	}
	if base != "" && !spec.Force {
		ch, err := e.Diff(base, spec.Device)
		if err != nil {
			return nil, err
		}
		if len(ch) > 0 {
			return nil, fmt.Errorf("%w: device %s has changed since %s (receive with force to discard the changes)", ErrBusy, spec.Device, base)
		}
	}
	// Staging volumes of other streams to this device: the newest stays
	// until this receive finishes, so that the blocks it holds are found
	// by key (a rerun of sync sends a new snapshot, yet what the
	// interrupted run stored does not travel again); older ones go now.
	sort.Slice(stale, func(i, j int) bool { return stale[i].hdr.ID > stale[j].hdr.ID })
	for i, m := range stale {
		if i == 0 && found == nil {
			continue
		}
		if err := e.DeleteDevice(m.full, DeleteOptions{}); err != nil {
			return nil, err
		}
	}
	if found != nil {
		return &Staging{e: e, m: found, spec: spec, Resumed: true}, nil
	}
	var keep *Map
	if len(stale) > 0 {
		keep = stale[0]
	}
	g := newGUID()
	h := mapHeader{Name: stagingPrefix + hex.EncodeToString(g[:6]), Kind: kindDevice,
		GUID: spec.GUID, BaseGUID: spec.BaseGUID, Target: spec.Device}
	var m *Map
	if base == "" {
		h.Size = spec.Size
		m, err = e.createVolume(h)
	} else {
		m, err = e.shareAs(base, h, nil)
		if err == nil && m.hdr.Size != spec.Size {
			err = fmt.Errorf("%w: the stream's device is %d bytes, its base %s is %d", ErrInvalid, spec.Size, base, m.hdr.Size)
		}
	}
	if err != nil {
		return nil, err
	}
	return &Staging{e: e, m: m, spec: spec, stale: keep}, nil
}

// Blocks is the staging volume's size in blocks.
func (st *Staging) Blocks() uint64 { return st.m.blocks }

// Write stores whole blocks at lbas (ascending, one request: their new
// slots are written together) whose keys, as the sender gave them, are
// keys. Every block is hashed first; one that does not match its key is
// an ErrCorrupt error and nothing is written.
func (st *Staging) Write(lbas []uint64, data []byte, keys []index.Key) error {
	if len(data) != len(keys)*BlockSize || len(lbas) != len(keys) {
		return fmt.Errorf("%w: %d bytes and %d blocks for %d keys", ErrInvalid, len(data), len(lbas), len(keys))
	}
	got := st.e.hashBlocks(st.e.doms.def, data)
	for i := range keys {
		if got[i] != keys[i] {
			return fmt.Errorf("%w: received block %d does not match its key", ErrCorrupt, lbas[i])
		}
	}
	return st.e.writeBlocks(st.m, lbas, data, got)
}

// Zero makes blocks lba..lba+n-1 read as zeros.
func (st *Staging) Zero(lba, n uint64) error {
	return st.e.write(st.m, nil, int64(lba)*BlockSize, true, int64(n)*BlockSize)
}

// Link maps block lba to the stored block whose key is k, if this store
// holds it intact (and links by key at all): it reports whether it did.
func (st *Staging) Link(lba uint64, k index.Key) (bool, error) {
	if !st.e.LinksByKey() || k.IsZero() {
		return false, nil
	}
	if err := st.e.checkRange(st.m, int64(lba)*BlockSize, BlockSize); err != nil {
		return false, err
	}
	if err := st.e.failedErr(); err != nil {
		return false, err
	}
	return st.e.link(st.m, lba, k)
}

// LinkRange maps blocks first..first+len(keys)-1 to the stored blocks of
// keys, those this store holds intact (and links by key at all), as Link
// does one at a time; linked[i] reports whether block first+i was
// linked. A zero key is never linked. It takes the range's locks once, so
// a stream linking a whole image pays per block only for the lookup and
// the reference.
func (st *Staging) LinkRange(first uint64, keys []index.Key, linked []bool) error {
	if len(linked) != len(keys) {
		return fmt.Errorf("%w: %d answers for %d keys", ErrInvalid, len(linked), len(keys))
	}
	clear(linked)
	if len(keys) == 0 || !st.e.LinksByKey() {
		return nil
	}
	if err := st.e.checkRange(st.m, int64(first)*BlockSize, int64(len(keys))*BlockSize); err != nil {
		return err
	}
	if err := st.e.failedErr(); err != nil {
		return err
	}
	return st.e.linkRange(st.m, first, keys, linked)
}

// Flush commits what was received so far, so a rerun after a crash need
// not fetch it again.
func (st *Staging) Flush() error { return st.e.Flush() }

// Finish makes the received volume the device (its old content is
// released in the background) and, if the spec names one, snapshots it,
// all in one commit.
func (st *Staging) Finish() error {
	e := st.e
	if err := e.commit(); err != nil {
		return err
	}
	dev := st.spec.Device
	var old *Map
	err := e.commitWith(func(rec *record) error {
		e.devMu.Lock()
		defer e.devMu.Unlock()
		s := st.m
		if e.byName[s.full] != s {
			return fmt.Errorf("%w: the staging volume of %s", ErrNotFound, dev)
		}
		if st.spec.Snap != "" {
			if _, ok := e.byName[dev+"@"+st.spec.Snap]; ok {
				return fmt.Errorf("%w: %s@%s", ErrExists, dev, st.spec.Snap)
			}
		}
		t := e.byName[dev]
		if t != nil && t.hdr.Kind != kindDevice {
			return fmt.Errorf("%w: %s is not a device", ErrInvalid, dev)
		}
		delete(e.byName, s.full)
		if t == nil {
			// The staging volume becomes the device.
			s.hdr.Name, s.hdr.Target, s.hdr.Origin = dev, "", ""
			s.hdr.GUID, s.hdr.BaseGUID = [16]byte{}, [16]byte{}
			s.full = dev
			e.byName[dev] = s
			e.pages.mu.RLock()
			rec.Vols = append(rec.Vols, volWrite{ID: s.hdr.ID, Content: encodeVolume(s.hdr, s.root)})
			e.pages.mu.RUnlock()
			t = s
		} else {
			// The device takes the staging tree (it keeps its ID, so its
			// snapshots stay its own); its old tree moves to a hidden
			// volume being deleted; the staging file goes.
			oh := t.hdr
			oh.ID, oh.Deleting, oh.Name = e.nextID, true, fmt.Sprintf("replaced-%d", t.hdr.ID)
			e.nextID++
			e.pages.mu.Lock()
			oldRoot := t.root
			t.root, s.root = s.root, nil
			clear(t.rootDirty)
			clear(s.rootDirty)
			t.hdr.Size, t.blocks = s.hdr.Size, s.blocks
			rec.Vols = append(rec.Vols,
				volWrite{ID: oh.ID, Content: encodeVolume(oh, oldRoot)},
				volWrite{ID: t.hdr.ID, Content: encodeVolume(t.hdr, t.root)})
			e.pages.mu.Unlock()
			t.mapped.Store(s.mapped.Load())
			t.lost.Store(s.lost.Load())
			rec.Removes = append(rec.Removes, s.hdr.ID)
			delete(e.byID, s.hdr.ID)
			s.deleted.Store(true)
			e.closeAfter = append(e.closeAfter, s)
			old = newMap(oh, volPath(e.dir, oh.ID), nil, e.pages)
			old.full = oh.Name
			old.root = oldRoot
			old.deleted.Store(true)
			e.byID[oh.ID] = old
		}
		if st.spec.Snap != "" {
			h := mapHeader{ID: e.nextID, Size: t.hdr.Size, Created: time.Now(), Name: st.spec.Snap,
				Kind: kindSnapshot, Parent: t.hdr.ID, GUID: st.spec.GUID}
			e.addShared(rec, t, h, dev+"@"+st.spec.Snap)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if old != nil {
		e.startDelete(old)
	}
	if st.stale != nil {
		if err := e.DeleteDevice(st.stale.full, DeleteOptions{}); err != nil && !errors.Is(err, ErrNotFound) {
			e.log.Warn().Err(err).Str("volume", st.stale.full).Msg("deleting an interrupted receive's staging volume failed (the next receive retries)")
		}
	}
	return nil
}

// link maps block lba of m to the stored block of key k, if there is one
// intact and settled (a block another request is still writing is not
// linked: the caller then sends its data, which deduplicates anyway).
func (e *Engine) link(m *Map, lba uint64, k index.Key) (bool, error) {
	e.epoch.RLock()
	defer e.epoch.RUnlock()
	if m.deleted.Load() {
		return false, fmt.Errorf("%w: %s was deleted", ErrNotFound, m.full)
	}
	unlock := e.locks.lockBlocks(m.hdr.ID, lba, lba)
	defer unlock()
	old, err := m.get(lba)
	if err != nil {
		return false, err
	}
	if old.Key == k && old.holds() && !e.slots.isDamaged(old.Slot) {
		return true, nil
	}
	if err := e.ownLeaves(m, lba, lba); err != nil {
		return false, err
	}
	slot, ok, err := e.acquireStored(k)
	if err != nil || !ok {
		return false, err
	}
	m.set(lba, mapEntry{Key: k, Slot: slot})
	e.changes.Add(1)
	switch {
	case old.isZero():
		m.mapped.Add(1)
	case old.isLost():
		m.lost.Add(-1)
	}
	if old.holds() {
		if err := e.release(old); err != nil {
			e.fail(err)
			return false, err
		}
	}
	return true, nil
}

// linkRange is link for the blocks first.. of keys, under one lock of
// their range: each block whose key this store holds intact is mapped to
// it (linked[i] set); the others are left as they are.
func (e *Engine) linkRange(m *Map, first uint64, keys []index.Key, linked []bool) error {
	e.epoch.RLock()
	defer e.epoch.RUnlock()
	if m.deleted.Load() {
		return fmt.Errorf("%w: %s was deleted", ErrNotFound, m.full)
	}
	last := first + uint64(len(keys)) - 1
	unlock := e.locks.lockBlocks(m.hdr.ID, first, last)
	defer unlock()
	olds := make([]mapEntry, len(keys))
	if err := m.getRange(first, olds); err != nil {
		return err
	}
	owned := false
	marks := make([]dirtyMark, 0, len(keys))
	sets := make([]mapEntry, len(keys))
	var releases []mapEntry
	var mapped, lost int64
	var firstErr error
	for i, k := range keys {
		old := olds[i]
		if k.IsZero() {
			continue
		}
		if old.Key == k && old.holds() && !e.slots.isDamaged(old.Slot) {
			linked[i] = true
			continue
		}
		if !owned {
			// Leaves from here to the end: those of blocks that do not
			// link are taken by the writes of their data.
			if err := e.ownLeaves(m, first+uint64(i), last); err != nil {
				return err
			}
			owned = true
		}
		slot, ok, err := e.acquireStoredMark(k, &marks)
		if err != nil {
			// What was linked so far is mapped below: every reference
			// taken has its entry.
			firstErr = err
			break
		}
		if !ok {
			continue
		}
		linked[i] = true
		sets[i] = mapEntry{Key: k, Slot: slot}
		switch {
		case old.isZero():
			mapped++
		case old.isLost():
			lost++
		}
		if old.holds() {
			releases = append(releases, old)
		}
	}
	e.slots.markDirty(marks)
	if len(marks) == 0 {
		return firstErr
	}
	m.mu.Lock()
	for i := range keys {
		if linked[i] && !sets[i].Key.IsZero() {
			m.cur[first+uint64(i)] = sets[i]
		}
	}
	m.mu.Unlock()
	e.changes.Add(int64(len(marks)))
	m.mapped.Add(mapped)
	m.lost.Add(-lost)
	for _, old := range releases {
		if err := e.release(old); err != nil {
			e.fail(err)
			return err
		}
	}
	return firstErr
}

// acquireStored takes one more reference to the stored block of key k,
// if it is stored, intact and not still being written.
func (e *Engine) acquireStored(k index.Key) (uint64, bool, error) {
	var marks []dirtyMark
	slot, ok, err := e.acquireStoredMark(k, &marks)
	e.slots.markDirty(marks)
	return slot, ok, err
}

// acquireStoredMark is acquireStored that appends the slot's dirty mark
// to marks, for the caller to mark with the others of its range.
func (e *Engine) acquireStoredMark(k index.Key, marks *[]dirtyMark) (uint64, bool, error) {
	kl := e.locks.keyLock(k)
	kl.Lock()
	defer kl.Unlock()
	hit, err := e.ix.Lookup(k)
	if err != nil || !hit.Found {
		return 0, false, err
	}
	if hit.Overlay && e.slots.pendingOf(hit.Slot) != nil {
		return 0, false, nil
	}
	if e.slots.isDamaged(hit.Slot) {
		return 0, false, nil
	}
	e.slots.incRef(hit.Slot)
	*marks = append(*marks, dirtyMark{slot: hit.Slot, key: k})
	if hit.Disk {
		// A stream links runs of blocks stored side by side, as a write
		// of them would find them: the slot records after this one go
		// into the index's cache, so the rest of the run is found in
		// memory instead of one LevelDB read a block.
		e.prefetch(hit.Slot)
	}
	return hit.Slot, true, nil
}

// Abandon drops the staging volume and releases what only it held before
// it returns (a rejected stream leaves nothing behind, not even a
// deletion under way).
func (st *Staging) Abandon() error {
	return st.e.DeleteDevice(st.m.full, DeleteOptions{Wait: true})
}

// ReceivingVolume is a receive's staging volume: under way, or left by an
// interrupted receive for the next one to carry on with.
type ReceivingVolume struct {
	Device     string `json:"device"`
	Snapshot   string `json:"snapshot,omitempty"` // the GUID received, in hex
	DataBlocks int64  `json:"data_blocks"`
	Size       int64  `json:"size"`
}

// Receiving lists the staging volumes.
func (e *Engine) Receiving() []ReceivingVolume {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	var out []ReceivingVolume
	for _, m := range e.byID {
		if m.hdr.Target != "" && !m.deleted.Load() && e.byName[m.full] == m {
			out = append(out, ReceivingVolume{Device: m.hdr.Target, Snapshot: hex.EncodeToString(m.hdr.GUID[:]),
				DataBlocks: m.mapped.Load(), Size: m.hdr.Size})
		}
	}
	return out
}
