package blockstore

// Helpers over package vfs for callers that hold plain paths (the file system calls themselves live in vfs).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"blockhash/vfs"
)

// LockDir takes an exclusive lock on dir/LOCK for the life of the returned
// Closer. A lock held by another process is ErrLocked.
func LockDir(dir string) (io.Closer, error) { return LockDirFS(vfs.OS, dir) }

// LockDirFS is LockDir on fsys.
func LockDirFS(fsys vfs.FS, dir string) (io.Closer, error) {
	l, err := fsys.Lock(filepath.Join(dir, "LOCK"))
	if errors.Is(err, vfs.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("blockstore: lock %s: %w", dir, err)
	}
	return l, nil
}

// AllocatedBytes is the space a file occupies on disk (sparse files count
// only their allocated blocks).
func AllocatedBytes(path string) (int64, error) {
	st, err := vfs.OS.Stat(path)
	return st.Allocated, err
}

// OpenDirect opens path read-only with O_DIRECT where the file system
// allows it (benchmarks compare the store against a plain file this way).
func OpenDirect(path string) (vfs.File, bool, error) {
	f, err := vfs.OS.OpenFile(path, os.O_RDONLY|vfs.Direct, 0)
	if err != nil {
		return nil, false, err
	}
	return f, f.Direct(), nil
}

// AlignedBuf returns a buffer of n bytes aligned for O_DIRECT.
func AlignedBuf(n int) []byte { return vfs.AlignedBuf(n) }

// WriteFileDurable writes a small file with the durable recipe: temp file,
// write, fsync, rename over path, fsync the directory. Readers see the old
// or the new content, never a mix.
func WriteFileDurable(path string, data []byte) error {
	if err := vfs.WriteFileDurable(vfs.OS, path, data); err != nil {
		return fmt.Errorf("blockstore: %w", err)
	}
	return nil
}

// FreeBytes is the space left for unprivileged use on the file system
// holding dir (statfs).
func FreeBytes(dir string) (int64, error) { return FreeBytesFS(vfs.OS, dir) }

// FreeBytesFS is FreeBytes on fsys.
func FreeBytesFS(fsys vfs.FS, dir string) (int64, error) {
	n, err := fsys.FreeBytes(dir)
	if err != nil {
		return 0, fmt.Errorf("blockstore: %w", err)
	}
	return n, nil
}

// PreallocateFile makes path (created if missing) size bytes long with
// every byte allocated on disk, and syncs it and its directory. A full file
// system is ErrFull.
func PreallocateFile(path string, size int64) error { return PreallocateFileFS(vfs.OS, path, size) }

// PreallocateFileFS is PreallocateFile on fsys.
func PreallocateFileFS(fsys vfs.FS, path string, size int64) error {
	f, err := fsys.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("blockstore: %w", err)
	}
	err = f.Allocate(0, size)
	if vfs.IsNoSpace(err) {
		err = fmt.Errorf("%w: preallocating %s: %v", ErrFull, path, err)
	} else if err != nil {
		err = fmt.Errorf("blockstore: %w", err)
	}
	if err == nil {
		err = wrapIO("sync", f.Sync())
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("blockstore: %w", cerr)
	}
	if err != nil {
		return err
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("blockstore: %w", err)
	}
	return nil
}
