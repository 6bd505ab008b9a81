package index

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// dirFiles lists a directory's files with their sizes.
func dirFiles(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:%d:%d", e.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// A read-only open answers lookups from what is on disk (LevelDB's log
// replayed in memory) and writes nothing: a store on a full file system
// can still be read.
func TestReadOnlyOpen(t *testing.T) {
	dir := t.TempDir()
	ix := open(t, dir)
	if err := ix.Apply([]Op{{Key: key(1), Slot: 10}, {Key: key(2), Slot: 20}}); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	before := dirFiles(t, dir)

	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if h := mustLookup(t, ro, key(2)); !h.Found || h.Slot != 20 {
		t.Fatalf("read-only lookup: %+v", h)
	}
	if s := ro.Stats(); s.Entries != 2 {
		t.Fatalf("read-only index has %d entries, want 2", s.Entries)
	}
	if err := ro.Apply([]Op{{Key: key(3), Slot: 30}}); err == nil {
		t.Fatal("Apply on a read-only index succeeded")
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after := dirFiles(t, dir); after != before {
		t.Fatalf("a read-only open changed the index:\nbefore %s\nafter  %s", before, after)
	}
	// A missing index is an error, not a new empty one.
	if _, err := Open(filepath.Join(dir, "none"), Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing index succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "none")); err == nil {
		t.Fatal("read-only open created a directory")
	}
}
