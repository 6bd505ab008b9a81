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
	ps := e.pages
	// The leaves only this volume holds: in its own tables, held once.
	var own []uint32
	ps.mu.RLock()
	for _, tp := range m.root {
		if !live(tp) || ps.refs[tp] != 1 {
			continue
		}
		for _, lp := range ps.tables[tp] {
			if live(lp) && ps.refs[lp] == 1 {
				own = append(own, lp)
			}
		}
	}
	ps.mu.RUnlock()
	// Holding reuseMu keeps the pages from being reused while they are read.
	e.reuseMu.RLock()
	defer e.reuseMu.RUnlock()
	count := map[uint64]uint32{}
	ents := make([]mapEntry, mapPerPage)
	for _, lp := range own {
		if err := ps.readEntries(lp, 0, ents); err != nil {
			return 0, err
		}
		for _, ent := range ents {
			if ent.holds() {
				count[ent.Slot]++
			}
		}
	}
	var freed uint64
	for slot, n := range count {
		if e.slots.refCount(slot) == n {
			freed++
		}
	}
	return freed, nil
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
