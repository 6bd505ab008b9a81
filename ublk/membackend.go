package ublk

import (
	"fmt"
	"io"
	"sync"
)

// memChunkSize is the allocation unit of MemBackend.
const memChunkSize = 64 << 10

// memStripes is the number of lock stripes of MemBackend.
const memStripes = 64

// MemBackend is a sparse in-memory Backend: content is kept in 64 KiB
// chunks allocated on first write; missing chunks read as zeros. It is safe
// for concurrent use; chunk i is guarded by stripe i%64.
type MemBackend struct {
	counters
	size    int64
	stripes [memStripes]memStripe
}

type memStripe struct {
	mu     sync.RWMutex                  // guards chunks and the bytes of every chunk in it
	chunks map[int64]*[memChunkSize]byte // chunk index -> content
}

// NewMemBackend returns an empty (all-zero) backend of size bytes.
func NewMemBackend(size int64) *MemBackend {
	m := &MemBackend{size: size}
	for i := range m.stripes {
		m.stripes[i].chunks = make(map[int64]*[memChunkSize]byte)
	}
	return m
}

// Size returns the backend size in bytes.
func (m *MemBackend) Size() int64 { return m.size }

// Chunks returns how many 64 KiB chunks are allocated.
func (m *MemBackend) Chunks() int {
	n := 0
	for i := range m.stripes {
		s := &m.stripes[i]
		s.mu.RLock()
		n += len(s.chunks)
		s.mu.RUnlock()
	}
	return n
}

func (m *MemBackend) check(off int64, n int) error {
	if off < 0 || off > m.size || int64(n) > m.size-off {
		return fmt.Errorf("ublk: mem backend: range [%d, +%d) outside [0, %d): %w", off, n, m.size, io.ErrUnexpectedEOF)
	}
	return nil
}

// forChunks calls fn for each chunk piece of [off, off+n): chunk index,
// offset inside the chunk, offset inside the range, length.
func forChunks(off, n int64, fn func(idx int64, coff, roff, l int64)) {
	roff := int64(0)
	for roff < n {
		pos := off + roff
		idx := pos / memChunkSize
		coff := pos % memChunkSize
		l := min(memChunkSize-coff, n-roff)
		fn(idx, coff, roff, l)
		roff += l
	}
}

// zeroChunk is what a missing chunk reads as; never written.
var zeroChunk [memChunkSize]byte

// load hands each chunk piece of [off, off+n) to emit, under its stripe's
// read lock: the piece's bytes (zeros for a missing chunk) and its offset
// inside the range. It stops at emit's first error.
func (m *MemBackend) load(off, n int64, emit func(src []byte, roff int64) error) error {
	var err error
	forChunks(off, n, func(idx, coff, roff, l int64) {
		if err != nil {
			return
		}
		s := &m.stripes[idx%memStripes]
		s.mu.RLock()
		src := zeroChunk[:]
		if c := s.chunks[idx]; c != nil {
			src = c[:]
		}
		err = emit(src[coff:coff+l], roff)
		s.mu.RUnlock()
	})
	return err
}

// store hands each chunk piece of [off, off+n) to fill, under its
// stripe's lock, allocating missing chunks: the piece's bytes to
// overwrite and its offset inside the range. It stops at fill's first
// error, which may leave the range partly written, as a failed write to a
// disk may.
func (m *MemBackend) store(off, n int64, fill func(dst []byte, roff int64) error) error {
	var err error
	forChunks(off, n, func(idx, coff, roff, l int64) {
		if err != nil {
			return
		}
		s := &m.stripes[idx%memStripes]
		s.mu.Lock()
		c := s.chunks[idx]
		if c == nil {
			c = new([memChunkSize]byte)
			s.chunks[idx] = c
		}
		err = fill(c[coff:coff+l], roff)
		s.mu.Unlock()
	})
	return err
}

// ReadAt implements io.ReaderAt.
func (m *MemBackend) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(off, len(p)); err != nil {
		if off >= m.size {
			return 0, io.EOF
		}
		return 0, err
	}
	m.reads.Add(1)
	_ = m.load(off, int64(len(p)), func(src []byte, roff int64) error {
		copy(p[roff:], src)
		return nil
	})
	return len(p), nil
}

func (m *MemBackend) write(p []byte, off int64) (int, error) {
	if err := m.check(off, len(p)); err != nil {
		return 0, err
	}
	_ = m.store(off, int64(len(p)), func(dst []byte, roff int64) error {
		copy(dst, p[roff:])
		return nil
	})
	return len(p), nil
}

// ReadTo implements PayloadBackend: each chunk piece goes to the kernel's
// request pages with one pwrite under its stripe's read lock (a memory
// copy in the kernel, never a wait for a device).
func (m *MemBackend) ReadTo(p Payload, off int64) error {
	if err := m.check(off, p.Len()); err != nil {
		return err
	}
	m.reads.Add(1)
	return m.load(off, int64(p.Len()), func(src []byte, roff int64) error {
		_, err := p.WriteAt(src, roff)
		return err
	})
}

// WriteFrom implements PayloadBackend: each chunk piece is read from the
// kernel's request pages straight into the chunk with one pread under its
// stripe's lock.
func (m *MemBackend) WriteFrom(p Payload, off int64, fua bool) error {
	if err := m.check(off, p.Len()); err != nil {
		return err
	}
	m.writes.Add(1)
	if fua {
		m.fuaWrites.Add(1)
	}
	return m.store(off, int64(p.Len()), func(dst []byte, roff int64) error {
		_, err := p.ReadAt(dst, roff)
		return err
	})
}

// ServeInline implements Inliner: requests are memory copies.
func (m *MemBackend) ServeInline() bool { return true }

// WriteAt implements io.WriterAt.
func (m *MemBackend) WriteAt(p []byte, off int64) (int, error) {
	m.writes.Add(1)
	return m.write(p, off)
}

// WriteAtFUA implements FUAWriter (memory is as durable as it gets).
func (m *MemBackend) WriteAtFUA(p []byte, off int64) (int, error) {
	m.writes.Add(1)
	m.fuaWrites.Add(1)
	return m.write(p, off)
}

// Flush implements Backend; it only counts.
func (m *MemBackend) Flush() error {
	m.flushes.Add(1)
	return nil
}

func (m *MemBackend) zero(off, length int64) error {
	if length < 0 || length > int64(^uint(0)>>1) {
		return fmt.Errorf("ublk: mem backend: bad length %d", length)
	}
	if err := m.check(off, int(length)); err != nil {
		return err
	}
	forChunks(off, length, func(idx, coff, roff, l int64) {
		s := &m.stripes[idx%memStripes]
		s.mu.Lock()
		if c := s.chunks[idx]; c != nil {
			if l == memChunkSize {
				delete(s.chunks, idx)
			} else {
				clear(c[coff : coff+l])
			}
		}
		s.mu.Unlock()
	})
	return nil
}

// Discard implements Backend: whole chunks are freed, partial ones zeroed.
func (m *MemBackend) Discard(off, length int64) error {
	m.discards.Add(1)
	return m.zero(off, length)
}

// WriteZeroes implements Backend.
func (m *MemBackend) WriteZeroes(off, length int64) error {
	m.writeZeroes.Add(1)
	return m.zero(off, length)
}

var (
	_ Backend   = (*MemBackend)(nil)
	_ FUAWriter = (*MemBackend)(nil)

	_ PayloadBackend = (*MemBackend)(nil)
)
