package pool

import "sync"

// refCounter is the host's reference counts (rados.Refs in a served
// pool; a plain map in tests). devMap tells it of references it lets go;
// the caller counts the references it hands in (a written block's
// location) before calling set.
type refCounter interface {
	dropRef(loc uint64)
}

// devMap is one device's map in RAM while a host holds its lease: the
// entry of every mapped block, and which entries differ from the pool's
// copy (dirty) since the last flush.
//
// References: every mapped entry holds one reference to its location
// (the "current" role); a dirty entry also holds one to the location the
// pool's copy names ("old", 0 if none), until the flush that replaces it
// lands, because until then a crash would bring the old entry back. An
// in-flight flush's entries are owned by the flush: a write to one of
// its blocks meanwhile makes the in-flight value the block's old value.
//
// mu guards every field; it is never held across I/O. Flushes are
// serialised by the caller (Device.flushMu).
type devMap struct {
	mu    sync.Mutex
	refs  refCounter
	cur   map[uint64]Entry  // block -> entry; absent: zero block
	dirty map[uint64]uint64 // block -> old location (0: none to drop)
	fly   map[uint64]flight // the in-flight flush's blocks
}

type flight struct {
	e   Entry  // what the flush writes (zero Loc: removes the entry)
	old uint64 // what it replaces in the pool's copy
}

func newDevMap(refs refCounter) *devMap {
	return &devMap{refs: refs, cur: map[uint64]Entry{}, dirty: map[uint64]uint64{}}
}

// load sets a clean entry (from the pool's copy, at takeover). The caller
// counted its reference.
func (m *devMap) load(b uint64, e Entry) {
	m.mu.Lock()
	m.cur[b] = e
	m.mu.Unlock()
}

// get returns block b's entry (zero Loc: a zero block).
func (m *devMap) get(b uint64) Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur[b]
}

// setLocked maps block b to e (e.Loc 0: a zero block). e's reference
// was counted by the caller.
func (m *devMap) setLocked(b uint64, e Entry) {
	prev := m.cur[b].Loc
	if _, ok := m.dirty[b]; ok {
		if prev != 0 {
			m.refs.dropRef(prev) // never reached the pool
		}
	} else {
		m.dirty[b] = prev // the pool's copy (or the flight's) keeps its reference
	}
	if e.Loc == 0 {
		delete(m.cur, b)
	} else {
		m.cur[b] = e
	}
}

// edge is a block a write reads before it changes part of it (a
// partial first or last block): the content key the block had then.
type edge struct {
	b   uint64
	key [KeySize]byte
}

// setIf maps blocks first, first+1, ... to es (setLocked) if every
// edge block still holds the content it held when the write read it,
// all under one lock; otherwise it changes nothing and returns false (a
// concurrent write changed the block: the caller reads and merges
// again). Two writes to different sectors of one block (a file system
// of 1 KiB blocks) would otherwise each store the block as it read it,
// and the later one would undo the other's sectors. es's references
// were counted by the caller, who drops them on false.
func (m *devMap) setIf(first uint64, es []Entry, edges []edge) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range edges {
		if m.cur[x.b].Key != x.key {
			return false
		}
	}
	for i, e := range es {
		m.setLocked(first+uint64(i), e)
	}
	return true
}

// remap re-points entries along moved (old -> new location); the
// reference counts moved already (rados.Refs.Remap). A moved clean entry
// becomes dirty with nothing old to drop. It must not run during a flush.
func (m *devMap) remap(moved map[uint64]uint64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for b, e := range m.cur {
		if nw, ok := moved[e.Loc]; ok {
			e.Loc = nw
			m.cur[b] = e
			if _, ok := m.dirty[b]; !ok {
				m.dirty[b] = 0
			}
			n++
		}
	}
	for b, old := range m.dirty {
		if nw, ok := moved[old]; ok {
			m.dirty[b] = nw
		}
	}
	return n
}

// locs lists the location of every entry, current and old (for a
// release: every reference the map holds).
func (m *devMap) locs() []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]uint64, 0, len(m.cur)+len(m.dirty))
	for _, e := range m.cur {
		out = append(out, e.Loc)
	}
	for _, old := range m.dirty {
		if old != 0 {
			out = append(out, old)
		}
	}
	return out
}

// takeDirty starts a flush: the dirty blocks, grouped by shard, become
// the flight.
func (m *devMap) takeDirty() map[uint64][]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.dirty) == 0 {
		return nil
	}
	m.fly = make(map[uint64]flight, len(m.dirty))
	byShard := map[uint64][]uint64{}
	for b, old := range m.dirty {
		m.fly[b] = flight{e: m.cur[b], old: old}
		byShard[b/ShardBlocks] = append(byShard[b/ShardBlocks], b)
	}
	m.dirty = map[uint64]uint64{}
	return byShard
}

// flightOf returns what the flight writes for blocks.
func (m *devMap) flightOf(blocks []uint64) []Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Entry, len(blocks))
	for i, b := range blocks {
		out[i] = m.fly[b].e
	}
	return out
}

// landed ends the flight of blocks whose shard write landed: the old
// values' references go.
func (m *devMap) landed(blocks []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blocks {
		if f := m.fly[b]; f.old != 0 {
			m.refs.dropRef(f.old)
		}
		delete(m.fly, b)
	}
}

// failed ends the flight of blocks whose shard write failed: they are
// dirty again, against the pool's copy they had before.
func (m *devMap) failed(blocks []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blocks {
		f := m.fly[b]
		delete(m.fly, b)
		if mid, ok := m.dirty[b]; ok {
			// written again meanwhile: the flight's value was its old
			// value, and never reached the pool
			if mid != 0 {
				m.refs.dropRef(mid)
			}
		}
		m.dirty[b] = f.old
	}
}

// dirtyLen is the number of blocks not yet flushed.
func (m *devMap) dirtyLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.dirty) + len(m.fly)
}

// mapped is the number of mapped blocks.
func (m *devMap) mapped() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cur)
}

// repoint maps every block whose location is a key of to to its value
// (a merge: this host's copy of a content another host indexed first),
// counting each new reference with count first. It returns how many
// entries it changed.
func (m *devMap) repoint(to map[uint64]uint64, count func(uint64)) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for b, e := range m.cur {
		if nw, ok := to[e.Loc]; ok && nw != e.Loc {
			count(nw)
			e.Loc = nw
			m.setLocked(b, e)
			n++
		}
	}
	return n
}
