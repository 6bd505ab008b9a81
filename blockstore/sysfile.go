package blockstore

// Every file system call of the project that the standard library does not
// offer lives here: fallocate, fdatasync, O_DIRECT, flock and SEEK_DATA.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the buffer and offset alignment O_DIRECT needs.
const directAlign = 4096

func retryEINTR(f func() error) error {
	for {
		err := f()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// preallocate reserves [off, off+n) of f on disk. ENOSPC becomes ErrFull.
func preallocate(f *os.File, off, n int64) error {
	err := retryEINTR(func() error { return unix.Fallocate(int(f.Fd()), 0, off, n) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%w: preallocating %s: %v", ErrFull, f.Name(), err)
	case errors.Is(err, unix.EOPNOTSUPP):
		// File systems without fallocate: extend the file instead.
		return f.Truncate(off + n)
	default:
		return fmt.Errorf("blockstore: fallocate %s: %w", f.Name(), err)
	}
}

// Fdatasync makes f's data (and the metadata needed to read it) durable.
func Fdatasync(f *os.File) error {
	err := retryEINTR(func() error { return unix.Fdatasync(int(f.Fd())) })
	if err != nil {
		return fmt.Errorf("blockstore: fdatasync %s: %w", f.Name(), err)
	}
	return nil
}

// SyncDir makes a directory's entries (created, renamed, removed files) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blockstore: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blockstore: sync dir %s: %w", dir, err)
	}
	return nil
}

// openDirect opens path read-only with O_DIRECT, or without it where the
// file system refuses (tmpfs). direct tells which one it got.
func openDirect(path string) (f *os.File, direct bool, err error) {
	return openDirectFlag(path, os.O_RDONLY)
}

func openDirectFlag(path string, flag int) (f *os.File, direct bool, err error) {
	f, err = os.OpenFile(path, flag|unix.O_DIRECT, 0)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, flag, 0)
	return f, false, err
}

// alignedBuf returns a zeroed buffer of n bytes aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off+n : off+n]
}

func isAligned(p []byte) bool {
	return len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))&(directAlign-1) == 0
}

// LockDir takes an exclusive lock on dir/LOCK for the life of the returned
// file. A lock held by another process is ErrLocked.
func LockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("blockstore: lock %s: %w", dir, err)
	}
	err = retryEINTR(func() error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) })
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("blockstore: lock %s: %w", dir, err)
	}
	return f, nil
}

// AllocatedBytes is the space a file occupies on disk (sparse files count
// only their allocated blocks).
func AllocatedBytes(path string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// DataRegion returns the first region of f holding data at or after off:
// [data, hole). Sparse files skip their holes this way; data == size when
// nothing but holes follows off. File systems without SEEK_DATA report
// everything from off to size as data.
func DataRegion(f *os.File, off, size int64) (data, hole int64, err error) {
	fd := int(f.Fd())
	err = retryEINTR(func() (e error) { data, e = unix.Seek(fd, off, unix.SEEK_DATA); return e })
	switch {
	case errors.Is(err, unix.ENXIO): // no data after off
		return size, size, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return off, size, nil
	case err != nil:
		return 0, 0, fmt.Errorf("blockstore: seek data in %s: %w", f.Name(), err)
	}
	err = retryEINTR(func() (e error) { hole, e = unix.Seek(fd, data, unix.SEEK_HOLE); return e })
	if err != nil {
		return 0, 0, fmt.Errorf("blockstore: seek hole in %s: %w", f.Name(), err)
	}
	return min(data, size), min(hole, size), nil
}

func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// OpenDirect opens path read-only with O_DIRECT where the file system
// allows it (benchmarks compare the store against a plain file this way).
func OpenDirect(path string) (*os.File, bool, error) { return openDirect(path) }

// AlignedBuf returns a buffer of n bytes aligned for O_DIRECT.
func AlignedBuf(n int) []byte { return alignedBuf(n) }

// pwritev writes bufs at off with as few system calls as IOV_MAX allows.
func pwritev(f *os.File, bufs [][]byte, off int64) error {
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
			n, err = unix.Pwritev(int(f.Fd()), batch, off)
			return err
		})
		if err != nil {
			return &os.PathError{Op: "pwritev", Path: f.Name(), Err: err}
		}
		if n != want { // short write: finish the rest with plain writes
			flat := make([]byte, 0, want)
			for _, b := range batch {
				flat = append(flat, b...)
			}
			if _, err := f.WriteAt(flat[n:], off+int64(n)); err != nil {
				return err
			}
		}
		off += int64(want)
		bufs = bufs[len(batch):]
	}
	return nil
}

// WriteFileDurable writes a small file with the durable recipe: temp file,
// write, fsync, rename over path, fsync the directory. Readers see the old
// or the new content, never a mix.
func WriteFileDurable(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("blockstore: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("blockstore: write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// FreeBytes is the space left for unprivileged use on the file system
// holding dir (statfs).
func FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := retryEINTR(func() error { return unix.Statfs(dir, &st) }); err != nil {
		return 0, fmt.Errorf("blockstore: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// PreallocateFile makes path (created if missing) size bytes long with
// every byte allocated on disk, and syncs it and its directory. A full file
// system is ErrFull.
func PreallocateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("blockstore: %w", err)
	}
	err = preallocate(f, 0, size)
	if err == nil {
		err = Fdatasync(f)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("blockstore: %w", cerr)
	}
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}
