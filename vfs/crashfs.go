package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// SectorSize is the unit a torn write is cut at.
const SectorSize = 512

// CrashMode says what survives of the changes not synced at a crash.
type CrashMode int

const (
	// TearLast drops every unsynced change, except that each file's last
	// unsynced write survives as a random prefix of its sectors (possibly
	// none, possibly all). The default.
	TearLast CrashMode = iota
	// DropUnsynced drops every unsynced change.
	DropUnsynced
	// KeepPrefix keeps a random prefix of each file's unsynced changes in
	// order, the last kept write torn at a sector boundary.
	KeepPrefix
)

// OpKind names a mutating operation (the ones CrashFS counts).
type OpKind int

// The operations.
const (
	OpCreate OpKind = iota + 1 // OpenFile that creates or truncates
	OpWrite                    // WriteAt, WriteBuffers
	OpTruncate
	OpAllocate
	OpSync
	OpRemove
	OpRename
	OpMkdir
	OpSyncDir
)

var opNames = map[OpKind]string{OpCreate: "create", OpWrite: "write", OpTruncate: "truncate",
	OpAllocate: "allocate", OpSync: "sync", OpRemove: "remove", OpRename: "rename",
	OpMkdir: "mkdir", OpSyncDir: "syncdir"}

func (k OpKind) String() string { return opNames[k] }

// Op describes one mutating operation, for fault hooks.
type Op struct {
	N    int64 // 1-based count of mutating operations so far, this one included
	Kind OpKind
	Path string
	Off  int64
	Len  int64 // bytes written or allocated
}

// Fault decides whether an operation fails: a non-nil error fails it
// without effect.
type Fault func(op Op) error

// FailNth fails the nth mutating operation (counted from when the fault is
// installed) of the given kinds (all kinds when none are given) with err.
func FailNth(n int64, err error, kinds ...OpKind) Fault {
	var seen int64
	return func(op Op) error {
		if len(kinds) > 0 && !slices.Contains(kinds, op.Kind) {
			return nil
		}
		seen++
		if seen == n {
			return &fs.PathError{Op: op.Kind.String(), Path: op.Path, Err: err}
		}
		return nil
	}
}

// NoSpaceAfter lets writes and allocations add up to n bytes, then fails
// each that would go past with ENOSPC.
func NoSpaceAfter(n int64) Fault {
	var used int64
	return func(op Op) error {
		if op.Kind != OpWrite && op.Kind != OpAllocate {
			return nil
		}
		if used+op.Len > n {
			return &fs.PathError{Op: op.Kind.String(), Path: op.Path, Err: syscall.ENOSPC}
		}
		used += op.Len
		return nil
	}
}

// CrashFS is an in-memory FS with strict crash semantics (see the package
// documentation).
type CrashFS struct {
	// mu guards everything below and every inode and handle of this FS.
	mu      sync.Mutex
	rng     *rand.Rand
	mode    CrashMode
	dirs    map[string]bool
	names   map[string]*inode // the current namespace
	durable map[string]*inode // the namespace a crash would leave
	locks   map[string]bool
	ops     int64
	crashAt int64 // crash before mutating operation crashAt (0: never)
	image   *CrashFS
	dead    bool
	fault   Fault
	before  func(Op)
	free    int64 // what FreeBytes reports
}

type inode struct {
	data    []byte   // current content
	synced  []byte   // durable content
	pending []change // unsynced changes, oldest first
}

type change struct {
	off   int64
	data  []byte // a write; nil with trunc
	size  int64  // the new size of a truncate or extending allocate
	trunc bool
}

// NewCrashFS returns an empty CrashFS whose torn writes are drawn from seed.
func NewCrashFS(seed uint64) *CrashFS {
	return &CrashFS{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		dirs:    map[string]bool{"/": true, ".": true},
		names:   map[string]*inode{},
		durable: map[string]*inode{},
		locks:   map[string]bool{},
		free:    1 << 40,
	}
}

// SetFreeBytes sets what FreeBytes reports (1 TiB by default; the space
// writes really get is set by a NoSpaceAfter fault).
func (c *CrashFS) SetFreeBytes(n int64) {
	c.mu.Lock()
	c.free = n
	c.mu.Unlock()
}

// FreeBytes implements FS.
func (c *CrashFS) FreeBytes(dir string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("statfs", dir); err != nil {
		return 0, err
	}
	return c.free, nil
}

// SetMode sets what survives of unsynced changes at a crash.
func (c *CrashFS) SetMode(m CrashMode) {
	c.mu.Lock()
	c.mode = m
	c.mu.Unlock()
}

// SetFault installs f (nil removes it); it sees every mutating operation.
func (c *CrashFS) SetFault(f Fault) {
	c.mu.Lock()
	c.fault = f
	c.mu.Unlock()
}

// SetBeforeOp installs a hook called before each mutating operation takes
// effect, outside the FS's lock (so it may block, or call into the FS from
// another goroutine); Op.N is zero there. Tests use it to interleave
// operations deterministically.
func (c *CrashFS) SetBeforeOp(f func(Op)) {
	c.mu.Lock()
	c.before = f
	c.mu.Unlock()
}

func (c *CrashFS) callBefore(kind OpKind, path string, off, n int64) {
	c.mu.Lock()
	f := c.before
	c.mu.Unlock()
	if f != nil {
		f(Op{Kind: kind, Path: path, Off: off, Len: n})
	}
}

// Ops is the number of mutating operations so far.
func (c *CrashFS) Ops() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// CrashAfter arms a power cut: after n more mutating operations, the next
// one does not happen; instead the FS takes its crash image (Crashed) and
// every later operation fails with ErrCrashed. n < 0 disarms.
func (c *CrashFS) CrashAfter(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n < 0 {
		c.crashAt = 0
		return
	}
	c.crashAt = c.ops + n + 1
}

// Crashed returns the image the armed crash left, nil if it did not happen.
func (c *CrashFS) Crashed() *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.image
}

// Crash cuts the power now: it returns the crash image and makes every
// later operation on c fail with ErrCrashed.
func (c *CrashFS) Crash() *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.image == nil {
		c.image = c.cloneLocked()
	}
	c.dead = true
	return c.image
}

// CrashClone returns the state a power cut would leave now; c goes on.
func (c *CrashFS) CrashClone() *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cloneLocked()
}

// cloneLocked builds the crash image: durable names, synced content, plus
// what the crash mode lets survive of the unsynced changes.
func (c *CrashFS) cloneLocked() *CrashFS {
	n := NewCrashFS(c.rng.Uint64())
	n.mode = c.mode
	for d := range c.dirs {
		n.dirs[d] = true
	}
	made := map[*inode]*inode{}
	for name, ino := range c.durable {
		ni, ok := made[ino]
		if !ok {
			ni = &inode{data: c.crashContent(ino)}
			ni.synced = slices.Clone(ni.data)
			made[ino] = ni
		}
		n.names[name] = ni
		n.durable[name] = ni
	}
	return n
}

func (c *CrashFS) crashContent(ino *inode) []byte {
	b := slices.Clone(ino.synced)
	p := ino.pending
	if len(p) == 0 || c.mode == DropUnsynced {
		return b
	}
	keep := len(p) // TearLast: only the last change, torn
	first := len(p) - 1
	if c.mode == KeepPrefix {
		keep = c.rng.IntN(len(p) + 1)
		first = 0
	}
	for i := first; i < keep; i++ {
		ch := p[i]
		if i == keep-1 && !ch.trunc {
			ch = c.tear(ch)
		} else if i == keep-1 && c.rng.IntN(2) == 0 {
			continue // a lost truncate or allocation
		}
		b = apply(b, ch)
	}
	return b
}

// tear cuts a write at a random sector boundary of the file.
func (c *CrashFS) tear(ch change) change {
	end := ch.off + int64(len(ch.data))
	var cuts []int64 // prefix lengths that end on a sector boundary or at the end
	for s := (ch.off/SectorSize + 1) * SectorSize; s < end; s += SectorSize {
		cuts = append(cuts, s-ch.off)
	}
	cuts = append(cuts, int64(len(ch.data)))
	k := c.rng.IntN(len(cuts) + 1) // 0: nothing of it
	if k == 0 {
		ch.data = ch.data[:0]
		return ch
	}
	ch.data = ch.data[:cuts[k-1]]
	return ch
}

func apply(b []byte, ch change) []byte {
	if ch.trunc {
		return resize(b, ch.size)
	}
	if len(ch.data) == 0 {
		return b
	}
	end := ch.off + int64(len(ch.data))
	if int64(len(b)) < end {
		b = resize(b, end)
	}
	copy(b[ch.off:], ch.data)
	return b
}

func resize(b []byte, size int64) []byte {
	if int64(len(b)) >= size {
		clear(b[size:])
		return b[:size]
	}
	if int64(cap(b)) >= size {
		return b[:size]
	}
	nb := make([]byte, size, max(size, 2*int64(len(b))))
	copy(nb, b)
	return nb
}

// mutate counts a mutating operation, fires the armed crash and the fault
// hook. It returns the error the operation must fail with.
func (c *CrashFS) mutate(kind OpKind, path string, off, n int64) error {
	if c.dead {
		return &fs.PathError{Op: kind.String(), Path: path, Err: ErrCrashed}
	}
	c.ops++
	if c.crashAt != 0 && c.ops >= c.crashAt {
		c.image = c.cloneLocked()
		c.dead = true
		return &fs.PathError{Op: kind.String(), Path: path, Err: ErrCrashed}
	}
	if c.fault != nil {
		if err := c.fault(Op{N: c.ops, Kind: kind, Path: path, Off: off, Len: n}); err != nil {
			return err
		}
	}
	return nil
}

func (c *CrashFS) deadErr(op, path string) error {
	if c.dead {
		return &fs.PathError{Op: op, Path: path, Err: ErrCrashed}
	}
	return nil
}

func (c *CrashFS) parentOK(name string) bool {
	return c.dirs[filepath.Dir(name)]
}

// OpenFile implements FS.
func (c *CrashFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	name = clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("open", name); err != nil {
		return nil, err
	}
	pe := func(err error) error { return &fs.PathError{Op: "open", Path: name, Err: err} }
	if c.dirs[name] {
		return nil, pe(syscall.EISDIR)
	}
	ino := c.names[name]
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	switch {
	case ino != nil && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pe(syscall.EEXIST)
	case ino == nil && flag&os.O_CREATE == 0:
		return nil, pe(syscall.ENOENT)
	case ino == nil:
		if !c.parentOK(name) {
			return nil, pe(syscall.ENOENT)
		}
		if err := c.mutate(OpCreate, name, 0, 0); err != nil {
			return nil, err
		}
		ino = &inode{}
		c.names[name] = ino
	case flag&os.O_TRUNC != 0 && writable:
		if err := c.mutate(OpCreate, name, 0, 0); err != nil {
			return nil, err
		}
		c.truncLocked(ino, 0)
	}
	return &crashFile{fs: c, ino: ino, name: name, writable: writable}, nil
}

func (c *CrashFS) truncLocked(ino *inode, size int64) {
	ch := change{trunc: true, size: size}
	ino.data = apply(ino.data, ch)
	ino.pending = append(ino.pending, ch)
}

// Remove implements FS.
func (c *CrashFS) Remove(name string) error {
	name = clean(name)
	c.callBefore(OpRemove, name, 0, 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("remove", name); err != nil {
		return err
	}
	if c.dirs[name] {
		for n := range c.names {
			if filepath.Dir(n) == name {
				return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
			}
		}
		for d := range c.dirs {
			if d != name && filepath.Dir(d) == name {
				return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
			}
		}
		if err := c.mutate(OpRemove, name, 0, 0); err != nil {
			return err
		}
		delete(c.dirs, name)
		return nil
	}
	if c.names[name] == nil {
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOENT}
	}
	if err := c.mutate(OpRemove, name, 0, 0); err != nil {
		return err
	}
	delete(c.names, name)
	return nil
}

// Rename implements FS.
func (c *CrashFS) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	c.callBefore(OpRename, oldname, 0, 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("rename", oldname); err != nil {
		return err
	}
	ino := c.names[oldname]
	if ino == nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOENT}
	}
	if c.dirs[newname] {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EISDIR}
	}
	if !c.parentOK(newname) {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOENT}
	}
	if oldname == newname {
		return nil
	}
	if err := c.mutate(OpRename, oldname, 0, 0); err != nil {
		return err
	}
	delete(c.names, oldname)
	c.names[newname] = ino
	return nil
}

// MkdirAll implements FS. Directories are durable at once.
func (c *CrashFS) MkdirAll(dir string, perm fs.FileMode) error {
	dir = clean(dir)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("mkdir", dir); err != nil {
		return err
	}
	if c.dirs[dir] {
		return nil
	}
	for d := dir; !c.dirs[d]; d = filepath.Dir(d) {
		if c.names[d] != nil {
			return &fs.PathError{Op: "mkdir", Path: d, Err: syscall.ENOTDIR}
		}
	}
	if err := c.mutate(OpMkdir, dir, 0, 0); err != nil {
		return err
	}
	for d := dir; !c.dirs[d]; d = filepath.Dir(d) {
		c.dirs[d] = true
	}
	return nil
}

// ReadDir implements FS.
func (c *CrashFS) ReadDir(dir string) ([]FileInfo, error) {
	dir = clean(dir)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("readdir", dir); err != nil {
		return nil, err
	}
	if !c.dirs[dir] {
		if c.names[dir] != nil {
			return nil, &fs.PathError{Op: "readdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: syscall.ENOENT}
	}
	var out []FileInfo
	for n, ino := range c.names {
		if filepath.Dir(n) == dir {
			out = append(out, FileInfo{Name: filepath.Base(n), Size: int64(len(ino.data)), Allocated: int64(len(ino.data))})
		}
	}
	for d := range c.dirs {
		if d != dir && filepath.Dir(d) == dir {
			out = append(out, FileInfo{Name: filepath.Base(d), IsDir: true})
		}
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SyncDir implements FS: the entries of dir become durable as they are now.
func (c *CrashFS) SyncDir(dir string) error {
	dir = clean(dir)
	c.callBefore(OpSyncDir, dir, 0, 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirs[dir] {
		if err := c.deadErr("syncdir", dir); err != nil {
			return err
		}
		return &fs.PathError{Op: "syncdir", Path: dir, Err: syscall.ENOENT}
	}
	if err := c.mutate(OpSyncDir, dir, 0, 0); err != nil {
		return err
	}
	for n := range c.durable {
		if filepath.Dir(n) == dir && c.names[n] == nil {
			delete(c.durable, n)
		}
	}
	for n, ino := range c.names {
		if filepath.Dir(n) == dir {
			c.durable[n] = ino
		}
	}
	return nil
}

type crashLock struct {
	fs   *CrashFS
	name string
	once sync.Once
}

func (l *crashLock) Close() error {
	l.once.Do(func() {
		l.fs.mu.Lock()
		delete(l.fs.locks, l.name)
		l.fs.mu.Unlock()
	})
	return nil
}

// Lock implements FS (the lock file itself is not created).
func (c *CrashFS) Lock(name string) (io.Closer, error) {
	name = clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("lock", name); err != nil {
		return nil, err
	}
	if !c.parentOK(name) {
		return nil, &fs.PathError{Op: "lock", Path: name, Err: syscall.ENOENT}
	}
	if c.locks[name] {
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	c.locks[name] = true
	return &crashLock{fs: c, name: name}, nil
}

// Stat implements FS.
func (c *CrashFS) Stat(name string) (FileInfo, error) {
	name = clean(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadErr("stat", name); err != nil {
		return FileInfo{}, err
	}
	if c.dirs[name] {
		return FileInfo{Name: filepath.Base(name), IsDir: true}, nil
	}
	ino := c.names[name]
	if ino == nil {
		return FileInfo{}, &fs.PathError{Op: "stat", Path: name, Err: syscall.ENOENT}
	}
	return FileInfo{Name: filepath.Base(name), Size: int64(len(ino.data)), Allocated: int64(len(ino.data))}, nil
}

// crashFile is an open CrashFS file.
type crashFile struct {
	fs       *CrashFS
	ino      *inode
	name     string
	writable bool
	closed   bool // guarded by fs.mu
}

func (f *crashFile) Name() string { return f.name }
func (f *crashFile) Direct() bool { return false }

func (f *crashFile) check(op string, write bool) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	}
	if err := f.fs.deadErr(op, f.name); err != nil {
		return err
	}
	if write && !f.writable {
		return &fs.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

func (f *crashFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: os.ErrClosed}
	}
	f.closed = true
	return nil
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: syscall.EINVAL}
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.WriteBuffers([][]byte{p}, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *crashFile) WriteBuffers(bufs [][]byte, off int64) error {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	f.fs.callBefore(OpWrite, f.name, off, n)
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return err
	}
	if off < 0 {
		return &fs.PathError{Op: "write", Path: f.name, Err: syscall.EINVAL}
	}
	var data []byte
	for _, b := range bufs {
		data = append(data, b...)
	}
	if err := f.fs.mutate(OpWrite, f.name, off, int64(len(data))); err != nil {
		return err
	}
	ch := change{off: off, data: data}
	f.ino.data = apply(f.ino.data, ch)
	f.ino.pending = append(f.ino.pending, ch)
	return nil
}

func (f *crashFile) Truncate(size int64) error {
	f.fs.callBefore(OpTruncate, f.name, size, 0)
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	if err := f.fs.mutate(OpTruncate, f.name, size, 0); err != nil {
		return err
	}
	f.fs.truncLocked(f.ino, size)
	return nil
}

func (f *crashFile) Allocate(off, n int64) error {
	f.fs.callBefore(OpAllocate, f.name, off, n)
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("allocate", true); err != nil {
		return err
	}
	if off < 0 || n <= 0 {
		return &fs.PathError{Op: "allocate", Path: f.name, Err: syscall.EINVAL}
	}
	grow := max(0, off+n-int64(len(f.ino.data)))
	if err := f.fs.mutate(OpAllocate, f.name, off, grow); err != nil {
		return err
	}
	if grow > 0 {
		f.fs.truncLocked(f.ino, off+n)
	}
	return nil
}

func (f *crashFile) Sync() error {
	f.fs.callBefore(OpSync, f.name, 0, 0)
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	if err := f.fs.mutate(OpSync, f.name, 0, 0); err != nil {
		return err
	}
	for _, ch := range f.ino.pending {
		f.ino.synced = apply(f.ino.synced, ch)
	}
	f.ino.pending = nil
	return nil
}

func (f *crashFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat", false); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

func (f *crashFile) DataRegion(off, end int64) (data, hole int64, err error) {
	if off >= end {
		return end, end, nil
	}
	return off, end, nil
}
