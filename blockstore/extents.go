package blockstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// DefaultExtentSize is the size of one extent file.
const DefaultExtentSize = 1 << 30

// Extents is the local Store: preallocated extent files in one directory.
type Extents struct {
	dir      string
	slotsPer uint64

	// mu guards files (append-only; entries are never replaced) and closed.
	mu     sync.RWMutex
	files  []*extent
	closed bool

	// growMu serialises Grow so two callers do not add two extents.
	growMu sync.Mutex
}

type extent struct {
	data   *os.File // read-write, buffered: preallocation and fdatasync
	direct *os.File // read-write, O_DIRECT where supported: all block I/O
	meta   *os.File // slot records
	// dirty is set by writes and cleared by Sync.
	dirty atomic.Bool
}

func extentName(dir string, i int) (data, meta string) {
	base := filepath.Join(dir, fmt.Sprintf("extent-%06d", i))
	return base + ".dat", base + ".meta"
}

// OpenExtents opens (creating dir if needed) the extents in dir.
// extentSize must be a positive multiple of BlockSize and must match the
// size the extents were created with.
func OpenExtents(dir string, extentSize int64) (*Extents, error) {
	if extentSize <= 0 || extentSize%BlockSize != 0 {
		return nil, fmt.Errorf("blockstore: extent size %d is not a positive multiple of %d", extentSize, BlockSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	s := &Extents{dir: dir, slotsPer: uint64(extentSize / BlockSize)}
	names, err := filepath.Glob(filepath.Join(dir, "extent-*.dat"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for i, name := range names {
		want, _ := extentName(dir, i)
		if name != want {
			s.Close()
			return nil, fmt.Errorf("%w: extent files are not numbered 0..%d (found %s)", ErrCorrupt, len(names)-1, filepath.Base(name))
		}
		e, err := s.openExtent(i, false)
		if err != nil {
			s.Close()
			return nil, err
		}
		st, err := e.data.Stat()
		if err != nil {
			s.Close()
			return nil, err
		}
		if st.Size() != extentSize {
			e.close()
			s.Close()
			return nil, fmt.Errorf("%w: extent %s is %d bytes, want %d", ErrCorrupt, filepath.Base(name), st.Size(), extentSize)
		}
		s.files = append(s.files, e)
	}
	return s, nil
}

func (s *Extents) openExtent(i int, create bool) (*extent, error) {
	dataName, metaName := extentName(s.dir, i)
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	e := &extent{}
	var err error
	if e.data, err = os.OpenFile(dataName, flag, 0o600); err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	if e.meta, err = os.OpenFile(metaName, flag|os.O_CREATE, 0o600); err != nil {
		e.close()
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	if create {
		if err := preallocate(e.data, 0, int64(s.slotsPer)*BlockSize); err != nil {
			e.close()
			os.Remove(dataName)
			os.Remove(metaName)
			return nil, err
		}
		if err := e.meta.Truncate(int64(s.slotsPer) * MetaSize); err != nil {
			e.close()
			os.Remove(dataName)
			os.Remove(metaName)
			return nil, fmt.Errorf("blockstore: %w", err)
		}
	}
	if e.direct, _, err = openDirectFlag(dataName, os.O_RDWR); err != nil {
		e.close()
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	return e, nil
}

func (e *extent) close() error {
	var errs []error
	for _, f := range []*os.File{e.data, e.direct, e.meta} {
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

// Grow implements Store: it adds one preallocated extent.
func (s *Extents) Grow() error {
	s.growMu.Lock()
	defer s.growMu.Unlock()
	s.mu.RLock()
	n, closed := len(s.files), s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	e, err := s.openExtent(n, true)
	if err != nil {
		return err
	}
	if err := SyncDir(s.dir); err != nil {
		e.close()
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
		e.dirty.Store(true)
		src := p[done*BlockSize : (done+cnt)*BlockSize]
		if !isAligned(src) {
			buf := alignedBuf(len(src))
			copy(buf, src)
			src = buf
		}
		_, err := e.direct.WriteAt(src, int64(idx)*BlockSize)
		return wrapIO("write", err)
	})
}

// WriteBlocks implements Store.
func (s *Extents) WriteBlocks(first Slot, blocks [][]byte) error {
	var copied []byte
	for i, b := range blocks {
		if len(b) != BlockSize {
			return fmt.Errorf("blockstore: block buffer of %d bytes", len(b))
		}
		if !isAligned(b) { // O_DIRECT needs aligned memory
			if copied == nil {
				copied = alignedBuf(len(blocks) * BlockSize)
				blocks = slices.Clone(blocks)
			}
			c := copied[i*BlockSize : (i+1)*BlockSize]
			copy(c, b)
			blocks[i] = c
		}
	}
	return s.locate(first, uint64(len(blocks)), func(e *extent, idx, cnt, done uint64) error {
		e.dirty.Store(true)
		return wrapIO("write", pwritev(e.direct, blocks[done:done+cnt], int64(idx)*BlockSize))
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
		if isAligned(dst) {
			_, err := e.direct.ReadAt(dst, off)
			return wrapIO("read", err)
		}
		buf := alignedBuf(len(dst))
		_, err := e.direct.ReadAt(buf, off)
		copy(dst, buf)
		return wrapIO("read", err)
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
		e.dirty.Store(true)
		_, err := e.meta.WriteAt(buf, int64(idx)*MetaSize)
		return wrapIO("write meta", err)
	})
}

// ReadMeta implements Store.
func (s *Extents) ReadMeta(first Slot, recs []Meta) error {
	if len(recs) == 0 {
		return nil
	}
	var bad []Slot
	err := s.locate(first, uint64(len(recs)), func(e *extent, idx, cnt, done uint64) error {
		buf := make([]byte, cnt*MetaSize)
		if _, err := e.meta.ReadAt(buf, int64(idx)*MetaSize); err != nil {
			return wrapIO("read meta", err)
		}
		for i := range cnt {
			m, ok := DecodeMeta(buf[i*MetaSize:])
			if !ok {
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
		return &CorruptError{What: "slot record", Slots: bad}
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
		if err := Fdatasync(e.data); err != nil {
			e.dirty.Store(true)
			return err
		}
		if err := Fdatasync(e.meta); err != nil {
			e.dirty.Store(true)
			return err
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
		db, err := AllocatedBytes(d)
		if err != nil {
			return u, err
		}
		mb, err := AllocatedBytes(m)
		if err != nil {
			return u, err
		}
		u.DataBytes += db
		u.MetaBytes += mb
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
	var pe *fs.PathError
	if errors.As(err, &pe) && isNoSpace(pe.Err) {
		return fmt.Errorf("%w: %s: %v", ErrFull, op, err)
	}
	return fmt.Errorf("blockstore: %s: %w", op, err)
}
