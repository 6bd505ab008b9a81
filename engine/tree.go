package engine

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Copy-on-write of map pages (the tree's shape is described in pages.go).
// A write makes the leaves it touches the volume's own first (ownLeaves):
// a hole gets a new zero leaf; a shared table is copied (its leaves gain a
// parent); a shared leaf is copied (its blocks gain a reference: the copy
// names them too). The changes are journaled by the next commit: new
// leaves with their first content, changed tables whole, changed root
// pointers. Lock order: a block's lock -> pages.mu -> a key's lock.

// lostLeaf is the first content of a leaf that replaces a lost one.
func lostLeaf() []byte {
	b := make([]byte, mapPageSize)
	fillLost(b, 0)
	return b
}

// ownLeaves makes every leaf covering blocks first..last the volume's own.
// The caller holds the epoch shared and the blocks' locks.
func (e *Engine) ownLeaves(m *Map, first, last uint64) error {
	for leaf := first / mapPerPage; leaf <= last/mapPerPage; leaf++ {
		if err := e.ownLeaf(m, leaf); err != nil {
			return err
		}
	}
	return nil
}

// leafState reads where leaf stands. The caller holds pages.mu.
func (ps *pageSpace) leafState(m *Map, leaf uint64) (tp, lp uint32, private, copyLeaf bool) {
	tp = m.root[leaf/ptrsPerPage]
	switch {
	case tp == lostPage:
		lp = lostPage
	case tp != 0:
		lp = ps.tables[tp][leaf%ptrsPerPage]
	}
	private = live(tp) && ps.refs[tp] == 1 && live(lp) && ps.refs[lp] == 1
	copyLeaf = live(lp) && (ps.refs[lp] > 1 || ps.refs[tp] > 1)
	return
}

func (e *Engine) ownLeaf(m *Map, leaf uint64) error {
	ps := e.pages
	var src []byte
	var srcPage uint32
	for {
		ps.mu.RLock()
		_, lp, private, copyLeaf := ps.leafState(m, leaf)
		ps.mu.RUnlock()
		if private {
			return nil
		}
		// A shared leaf is read before the lock is taken (it cannot
		// change: it is shared, and pages are reused only after a commit).
		if copyLeaf && srcPage != lp {
			src = make([]byte, mapPageSize)
			if err := ps.readPage(src, lp); err != nil {
				return err
			}
			srcPage = lp
		}
		ps.mu.Lock()
		tp, lp, private, copyLeaf := ps.leafState(m, leaf)
		if private {
			ps.mu.Unlock()
			return nil
		}
		if copyLeaf && srcPage != lp {
			ps.mu.Unlock()
			continue // another writer changed it meanwhile
		}
		t := uint32(leaf / ptrsPerPage)
		// The table.
		if !live(tp) || ps.refs[tp] > 1 {
			n := ps.alloc()
			tbl := new(ptrPage)
			switch {
			case tp == lostPage:
				for i := range tbl {
					tbl[i] = lostPage
				}
			case live(tp):
				*tbl = *ps.tables[tp]
				for _, p := range tbl {
					if live(p) {
						ps.refs[p]++
					}
				}
				ps.refs[tp]--
			}
			ps.tables[n] = tbl
			m.root[t] = n
			m.rootDirty[t] = true
			tp = n
		}
		ps.dirtyTables[tp] = true
		// The leaf.
		tbl := ps.tables[tp]
		l := leaf % ptrsPerPage
		lp = tbl[l]
		var marks []dirtyMark
		switch {
		case lp == 0:
			n := ps.alloc()
			ps.newLeaves[n] = nil
			tbl[l] = n
		case lp == lostPage:
			n := ps.alloc()
			ps.newLeaves[n] = lostLeaf()
			tbl[l] = n
		case ps.refs[lp] > 1:
			n := ps.alloc()
			ps.newLeaves[n] = src
			tbl[l] = n
			ps.refs[lp]--
			// Every block the copy names gains a reference.
			for i := range mapPerPage {
				ent, ok := decodeMapEntry(src[i*mapEntrySize:])
				if !ok || !ent.holds() {
					continue
				}
				kl := e.locks.keyLock(ent.Key)
				kl.Lock()
				e.slots.incRef(ent.Slot)
				kl.Unlock()
				marks = append(marks, dirtyMark{slot: ent.Slot, key: ent.Key})
			}
		}
		ps.mu.Unlock()
		e.slots.markDirty(marks)
		e.changes.Add(int64(1 + len(marks)))
		return nil
	}
}

// shareRoot returns a copy of m's root whose tables gain a parent: a
// snapshot or clone of m. The caller holds the epoch exclusively.
func (e *Engine) shareRoot(m *Map) []uint32 {
	ps := e.pages
	ps.mu.Lock()
	defer ps.mu.Unlock()
	root := slices.Clone(m.root)
	for _, tp := range root {
		if live(tp) {
			ps.refs[tp]++
		}
	}
	return root
}

// dropRoot removes m's root pointer t once dropLeaves has emptied the
// table t names (or that table is shared, lost or a hole): the volume
// gives up its parent reference, and a table that had no other parent is
// freed. again reports a table that became the volume's alone with
// leaves still in it: nothing changed, release the leaves (dropLeaves)
// and call again. The caller holds the epoch shared.
func (e *Engine) dropRoot(m *Map, t int) (again bool, err error) {
	ps := e.pages
	ps.mu.Lock()
	defer ps.mu.Unlock()
	tp := m.root[t]
	if tp == 0 {
		return false, nil
	}
	if live(tp) && ps.refs[tp] == 1 {
		for _, lp := range ps.tables[tp] {
			if lp != 0 {
				// The table was shared when its leaves were looked at,
				// and its other holders let go of it since (a write
				// copied it, a delete released it): its leaves are
				// this volume's to release first.
				return true, nil
			}
		}
		delete(ps.tables, tp)
		delete(ps.dirtyTables, tp)
	}
	m.root[t] = 0
	m.rootDirty[uint32(t)] = true
	ps.dropRef(tp)
	e.changes.Add(1)
	return false, nil
}

// dropLeaves removes up to max leaf pointers from m's table t when only m
// holds that table, releasing what only those leaves held; done reports
// that no leaf is left in it (or the table is shared, or a hole). The
// caller holds the epoch shared (the pointers and the releases go into
// one commit). It returns the number of block references released.
func (e *Engine) dropLeaves(m *Map, t, max int) (released int, done bool, err error) {
	ps := e.pages
	ps.mu.Lock()
	tp := m.root[t]
	if !live(tp) || ps.refs[tp] != 1 {
		ps.mu.Unlock()
		return 0, true, nil
	}
	tbl := ps.tables[tp]
	var leaves []uint32
	n := 0
	for l, lp := range tbl {
		if lp == 0 {
			continue
		}
		if n == max {
			break
		}
		n++
		tbl[l] = 0
		if live(lp) && ps.dropRef(lp) {
			leaves = append(leaves, lp)
		}
	}
	ps.dirtyTables[tp] = true
	ps.mu.Unlock()
	released, err = e.releaseLeaves(leaves)
	e.changes.Add(int64(1 + released))
	return released, n < max, err
}

// releaseLeaves drops a reference to every block the freed leaves name.
// Their pages keep their content until the next commit is applied: only
// then are they reused.
func (e *Engine) releaseLeaves(leaves []uint32) (int, error) {
	released := 0
	buf := make([]byte, mapPageSize)
	for _, lp := range leaves {
		if err := e.pages.readPage(buf, lp); err != nil {
			return released, err
		}
		for i := range mapPerPage {
			ent, ok := decodeMapEntry(buf[i*mapEntrySize:])
			if !ok || !ent.holds() {
				continue
			}
			if err := e.release(ent); err != nil {
				return released, err
			}
			released++
		}
	}
	return released, nil
}

// Range is a run of blocks [Start, Start+Blocks) of a device.
type Range struct {
	Start  uint64 `json:"start"`
	Blocks uint64 `json:"blocks"`
}

// diffMaps lists the blocks whose content differs between a and b (both
// committed: no pending changes). Subtrees a and b share are skipped
// without reading them, so the cost follows the change, not the size.
func (e *Engine) diffMaps(a, b *Map) ([]Range, error) {
	type pair struct {
		first  uint64
		pa, pb uint32
	}
	ps := e.pages
	var leaves []pair
	ps.mu.RLock()
	blocks := max(a.blocks, b.blocks)
	at := func(root []uint32, t int) uint32 {
		if t < len(root) {
			return root[t]
		}
		return 0
	}
	for t := range rootsFor(blocks) {
		ta, tb := at(a.root, t), at(b.root, t)
		if ta == tb && ta != lostPage {
			continue
		}
		for l := range ptrsPerPage {
			first := uint64(t)*tableBlocks + uint64(l)*mapPerPage
			if first >= blocks {
				break
			}
			la, lb := tablePtr(ps, ta, l), tablePtr(ps, tb, l)
			if la != lb || la == lostPage {
				leaves = append(leaves, pair{first, la, lb})
			}
		}
	}
	ps.mu.RUnlock()
	var out []Range
	add := func(lba uint64) {
		if n := len(out); n > 0 && out[n-1].Start+out[n-1].Blocks == lba {
			out[n-1].Blocks++
			return
		}
		out = append(out, Range{Start: lba, Blocks: 1})
	}
	ea, eb := make([]mapEntry, mapPerPage), make([]mapEntry, mapPerPage)
	for _, p := range leaves {
		if err := ps.readEntries(p.pa, 0, ea); err != nil {
			return nil, err
		}
		if err := ps.readEntries(p.pb, 0, eb); err != nil {
			return nil, err
		}
		for i := range mapPerPage {
			lba := p.first + uint64(i)
			if lba >= blocks {
				break
			}
			// Content is compared by key: the slot is a local hint.
			if ea[i].Key != eb[i].Key || ea[i].isLost() {
				add(lba)
			}
		}
	}
	return out, nil
}

// tablePtr is pointer l of table tp (a hole or lost table included). The
// caller holds pages.mu.
func tablePtr(ps *pageSpace, tp uint32, l int) uint32 {
	switch {
	case tp == 0:
		return 0
	case tp == lostPage:
		return lostPage
	}
	return ps.tables[tp][l]
}

// walkPages counts, at open, the parents of every page: a table's are the
// roots naming it, a leaf's the live tables naming it. Each table is read
// once, leaves not at all. A table that cannot be read or fails its
// checksum is lost for every volume naming it (their blocks under it read
// as I/O errors until written; fsck lists them).
func (e *Engine) walkPages(maps []*Map) error {
	ps := e.pages
	size, err := ps.f.Size()
	if err != nil {
		return fmt.Errorf("engine: map pages: %w", err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.hwm = max(1, uint32(min(int64(lostPage-1), (size+mapPageSize-1)/mapPageSize)))
	ps.refs = make([]uint32, ps.hwm)
	buf := make([]byte, mapPageSize)
	lost := map[uint32]bool{}
	for _, m := range maps {
		for t, tp := range m.root {
			if !live(tp) {
				continue
			}
			if lost[tp] || tp >= ps.hwm {
				m.root[t] = lostPage
				m.rootDirty[uint32(t)] = true
				if !lost[tp] {
					lost[tp] = true
					e.log.Error().Str("volume", m.full).Uint32("page", tp).
						Msg("map table page is past the end of the page file: the blocks under it read as I/O errors until written")
				}
				continue
			}
			ps.refs[tp]++
			if ps.refs[tp] > 1 {
				continue
			}
			n, err := ps.f.ReadAt(buf, int64(tp)*mapPageSize)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("engine: read map table %d: %w", tp, err)
			}
			tbl, err := decodePtrPage(buf[:n]) // cut short: lost
			if err != nil {
				e.log.Error().Err(err).Str("volume", m.full).Uint32("page", tp).
					Msg("map table page is damaged: the blocks under it read as I/O errors until written (fsck lists them)")
				ps.refs[tp] = 0
				lost[tp] = true
				m.root[t] = lostPage
				m.rootDirty[uint32(t)] = true
				continue
			}
			for i, lp := range tbl {
				if live(lp) && lp >= ps.hwm {
					tbl[i] = lostPage // named past the file's end
					ps.dirtyTables[tp] = true
				}
			}
			ps.tables[tp] = tbl
			for _, lp := range tbl {
				if live(lp) {
					ps.refs[lp]++
				}
			}
		}
	}
	// A root or table that named a lost page now names lostPage: the next
	// commit writes it (rootDirty, dirtyTables), before or with any reuse
	// of the lost page, which is free from now on. Free pages: every page
	// no one names.
	ps.free = ps.free[:0]
	for n := ps.hwm - 1; n >= 1; n-- { // highest first: low pages are handed out first
		if ps.refs[n] == 0 {
			ps.free = append(ps.free, n)
		}
	}
	return nil
}
