package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/syndtr/goleveldb/leveldb"

	"blockhash/vfs"
)

// Repair support: fsck checks the index entry by entry and rebuilds it in
// bounded batches (Apply), then reloads level one and drops the cache.

// Get reads k's entry from LevelDB alone (not the overlays, the filter or
// the cache).
func (ix *Index) Get(k Key) (slot uint64, found bool, err error) {
	v, err := ix.db.Get(dbKey(k), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, translate("get", err)
	}
	s, err := decodeSlot(v)
	return s, err == nil, err
}

// Reload drops the overlays and the cache and rebuilds level one from
// LevelDB, after a repair changed LevelDB behind them.
func (ix *Index) Reload() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.pending, ix.sealed = map[Key]pend{}, nil
	ix.cache = newCache(ix.cache.max)
	return ix.loadFilter()
}

// checkCurrent refuses a LevelDB directory that holds tables, logs or
// manifests but no CURRENT file: goleveldb would silently start an empty
// database over them, and every stored block would be missing from the
// index.
func checkCurrent(fsys vfs.FS, dir string) error {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("index: %w", err)
	}
	hasData := false
	for _, de := range ents {
		n := de.Name
		if n == "CURRENT" {
			if de.IsDir {
				return fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, filepath.Join(dir, n))
			}
			return nil
		}
		if strings.HasPrefix(n, "MANIFEST-") || strings.HasSuffix(n, ".ldb") || strings.HasSuffix(n, ".log") || strings.HasSuffix(n, ".sst") {
			hasData = true
		}
	}
	if hasData {
		return fmt.Errorf("%w: %s is missing (the index's tables are there)", ErrCorrupt, filepath.Join(dir, "CURRENT"))
	}
	return nil
}
