//go:build rados

package pool

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"time"

	"blockhash/blockstore"
	"blockhash/rados"
)

// Device is one device of the pool as this host sees it. Opened, it is
// passive: reads come from the pool's copy of its map, and the first
// write (or Take) takes its lease, asking the holder to hand it over, or
// fencing a holder that is gone. Held, it serves reads and writes from
// its map in RAM and makes writes durable at Flush. A hand-over request
// from another host flushes it and lets the lease go; it is passive
// again. A lease lost any other way (broken after this host was fenced)
// is sticky: every later I/O fails with ErrLost.
//
// Concurrency: I/O holds state shared; taking and letting go of the
// lease hold it exclusively (so they wait for the I/O in flight).
// flushMu serialises flushes and the GC's remaps. Safe for concurrent use.
type Device struct {
	p     *Pool
	hdr   DeviceHeader
	lease *rados.Lease
	watch *rados.Handover

	// acquiring is set while this host takes the lease: a hand-over
	// request that arrives meanwhile (its own notify, or another host's)
	// is answered "busy" instead of waiting for the state lock.
	acquiring atomic.Bool
	// lost is the sticky error of a lease lost by a fence.
	lost atomic.Pointer[error]

	// state guards held, shards and closed (see above).
	state  sync.RWMutex
	held   bool
	shards []*rados.Lease
	closed bool

	// mmu guards m, the map while held (nil when not).
	mmu sync.Mutex
	m   *devMap

	flushMu sync.Mutex
}

// Create makes a device of size bytes (a multiple of 4 KiB). A device of
// that name is ErrExists, unchanged.
func (p *Pool) Create(name string, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if size <= 0 || size%BlockSize != 0 {
		return fmt.Errorf("%w: size %d (a positive multiple of %d)", ErrInvalid, size, BlockSize)
	}
	var id [8]byte
	for binary.LittleEndian.Uint64(id[:]) == 0 {
		rand.Read(id[:])
	}
	h := DeviceHeader{Format: formatPool, Name: name, ID: binary.LittleEndian.Uint64(id[:]), Size: size}
	if err := p.c.CreateObject(devObject(name), h.encode()); err != nil {
		if errors.Is(err, rados.ErrExists) {
			return fmt.Errorf("%w: device %s", ErrExists, name)
		}
		return err
	}
	p.log.Info().Str("device", name).Int64("size", size).Msg("device created")
	return nil
}

// readHeader reads a device's header.
func readHeader(c *rados.Conn, name string) (DeviceHeader, error) {
	if err := checkName(name); err != nil {
		return DeviceHeader{}, err
	}
	b, err := c.Read(devObject(name))
	if errors.Is(err, rados.ErrNoObject) {
		return DeviceHeader{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return DeviceHeader{}, err
	}
	if len(b) == 0 {
		// a lock taken on a deleted device's header makes it anew, empty
		return DeviceHeader{}, fmt.Errorf("%w: %s", errEmptyHeader, name)
	}
	h, err := decodeDeviceHeader(b)
	if err == nil && h.Name != name {
		err = fmt.Errorf("%w: header of %s names %s", ErrCorrupt, name, h.Name)
	}
	return h, err
}

// Open returns the device (passive until written or taken). Opening one
// already open returns the same Device.
func (p *Pool) Open(name string) (*Device, error) {
	h, err := readHeader(p.c, name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if d, ok := p.devs[name]; ok {
		return d, nil
	}
	d := &Device{p: p, hdr: h, lease: p.c.Lease(devObject(name), p.cookie())}
	if d.watch, err = d.lease.Requests(d.onRequest); err != nil {
		return nil, err
	}
	p.devs[name] = d
	return d, nil
}

// Name is the device's name.
func (d *Device) Name() string { return d.hdr.Name }

// Size is the device's size in bytes.
func (d *Device) Size() int64 { return d.hdr.Size }

// Held reports whether this host holds the device's lease.
func (d *Device) Held() bool {
	d.state.RLock()
	defer d.state.RUnlock()
	return d.held
}

func (d *Device) nShards() uint64 {
	return (uint64(d.hdr.Size)/BlockSize + ShardBlocks - 1) / ShardBlocks
}

func (d *Device) getMap() *devMap {
	d.mmu.Lock()
	defer d.mmu.Unlock()
	return d.m
}

// onRequest answers another host's hand-over request.
func (d *Device) onRequest() string {
	if d.acquiring.Load() {
		return "busy"
	}
	if err := d.letGo(); err != nil {
		return "refused: " + err.Error()
	}
	return "released"
}

// Take takes the device's lease now (the daemon's add does, so that the
// device is this host's before its kernel device appears). How says
// how: free, hand-over or fence.
func (d *Device) Take() (how string, err error) {
	d.state.Lock()
	defer d.state.Unlock()
	return d.takeLocked(false)
}

// TakeIfFree takes the lease if no host holds it, and reports whether
// this host holds it now. A device another host holds stays passive:
// its first write here takes it (a live migration's destination).
func (d *Device) TakeIfFree() (bool, error) {
	d.state.Lock()
	defer d.state.Unlock()
	_, err := d.takeLocked(true)
	if errors.Is(err, rados.ErrLeaseHeld) {
		return false, nil
	}
	return err == nil, err
}

func (d *Device) takeLocked(onlyIfFree bool) (string, error) {
	if d.closed {
		return "", ErrClosed
	}
	if e := d.lost.Load(); e != nil {
		return "", *e
	}
	if d.held {
		return "held", nil
	}
	d.acquiring.Store(true)
	defer d.acquiring.Store(false)
	p := d.p
	how := rados.TookFree
	var err error
	if onlyIfFree {
		err = d.lease.Acquire()
	} else {
		how, err = d.takeLease()
	}
	if err != nil {
		return "", err
	}
	undo := func() {
		for _, l := range d.shards {
			_ = l.Release()
		}
		d.shards = nil
		_ = d.lease.Release()
	}
	// The device may have been deleted (by another host) since it was
	// opened here: a lock on its header object would then have made an
	// empty one. Such a device is gone, and stays so.
	if h, err := readHeader(p.c, d.hdr.Name); err != nil || h.ID != d.hdr.ID {
		undo()
		if b, rerr := p.c.Read(devObject(d.hdr.Name)); rerr == nil && len(b) == 0 {
			_ = p.c.Delete(devObject(d.hdr.Name))
		}
		return "", fmt.Errorf("%w: %s was deleted", ErrNotFound, d.hdr.Name)
	}
	// Every map shard carries a copy of the lease, so that each map
	// write asserts it on the object it writes. A previous holder's
	// shard locks are broken: it let go (hand-over) or was fenced.
	for s := range d.nShards() {
		l := p.c.Lease(mapObject(d.hdr.ID, s), p.cookie())
		err := l.Acquire()
		if errors.Is(err, rados.ErrLeaseHeld) {
			var hs []rados.Holder
			if hs, err = l.Holders(); err == nil && len(hs) > 0 {
				err = l.Break(hs[0])
			} else if err == nil {
				err = l.Acquire()
			}
		}
		if err != nil {
			undo()
			return "", err
		}
		d.shards = append(d.shards, l)
	}
	m := newDevMap(p)
	var locs []rados.Loc
	err = p.refs.Do(func() error {
		for s := range d.nShards() {
			kv, err := p.c.OmapAll(mapObject(d.hdr.ID, s), "")
			if err != nil {
				return err
			}
			for k, v := range kv {
				b, e, err := decodeEntry(k, v)
				if err != nil {
					return fmt.Errorf("device %s shard %d: %w", d.hdr.Name, s, err)
				}
				m.load(s*ShardBlocks+b, e)
				locs = append(locs, rados.Loc(e.Loc))
			}
		}
		p.refs.Add(locs...)
		return nil
	})
	if err != nil {
		undo()
		return "", err
	}
	d.mmu.Lock()
	d.m = m
	d.mmu.Unlock()
	d.held = true
	p.log.Info().Str("device", d.hdr.Name).Str("how", how).Int("mapped", len(locs)).Msg("device taken")
	return how, nil
}

// takeLease takes the header lease, asking the holder to hand it over
// and retrying while it watches without answering (up to TakeTimeout).
func (d *Device) takeLease() (string, error) {
	p := d.p
	deadline := time.Now().Add(p.o.TakeTimeout)
	for {
		hs, _ := d.lease.Holders()
		how, err := d.lease.Take(p.o.HandoverTimeout)
		if err == nil {
			if how == rados.TookFence && len(hs) > 0 {
				p.log.Warn().Str("device", d.hdr.Name).Str("holder", hs[0].Cookie).Str("addr", hs[0].Addr).Msg("holder fenced")
				p.markFenced(hs[0].Cookie)
			}
			return how, nil
		}
		if !errors.Is(err, rados.ErrLeaseHeld) && !errors.Is(err, rados.ErrNotAnswering) || time.Now().After(deadline) {
			return "", fmt.Errorf("%w: %s: %w", ErrHeld, d.hdr.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// letGo flushes and lets the lease go (a hand-over); the device stays
// open, passive.
func (d *Device) letGo() error {
	d.state.Lock()
	defer d.state.Unlock()
	return d.letGoLocked()
}

func (d *Device) letGoLocked() error {
	if !d.held {
		return nil
	}
	// The index inserts of its blocks go first: once its map is let go
	// this host no longer references them, and inserts only what it
	// references (Merge). A merge re-points entries: the flush writes
	// them.
	if _, err := d.p.Merge(); err != nil {
		return err
	}
	if err := d.flush(); err != nil {
		return err
	}
	for _, l := range d.shards {
		if err := l.Release(); err != nil && !errors.Is(err, rados.ErrNotHeld) {
			return err
		}
	}
	d.shards = nil
	if err := d.lease.Release(); err != nil && !errors.Is(err, rados.ErrNotHeld) {
		return err
	}
	d.dropMap()
	d.held = false
	d.p.log.Info().Str("device", d.hdr.Name).Msg("device let go")
	return nil
}

// dropMap forgets the map and its references (the pool's copy names
// every one of them that still counts: GC reads the maps).
func (d *Device) dropMap() {
	d.mmu.Lock()
	m := d.m
	d.m = nil
	d.mmu.Unlock()
	if m == nil {
		return
	}
	for _, l := range m.locs() {
		d.p.dropRef(l)
	}
}

// markLost makes the device's I/O fail from now on: its lease was taken
// from this host.
func (d *Device) markLost(err error) {
	e := fmt.Errorf("%w: %s: %w", ErrLost, d.hdr.Name, err)
	if d.lost.CompareAndSwap(nil, &e) {
		d.p.log.Error().Err(err).Str("device", d.hdr.Name).Msg("device lease lost: its I/O fails until it is added again")
	}
}

// withHeld runs f holding state shared with the lease held, taking the
// lease first if need be.
func (d *Device) withHeld(f func(m *devMap) error) error {
	for {
		if e := d.lost.Load(); e != nil {
			return *e
		}
		d.state.RLock()
		if d.closed {
			d.state.RUnlock()
			return ErrClosed
		}
		if d.held {
			err := f(d.getMap())
			d.state.RUnlock()
			return err
		}
		d.state.RUnlock()
		if _, err := d.Take(); err != nil {
			return err
		}
	}
}

func (d *Device) checkRange(n int, off int64) error {
	if off < 0 || int64(n) > d.hdr.Size-off {
		return fmt.Errorf("%w: %d bytes at %d: past the device's end (%d)", ErrInvalid, n, off, d.hdr.Size)
	}
	return nil
}

// blockKey is a block's content key (SHA-256 + CRC-32C, as the engine's
// index key); zero blocks are not keyed.
func blockKey(b []byte) (k [KeySize]byte) {
	s := sha256.Sum256(b)
	copy(k[:], s[:])
	binary.BigEndian.PutUint32(k[32:], crc32.Checksum(b, castagnoli))
	return k
}

// WriteAt writes p at off (any alignment: partial blocks are read,
// merged and written whole). It takes the lease if this host does not
// hold it. Durable at the next Flush.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if err := d.checkRange(len(p), off); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	err := d.withHeld(func(m *devMap) error { return d.write(m, p, off) })
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAtFUA writes and flushes.
func (d *Device) WriteAtFUA(p []byte, off int64) (int, error) {
	n, err := d.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, d.Flush()
}

func (d *Device) write(m *devMap, p []byte, off int64) error {
	first := uint64(off) / BlockSize
	last := (uint64(off) + uint64(len(p)) - 1) / BlockSize
	n := int(last - first + 1)
	for {
		data := make([]byte, n*BlockSize)
		// partial first and last blocks: read what is there, and store
		// the merge only if they still hold it (setIf)
		var edges []edge
		if off%BlockSize != 0 {
			k, err := d.readEdge(m, data[:BlockSize], first)
			if err != nil {
				return err
			}
			edges = append(edges, edge{first, k})
		}
		if end := uint64(off) + uint64(len(p)); end%BlockSize != 0 && (n > 1 || off%BlockSize == 0) {
			k, err := d.readEdge(m, data[(n-1)*BlockSize:], last)
			if err != nil {
				return err
			}
			edges = append(edges, edge{last, k})
		}
		copy(data[uint64(off)-first*BlockSize:], p)
		if err := d.p.store(m, first, data, edges); !errors.Is(err, errRaced) {
			return err
		}
	}
}

// store maps data's blocks (whole blocks from block first on) into m:
// zero blocks unmapped, duplicates of a content this host holds
// referenced, the rest written to this host's packs and queued for the
// index. The blocks are mapped all at once, and only if each edge block
// still holds the content the write read (else errRaced, nothing mapped:
// what went to the packs is garbage).
func (p *Pool) store(m *devMap, first uint64, data []byte, edges []edge) error {
	n := len(data) / BlockSize
	entries := make([]Entry, n)
	keys := make([][KeySize]byte, n)
	zero := make([]bool, n)
	for i := range n {
		b := data[i*BlockSize : (i+1)*BlockSize]
		if zero[i] = blockstore.IsZero(b); !zero[i] {
			keys[i] = blockKey(b)
		}
	}
	return p.refs.Do(func() error {
		var hits []rados.Loc
		var locs []uint64
		var missKeys [][]byte
		var missData []byte
		missOf := map[[KeySize]byte]int{} // key -> its index among the misses
		miss := make([]int, n)            // block i -> its miss index, or -1
		for i := range n {
			miss[i] = -1
			if zero[i] {
				continue
			}
			if l := p.cache.get(keys[i]); l != 0 && p.refs.AddIfHeld(rados.Loc(l)) {
				entries[i] = Entry{Key: keys[i], Loc: l}
				hits = append(hits, rados.Loc(l))
				continue
			}
			j, ok := missOf[keys[i]]
			if !ok {
				j = len(missKeys)
				missOf[keys[i]] = j
				missKeys = append(missKeys, keys[i][:])
				missData = append(missData, data[i*BlockSize:(i+1)*BlockSize]...)
			}
			miss[i] = j
		}
		if len(missKeys) > 0 {
			tags := make([][KeySize]byte, len(missKeys))
			for j, k := range missKeys {
				copy(tags[j][:], k)
			}
			var err error
			if locs, err = p.puts.put(tags, missData); err != nil {
				if len(hits) > 0 {
					_ = p.refs.Drop(hits...)
				}
				return err
			}
			for j, l := range locs {
				p.cache.put(tags[j], uint64(l))
			}
			for i := range n {
				if j := miss[i]; j >= 0 {
					entries[i] = Entry{Key: keys[i], Loc: uint64(locs[j])}
					p.refs.Add(rados.Loc(locs[j]))
				}
			}
		}
		if !m.setIf(first, entries, edges) {
			var held []rados.Loc
			for _, e := range entries {
				if e.Loc != 0 {
					held = append(held, rados.Loc(e.Loc))
				}
			}
			if err := p.refs.Drop(held...); err != nil {
				return err
			}
			return errRaced
		}
		// Queued last: a merge running meanwhile (the merge loop's)
		// must find the new locations referenced (it drops the others
		// uninserted) and mapped (it re-points only mapped entries).
		for j, k := range missKeys {
			p.q.Add(k, rados.Loc(locs[j]))
		}
		return nil
	})
}

// ReadAt reads len(p) bytes at off. Held, from the map in RAM; not held,
// from the pool's copy of the map (what the holder last flushed), with
// no lease taken.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if err := d.checkRange(len(p), off); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if e := d.lost.Load(); e != nil {
		return 0, *e
	}
	d.state.RLock()
	defer d.state.RUnlock()
	if d.closed {
		return 0, ErrClosed
	}
	first := uint64(off) / BlockSize
	last := (uint64(off) + uint64(len(p)) - 1) / BlockSize
	n := int(last - first + 1)
	var ents []Entry
	var err error
	if d.held {
		m := d.getMap()
		ents = make([]Entry, n)
		for i := range n {
			ents[i] = m.get(first + uint64(i))
		}
	} else if ents, err = d.poolEntries(first, n); err != nil {
		return 0, err
	}
	var buf []byte
	dst := p
	if off%BlockSize != 0 || len(p)%BlockSize != 0 {
		buf = make([]byte, n*BlockSize)
		dst = buf
	}
	if err := d.p.readEntries(ents, first, dst); err != nil {
		return 0, err
	}
	if buf != nil {
		copy(p, buf[uint64(off)-first*BlockSize:])
	}
	return len(p), nil
}

// readEdge reads block b into p (a held device's own read, for a
// partial write) and returns the content key it read.
func (d *Device) readEdge(m *devMap, p []byte, b uint64) ([KeySize]byte, error) {
	e := m.get(b)
	return e.Key, d.p.readEntries([]Entry{e}, b, p)
}

// poolEntries reads n entries from block first on from the pool's copy.
func (d *Device) poolEntries(first uint64, n int) ([]Entry, error) {
	out := make([]Entry, n)
	for i := 0; i < n; {
		s := (first + uint64(i)) / ShardBlocks
		var keys []string
		j := i
		for ; j < n && (first+uint64(j))/ShardBlocks == s; j++ {
			keys = append(keys, entryKey((first+uint64(j))%ShardBlocks))
		}
		kv, err := d.p.c.OmapGet(mapObject(d.hdr.ID, s), keys)
		if err != nil {
			return nil, err
		}
		for k, v := range kv {
			b, e, err := decodeEntry(k, v)
			if err != nil {
				return nil, fmt.Errorf("device %s shard %d: %w", d.hdr.Name, s, err)
			}
			out[s*ShardBlocks+b-first] = e
		}
		i = j
	}
	return out, nil
}

// readEntries fills dst (len(ents) blocks) with the entries' blocks:
// runs of consecutive blocks of one pack in one read, each block checked
// against its key's CRC-32C.
func (p *Pool) readEntries(ents []Entry, first uint64, dst []byte) error {
	for i := 0; i < len(ents); {
		out := dst[i*BlockSize : (i+1)*BlockSize]
		l := rados.Loc(ents[i].Loc)
		if l == 0 {
			clear(out)
			i++
			continue
		}
		j := i + 1
		for j < len(ents) && rados.Loc(ents[j].Loc) == l+rados.Loc(j-i) && (l+rados.Loc(j-i)).Pack() == l.Pack() {
			j++
		}
		if err := p.c.ReadBlocks(l, dst[i*BlockSize:j*BlockSize]); err != nil {
			return fmt.Errorf("block %d: %w", first+uint64(i), err)
		}
		for k := i; k < j; k++ {
			b := dst[k*BlockSize : (k+1)*BlockSize]
			if crc32.Checksum(b, castagnoli) != binary.BigEndian.Uint32(ents[k].Key[32:]) {
				return fmt.Errorf("%w: block %d at %v fails its checksum", ErrCorrupt, first+uint64(k), rados.Loc(ents[k].Loc))
			}
		}
		i = j
	}
	return nil
}

// zeroChunk bounds one step of WriteZeroes.
const zeroChunk = 1 << 20

var zeros = make([]byte, zeroChunk)

// WriteZeroes makes the range read back as zeros (zero blocks are
// unmapped, never stored).
func (d *Device) WriteZeroes(off, length int64) error {
	if off < 0 || length < 0 || length > d.hdr.Size-off {
		return fmt.Errorf("%w: zeroing %d bytes at %d: past the device's end (%d)", ErrInvalid, length, off, d.hdr.Size)
	}
	for length > 0 {
		n := min(length, zeroChunk)
		if _, err := d.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// Discard is WriteZeroes: a discarded range reads back as zeros.
func (d *Device) Discard(off, length int64) error { return d.WriteZeroes(off, length) }

// Flush makes every write that completed before it durable in the pool.
// A device this host does not hold has nothing to flush.
func (d *Device) Flush() error {
	if e := d.lost.Load(); e != nil {
		return *e
	}
	d.state.RLock()
	defer d.state.RUnlock()
	if !d.held {
		return nil
	}
	return d.flush()
}

// flushOpEntries bounds the entries of one shard write.
const flushOpEntries = 8192

// flushFanOut bounds the shard writes of one flush in flight.
const flushFanOut = 8

// flush writes the dirty entries to their shards, each shard write
// asserting the lease: entries land per shard op, atomically, or not.
func (d *Device) flush() error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	m := d.getMap()
	if m == nil {
		return nil
	}
	byShard := m.takeDirty()
	if len(byShard) == 0 {
		return nil
	}
	type job struct {
		s      uint64
		blocks []uint64
	}
	var jobs []job
	for s, bs := range byShard {
		for len(bs) > 0 {
			k := min(len(bs), flushOpEntries)
			jobs = append(jobs, job{s, bs[:k]})
			bs = bs[k:]
		}
	}
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, flushFanOut)
	var wg sync.WaitGroup
	for i, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ents := m.flightOf(j.blocks)
			set := map[string][]byte{}
			var rm []string
			for k, b := range j.blocks {
				if ents[k].Loc == 0 {
					rm = append(rm, entryKey(b%ShardBlocks))
				} else {
					set[entryKey(b%ShardBlocks)] = encodeEntry(ents[k])
				}
			}
			if int(j.s) >= len(d.shards) {
				errs[i] = fmt.Errorf("%w: block of shard %d of %d", ErrInvalid, j.s, len(d.shards))
			} else {
				errs[i] = d.shards[j.s].OmapUpdate(set, rm)
			}
			if errs[i] != nil {
				m.failed(j.blocks)
			} else {
				m.landed(j.blocks)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			if errors.Is(err, rados.ErrNotHeld) || errors.Is(err, rados.ErrFenced) {
				d.markLost(err)
			}
			return fmt.Errorf("flush of %s: %w", d.hdr.Name, err)
		}
	}
	return nil
}

// remap follows compaction's moves (a GC round's answer).
func (d *Device) remap(moved map[uint64]uint64) {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	if m := d.getMap(); m != nil {
		m.remap(moved)
	}
}

// repoint is a merge's re-pointing of this device's entries.
func (d *Device) repoint(to map[uint64]uint64, count func(uint64)) int {
	if m := d.getMap(); m != nil {
		return m.repoint(to, count)
	}
	return 0
}

// Release flushes and lets the lease go; the device stays open, passive.
func (d *Device) Release() error { return d.letGo() }

// Close releases the device and forgets it. A device whose lease was
// lost (fenced) is forgotten with what was not flushed.
func (d *Device) Close() error {
	d.state.Lock()
	var err error
	if d.lost.Load() != nil {
		d.dropMap()
		d.held = false
	} else {
		err = d.letGoLocked()
	}
	if err == nil {
		d.closed = true
	}
	d.state.Unlock()
	if err != nil {
		return err
	}
	_ = d.watch.Stop() // a device deleted by another host: its unwatch says so
	d.p.mu.Lock()
	if d.p.devs[d.hdr.Name] == d {
		delete(d.p.devs, d.hdr.Name)
	}
	d.p.mu.Unlock()
	return nil
}
