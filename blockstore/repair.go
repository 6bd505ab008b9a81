package blockstore

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"blockhash/vfs"
)

// RepairExtents makes the extent files in dir openable again, for a store
// opened for repair: every extent the store should have (as many as the
// manifest counts, or up to the highest one found) gets a regular data file
// and a regular slot-record file of full size. A file that is not a regular
// file (a directory, say) is moved aside (NAME.damaged-TIME); a missing or
// short file is created or extended with zeros, a long one cut to size; the
// manifest is rewritten from what is then there. Zeroed slot records read
// as free slots and zeroed data fails its digest: the engine's fsck then
// rebuilds the records from the maps and lists the blocks whose data was
// lost. It returns a line per file it changed. The store must not be open.
func RepairExtents(dir string, extentSize int64) ([]string, error) {
	return RepairExtentsFS(vfs.OS, dir, extentSize)
}

// RepairExtentsFS is RepairExtents on fsys.
func RepairExtentsFS(fsys vfs.FS, dir string, extentSize int64) ([]string, error) {
	if extentSize <= 0 || extentSize%BlockSize != 0 {
		return nil, fmt.Errorf("blockstore: extent size %d is not a positive multiple of %d", extentSize, BlockSize)
	}
	ents, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	var done []string
	stamp := time.Now().UTC().Format("20060102T150405")
	for _, de := range ents {
		if _, kind, ok := parseExtentName(de.Name); ok && kind != ".tmp" && de.IsDir {
			path := filepath.Join(dir, de.Name)
			aside := path + ".damaged-" + stamp
			if err := fsys.Rename(path, aside); err != nil {
				return done, fmt.Errorf("blockstore: move %s aside: %w", path, err)
			}
			done = append(done, fmt.Sprintf("%s was not a regular file: moved aside to %s, recreated empty", path, filepath.Base(aside)))
		}
	}
	l, err := scanLayout(fsys, dir, false)
	if err != nil {
		return done, err
	}
	metaSize := extentSize / BlockSize * MetaSize
	n := l.count()
	for i := range n {
		d, m := extentName(dir, i)
		for _, f := range []struct {
			path  string
			sizes map[int]int64
			want  int64
			alloc bool
		}{{d, l.dats, extentSize, true}, {m, l.metas, metaSize, false}} {
			size, ok := f.sizes[i]
			var msg string
			switch {
			case !ok:
				err = createFileDurable(fsys, f.path, f.want, f.alloc)
				msg = fmt.Sprintf("%s was missing: recreated empty", f.path)
			case size < f.want:
				err = resizeFile(fsys, f.path, f.want, f.alloc)
				msg = fmt.Sprintf("%s was cut short (%d of %d bytes): extended with zeros", f.path, size, f.want)
			case size > f.want:
				err = resizeFile(fsys, f.path, f.want, f.alloc)
				msg = fmt.Sprintf("%s was too long (%d bytes, want %d): cut to size", f.path, size, f.want)
			default:
				continue
			}
			if err != nil {
				return done, err
			}
			done = append(done, msg)
		}
	}
	if len(done) > 0 {
		if err := fsys.SyncDir(dir); err != nil {
			return done, fmt.Errorf("blockstore: %w", err)
		}
	}
	if l.manifest != int64(n) || l.manifestErr != nil {
		if err := writeManifest(fsys, dir, n); err != nil {
			return done, err
		}
		what := "was missing"
		if l.manifestErr != nil {
			what = "was damaged"
		}
		done = append(done, fmt.Sprintf("%s %s: rewritten (%d extents)", filepath.Join(dir, manifestName), what, n))
	}
	return done, nil
}
