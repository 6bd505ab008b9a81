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

// ReadAt implements io.ReaderAt.
func (m *MemBackend) ReadAt(p []byte, off int64) (int, error) {
	if err := m.check(off, len(p)); err != nil {
		if off >= m.size {
			return 0, io.EOF
		}
		return 0, err
	}
	m.reads.Add(1)
	forChunks(off, int64(len(p)), func(idx, coff, roff, l int64) {
		s := &m.stripes[idx%memStripes]
		s.mu.RLock()
		if c := s.chunks[idx]; c != nil {
			copy(p[roff:roff+l], c[coff:coff+l])
		} else {
			clear(p[roff : roff+l])
		}
		s.mu.RUnlock()
	})
	return len(p), nil
}

func (m *MemBackend) write(p []byte, off int64) (int, error) {
	if err := m.check(off, len(p)); err != nil {
		return 0, err
	}
	forChunks(off, int64(len(p)), func(idx, coff, roff, l int64) {
		s := &m.stripes[idx%memStripes]
		s.mu.Lock()
		c := s.chunks[idx]
		if c == nil {
			c = new([memChunkSize]byte)
			s.chunks[idx] = c
		}
		copy(c[coff:coff+l], p[roff:roff+l])
		s.mu.Unlock()
	})
	return len(p), nil
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
)
