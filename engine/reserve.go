package engine

import (
	"blockhash/index"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"blockhash/blockstore"
	"blockhash/vfs"
)

// The reserve ("reserve" in the store directory) is space the store keeps
// back for itself, the way btrfs and ZFS keep slop space: a preallocated
// file of Options.ReserveBytes. On a full file system even a command that
// frees space needs some to run: LevelDB flushes its log to a table when it
// opens, a journal replay writes map pages and slot records into sparse
// files, and the command's own commit writes a journal record and LevelDB
// deletions (about 100 bytes per block it frees). A command that frees
// space (Options.FreeingSpace: delete, fsck --repair) finding less than
// the reserve free releases it before it opens the store, and Close
// creates it again once the file system has room for it and as much
// again. Every read-write open creates a missing reserve under that same
// rule, so the reserve never takes a nearly full file system's last bytes.
const reserveName = "reserve"

// DefaultReserveBytes is the reserve's size unless Options.ReserveBytes
// says otherwise. It covers LevelDB's flush at open of a log of up to
// 16 MiB and the deletion of some 150,000 blocks.
const DefaultReserveBytes = 16 << 20

// freeBytes reports the space left on dir's file system; tests replace it
// to play a full one.
var freeBytes = func(fsys vfs.FS, dir string) (int64, error) { return blockstore.FreeBytesFS(fsys, dir) }

func (o *Options) reserveBytes() int64 {
	switch {
	case o.ReserveBytes < 0:
		return 0
	case o.ReserveBytes == 0:
		return DefaultReserveBytes
	}
	return o.ReserveBytes
}

// ensureReserve creates or completes dir's reserve of size bytes if the
// file system has room for it and as much again. It reports whether the
// reserve is whole.
func ensureReserve(fsys vfs.FS, dir string, size int64) (bool, error) {
	if size <= 0 {
		return true, nil
	}
	path := filepath.Join(dir, reserveName)
	if st, err := fsys.Stat(path); err == nil && st.Allocated >= size {
		return true, nil
	}
	free, err := freeBytes(fsys, dir)
	if err != nil {
		return false, err
	}
	if free < 2*size {
		return false, nil
	}
	if err := blockstore.PreallocateFileFS(fsys, path, size); err != nil {
		fsys.Remove(path)
		return false, err
	}
	return true, nil
}

// releaseReserve deletes dir's reserve if its file system has less than
// size bytes free. It reports whether it did.
func releaseReserve(fsys vfs.FS, dir string, size int64) (bool, error) {
	if size <= 0 {
		return false, nil
	}
	free, err := freeBytes(fsys, dir)
	if err != nil {
		return false, err
	}
	if free >= size {
		return false, nil
	}
	err = fsys.Remove(filepath.Join(dir, reserveName))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("engine: release reserve: %w", err)
	}
	return true, nil
}

// openReserve runs before a read-write open: it releases the reserve for a
// command that frees space on a full file system, and otherwise creates a
// missing one where there is room.
func (e *Engine) openReserve() {
	size := e.opts.reserveBytes()
	if e.opts.FreeingSpace {
		released, err := releaseReserve(e.fs, e.dir, size)
		if err != nil {
			e.log.Warn().Err(err).Msg("cannot release the store's reserve")
		}
		if released {
			e.reserveReleased = true
			e.lowSpace.Store(true) // no new extent into the reserve's space (mayGrow)
			e.log.Warn().Int64("bytes", size).Msg("file system full: released the store's reserve to free space")
			return
		}
	}
	e.restoreReserve()
}

// restoreReserve creates a missing reserve, or says why it cannot.
func (e *Engine) restoreReserve() {
	size := e.opts.reserveBytes()
	ok, err := ensureReserve(e.fs, e.dir, size)
	switch {
	case err != nil:
		e.log.Warn().Err(err).Msg("cannot create the store's reserve")
	case !ok:
		e.log.Warn().Int64("bytes", size).Msg("file system nearly full: the store has no reserve (free space on it; the reserve is recreated at the next open)")
	}
}

// useReserve releases the reserve while the store runs: a commit that ran
// out of space (a map page or slot record of a sparse file, the journal,
// LevelDB) retries once with the reserve's space, instead of failing the
// store. It reports whether there was a reserve to release. The next open
// (or Close) recreates it when there is room.
func (e *Engine) useReserve() bool {
	if e.opts.ReadOnly || e.opts.reserveBytes() <= 0 {
		return false
	}
	err := e.fs.Remove(filepath.Join(e.dir, reserveName))
	if err != nil {
		return false
	}
	e.reserveReleased = true
	e.lowSpace.Store(true)
	e.log.Error().Int64("bytes", e.opts.reserveBytes()).Msg("file system full: released the store's reserve to finish a commit; writes of new blocks fail with no space until space is freed")
	return true
}

// mayGrow reports whether the store may add an extent: not while the
// reserve it released at run time is missing (its space is for metadata),
// unless there is room to make it again now.
func (e *Engine) mayGrow() bool {
	if !e.lowSpace.Load() {
		return true
	}
	ok, err := ensureReserve(e.fs, e.dir, e.opts.reserveBytes())
	if err != nil || !ok {
		return false
	}
	e.lowSpace.Store(false)
	e.log.Info().Msg("space freed: the store's reserve is back and new blocks are stored again")
	return true
}

// reserveFor releases the reserve before a commit that may not find the
// space its metadata needs: LevelDB cannot be retried after a failed log
// write (goleveldb keeps the error), so running out of space halfway is
// worse than using the reserve first. The estimate is an upper bound:
// the journal record, a map page per changed entry's page, a slot record
// page per changed slot's page and LevelDB's log.
func (e *Engine) reserveFor(rec *record, puts []index.Op) {
	if e.lowSpace.Load() || e.opts.ReadOnly || e.opts.reserveBytes() <= 0 {
		return
	}
	free, err := freeBytes(e.fs, e.dir)
	if err != nil {
		return
	}
	entries := 0
	for _, l := range rec.Leaves {
		entries += len(l.Entries)
	}
	vols := 0
	for _, v := range rec.Vols {
		vols += len(v.Content)
	}
	pages := int64(len(rec.Leaves)+len(rec.Tables)) * mapPageSize
	journal := int64(journalHeaderSize+64+entries*leafEntrySize+len(rec.Slots)*slotChangeSize+vols) + pages
	leveldb := int64(len(puts)+len(rec.Slots)) * 64
	slots := int64(len(rec.Slots)) * blockstore.MetaSize
	if free < journal+leveldb+slots+pages+int64(vols)+int64(len(rec.Roots))*mapPageSize+(1<<20) {
		e.useReserve()
	}
}
