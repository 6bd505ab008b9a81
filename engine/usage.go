package engine

import (
	"fmt"
	"sort"
)

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

// domainStats is dedup per domain (nil when the store has none but the
// default). A domain's stored blocks are the distinct slots its volumes
// reference: a walk of each of their maps, one bit per slot. Blocks of
// two domains never share a slot (their keys differ, and a snapshot or
// clone stays in its source's domain), so the default domain's stored
// blocks are the store's less the others'.
func (e *Engine) domainStats(s Stats) ([]DomainStats, error) {
	byDom := map[string]*DomainStats{}
	var order []string
	for _, d := range s.Devices {
		ds := byDom[d.Domain]
		if ds == nil {
			name := d.Domain
			if name == "" {
				name = DefaultDomain
			}
			ds = &DomainStats{Name: name}
			byDom[d.Domain] = ds
			order = append(order, d.Domain)
		}
		if d.Kind == "device" {
			ds.Devices++
			ds.DataBlocks += d.DataBlocks
		}
	}
	if len(byDom) == 0 || (len(byDom) == 1 && byDom[""] != nil) {
		return nil, nil
	}
	e.devMu.RLock()
	vols := map[string][]*Map{}
	for _, m := range e.byName {
		if m.hdr.Domain != "" && !hidden(m.full) {
			vols[m.hdr.Domain] = append(vols[m.hdr.Domain], m)
		}
	}
	e.devMu.RUnlock()
	others := uint64(0)
	ents := make([]mapEntry, mapPerPage)
	for dom, ms := range vols {
		seen := newBitmap(e.slots.highWater())
		for _, m := range ms {
			for first := uint64(0); first < m.blocks; first += mapPerPage {
				n := min(uint64(mapPerPage), m.blocks-first)
				e.reuseMu.RLock()
				err := m.getRange(first, ents[:n])
				e.reuseMu.RUnlock()
				if err != nil {
					return nil, err
				}
				for _, ent := range ents[:n] {
					if ent.holds() && seen.setNew(ent.Slot) {
						byDom[dom].StoredBlocks++
					}
				}
			}
		}
		others += byDom[dom].StoredBlocks
	}
	if d := byDom[""]; d != nil {
		d.StoredBlocks = s.UniqueBlocks - min(s.UniqueBlocks, others)
	}
	sort.Strings(order)
	out := make([]DomainStats, 0, len(order))
	for _, n := range order {
		d := *byDom[n]
		if d.DataBlocks > d.StoredBlocks {
			d.SavedPercent = 100 * float64(d.DataBlocks-d.StoredBlocks) / float64(d.DataBlocks)
		}
		out = append(out, d)
	}
	return out, nil
}

// bitmap is a growable set of slot numbers.
type bitmap []uint64

func newBitmap(n uint64) bitmap { return make(bitmap, (n+63)/64) }

// setNew adds i and reports whether it was not in the set.
func (b *bitmap) setNew(i uint64) bool {
	w := i / 64
	for uint64(len(*b)) <= w {
		*b = append(*b, 0)
	}
	bit := uint64(1) << (i % 64)
	if (*b)[w]&bit != 0 {
		return false
	}
	(*b)[w] |= bit
	return true
}
