package index

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/syndtr/goleveldb/leveldb/storage"

	"blockhash/vfs"
)

// fileStorage is goleveldb's storage.Storage over a vfs.FS, so LevelDB's
// files go through the same file layer as the rest of the store (and a
// vfs.CrashFS cuts LevelDB's power too). File names and the CURRENT dance
// are goleveldb's own, so a directory made by goleveldb's file storage
// opens here and the reverse.
//
// Durability: goleveldb syncs its journal (a synchronous write), its tables
// before the manifest names them, and the manifest (after which goleveldb's
// file storage syncs the directory). It never syncs the directory after
// creating a journal or a table, relying on the manifest's directory sync
// that may come much later; on a strict power cut a synced journal could
// then vanish with its name. This storage therefore syncs the directory
// after every Create and Rename as well. goleveldb also points CURRENT at
// a new manifest without syncing the manifest first; SetMeta syncs it.
type fileStorage struct {
	fs       vfs.FS
	dir      string
	lock     io.Closer
	readOnly bool // nothing is created, written, renamed or removed

	// mu guards slock, closed and the LOG writer.
	mu     sync.Mutex
	slock  *storageLock
	closed bool
	logw   vfs.File
	logOff int64
}

type storageLock struct{ s *fileStorage }

func (l *storageLock) Unlock() {
	l.s.mu.Lock()
	if l.s.slock == l {
		l.s.slock = nil
	}
	l.s.mu.Unlock()
}

// openStorage creates dir if needed (it must exist when readOnly) and
// locks it (ErrLocked if held).
func openStorage(fsys vfs.FS, dir string, readOnly bool) (*fileStorage, error) {
	st, err := fsys.Stat(dir)
	switch {
	case err == nil && !st.IsDir:
		return nil, fmt.Errorf("index: open %s: not a directory", dir)
	case err != nil && readOnly:
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	case err != nil:
		if err := fsys.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("index: open %s: %w", dir, err)
		}
	}
	lock, err := fsys.Lock(filepath.Join(dir, "LOCK"))
	if errors.Is(err, vfs.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("index: lock %s: %w", dir, err)
	}
	return &fileStorage{fs: fsys, dir: dir, lock: lock, readOnly: readOnly}, nil
}

var errReadOnly = errors.New("leveldb/storage: storage is read-only")

func (s *fileStorage) path(name string) string { return filepath.Join(s.dir, name) }

func (s *fileStorage) Lock() (storage.Locker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	if s.slock != nil {
		return nil, storage.ErrLocked
	}
	s.slock = &storageLock{s: s}
	return s.slock, nil
}

// Log appends to LOG (unsynced, best effort), as goleveldb does.
func (s *fileStorage) Log(str string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.readOnly {
		return
	}
	if s.logw == nil {
		f, err := s.fs.OpenFile(s.path("LOG"), os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return
		}
		s.logOff, _ = f.Size()
		s.logw = f
	}
	line := time.Now().Format("2006/01/02-15:04:05.000000 ") + str + "\n"
	n, _ := s.logw.WriteAt([]byte(line), s.logOff)
	s.logOff += int64(n)
}

// writeSynced writes a whole small file and syncs it.
func (s *fileStorage) writeSynced(name string, data []byte) error {
	f, err := s.fs.OpenFile(s.path(name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// setMeta points CURRENT at fd: the manifest synced, CURRENT.<num> written
// and synced, renamed over CURRENT, the directory synced.
func (s *fileStorage) setMeta(fd storage.FileDesc) error {
	content := fileName(fd) + "\n"
	if b, err := vfs.ReadFile(s.fs, s.path("CURRENT")); err == nil && string(b) == content {
		return nil
	}
	// goleveldb v1.0.0 writes a new manifest and calls SetMeta without
	// syncing it: a power cut could leave CURRENT naming an empty manifest.
	m, err := s.fs.OpenFile(s.path(fileName(fd)), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = m.Sync()
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("CURRENT.%d", fd.Num)
	if err := s.writeSynced(tmp, []byte(content)); err != nil {
		return err
	}
	if err := s.fs.Rename(s.path(tmp), s.path("CURRENT")); err != nil {
		return err
	}
	return s.fs.SyncDir(s.dir)
}

func (s *fileStorage) SetMeta(fd storage.FileDesc) error {
	if !storage.FileDescOk(fd) {
		return storage.ErrInvalidFile
	}
	if s.readOnly {
		return errReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	return s.setMeta(fd)
}

var errNoCurrent = errors.New("no valid CURRENT")

// readCurrent reads a CURRENT-like file; errNoCurrent when it is missing,
// malformed or names a manifest that does not exist.
func (s *fileStorage) readCurrent(name string) (storage.FileDesc, error) {
	b, err := vfs.ReadFile(s.fs, s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return storage.FileDesc{}, errNoCurrent
	}
	if err != nil {
		return storage.FileDesc{}, err
	}
	fd, ok := parseName(strings.TrimSuffix(string(b), "\n"))
	if len(b) == 0 || b[len(b)-1] != '\n' || !ok || fd.Type != storage.TypeManifest {
		return storage.FileDesc{}, errNoCurrent
	}
	if _, err := s.fs.Stat(s.path(fileName(fd))); err != nil {
		return storage.FileDesc{}, errNoCurrent
	}
	return fd, nil
}

// GetMeta returns the manifest CURRENT names. Like goleveldb it also looks
// at CURRENT.<num> left by an interrupted SetMeta and at CURRENT.bak, and
// takes the newest valid one (making it CURRENT).
func (s *fileStorage) GetMeta() (storage.FileDesc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.FileDesc{}, storage.ErrClosed
	}
	ents, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return storage.FileDesc{}, err
	}
	var pending []string
	for _, de := range ents {
		if num, ok := strings.CutPrefix(de.Name, "CURRENT."); ok {
			if _, err := strconv.ParseInt(num, 10, 64); err == nil {
				pending = append(pending, de.Name)
			}
		}
	}
	best, found, name := storage.FileDesc{}, false, ""
	for _, n := range append(pending, "CURRENT", "CURRENT.bak") {
		fd, err := s.readCurrent(n)
		if errors.Is(err, errNoCurrent) {
			continue
		}
		if err != nil {
			return storage.FileDesc{}, err
		}
		if !found || fd.Num > best.Num {
			best, found, name = fd, true, n
		}
	}
	if !found {
		if _, err := s.fs.Stat(s.path("CURRENT")); err == nil {
			return storage.FileDesc{}, &storage.ErrCorrupted{Err: errors.New("leveldb/storage: corrupted or incomplete CURRENT file")}
		}
		return storage.FileDesc{}, os.ErrNotExist
	}
	if !s.readOnly && (name != "CURRENT" || len(pending) > 0) {
		if err := s.setMeta(best); err == nil {
			for _, n := range pending {
				s.fs.Remove(s.path(n))
			}
		}
	}
	return best, nil
}

func (s *fileStorage) List(ft storage.FileType) ([]storage.FileDesc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	ents, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var fds []storage.FileDesc
	for _, de := range ents {
		if fd, ok := parseName(de.Name); ok && fd.Type&ft != 0 {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

func (s *fileStorage) Open(fd storage.FileDesc) (storage.Reader, error) {
	if !storage.FileDescOk(fd) {
		return nil, storage.ErrInvalidFile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	f, err := s.fs.OpenFile(s.path(fileName(fd)), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) && fd.Type == storage.TypeTable {
		f, err = s.fs.OpenFile(s.path(fmt.Sprintf("%06d.sst", fd.Num)), os.O_RDONLY, 0)
	}
	if err != nil {
		return nil, err
	}
	return &storageReader{f: f}, nil
}

func (s *fileStorage) Create(fd storage.FileDesc) (storage.Writer, error) {
	if !storage.FileDescOk(fd) {
		return nil, storage.ErrInvalidFile
	}
	if s.readOnly {
		return nil, errReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	f, err := s.fs.OpenFile(s.path(fileName(fd)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		f.Close()
		return nil, err
	}
	return &storageWriter{s: s, f: f, fd: fd}, nil
}

func (s *fileStorage) Remove(fd storage.FileDesc) error {
	if !storage.FileDescOk(fd) {
		return storage.ErrInvalidFile
	}
	if s.readOnly {
		return errReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	err := s.fs.Remove(s.path(fileName(fd)))
	if errors.Is(err, fs.ErrNotExist) && fd.Type == storage.TypeTable {
		if e := s.fs.Remove(s.path(fmt.Sprintf("%06d.sst", fd.Num))); !errors.Is(e, fs.ErrNotExist) {
			err = e
		}
	}
	return err
}

func (s *fileStorage) Rename(oldfd, newfd storage.FileDesc) error {
	if !storage.FileDescOk(oldfd) || !storage.FileDescOk(newfd) {
		return storage.ErrInvalidFile
	}
	if oldfd == newfd {
		return nil
	}
	if s.readOnly {
		return errReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	if err := s.fs.Rename(s.path(fileName(oldfd)), s.path(fileName(newfd))); err != nil {
		return err
	}
	return s.fs.SyncDir(s.dir)
}

func (s *fileStorage) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	s.closed = true
	if s.logw != nil {
		s.logw.Close()
	}
	return s.lock.Close()
}

// storageReader reads a file sequentially or at offsets.
type storageReader struct {
	f   vfs.File
	off int64
}

func (r *storageReader) Read(p []byte) (int, error) {
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (r *storageReader) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

func (r *storageReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		size, err := r.f.Size()
		if err != nil {
			return 0, err
		}
		offset += size
	default:
		return 0, fmt.Errorf("index: seek whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("index: seek to %d", offset)
	}
	r.off = offset
	return offset, nil
}

func (r *storageReader) Close() error { return r.f.Close() }

// storageWriter appends to a new file.
type storageWriter struct {
	s   *fileStorage
	f   vfs.File
	fd  storage.FileDesc
	off int64
}

func (w *storageWriter) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// Sync syncs the file; for a manifest, the directory as well (as
// goleveldb's file storage does).
func (w *storageWriter) Sync() error {
	if err := w.f.Sync(); err != nil {
		return err
	}
	if w.fd.Type == storage.TypeManifest {
		return w.s.fs.SyncDir(w.s.dir)
	}
	return nil
}

func (w *storageWriter) Close() error { return w.f.Close() }

func fileName(fd storage.FileDesc) string {
	switch fd.Type {
	case storage.TypeManifest:
		return fmt.Sprintf("MANIFEST-%06d", fd.Num)
	case storage.TypeJournal:
		return fmt.Sprintf("%06d.log", fd.Num)
	case storage.TypeTable:
		return fmt.Sprintf("%06d.ldb", fd.Num)
	case storage.TypeTemp:
		return fmt.Sprintf("%06d.tmp", fd.Num)
	}
	return fmt.Sprintf("%#x-%d", fd.Type, fd.Num)
}

// parseName is goleveldb's file name parser.
func parseName(name string) (storage.FileDesc, bool) {
	var fd storage.FileDesc
	if num, ok := strings.CutPrefix(name, "MANIFEST-"); ok {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n < 0 {
			return fd, false
		}
		return storage.FileDesc{Type: storage.TypeManifest, Num: n}, true
	}
	num, ext, ok := strings.Cut(name, ".")
	if !ok {
		return fd, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return fd, false
	}
	types := map[string]storage.FileType{"log": storage.TypeJournal, "ldb": storage.TypeTable, "sst": storage.TypeTable, "tmp": storage.TypeTemp}
	t, ok := types[ext]
	if !ok {
		return fd, false
	}
	return storage.FileDesc{Type: t, Num: n}, true
}

var _ storage.Storage = (*fileStorage)(nil)
