package vfs

// The OS implementation: every file system call of the project that the
// standard library does not offer lives here (fallocate, fdatasync,
// O_DIRECT, flock, SEEK_DATA/SEEK_HOLE, pwritev).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OS is the real file system.
var OS FS = osFS{}

type osFS struct{}

// FromOS wraps a file opened by package os (direct says whether it was
// opened with O_DIRECT).
func FromOS(f *os.File, direct bool) File { return &osFile{f: f, direct: direct} }

type osFile struct {
	f      *os.File
	direct bool
}

func retryEINTR(f func() error) error {
	for {
		err := f()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&Direct == 0 {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &osFile{f: f}, nil
	}
	flag &^= Direct
	f, err := os.OpenFile(name, flag|unix.O_DIRECT, perm)
	if err == nil {
		return &osFile{f: f, direct: true}, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return nil, err
	}
	// The file system refuses O_DIRECT (tmpfs): buffered I/O. With
	// O_CREATE|O_EXCL the failed open may have created the file already.
	if flag&os.O_EXCL != 0 {
		flag &^= os.O_EXCL
	}
	f, err = os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, perm fs.FileMode) error {
	return os.MkdirAll(dir, perm)
}

func (osFS) ReadDir(dir string) ([]FileInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]FileInfo, 0, len(ents))
	for _, de := range ents {
		fi := FileInfo{Name: de.Name(), IsDir: de.IsDir()}
		if info, err := de.Info(); err == nil {
			fi.Size = info.Size()
			fi.Allocated = allocated(info)
		}
		out = append(out, fi)
	}
	return out, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

type osLock struct{ f *os.File }

func (l osLock) Close() error { return l.f.Close() }

func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	err = retryEINTR(func() error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) })
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return osLock{f}, nil
}

func (osFS) Stat(name string) (FileInfo, error) {
	info, err := os.Stat(name)
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Name: info.Name(), Size: info.Size(), Allocated: allocated(info), IsDir: info.IsDir()}, nil
}

func (osFS) FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := retryEINTR(func() error { return unix.Statfs(dir, &st) }); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(st.Bavail) * st.Bsize, nil
}

func allocated(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}

func (f *osFile) Name() string { return f.f.Name() }
func (f *osFile) Direct() bool { return f.direct }
func (f *osFile) Close() error { return f.f.Close() }

func (f *osFile) ReadAt(p []byte, off int64) (int, error)  { return f.f.ReadAt(p, off) }
func (f *osFile) WriteAt(p []byte, off int64) (int, error) { return f.f.WriteAt(p, off) }
func (f *osFile) Truncate(size int64) error                { return f.f.Truncate(size) }

func (f *osFile) Size() (int64, error) {
	st, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (f *osFile) Allocate(off, n int64) error {
	err := retryEINTR(func() error { return unix.Fallocate(int(f.f.Fd()), 0, off, n) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EOPNOTSUPP):
		// File systems without fallocate: extend the file instead.
		if size, serr := f.Size(); serr == nil && size >= off+n {
			return nil
		}
		return f.f.Truncate(off + n)
	default:
		return &os.PathError{Op: "fallocate", Path: f.f.Name(), Err: err}
	}
}

func (f *osFile) Sync() error {
	err := retryEINTR(func() error { return unix.Fdatasync(int(f.f.Fd())) })
	if err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.f.Name(), Err: err}
	}
	return nil
}

func (f *osFile) DataRegion(off, end int64) (data, hole int64, err error) {
	fd := int(f.f.Fd())
	err = retryEINTR(func() (e error) { data, e = unix.Seek(fd, off, unix.SEEK_DATA); return e })
	switch {
	case errors.Is(err, unix.ENXIO): // no data after off
		return end, end, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return off, end, nil
	case err != nil:
		return 0, 0, &os.PathError{Op: "seek data", Path: f.f.Name(), Err: err}
	}
	err = retryEINTR(func() (e error) { hole, e = unix.Seek(fd, data, unix.SEEK_HOLE); return e })
	if err != nil {
		return 0, 0, &os.PathError{Op: "seek hole", Path: f.f.Name(), Err: err}
	}
	return min(data, end), min(hole, end), nil
}

// WriteBuffers writes bufs at off with as few system calls as IOV_MAX allows.
func (f *osFile) WriteBuffers(bufs [][]byte, off int64) error {
	const iovMax = 1024
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), iovMax)]
		want := 0
		for _, b := range batch {
			want += len(b)
		}
		var n int
		err := retryEINTR(func() error {
			var err error
			n, err = unix.Pwritev(int(f.f.Fd()), batch, off)
			return err
		})
		if err != nil {
			return &os.PathError{Op: "pwritev", Path: f.f.Name(), Err: err}
		}
		if n != want { // short write: finish the rest with plain writes
			flat := make([]byte, 0, want)
			for _, b := range batch {
				flat = append(flat, b...)
			}
			if _, err := f.f.WriteAt(flat[n:], off+int64(n)); err != nil {
				return err
			}
		}
		off += int64(want)
		bufs = bufs[len(batch):]
	}
	return nil
}

// AlignedBuf returns a zeroed buffer of n bytes aligned for direct I/O.
func AlignedBuf(n int) []byte {
	b := make([]byte, n+DirectAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (DirectAlign - 1))
	if off != 0 {
		off = DirectAlign - off
	}
	return b[off : off+n : off+n]
}

// IsAligned reports whether p starts at a DirectAlign boundary.
func IsAligned(p []byte) bool {
	return len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))&(DirectAlign-1) == 0
}

// Clean is filepath.Clean (the paths CrashFS keys its files by).
func clean(name string) string { return filepath.Clean(name) }
