package engine

import (
	"os"
	"sort"

	"blockhash/vfs"
)

// Loading the volumes at open, after the journal replay: their roots, the
// parents of every map page (walkPages, tree.go), and each volume's counts
// of mapped and quarantined blocks.

// loadTrees reads every volume's root and counts the parents of every
// map page.
func (e *Engine) loadTrees() error {
	vols := make([]*Map, 0, len(e.byID))
	for _, m := range e.byID {
		if err := m.loadRoot(e.log); err != nil {
			return err
		}
		vols = append(vols, m)
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].hdr.ID < vols[j].hdr.ID })
	// An offline volume's pages stay taken (its header may be rebuilt by
	// fsck --repair): its root pages are read as far as they are sound.
	for _, b := range e.broken {
		if root := salvageRoot(e.fs, b.Path); len(root) > 0 {
			vols = append(vols, &Map{full: b.Name, root: root, rootDirty: map[uint32]bool{}, ps: e.pages})
		}
	}
	return e.walkPages(vols)
}

// salvageRoot reads the root pages of a volume file whose header is
// damaged, up to the first that fails its checksum.
func salvageRoot(fsys vfs.FS, path string) []uint32 {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	var root []uint32
	b := make([]byte, mapPageSize)
	for off := int64(rootOffset); ; off += mapPageSize {
		if n, _ := f.ReadAt(b, off); n < mapPageSize {
			return root
		}
		p, err := decodePtrPage(b)
		if err != nil {
			return root
		}
		root = append(root, p[:]...)
	}
}

// closeMaps closes every volume file and forgets the volumes.
func (e *Engine) closeMaps() {
	for _, m := range e.byID {
		m.close()
	}
	e.byID, e.byName, e.broken = map[uint32]*Map{}, map[string]*Map{}, nil
}

// scanMaps reads every volume's map: counts, and quarantined entries. A
// leaf shared by several volumes is read once.
func (e *Engine) scanMaps() error {
	type counts struct{ mapped, lost int64 }
	leafCounts := map[uint32]counts{}
	buf := make([]byte, mapPageSize)
	for _, m := range e.byID {
		var mapped, lost int64
		for _, sp := range m.leaves() {
			n := int64(min(mapPerPage, m.blocks-sp.first))
			if !live(sp.page) {
				mapped += n
				lost += n
				continue
			}
			c, ok := leafCounts[sp.page]
			if !ok {
				if err := e.pages.readPage(buf, sp.page); err != nil {
					return err
				}
				for i := range int(n) {
					ent, ok := decodeMapEntry(buf[i*mapEntrySize:])
					if !ok {
						ent = quarantined
					}
					if !ent.isZero() {
						c.mapped++
					}
					if ent.isLost() {
						c.lost++
					}
				}
				leafCounts[sp.page] = c
			}
			mapped += c.mapped
			lost += c.lost
		}
		m.mapped.Store(mapped)
		m.lost.Store(lost)
		if lost > 0 && !m.hdr.Deleting {
			e.log.Error().Str("volume", m.full).Int64("blocks", lost).
				Msg("volume has quarantined blocks (damaged map entries): they read as I/O errors until written; run blockhash fsck")
		}
	}
	return nil
}
