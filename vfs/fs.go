package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Direct is an OpenFile flag: open for direct I/O (O_DIRECT) where the file
// system supports it, buffered where it does not. Callers must then pass
// buffers aligned by AlignedBuf and offsets that are multiples of
// DirectAlign; File.Direct tells which one they got.
const Direct = 1 << 30

const writeFlags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC

// DirectAlign is the buffer and offset alignment direct I/O needs.
const DirectAlign = 4096

var (
	// ErrLocked means another holder has the lock (FS.Lock).
	ErrLocked = errors.New("vfs: locked by another process")
	// ErrCrashed means the CrashFS has crashed: every operation fails.
	ErrCrashed = errors.New("vfs: simulated power cut")
	// ErrInjected is the default error of injected faults.
	ErrInjected = errors.New("vfs: injected fault")
)

// File is an open file.
type File interface {
	// Name is the path the file was opened with.
	Name() string
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// WriteBuffers writes bufs back to back at off (pwritev).
	WriteBuffers(bufs [][]byte, off int64) error
	Truncate(size int64) error
	// Allocate reserves [off, off+n) on disk (fallocate, extending the
	// file). A full disk is an error for which IsNoSpace holds.
	Allocate(off, n int64) error
	// Sync makes the file's data and size durable (fdatasync). It does not
	// make the file's directory entry durable: that is FS.SyncDir.
	Sync() error
	// Size is the file's current size.
	Size() (int64, error)
	// DataRegion returns the first region holding data at or after off:
	// [data, hole), both at most end; data == end when only holes follow.
	DataRegion(off, end int64) (data, hole int64, err error)
	// Direct reports whether the file was opened for direct I/O.
	Direct() bool
	Close() error
}

// FileInfo describes a file or directory.
type FileInfo struct {
	Name      string // base name
	Size      int64
	Allocated int64 // bytes allocated on disk (sparse files count less)
	IsDir     bool
}

// FS is a file system.
type FS interface {
	// OpenFile opens name with os.O_* flags (O_RDONLY, O_RDWR, O_WRONLY,
	// O_CREATE, O_EXCL, O_TRUNC) and the Direct hint.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	Remove(name string) error
	// Rename replaces newname atomically (durable after SyncDir).
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm fs.FileMode) error
	// ReadDir lists dir sorted by name.
	ReadDir(dir string) ([]FileInfo, error)
	// SyncDir makes dir's entries (created, renamed, removed files) durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock on the file name (created if needed) for
	// the life of the returned Closer. A lock held elsewhere is ErrLocked.
	Lock(name string) (io.Closer, error)
	Stat(name string) (FileInfo, error)
	// FreeBytes is the space left for unprivileged use on the file
	// system holding dir (statfs).
	FreeBytes(dir string) (int64, error)
}

// IsNoSpace reports whether err means the file system is full (ENOSPC or
// EDQUOT).
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// ReadFile reads a whole file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, 0, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, err
	}
	return b, nil
}

// WriteFileDurable writes a small file with the durable recipe: temp file
// (path + ".tmp"), write, sync, rename over path, sync the directory.
// Readers see the old or the new content, never a mix.
func WriteFileDurable(fsys FS, path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := fsys.OpenFile(tmp, writeFlags, 0o600)
	if err != nil {
		return fmt.Errorf("vfs: write %s: %w", path, err)
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("vfs: write %s: %w", path, err)
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("vfs: write %s: %w", path, err)
	}
	return nil
}
