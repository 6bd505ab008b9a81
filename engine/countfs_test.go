package engine

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"

	"blockhash/vfs"
)

// countFS wraps a file system and counts, per kind of store file, the
// reads, writes and syncs made through it: what a snapshot, a clone, a
// write or a diff costs in metadata, measured at the file layer (the cost
// tests and benchmarks of snapshot_cost_test.go and snapshot_bench_test.go).
type countFS struct {
	vfs.FS
	dir string // the store directory: files are classed by their path in it
	c   [nFileKinds]ioCount
}

// Kinds of store files.
const (
	kindJournal = iota // the journal
	kindPages          // the map page file (leaves and tables)
	kindVolumes        // volume files (header and root)
	kindSlots          // slot records (blocks/*.meta)
	kindData           // block data (blocks/*.dat)
	kindIndex          // the index (LevelDB)
	kindOther          // superblock, reserve, manifest, ...
	nFileKinds
)

var fileKindNames = [nFileKinds]string{"journal", "map_pages", "volume_files", "slot_records", "block_data", "index", "other"}

type ioCount struct {
	reads, readBytes   atomic.Int64
	writes, writeBytes atomic.Int64
	maxWrite           atomic.Int64 // the largest single write
	syncs              atomic.Int64
}

// ioFigures is a snapshot of one kind's counts.
type ioFigures struct {
	Reads, ReadBytes, Writes, WriteBytes, MaxWrite, Syncs int64
}

// ioSnap is a snapshot of every kind's counts.
type ioSnap [nFileKinds]ioFigures

func newCountFS(inner vfs.FS, dir string) *countFS {
	return &countFS{FS: inner, dir: filepath.Clean(dir)}
}

func (c *countFS) kind(name string) int {
	rel, err := filepath.Rel(c.dir, filepath.Clean(name))
	if err != nil || strings.HasPrefix(rel, "..") {
		return kindOther
	}
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	switch {
	case rel == journalName:
		return kindJournal
	case rel == pagesName:
		return kindPages
	case first == "devices":
		return kindVolumes
	case first == "blocks" && strings.HasSuffix(rel, ".meta"):
		return kindSlots
	case first == "blocks" && strings.HasSuffix(rel, ".dat"):
		return kindData
	case first == "index":
		return kindIndex
	}
	return kindOther
}

func (c *countFS) OpenFile(name string, flag int, perm fs.FileMode) (vfs.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &countFile{File: f, c: &c.c[c.kind(name)]}, nil
}

func (c *countFS) SyncDir(dir string) error {
	c.c[c.kind(filepath.Join(dir, "x"))].syncs.Add(1)
	return c.FS.SyncDir(dir)
}

// snap takes the current counts.
func (c *countFS) snap() ioSnap {
	var s ioSnap
	for k := range c.c {
		x := &c.c[k]
		s[k] = ioFigures{x.reads.Load(), x.readBytes.Load(), x.writes.Load(), x.writeBytes.Load(), x.maxWrite.Load(), x.syncs.Load()}
	}
	return s
}

// resetMax starts the largest-write figures afresh.
func (c *countFS) resetMax() {
	for k := range c.c {
		c.c[k].maxWrite.Store(0)
	}
}

// since is what was counted between s0 and s (MaxWrite: s's).
func (s ioSnap) since(s0 ioSnap) ioSnap {
	var d ioSnap
	for k := range s {
		a, b := s[k], s0[k]
		d[k] = ioFigures{a.Reads - b.Reads, a.ReadBytes - b.ReadBytes, a.Writes - b.Writes,
			a.WriteBytes - b.WriteBytes, a.MaxWrite, a.Syncs - b.Syncs}
	}
	return d
}

// metaBytes is the map metadata written: map pages, volume files and the
// journal (whose records also carry the slot records' changes).
func (s ioSnap) metaBytes() int64 {
	return s[kindJournal].WriteBytes + s[kindPages].WriteBytes + s[kindVolumes].WriteBytes
}

// allBytes is every byte written to any file.
func (s ioSnap) allBytes() int64 {
	var n int64
	for _, f := range s {
		n += f.WriteBytes
	}
	return n
}

// String lists the kinds written or read.
func (s ioSnap) String() string {
	var b strings.Builder
	for k, f := range s {
		if f.Writes == 0 && f.Reads == 0 && f.Syncs == 0 {
			continue
		}
		fmt.Fprintf(&b, " %s: %d B in %d writes, %d B in %d reads, %d syncs;", fileKindNames[k], f.WriteBytes, f.Writes, f.ReadBytes, f.Reads, f.Syncs)
	}
	return strings.TrimSuffix(strings.TrimPrefix(b.String(), " "), ";")
}

type countFile struct {
	vfs.File
	c *ioCount
}

func (f *countFile) wrote(n int) {
	f.c.writes.Add(1)
	f.c.writeBytes.Add(int64(n))
	for {
		m := f.c.maxWrite.Load()
		if int64(n) <= m || f.c.maxWrite.CompareAndSwap(m, int64(n)) {
			return
		}
	}
}

func (f *countFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.c.reads.Add(1)
	f.c.readBytes.Add(int64(n))
	return n, err
}

func (f *countFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.wrote(n)
	return n, err
}

func (f *countFile) WriteBuffers(bufs [][]byte, off int64) error {
	err := f.File.WriteBuffers(bufs, off)
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	f.wrote(n)
	return err
}

func (f *countFile) Sync() error {
	f.c.syncs.Add(1)
	return f.File.Sync()
}
