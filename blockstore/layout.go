package blockstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"blockhash/vfs"
)

// layout is what an extent directory holds: the extent files by number and
// the manifest's count. scanLayout also clears what an interrupted Grow
// leaves behind.
type layout struct {
	fs       vfs.FS
	dir      string
	dats     map[int]int64 // extent number -> size of its .dat
	metas    map[int]int64 // extent number -> size of its .meta
	manifest int64         // extent count in the manifest, -1 without one
	// manifestErr is set when the manifest exists but is damaged.
	manifestErr error
	stray       []string // extent-like names that are not ours
	notRegular  []string // extent files that are directories
}

func extentName(dir string, i int) (data, meta string) {
	base := filepath.Join(dir, fmt.Sprintf("extent-%06d", i))
	return base + ".dat", base + ".meta"
}

// parseExtentName returns the number and kind (".dat", ".meta", ".tmp")
// of an extent file name.
func parseExtentName(name string) (int, string, bool) {
	if !strings.HasPrefix(name, "extent-") {
		return 0, "", false
	}
	rest := name[len("extent-"):]
	num, ext, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, "", false
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || fmt.Sprintf("%06d", i) != num {
		return 0, "", false
	}
	switch ext {
	case "dat", "meta":
		return i, "." + ext, true
	case "dat.tmp", "meta.tmp":
		return i, ".tmp", true
	}
	return 0, "", false
}

func scanLayout(fsys vfs.FS, dir string, readOnly bool) (*layout, error) {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	l := &layout{fs: fsys, dir: dir, dats: map[int]int64{}, metas: map[int]int64{}, manifest: -1}
	var removed bool
	remove := func(name string) error {
		if readOnly {
			return nil
		}
		if err := fsys.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blockstore: remove leftover: %w", err)
		}
		removed = true
		return nil
	}
	for _, de := range ents {
		if de.Name == manifestName+".tmp" {
			if err := remove(de.Name); err != nil {
				return nil, err
			}
			continue
		}
		if de.Name == manifestName {
			l.readManifest()
			continue
		}
		i, kind, ok := parseExtentName(de.Name)
		switch {
		case !ok && strings.HasPrefix(de.Name, "extent-") && !strings.Contains(de.Name, ".damaged-"):
			l.stray = append(l.stray, de.Name)
		case !ok:
		case de.IsDir:
			l.notRegular = append(l.notRegular, de.Name)
		case kind == ".tmp": // a Grow that did not finish
			if err := remove(de.Name); err != nil {
				return nil, err
			}
		case kind == ".dat":
			l.dats[i] = de.Size
		default:
			l.metas[i] = de.Size
		}
	}
	// An older Grow, interrupted, left a last extent of two empty files.
	if h := l.highestDat(); h >= 0 && l.dats[h] == 0 && l.metas[h] == 0 && int64(h) >= l.manifest && l.manifestErr == nil {
		d, m := extentName("", h)
		if err := remove(d); err != nil {
			return nil, err
		}
		if err := remove(m); err != nil {
			return nil, err
		}
		delete(l.dats, h)
		delete(l.metas, h)
	}
	// A .meta without its .dat beyond the manifest: Grow renames the
	// .meta first, so this is a Grow that did not finish.
	limit := max(l.manifest, int64(l.highestDat()+1))
	for i := range l.metas {
		if _, ok := l.dats[i]; !ok && int64(i) >= limit && l.manifestErr == nil {
			_, m := extentName("", i)
			if err := remove(m); err != nil {
				return nil, err
			}
			delete(l.metas, i)
		}
	}
	if removed {
		if err := fsys.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("blockstore: %w", err)
		}
	}
	return l, nil
}

func (l *layout) readManifest() {
	b, err := vfs.ReadFile(l.fs, filepath.Join(l.dir, manifestName))
	if err != nil {
		l.manifestErr = err
		return
	}
	n, err := decodeManifest(b)
	if err != nil {
		l.manifestErr = err
		return
	}
	l.manifest = int64(n)
}

func (l *layout) highestDat() int {
	h := -1
	for i := range l.dats {
		h = max(h, i)
	}
	return h
}

// count is the number of extents the store should have.
func (l *layout) count() int {
	n := l.highestDat() + 1
	for i := range l.metas {
		n = max(n, i+1)
	}
	return max(n, int(l.manifest))
}

// problems lists every file that is missing or has the wrong size.
func (l *layout) problems(extentSize int64) error {
	var errs []error
	if l.manifestErr != nil {
		errs = append(errs, &DamageError{File: filepath.Join(l.dir, manifestName), Problem: l.manifestErr.Error()})
	}
	for _, name := range l.stray {
		errs = append(errs, &DamageError{File: filepath.Join(l.dir, name), Problem: "is not an extent file of this store"})
	}
	for _, name := range l.notRegular {
		errs = append(errs, &DamageError{File: filepath.Join(l.dir, name), Problem: "is not a regular file"})
	}
	metaSize := extentSize / BlockSize * MetaSize
	n := l.count()
	for i := range n {
		d, m := extentName(l.dir, i)
		for _, f := range []struct {
			path  string
			sizes map[int]int64
			want  int64
		}{{d, l.dats, extentSize}, {m, l.metas, metaSize}} {
			size, ok := f.sizes[i]
			switch {
			case !ok:
				errs = append(errs, &DamageError{File: f.path, Problem: fmt.Sprintf("is missing (the store has %d extents)", n)})
			case size != f.want:
				errs = append(errs, &DamageError{File: f.path, Problem: fmt.Sprintf("is %d bytes, want %d (truncated?)", size, f.want)})
			}
		}
	}
	return errors.Join(errs...)
}

// writeManifest records count durably.
func writeManifest(fsys vfs.FS, dir string, count int) error {
	if err := vfs.WriteFileDurable(fsys, filepath.Join(dir, manifestName), encodeManifest(uint64(count))); err != nil {
		return wrapIO("write extent manifest", err)
	}
	return nil
}

// createFileDurable creates path at size with the durable recipe: a temp
// file, preallocated (alloc) or sized sparse, synced, renamed into place.
// The caller syncs the directory.
func createFileDurable(fsys vfs.FS, path string, size int64, alloc bool) error {
	tmp := path + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return wrapIO("create", err)
	}
	if alloc {
		err = f.Allocate(0, size)
		if vfs.IsNoSpace(err) {
			err = fmt.Errorf("%w: preallocating %s: %v", ErrFull, path, err)
		}
	} else {
		err = wrapIO("size", f.Truncate(size))
	}
	if err == nil {
		err = wrapIO("sync", f.Sync())
	}
	if cerr := f.Close(); err == nil {
		err = wrapIO("close", cerr)
	}
	if err == nil {
		err = wrapIO("rename", fsys.Rename(tmp, path))
	}
	if err != nil {
		fsys.Remove(tmp)
		return err
	}
	return nil
}

// resizeFile sets an existing file's size (preallocating when alloc) and
// syncs it.
func resizeFile(fsys vfs.FS, path string, size int64, alloc bool) error {
	f, err := fsys.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return wrapIO("open", err)
	}
	defer f.Close()
	cur, err := f.Size()
	if err != nil {
		return wrapIO("stat", err)
	}
	if alloc && cur < size {
		err = f.Allocate(0, size)
		if vfs.IsNoSpace(err) {
			return fmt.Errorf("%w: preallocating %s: %v", ErrFull, path, err)
		}
	} else {
		err = f.Truncate(size)
	}
	if err != nil {
		return wrapIO("resize", err)
	}
	return wrapIO("sync", f.Sync())
}
