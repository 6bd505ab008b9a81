package ublk

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FileBackend is a Backend over a regular (sparse) file. Discard and
// WriteZeroes punch holes (fallocate PUNCH_HOLE|KEEP_SIZE), Flush is
// fdatasync, FUA writes use pwritev2(RWF_DSYNC). Safe for concurrent use:
// it only uses positioned I/O on one descriptor.
type FileBackend struct {
	counters
	f    *os.File
	size int64
}

// OpenFileBackend opens or creates path and extends it (sparsely) to size
// bytes if it is shorter. A longer file is left as it is; the backend
// serves its first size bytes.
func OpenFileBackend(path string, size int64) (*FileBackend, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: file backend size %d", ErrInvalidConfig, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ublk: file backend: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ublk: file backend: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: file backend %s is not a regular file", ErrInvalidConfig, path)
	}
	if st.Size() < size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("ublk: file backend: extend %s: %w", path, err)
		}
	}
	return &FileBackend{f: f, size: size}, nil
}

// Close closes the file.
func (b *FileBackend) Close() error { return b.f.Close() }

// Size returns the served size in bytes.
func (b *FileBackend) Size() int64 { return b.size }

// ReadAt implements io.ReaderAt.
func (b *FileBackend) ReadAt(p []byte, off int64) (int, error) {
	b.reads.Add(1)
	return b.f.ReadAt(p, off)
}

// WriteAt implements io.WriterAt.
func (b *FileBackend) WriteAt(p []byte, off int64) (int, error) {
	b.writes.Add(1)
	return b.f.WriteAt(p, off)
}

// WriteAtFUA implements FUAWriter with pwritev2(RWF_DSYNC), falling back to
// pwrite + fdatasync where RWF_DSYNC is not supported.
func (b *FileBackend) WriteAtFUA(p []byte, off int64) (int, error) {
	b.writes.Add(1)
	b.fuaWrites.Add(1)
	done := 0
	for done < len(p) {
		n, err := unix.Pwritev2(int(b.f.Fd()), [][]byte{p[done:]}, off+int64(done), unix.RWF_DSYNC)
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
			if _, err := b.f.WriteAt(p[done:], off+int64(done)); err != nil {
				return done, err
			}
			return len(p), b.sync()
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("ublk: file backend: pwritev2: %w", err)
		}
		done += n
	}
	return done, nil
}

func (b *FileBackend) sync() error {
	for {
		err := unix.Fdatasync(int(b.f.Fd()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ublk: file backend: fdatasync: %w", err)
		}
		return nil
	}
}

// Flush implements Backend with fdatasync.
func (b *FileBackend) Flush() error {
	b.flushes.Add(1)
	return b.sync()
}

// punch deallocates [off, off+length); where the file system cannot punch
// holes it writes zeros.
func (b *FileBackend) punch(off, length int64) error {
	if length == 0 {
		return nil
	}
	err := unix.Fallocate(int(b.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("ublk: file backend: fallocate punch hole: %w", err)
	}
	zero := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(zero)))
		if _, err := b.f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// Discard implements Backend.
func (b *FileBackend) Discard(off, length int64) error {
	b.discards.Add(1)
	return b.punch(off, length)
}

// WriteZeroes implements Backend.
func (b *FileBackend) WriteZeroes(off, length int64) error {
	b.writeZeroes.Add(1)
	return b.punch(off, length)
}

var (
	_ Backend   = (*FileBackend)(nil)
	_ FUAWriter = (*FileBackend)(nil)
)
