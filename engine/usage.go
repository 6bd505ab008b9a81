package engine

import "fmt"

// Used returns the number of stored blocks that deleting volume name (a
// device or "dev@snap") would free: blocks named only by map pages that
// only it holds (zfs list's "used"). It reads the volume's own pages only,
// so its cost follows what the volume does not share. The figure is of the
// moment: writes going on may change it.
func (e *Engine) Used(name string) (uint64, error) {
	e.devMu.RLock()
	m, ok := e.byName[name]
	e.devMu.RUnlock()
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	u, err := e.usage(m)
	return u.freed, err
}

// volumeUsage is what one volume holds alone.
type volumeUsage struct {
	// freed is the stored blocks only this volume references (what
	// deleting it frees).
	freed uint64
	// unique is the volume's data blocks (map entries) whose stored
	// block only this volume references: several of its blocks with the
	// same content count once each, and share one stored block.
	unique uint64
}

// usage walks the map pages only m holds (pages shared with a snapshot,
// clone or device hold blocks that are not m's alone) and counts, per
// stored block, the references from them: a stored block whose reference
// count is that number is referenced by m alone. Its cost is one read of
// each leaf m does not share (a whole device's map when nothing shares
// it: 4 KiB of map per 85 blocks, about 12 MiB per GiB written), and
// memory for the blocks it names that are stored more than once; it runs
// at stats time, off the I/O path, and holds no lock writes wait for
// longer than one leaf's read.
func (e *Engine) usage(m *Map) (volumeUsage, error) {
	ps := e.pages
	// The leaves only this volume holds (in its own tables, held once),
	// by leaf number. A write makes its leaf the volume's own before it
	// takes its references (ownLeaf), so the changes not yet committed
	// are all in these leaves: getRange reads them over the page file.
	var own []uint64
	ps.mu.RLock()
	for t, tp := range m.root {
		if !live(tp) || ps.refs[tp] != 1 {
			continue
		}
		for l, lp := range ps.tables[tp] {
			if live(lp) && ps.refs[lp] == 1 {
				own = append(own, uint64(t)*ptrsPerPage+uint64(l))
			}
		}
	}
	ps.mu.RUnlock()
	// A block referenced once is this volume's alone at once; the others
	// are counted (the map holds only the blocks stored more than once).
	var u volumeUsage
	count := map[uint64]uint32{}
	ents := make([]mapEntry, mapPerPage)
	for _, leaf := range own {
		first := leaf * mapPerPage
		if first >= m.blocks {
			continue
		}
		n := min(uint64(mapPerPage), m.blocks-first)
		// reuseMu keeps the leaf getRange finds from being reused before
		// it is read, as for a read of its blocks; held per leaf, so a
		// commit waits for one leaf, not the walk.
		e.reuseMu.RLock()
		err := m.getRange(first, ents[:n])
		e.reuseMu.RUnlock()
		if err != nil {
			return volumeUsage{}, err
		}
		for _, ent := range ents[:n] {
			switch {
			case !ent.holds():
			case e.slots.refCount(ent.Slot) == 1:
				u.freed++
				u.unique++
			default:
				count[ent.Slot]++
			}
		}
	}
	for slot, n := range count {
		if e.slots.refCount(slot) == n {
			u.freed++
			u.unique += uint64(n)
		}
	}
	return u, nil
}

// DeletingVolume is a deleted volume whose space is being released.
type DeletingVolume struct {
	Name       string `json:"name"`
	TablesLeft int    `json:"tables_left"` // map tables still to release
	Tables     int    `json:"tables"`
}

// Deleting lists the volumes whose space is being released (in the
// background, resumed at open after a crash), with their progress.
func (e *Engine) Deleting() []DeletingVolume {
	e.devMu.RLock()
	var vols []*Map
	for _, m := range e.byID {
		if m.deleted.Load() {
			vols = append(vols, m)
		}
	}
	e.devMu.RUnlock()
	var out []DeletingVolume
	e.pages.mu.RLock()
	defer e.pages.mu.RUnlock()
	for _, m := range vols {
		left := 0
		for _, tp := range m.root {
			if tp != 0 {
				left++
			}
		}
		out = append(out, DeletingVolume{Name: m.full, TablesLeft: left, Tables: len(m.root)})
	}
	return out
}
