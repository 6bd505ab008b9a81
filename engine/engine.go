package engine

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"blockhash/blockstore"
	"blockhash/index"
	"blockhash/vfs"
)

// BlockSize is the dedup unit.
const BlockSize = blockstore.BlockSize

// SectorSize is the alignment of every offset and length.
const SectorSize = 512

// Options configure Create and Open. Zero values take defaults.
type Options struct {
	// Creation only.
	Hash       HashAlg
	Verify     bool
	ExtentSize int64 // default blockstore.DefaultExtentSize

	// CommitChanges is the number of uncommitted block changes after which
	// a background commit starts (default 65536, 256 MiB of writes); at
	// four times that, writers wait for a commit.
	CommitChanges int
	// CommitInterval commits pending changes in the background (default 5s;
	// negative disables).
	CommitInterval time.Duration
	Index          index.Options
	Logger         zerolog.Logger
	// FS holds the store's files (nil: the real file system); the index
	// uses it too unless Index.FS is set. Tests pass a vfs.CrashFS.
	FS vfs.FS
	// Repair lets Open proceed past damage that fsck --repair rebuilds:
	// corrupt slot records, missing or short extent files, a damaged index
	// (moved aside), a journal that is not a file (repair.go).
	Repair bool
	// ReadOnly opens the store without writing anything (LevelDB read-only,
	// no journal replay, no reserve file), so it can be read on a full
	// file system; every change fails with ErrReadOnly. A store with an
	// interrupted commit in its journal is refused (see openReadOnly).
	ReadOnly bool
	// ReserveBytes is the size of the store's reserve file (see
	// reserve.go; default DefaultReserveBytes, negative: none).
	ReserveBytes int64
	// FreeingSpace is set by commands that free space (delete, fsck
	// --repair): on a file system with less than the reserve free, the
	// reserve is released before the store is opened, so they can run on
	// a full file system, and recreated at Close when there is room.
	FreeingSpace bool
	// Check lets Open proceed past corrupt slot records without changing
	// anything, for a Fsck that only reports.
	Check bool
	// ReplayFirst (with ReadOnly) replays a commit interrupted by a crash
	// before the read-only open, as ext4 replays its journal at a
	// read-only mount: the store is opened to write (FreeingSpace, so the
	// reserve serves on a full file system), which replays, and closed.
	// Without it, or if that fails, the open is refused (ErrReplayPending).
	ReplayFirst bool
}

// Engine is an open store: it serves reads and writes of its devices.
type Engine struct {
	fs   vfs.FS
	dir  string
	sb   Superblock
	opts Options
	// verify compares a block byte for byte before sharing it.
	verify bool
	// doms is the dedup domains and their keyers (domains.go).
	doms *domainSet
	log  zerolog.Logger
	lock io.Closer

	ix    *index.Index
	bs    blockstore.Store
	jn    *journal
	pages *pageSpace

	// epoch is held shared by every metadata change and exclusively by a
	// commit while it seals the changes made so far.
	epoch sync.RWMutex
	// locks holds the striped block and key locks (locks.go).
	locks lockTable
	// reuseMu is held shared by readers while they read slots, and
	// exclusively while freed slots are handed back for reuse, so a reader
	// never reads a slot that was reused under it.
	reuseMu sync.RWMutex
	// commitMu serialises commits (held across their fsyncs by design: one
	// commit at a time, writers go on meanwhile).
	commitMu sync.Mutex

	// slots owns the slots' state: reference counts, allocation, pending
	// writes, dirty records, the unindexed and damaged sets (slots.go).
	slots *slotSpace

	// devMu guards byName, byID, nextID and broken.
	devMu sync.RWMutex
	// byName holds devices ("dev") and snapshots ("dev@snap"); byID every
	// volume, those being deleted too.
	byName map[string]*Map
	byID   map[uint32]*Map
	nextID uint32
	broken []BrokenDevice // maps that could not be opened
	// rebuilt lists the maps repair mode rebuilt at open (Fsck reports them).
	rebuilt []string

	// hashTokens bounds the goroutines hashing at once to the cores.
	hashTokens chan struct{}

	changes atomic.Int64 // uncommitted block changes
	// obs observes commits for metrics (observer.go).
	obs    observer
	seq    uint64 // last commit's sequence (under commitMu)
	failed atomic.Pointer[error]

	// crashHook, set by tests only, stops a commit at a named stage
	// ("journaled": after the commit point, before anything is applied)
	// when it returns true, as a crash there would.
	crashHook func(stage string) bool

	// deleters counts the goroutines releasing deleted volumes' space;
	// closing asks them to stop at their next commit (they resume at the
	// next open).
	deleters sync.WaitGroup
	closing  atomic.Bool
	// closeAfter lists volumes removed by a commit whose files are closed
	// once it is applied (under commitMu).
	closeAfter []*Map

	kick   chan struct{}
	stop   chan struct{}
	bgDone chan struct{}
	closed atomic.Bool

	// reserveReleased is set when Open released the reserve (FreeingSpace
	// on a full file system); closeFiles recreates it.
	reserveReleased bool
	// lowSpace is set while the reserve is released at run time (useReserve):
	// no new extent until it can be made again (mayGrow).
	lowSpace atomic.Bool
}

// Create initialises an empty store in dir.
func Create(dir string, o Options) error {
	if o.Hash == 0 {
		o.Hash = SHA256
	}
	if o.ExtentSize == 0 {
		o.ExtentSize = blockstore.DefaultExtentSize
	}
	if o.Hash == SHA1 {
		o.Verify = true // see sha1Verifies
	}
	if o.ExtentSize < 16*BlockSize || o.ExtentSize%BlockSize != 0 {
		return fmt.Errorf("%w: extent size %d (a multiple of 4 KiB, at least 64 KiB)", ErrInvalid, o.ExtentSize)
	}
	fsys := o.fs()
	if _, err := fsys.Stat(filepath.Join(dir, superblockName)); err == nil {
		return fmt.Errorf("%w: a store already exists in %s", ErrExists, dir)
	}
	if f := strayStoreFile(dir); f != "" {
		return fmt.Errorf("%w: %s holds a store (%s) but no superblock: rebuild it with blockhash init --recover-superblock, then run blockhash fsck", ErrCorrupt, dir, f)
	}
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("engine: create store: %w", err)
	}
	probe := filepath.Join(dir, ".probe")
	pf, err := fsys.OpenFile(probe, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("engine: store directory %s is not writable: %w", dir, err)
	}
	pf.Close()
	fsys.Remove(probe)
	for _, sub := range []string{"blocks", "devices"} {
		if err := fsys.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	if ok, err := ensureReserve(fsys, dir, o.reserveBytes()); err != nil {
		return fmt.Errorf("engine: store reserve: %w", err)
	} else if !ok {
		return fmt.Errorf("%w: %s has no room for the store's reserve of %d bytes and as much again", blockstore.ErrFull, dir, o.reserveBytes())
	}
	// The index and the page file exist from the start, so that a
	// read-only open (list, stats, export) of a store nothing wrote yet
	// finds them. Any left by a Create that a crash cut short (no
	// superblock, no data: see strayStoreFile) are made anew.
	if err := fsys.Remove(filepath.Join(dir, pagesName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("engine: %w", err)
	}
	ixDir := filepath.Join(dir, "index")
	if ents, err := fsys.ReadDir(ixDir); err == nil {
		for _, de := range ents {
			if !de.IsDir {
				if err := fsys.Remove(filepath.Join(ixDir, de.Name)); err != nil {
					return fmt.Errorf("engine: %w", err)
				}
			}
		}
	}
	io := o.Index
	if io.FS == nil {
		io.FS = fsys
	}
	ix, err := index.Open(filepath.Join(dir, "index"), io)
	if err != nil {
		return err
	}
	if err := ix.Close(); err != nil {
		return err
	}
	ps, err := openPages(fsys, filepath.Join(dir, pagesName), false)
	if err != nil {
		return err
	}
	ps.close()
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	sb := Superblock{Version: FormatVersion, BlockSize: BlockSize, Hash: o.Hash, Verify: o.Verify,
		ExtentSize: o.ExtentSize, Created: time.Now()}
	if err := vfs.WriteFileDurable(fsys, filepath.Join(dir, superblockName), sb.Encode()); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// indexOptions are the index's options, on the store's file system.
func (e *Engine) indexOptions() index.Options {
	o := e.opts.Index
	if o.FS == nil {
		o.FS = e.fs
	}
	return o
}

// fs is the file system the options name.
func (o *Options) fs() vfs.FS {
	if o.FS == nil {
		return vfs.OS
	}
	return o.FS
}

// sha1Verifies turns verify on for a SHA-1 store, whatever its superblock
// says: SHA-1 collisions are public and a CRC-32C can be forced with four
// chosen bytes, so without a byte comparison two different blocks could
// share one slot. Stores made before this rule keep their flag on disk;
// the engine behaves as if it were set.
func sha1Verifies(sb *Superblock) {
	if sb.Hash == SHA1 {
		sb.Verify = true
	}
}

// Open opens the store in dir, replaying an interrupted commit if any.
func Open(dir string, o Options) (*Engine, error) {
	e, err := openStore(dir, o)
	if !o.ReadOnly || !o.ReplayFirst || !errors.Is(err, ErrReplayPending) {
		return e, err
	}
	rw := Options{CommitInterval: -1, FreeingSpace: true, Index: o.Index, Logger: o.Logger, FS: o.FS, ReserveBytes: o.ReserveBytes}
	w, werr := openStore(dir, rw)
	if werr == nil {
		werr = w.Close()
	}
	if werr != nil {
		return nil, fmt.Errorf("%w (replaying it failed: %v)", err, werr)
	}
	o.Logger.Info().Str("store", dir).Msg("replayed a commit interrupted by a crash before opening the store read-only")
	return openStore(dir, o)
}

func openStore(dir string, o Options) (*Engine, error) {
	fsys := o.fs()
	sb, err := readSuperblock(fsys, dir)
	if err != nil {
		return nil, err
	}
	sha1Verifies(&sb)
	if o.CommitChanges <= 0 {
		o.CommitChanges = 65536
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = 5 * time.Second
	}
	lock, err := blockstore.LockDirFS(fsys, dir)
	if err != nil {
		if errors.Is(err, blockstore.ErrLocked) {
			return nil, fmt.Errorf("store %s is in use by another blockhash process: %w", dir, err)
		}
		return nil, err
	}
	e := &Engine{fs: fsys, dir: dir, sb: sb, opts: o, verify: sb.Verify, log: o.Logger, lock: lock,
		byName: map[string]*Map{}, byID: map[uint32]*Map{}, nextID: 1,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), bgDone: make(chan struct{}),
		hashTokens: make(chan struct{}, min(runtime.NumCPU(), runtime.GOMAXPROCS(0)))}
	e.doms = newDomainSet(sb.Hash)
	e.slots = newSlotSpace(storeSlots{e}, uint64(sb.ExtentSize/BlockSize), o.Logger)
	if !o.ReadOnly {
		e.openReserve()
	}
	if err := e.open(); err != nil {
		e.closeFiles()
		return nil, err
	}
	go e.background()
	if !o.ReadOnly {
		e.resumeDeletes()
	}
	return e, nil
}

func (e *Engine) open() error {
	if e.opts.Repair {
		if err := e.repairExtents(); err != nil {
			return err
		}
	}
	bs, err := blockstore.OpenExtentsWith(e.fs, filepath.Join(e.dir, "blocks"), e.sb.ExtentSize, e.opts.ReadOnly)
	if err != nil {
		return err
	}
	e.bs = bs
	if e.opts.ReadOnly {
		return e.openReadOnly()
	}
	ix, err := e.openIndex() // repair.go
	if err != nil {
		return err
	}
	e.ix = ix
	jn, err := e.openJournalRepair()
	if err != nil {
		return err
	}
	e.jn = jn
	ps, err := openPages(e.fs, filepath.Join(e.dir, pagesName), false)
	if err != nil {
		return err
	}
	e.pages = ps
	// Volumes are opened (headers) before the replay, which may rewrite
	// their roots, and their roots read after it.
	if err := e.openMaps(); err != nil {
		return err
	}
	if e.opts.Repair {
		e.rebuildMapsAtOpen() // repair.go: before the replay, which may name them
	}
	if err := e.syncAtOpen(); err != nil {
		return err
	}
	rec, err := e.jn.read()
	if err != nil {
		return err
	}
	if rec != nil {
		e.log.Info().Uint64("seq", rec.Seq).Int("leaves", len(rec.Leaves)).Int("slots", len(rec.Slots)).Msg("replaying journal")
		if err := e.applyRecord(rec); err != nil {
			return fmt.Errorf("engine: journal replay: %w", err)
		}
		if err := e.jn.reset(); err != nil {
			return err
		}
		e.seq = rec.Seq
		// The replay wrote index entries to LevelDB only: level one must
		// learn them, or blocks written again are stored twice.
		if err := e.ix.ReloadFilter(); err != nil {
			return err
		}
		// and it may have replaced volume files whole
		e.closeMaps()
		if err := e.openMaps(); err != nil {
			return err
		}
	}
	if err := e.loadTrees(); err != nil {
		return err
	}
	if err := e.scanMaps(); err != nil {
		return err
	}
	return e.loadSlots()
}

// syncAtOpen makes what this open reads durable before it acts on it.
// After an I/O error on a sync (a commit that failed), the journal and the
// directories may hold changes that never reached the disk: replaying such
// a journal record into maps that are then synced, or handing out a device
// whose map's name is not durable, and then losing power, would leave maps,
// slot records and index disagreeing, or a device gone.
func (e *Engine) syncAtOpen() error {
	if err := e.jn.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync journal: %w", err)
	}
	for _, d := range []string{e.dir, filepath.Join(e.dir, "devices"), filepath.Join(e.dir, "blocks")} {
		if err := e.fs.SyncDir(d); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	return nil
}

// openReadOnly opens the index and the maps without writing anything.
// A pending journal record (a commit interrupted by a crash) is refused
// rather than replayed in memory: a read-only view must show exactly the
// committed state, and a second, in-memory replay would have to agree with
// the real one in every detail (maps, slot records, index, deleted
// devices, extents added) or show a state that never existed. Any
// read-write open replays it (fsck --repair can, on a full file system).
func (e *Engine) openReadOnly() error {
	f, err := e.fs.OpenFile(filepath.Join(e.dir, journalName), os.O_RDONLY, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("engine: journal: %w", err)
	default:
		e.jn = &journal{f: f, log: e.log, readOnly: true}
		rec, err := e.jn.read()
		if err != nil {
			return err
		}
		if rec != nil {
			return fmt.Errorf("%w in store %s (run blockhash fsck --repair, or any command that writes)", ErrReplayPending, e.dir)
		}
	}
	iopts := e.indexOptions()
	iopts.ReadOnly = true
	ix, err := index.Open(filepath.Join(e.dir, "index"), iopts)
	if err != nil {
		return err
	}
	e.ix = ix
	ps, err := openPages(e.fs, filepath.Join(e.dir, pagesName), true)
	if err != nil {
		return err
	}
	e.pages = ps
	if err := e.openMaps(); err != nil {
		return err
	}
	if err := e.loadTrees(); err != nil {
		return err
	}
	if err := e.scanMaps(); err != nil {
		return err
	}
	return e.loadSlots()
}

// loadSlots loads the slot space from the slot records (slots.go); a
// corrupt record is an error unless the store opens for repair or check.
func (e *Engine) loadSlots() error {
	return e.slots.load(e.opts.Repair || e.opts.Check)
}

// storeSlots is the block store as the slot space sees it: no new extent
// while the store's reserve is released (mayGrow).
type storeSlots struct{ e *Engine }

func (b storeSlots) Slots() uint64 { return b.e.bs.Slots() }

func (b storeSlots) ReadMeta(first blockstore.Slot, recs []blockstore.Meta) error {
	return b.e.bs.ReadMeta(first, recs)
}

func (b storeSlots) Grow() error {
	if !b.e.mayGrow() {
		return fmt.Errorf("%w: the file system is full (the store used its reserve to keep its metadata consistent)", blockstore.ErrFull)
	}
	return b.e.bs.Grow()
}

// Close commits pending changes and closes the store.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.closing.Store(true)
	e.deleters.Wait()
	close(e.stop)
	<-e.bgDone
	err := e.commit()
	if errors.Is(err, ErrFailed) {
		err = nil // already reported; reopening recovers
	}
	return errors.Join(err, e.closeFiles())
}

func (e *Engine) closeFiles() error {
	var errs []error
	for _, m := range e.byID {
		errs = append(errs, m.close())
	}
	if e.jn != nil {
		errs = append(errs, e.jn.close())
	}
	if e.ix != nil {
		errs = append(errs, e.ix.Close())
	}
	if e.bs != nil {
		errs = append(errs, e.bs.Close())
	}
	if e.reserveReleased {
		e.reserveReleased = false
		e.restoreReserve()
	}
	if e.lock != nil {
		errs = append(errs, e.lock.Close())
	}
	return errors.Join(errs...)
}

func (e *Engine) background() {
	defer close(e.bgDone)
	var tick <-chan time.Time
	if e.opts.CommitInterval > 0 {
		t := time.NewTicker(e.opts.CommitInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-e.stop:
			return
		case <-tick:
		case <-e.kick:
		}
		if e.changes.Load() == 0 {
			continue
		}
		if err := e.commit(); err != nil && !errors.Is(err, ErrFailed) {
			e.log.Error().Err(err).Msg("background commit failed")
		}
	}
}

func (e *Engine) failedErr() error {
	if e.opts.ReadOnly {
		return fmt.Errorf("%w: %s", ErrReadOnly, e.dir)
	}
	if p := e.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrFailed, *p)
	}
	if e.closed.Load() {
		return ErrClosed
	}
	return nil
}

func (e *Engine) fail(err error) {
	if e.failed.CompareAndSwap(nil, &err) {
		e.log.Error().Err(err).Msg("store failed: refusing further writes until reopened")
	}
}

// Superblock returns the store's manifest.
func (e *Engine) Superblock() Superblock { return e.sb }

// Dir is the store directory.
func (e *Engine) Dir() string { return e.dir }
