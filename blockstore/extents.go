package blockstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"blockhash/vfs"
)

// DefaultExtentSize is the size of one extent file.
const DefaultExtentSize = 1 << 30

// Extents is the local Store: preallocated extent files in one directory.
type Extents struct {
	fs       vfs.FS
	dir      string
	slotsPer uint64
	readOnly bool

	// mu guards files (append-only; entries are never replaced) and closed.
	mu     sync.RWMutex
	files  []*extent
	closed bool

	// growMu serialises Grow so two callers do not add two extents.
	growMu sync.Mutex
}

type extent struct {
	data   vfs.File // read-write, buffered: fdatasync
	direct vfs.File // read-write, O_DIRECT where supported: all block I/O
	meta   vfs.File // slot records
	// dirty is set by writes once they complete and cleared by Sync before
	// it syncs: a write that completes while a Sync runs leaves it set for
	// the next Sync.
	dirty atomic.Bool
}

// OpenExtents opens (creating dir if needed) the extents in dir on the
// real file system. extentSize must be a positive multiple of BlockSize
// and must match the size the extents were created with.
func OpenExtents(dir string, extentSize int64) (*Extents, error) {
	return OpenExtentsFS(vfs.OS, dir, extentSize)
}

// OpenExtentsFS is OpenExtents on fsys. It clears what an interrupted Grow
// left behind; a missing or wrongly sized extent file is a *DamageError
// (wrapping ErrCorrupt) naming it, which RepairExtents repairs.
func OpenExtentsFS(fsys vfs.FS, dir string, extentSize int64) (*Extents, error) {
	return OpenExtentsWith(fsys, dir, extentSize, false)
}

// OpenExtentsWith is OpenExtentsFS, read-only if readOnly: nothing is
// created, removed or written (leftovers of an interrupted Grow are
// ignored, a missing manifest is not written), and writes fail.
func OpenExtentsWith(fsys vfs.FS, dir string, extentSize int64, readOnly bool) (*Extents, error) {
	if extentSize <= 0 || extentSize%BlockSize != 0 {
		return nil, fmt.Errorf("blockstore: extent size %d is not a positive multiple of %d", extentSize, BlockSize)
	}
	if !readOnly {
		if err := fsys.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("blockstore: %w", err)
		}
	}
	l, err := scanLayout(fsys, dir, readOnly)
	if err != nil {
		return nil, err
	}
	if err := l.problems(extentSize); err != nil {
		return nil, err
	}
	n := l.count()
	if l.manifest != int64(n) && !readOnly {
		// A store made before the manifest, or a Grow that crashed after
		// its files were in place but before the manifest was.
		if err := writeManifest(fsys, dir, n); err != nil {
			return nil, err
		}
	}
	s := &Extents{fs: fsys, dir: dir, slotsPer: uint64(extentSize / BlockSize), readOnly: readOnly}
	for i := range n {
		e, err := s.openExtent(i)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, e)
	}
	return s, nil
}

func (s *Extents) openExtent(i int) (*extent, error) {
	dataName, metaName := extentName(s.dir, i)
	e := &extent{}
	flag := os.O_RDWR
	if s.readOnly {
		flag = os.O_RDONLY
	}
	var err error
	if e.data, err = s.fs.OpenFile(dataName, flag, 0); err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	if e.meta, err = s.fs.OpenFile(metaName, flag, 0); err != nil {
		e.close()
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	if e.direct, err = s.fs.OpenFile(dataName, flag|vfs.Direct, 0); err != nil {
		e.close()
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	return e, nil
}

// createExtent makes extent i's files durable: each is built as a temp
// file (preallocated or sized, synced) and renamed into place, the .meta
// first, then the directory is synced. A crash leaves either no extent i,
// temp files, or a .meta alone: the next open removes those.
func (s *Extents) createExtent(i int) error {
	dataName, metaName := extentName(s.dir, i)
	if err := createFileDurable(s.fs, metaName, int64(s.slotsPer)*MetaSize, false); err != nil {
		return err
	}
	if err := createFileDurable(s.fs, dataName, int64(s.slotsPer)*BlockSize, true); err != nil {
		s.fs.Remove(metaName)
		return err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("blockstore: %w", err)
	}
	return nil
}

func (e *extent) close() error {
	var errs []error
	for _, f := range []vfs.File{e.data, e.direct, e.meta} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// SlotsPerExtent is the number of slots in one extent.
func (s *Extents) SlotsPerExtent() uint64 { return s.slotsPer }

// Slots implements Store.
func (s *Extents) Slots() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return uint64(len(s.files)) * s.slotsPer
}

// Grow implements Store: it adds one preallocated extent, then records the
// new count in the manifest.
func (s *Extents) Grow() error {
	s.growMu.Lock()
	defer s.growMu.Unlock()
	s.mu.RLock()
	n, closed := len(s.files), s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if s.readOnly {
		return fmt.Errorf("blockstore: grow %s: opened read-only", s.dir)
	}
	if err := s.createExtent(n); err != nil {
		return err
	}
	if err := writeManifest(s.fs, s.dir, n+1); err != nil {
		return err
	}
	e, err := s.openExtent(n)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.files = append(s.files, e)
	s.mu.Unlock()
	return nil
}

// locate splits a slot range into (extent, index) pieces.
func (s *Extents) locate(first Slot, n uint64, fn func(e *extent, idx, cnt uint64, done uint64) error) error {
	s.mu.RLock()
	files, closed := s.files, s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if uint64(first)+n > uint64(len(files))*s.slotsPer || uint64(first)+n < uint64(first) {
		return fmt.Errorf("%w: slots %d+%d, capacity %d", ErrRange, first, n, uint64(len(files))*s.slotsPer)
	}
	var done uint64
	for done < n {
		slot := uint64(first) + done
		ei, idx := slot/s.slotsPer, slot%s.slotsPer
		cnt := min(n-done, s.slotsPer-idx)
		if err := fn(files[ei], idx, cnt, done); err != nil {
			return err
		}
		done += cnt
	}
	return nil
}

func blocksOf(p []byte) (uint64, error) {
	if len(p) == 0 || len(p)%BlockSize != 0 {
		return 0, fmt.Errorf("blockstore: buffer of %d bytes is not a whole number of blocks", len(p))
	}
	return uint64(len(p) / BlockSize), nil
}

// WriteAt implements Store.
func (s *Extents) WriteAt(p []byte, first Slot) error {
	n, err := blocksOf(p)
	if err != nil {
		return err
	}
	return s.locate(first, n, func(e *extent, idx, cnt, done uint64) error {
		src := p[done*BlockSize : (done+cnt)*BlockSize]
		if !vfs.IsAligned(src) {
			buf := vfs.AlignedBuf(len(src))
			copy(buf, src)
			src = buf
		}
		if _, err := e.direct.WriteAt(src, int64(idx)*BlockSize); err != nil {
			return wrapIO("write", err)
		}
		e.dirty.Store(true)
		return nil
	})
}

// WriteBlocks implements Store.
func (s *Extents) WriteBlocks(first Slot, blocks [][]byte) error {
	var copied []byte
	for i, b := range blocks {
		if len(b) != BlockSize {
			return fmt.Errorf("blockstore: block buffer of %d bytes", len(b))
		}
		if !vfs.IsAligned(b) { // O_DIRECT needs aligned memory
			if copied == nil {
				copied = vfs.AlignedBuf(len(blocks) * BlockSize)
				blocks = slices.Clone(blocks)
			}
			c := copied[i*BlockSize : (i+1)*BlockSize]
			copy(c, b)
			blocks[i] = c
		}
	}
	return s.locate(first, uint64(len(blocks)), func(e *extent, idx, cnt, done uint64) error {
		if err := e.direct.WriteBuffers(blocks[done:done+cnt], int64(idx)*BlockSize); err != nil {
			return wrapIO("write", err)
		}
		e.dirty.Store(true)
		return nil
	})
}

// ReadAt implements Store.
func (s *Extents) ReadAt(p []byte, first Slot) error {
	n, err := blocksOf(p)
	if err != nil {
		return err
	}
	return s.locate(first, n, func(e *extent, idx, cnt, done uint64) error {
		dst := p[done*BlockSize : (done+cnt)*BlockSize]
		off := int64(idx) * BlockSize
		if vfs.IsAligned(dst) {
			_, err := e.direct.ReadAt(dst, off)
			return s.wrapRead("read", e.direct, err)
		}
		buf := vfs.AlignedBuf(len(dst))
		_, err := e.direct.ReadAt(buf, off)
		copy(dst, buf)
		return s.wrapRead("read", e.direct, err)
	})
}

// WriteMeta implements Store.
func (s *Extents) WriteMeta(first Slot, recs []Meta) error {
	if len(recs) == 0 {
		return nil
	}
	return s.locate(first, uint64(len(recs)), func(e *extent, idx, cnt, done uint64) error {
		buf := make([]byte, cnt*MetaSize)
		for i := range cnt {
			recs[done+i].Encode(buf[i*MetaSize:])
		}
		if _, err := e.meta.WriteAt(buf, int64(idx)*MetaSize); err != nil {
			return wrapIO("write meta", err)
		}
		e.dirty.Store(true)
		return nil
	})
}

// ReadMeta implements Store.
func (s *Extents) ReadMeta(first Slot, recs []Meta) error {
	if len(recs) == 0 {
		return nil
	}
	var bad []Slot
	var file string
	err := s.locate(first, uint64(len(recs)), func(e *extent, idx, cnt, done uint64) error {
		buf := make([]byte, cnt*MetaSize)
		if _, err := e.meta.ReadAt(buf, int64(idx)*MetaSize); err != nil {
			return s.wrapRead("read slot records", e.meta, err)
		}
		for i := range cnt {
			m, ok := DecodeMeta(buf[i*MetaSize:])
			if !ok {
				if bad == nil {
					file = e.meta.Name()
				}
				bad = append(bad, first+Slot(done+i))
			}
			recs[done+i] = m
		}
		return nil
	})
	if err != nil {
		return err
	}
	if bad != nil {
		return &CorruptError{What: "slot record", File: file, Slots: bad}
	}
	return nil
}

// Sync implements Store.
func (s *Extents) Sync() error {
	s.mu.RLock()
	files, closed := s.files, s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	for _, e := range files {
		if !e.dirty.Swap(false) {
			continue
		}
		if err := e.data.Sync(); err != nil {
			e.dirty.Store(true)
			return wrapIO("sync", err)
		}
		if err := e.meta.Sync(); err != nil {
			e.dirty.Store(true)
			return wrapIO("sync", err)
		}
	}
	return nil
}

// Usage implements Store.
func (s *Extents) Usage() (Usage, error) {
	s.mu.RLock()
	files := s.files
	s.mu.RUnlock()
	u := Usage{Extents: len(files), SlotsPerExtent: s.slotsPer}
	for i := range files {
		d, m := extentName(s.dir, i)
		db, err := s.fs.Stat(d)
		if err != nil {
			return u, err
		}
		mb, err := s.fs.Stat(m)
		if err != nil {
			return u, err
		}
		u.DataBytes += db.Allocated
		u.MetaBytes += mb.Allocated
	}
	return u, nil
}

// Close implements Store.
func (s *Extents) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, e := range s.files {
		errs = append(errs, e.close())
	}
	return errors.Join(errs...)
}

func wrapIO(op string, err error) error {
	if err == nil {
		return nil
	}
	if vfs.IsNoSpace(err) {
		return fmt.Errorf("%w: %s: %v", ErrFull, op, err)
	}
	return fmt.Errorf("blockstore: %s: %w", op, err)
}

// wrapRead names the file of a failed read; a read past the end (a file
// truncated since open) is damage, wrapping ErrCorrupt.
func (s *Extents) wrapRead(op string, f vfs.File, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		size, _ := f.Size()
		return &DamageError{File: f.Name(), Problem: fmt.Sprintf("%s past the end of the file (%d bytes: truncated?)", op, size)}
	}
	return fmt.Errorf("blockstore: %s %s: %w", op, f.Name(), err)
}
