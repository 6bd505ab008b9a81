package blockstore

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

var extentFileRE = regexp.MustCompile(`^extent-([0-9]{6})\.(dat|meta)$`)

// RepairExtents makes the extent files in dir openable again, for a store
// opened for repair: every extent numbered up to the highest one found
// gets a regular data file and a regular slot-record file of full size. A
// file that is not a regular file (a directory, say) is moved aside
// (NAME.damaged-TIME); a missing or short file is created or extended
// with zeros, a long one cut to size. Zeroed slot records read as free
// slots and zeroed data fails its digest: the engine's fsck then rebuilds
// the records from the maps and lists the blocks whose data was lost. It
// returns a line per file it changed.
func RepairExtents(dir string, extentSize int64) ([]string, error) {
	if extentSize <= 0 || extentSize%BlockSize != 0 {
		return nil, fmt.Errorf("blockstore: extent size %d is not a positive multiple of %d", extentSize, BlockSize)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("blockstore: %w", err)
	}
	last := -1
	for _, de := range ents {
		if m := extentFileRE.FindStringSubmatch(de.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			last = max(last, n)
		}
	}
	slots := extentSize / BlockSize
	var done []string
	stamp := time.Now().UTC().Format("20060102T150405")
	for i := 0; i <= last; i++ {
		data, meta := extentName(dir, i)
		for _, f := range []struct {
			path string
			size int64
		}{{data, extentSize}, {meta, slots * MetaSize}} {
			msg, err := repairFile(f.path, f.size, stamp)
			if err != nil {
				return done, err
			}
			if msg != "" {
				done = append(done, msg)
			}
		}
	}
	if len(done) > 0 {
		if err := SyncDir(dir); err != nil {
			return done, err
		}
	}
	return done, nil
}

// repairFile makes path a regular file of size bytes; it says what it did.
func repairFile(path string, size int64, stamp string) (string, error) {
	var msg string
	st, err := os.Lstat(path)
	switch {
	case err == nil && !st.Mode().IsRegular():
		aside := path + ".damaged-" + stamp
		if err := os.Rename(path, aside); err != nil {
			return "", fmt.Errorf("blockstore: move %s aside: %w", path, err)
		}
		msg = fmt.Sprintf("%s was not a regular file: moved aside to %s, recreated empty", path, filepath.Base(aside))
	case os.IsNotExist(err):
		msg = fmt.Sprintf("%s was missing: recreated empty", path)
	case err != nil:
		return "", fmt.Errorf("blockstore: %w", err)
	case st.Size() == size:
		return "", nil
	case st.Size() < size:
		msg = fmt.Sprintf("%s was cut short (%d of %d bytes): extended with zeros", path, st.Size(), size)
	default:
		msg = fmt.Sprintf("%s was too long (%d bytes, want %d): cut to size", path, st.Size(), size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("blockstore: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return "", fmt.Errorf("blockstore: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("blockstore: %w", err)
	}
	return msg, nil
}
