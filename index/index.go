package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/syndtr/goleveldb/leveldb"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"

	"blockhash/vfs"
)

// Options tune an Index. Zero values take the defaults.
type Options struct {
	CacheEntries     int // neighbour cache size (default 1<<17)
	BlockCacheBytes  int // LevelDB block cache (default 64 MiB)
	WriteBufferBytes int // LevelDB memtable (default 32 MiB)
	// ReadOnly opens LevelDB read-only: nothing is written (its log is
	// replayed in memory, no table, manifest or LOG file is made), the
	// index must exist, and Apply and Reset fail.
	ReadOnly bool
	// FS holds LevelDB's files (nil: the real file system). A vfs.CrashFS
	// here lets tests cut LevelDB's power with the rest of the store.
	FS vfs.FS
}

// Entry is one indexed block.
type Entry struct {
	Key  Key
	Slot uint64
}

// Op is one change to the index, as journaled by the engine.
type Op struct {
	Key    Key
	Slot   uint64
	Delete bool // delete Key if it still names Slot
}

// Hit is the answer of Lookup.
type Hit struct {
	Slot  uint64
	Found bool
	// Disk is set when the answer came from LevelDB: the caller should read
	// the hit's neighbourhood and Prime the cache with it.
	Disk bool
	// Overlay is set when the answer came from the uncommitted changes: the
	// block may have been stored moments ago.
	Overlay bool
}

// Stats counts where lookups were answered.
type Stats struct {
	Entries     int
	FilterBytes int
	CacheLen    int
	FilterMiss  uint64 // answered "new" by level one
	Overlay     uint64
	CacheHits   uint64
	DiskReads   uint64
	DiskHits    uint64
}

type pend struct {
	slot uint64
	del  bool
}

// Index maps block keys to slots.
type Index struct {
	db    *leveldb.DB
	stor  *fileStorage
	cache *cache

	// mu guards filter, pending and sealed.
	mu      sync.RWMutex
	filter  *Filter
	pending map[Key]pend // changes since the last Seal
	sealed  map[Key]pend // changes being applied by the running commit

	// counts are where lookups were answered: atomics, so that counting
	// takes no lock on the lookup path.
	counts lookupCounts
}

// lookupCounts counts lookups by where they were answered (see Stats); a
// disk hit adds to diskReads, then to diskHits.
type lookupCounts struct {
	filterMiss, overlay, cacheHits, diskReads, diskHits atomic.Uint64
}

const keyPrefix = 'k'

// Open opens (creating if needed) the index in dir and loads level one.
func Open(dir string, o Options) (*Index, error) {
	if o.CacheEntries <= 0 {
		o.CacheEntries = 1 << 17
	}
	if o.BlockCacheBytes <= 0 {
		o.BlockCacheBytes = 64 << 20
	}
	if o.WriteBufferBytes <= 0 {
		o.WriteBufferBytes = 32 << 20
	}
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if err := checkCurrent(o.FS, dir); err != nil {
		return nil, err
	}
	stor, err := openStorage(o.FS, dir, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	db, err := leveldb.Open(stor, &opt.Options{
		BlockCacheCapacity:  o.BlockCacheBytes,
		WriteBuffer:         o.WriteBufferBytes,
		CompactionTableSize: 8 << 20,
		Compression:         opt.NoCompression, // digests do not compress
		ErrorIfMissing:      o.ReadOnly,
		ReadOnly:            o.ReadOnly,
		Strict:              opt.StrictJournalChecksum | opt.StrictBlockChecksum,
	})
	if err != nil {
		stor.Close()
		if lerrors.IsCorrupted(err) {
			return nil, fmt.Errorf("%w: open %s: %v", ErrCorrupt, dir, err)
		}
		return nil, fmt.Errorf("index: open %s: %v", dir, err)
	}
	ix := &Index{db: db, stor: stor, cache: newCache(o.CacheEntries), pending: map[Key]pend{}}
	if err := ix.loadFilter(); err != nil {
		db.Close()
		stor.Close()
		return nil, err
	}
	return ix, nil
}

func (ix *Index) loadFilter() error {
	n := 0
	var fps []uint32
	it := ix.db.NewIterator(util.BytesPrefix([]byte{keyPrefix}), &opt.ReadOptions{DontFillCache: true})
	for it.Next() {
		k, ok := DecodeKey(it.Key()[1:])
		if !ok {
			it.Release()
			return fmt.Errorf("%w: malformed key of %d bytes", ErrCorrupt, len(it.Key()))
		}
		fps = append(fps, k.fingerprint())
		n++
	}
	it.Release()
	if err := it.Error(); err != nil {
		return translate("load", err)
	}
	ix.filter = NewFilter(n)
	for _, fp := range fps {
		ix.filter.Add(fp)
	}
	return nil
}

// ReloadFilter rebuilds level one from LevelDB. The engine calls it after
// a journal replay, which applies index entries to LevelDB alone.
func (ix *Index) ReloadFilter() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.loadFilter()
}

func dbKey(k Key) []byte {
	b := make([]byte, 1+KeySize)
	b[0] = keyPrefix
	k.Encode(b[1:])
	return b
}

func decodeSlot(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// Lookup finds the slot holding k.
func (ix *Index) Lookup(k Key) (Hit, error) {
	ix.mu.RLock()
	p, ok := ix.pending[k]
	if !ok {
		p, ok = ix.sealed[k]
	}
	mayBe := ok || ix.filter.Contains(k.fingerprint())
	ix.mu.RUnlock()
	if ok {
		ix.counts.overlay.Add(1)
		return Hit{Slot: p.slot, Found: !p.del, Overlay: true}, nil
	}
	if !mayBe {
		ix.counts.filterMiss.Add(1)
		return Hit{}, nil
	}
	if slot, ok := ix.cache.get(k); ok {
		ix.counts.cacheHits.Add(1)
		return Hit{Slot: slot, Found: true}, nil
	}
	v, err := ix.db.Get(dbKey(k), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		ix.counts.diskReads.Add(1)
		return Hit{}, nil
	}
	if err != nil {
		return Hit{}, translate("get", err)
	}
	slot, err := decodeSlot(v)
	if err != nil {
		return Hit{}, err
	}
	ix.counts.diskReads.Add(1)
	ix.counts.diskHits.Add(1)
	return Hit{Slot: slot, Found: true, Disk: true}, nil
}

// Insert indexes k at slot. The caller guarantees k is not indexed.
func (ix *Index) Insert(k Key, slot uint64) {
	ix.mu.Lock()
	ix.pending[k] = pend{slot: slot}
	ix.filter.Add(k.fingerprint())
	ix.mu.Unlock()
}

// Remove un-indexes k, which names slot. Lookups miss it at once.
func (ix *Index) Remove(k Key, slot uint64) {
	ix.cache.forget(k)
	ix.mu.Lock()
	ix.pending[k] = pend{slot: slot, del: true}
	ix.filter.Remove(k.fingerprint())
	ix.mu.Unlock()
}

// PrimeToken returns a token to pass to Prime; take it before reading the
// slot records that Prime will be given.
func (ix *Index) PrimeToken() uint64 { return ix.cache.token() }

// Prime adds neighbouring entries to the cache. The caller passes only
// entries it checked are live; it reports whether they were taken.
func (ix *Index) Prime(tok uint64, entries []Entry) bool { return ix.cache.prime(tok, entries) }

// Seal freezes the changes made so far for a commit: they stay visible to
// Lookup until Apply writes them.
func (ix *Index) Seal() {
	ix.mu.Lock()
	ix.sealed = ix.pending
	ix.pending = make(map[Key]pend, len(ix.sealed))
	ix.mu.Unlock()
}

// Apply writes ops to LevelDB in one synchronous, atomic batch (deletes
// first, each only if the key still names its slot; then puts) and drops
// the sealed overlay. It is idempotent, so a journal can replay it after a
// crash.
func (ix *Index) Apply(ops []Op) error {
	b := newBatch(len(ops))
	for _, op := range ops {
		if !op.Delete {
			continue
		}
		v, err := ix.db.Get(dbKey(op.Key), nil)
		if errors.Is(err, leveldb.ErrNotFound) {
			continue
		}
		if err != nil {
			return translate("apply", err)
		}
		if s, err := decodeSlot(v); err == nil && s != op.Slot {
			continue
		}
		b.del(dbKey(op.Key))
	}
	var val [8]byte
	for _, op := range ops {
		if op.Delete {
			continue
		}
		binary.LittleEndian.PutUint64(val[:], op.Slot)
		b.put(dbKey(op.Key), val[:])
	}
	if err := b.write(ix.db); err != nil {
		return translate("apply", err)
	}
	ix.mu.Lock()
	ix.sealed = nil
	ix.mu.Unlock()
	return nil
}

// Reset replaces the whole index with entries (fsck --repair): LevelDB is
// emptied and refilled in one atomic batch, level one rebuilt, the cache
// and overlays dropped.
func (ix *Index) Reset(entries []Entry) error {
	var stale [][]byte
	it := ix.db.NewIterator(util.BytesPrefix([]byte{keyPrefix}), nil)
	for it.Next() {
		stale = append(stale, append([]byte(nil), it.Key()...))
	}
	it.Release()
	if err := it.Error(); err != nil {
		return translate("reset", err)
	}
	b := newBatch(len(stale) + len(entries))
	for _, k := range stale {
		b.del(k)
	}
	var val [8]byte
	for _, e := range entries {
		binary.LittleEndian.PutUint64(val[:], e.Slot)
		b.put(dbKey(e.Key), val[:])
	}
	if err := b.write(ix.db); err != nil {
		return translate("reset", err)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.pending, ix.sealed = map[Key]pend{}, nil
	ix.cache = newCache(ix.cache.max)
	ix.filter = NewFilter(len(entries))
	for _, e := range entries {
		ix.filter.Add(e.Key.fingerprint())
	}
	return nil
}

// Each calls fn for every entry in LevelDB (not the overlays), in key order.
func (ix *Index) Each(fn func(Entry) error) error {
	it := ix.db.NewIterator(util.BytesPrefix([]byte{keyPrefix}), &opt.ReadOptions{DontFillCache: true})
	defer it.Release()
	for it.Next() {
		k, ok := DecodeKey(it.Key()[1:])
		if !ok {
			return fmt.Errorf("%w: malformed key", ErrCorrupt)
		}
		s, err := decodeSlot(it.Value())
		if err != nil {
			return err
		}
		if err := fn(Entry{Key: k, Slot: s}); err != nil {
			return err
		}
	}
	return translate("iterate", it.Error())
}

// Stats reports sizes and lookup counters. The counters are read one by
// one while lookups go on: each is exact, together they may be a few
// lookups apart.
func (ix *Index) Stats() Stats {
	c := &ix.counts
	// Hits before reads (Lookup adds to reads first): DiskHits never
	// exceeds DiskReads.
	s := Stats{FilterMiss: c.filterMiss.Load(), Overlay: c.overlay.Load(), CacheHits: c.cacheHits.Load(),
		DiskHits: c.diskHits.Load()}
	s.DiskReads = c.diskReads.Load()
	ix.mu.RLock()
	s.Entries = ix.filter.Len()
	s.FilterBytes = ix.filter.Bytes()
	ix.mu.RUnlock()
	s.CacheLen = ix.cache.len()
	return s
}

// Close closes LevelDB and its storage.
func (ix *Index) Close() error {
	err := translate("close", ix.db.Close())
	if serr := ix.stor.Close(); err == nil && serr != nil && !errors.Is(serr, storage.ErrClosed) {
		err = fmt.Errorf("index: close: %w", serr)
	}
	return err
}

// Invalidate makes every Prime token taken before it stale; the engine calls
// it before freed slots become reusable.
func (ix *Index) Invalidate() {
	ix.cache.mu.Lock()
	ix.cache.removals++
	ix.cache.mu.Unlock()
}

// batch collects LevelDB records in one buffer sized up front and hands it
// to goleveldb whole (Batch.Load): one atomic, synced write however many
// records a commit has. goleveldb v1.0.0's Batch.Put grows its buffer by
// ever smaller steps beyond 3000 records, so a commit of a few hundred
// thousand changes would spend its time copying; splitting it into several
// synced writes costs an fsync each. The records are in the format of
// Batch.Dump, which TestBatchFormat checks against goleveldb: a type byte
// (0 delete, 1 put), the key's length as a uvarint, the key, and for a put
// the value's length and the value.
type batch struct{ buf []byte }

// maxRecord is the size of the largest record: a put of a key and a slot.
const maxRecord = 1 + binary.MaxVarintLen32 + 1 + KeySize + binary.MaxVarintLen32 + 8

func newBatch(records int) *batch { return &batch{buf: make([]byte, 0, records*maxRecord)} }

func (b *batch) put(k, v []byte) {
	b.buf = append(b.buf, 1)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(k)))
	b.buf = append(b.buf, k...)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(v)))
	b.buf = append(b.buf, v...)
}

func (b *batch) del(k []byte) {
	b.buf = append(b.buf, 0)
	b.buf = binary.AppendUvarint(b.buf, uint64(len(k)))
	b.buf = append(b.buf, k...)
}

// write applies the records atomically and syncs the LevelDB log.
func (b *batch) write(db *leveldb.DB) error {
	if len(b.buf) == 0 {
		return nil
	}
	var lb leveldb.Batch
	if err := lb.Load(b.buf); err != nil {
		return err
	}
	return db.Write(&lb, &opt.WriteOptions{Sync: true})
}
