package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"blockhash/blockstore"
)

// storeFiles lists every file of a store with its size and modification
// time, to show that an open changed nothing.
func storeFiles(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, fmt.Sprintf("%s:%d:%d", rel, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// A read-only open reads, checks and reports on a store without writing a
// byte, and refuses every change.
func TestReadOnlyOpen(t *testing.T) {
	dir, e := newStore(t, Options{})
	d, err := e.CreateDevice("a", 64*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	want := append(block(1), block(2)...)
	if _, err := d.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// A device create that did not finish: a writer removes it, a reader
	// leaves it alone.
	if err := os.WriteFile(filepath.Join(dir, "devices", "b.map.tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := storeFiles(t, dir)

	ro, err := Open(dir, Options{ReadOnly: true, CommitInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	d, err = ro.Device("a")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, d, 0, int64(len(want))); !bytes.Equal(got, want) {
		t.Fatal("read-only read differs")
	}
	s, err := ro.Stats()
	if err != nil || s.UniqueBlocks != 2 || s.IndexEntries != 2 {
		t.Fatalf("stats: %+v %v", s, err)
	}
	if rep, err := ro.Fsck(false); err != nil || !rep.OK() {
		t.Fatalf("fsck: %+v %v", rep, err)
	}
	changes := []struct {
		name string
		do   func() error
	}{
		{"write", func() error { _, err := d.WriteAt(block(3), 0); return err }},
		{"discard", func() error { return d.Discard(0, BlockSize) }},
		{"create", func() error { _, err := ro.CreateDevice("c", BlockSize); return err }},
		{"delete", func() error { return ro.DeleteDevice("a") }},
		{"repair", func() error { _, err := ro.Fsck(true); return err }},
	}
	for _, c := range changes {
		if err := c.do(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v, want ErrReadOnly", c.name, err)
		}
	}
	if err := ro.Flush(); err != nil {
		t.Fatalf("flush with nothing to commit: %v", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after := storeFiles(t, dir); after != before {
		t.Fatalf("a read-only open changed the store:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// A commit interrupted by a crash is in the journal: a read-only open
// refuses the store with a one-line error saying what to run, and changes
// nothing; a read-write open replays it.
func TestReadOnlyRefusesPendingJournal(t *testing.T) {
	dir, e := newStore(t, Options{})
	d, err := e.CreateDevice("a", 64*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(block(1), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	ent, err := d.m.get(0)
	if err != nil {
		t.Fatal(err)
	}
	e.pages.mu.RLock()
	leaf := e.pages.leafOf(d.m.root, 0)
	e.pages.mu.RUnlock()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// The record of a commit that shares block 0's data with block 1.
	m := blockstore.Meta{Refs: 2, Flags: blockstore.FlagIndexed}
	ent.Key.Encode(m.Tag[:])
	rec := &record{Seq: 50, Leaves: []leafWrite{{Page: leaf, Entries: []leafEntry{{Idx: 1, Entry: ent}}}},
		Slots: []slotChange{{Slot: ent.Slot, Meta: m}}}
	if err := os.WriteFile(filepath.Join(dir, journalName), rec.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
	before := storeFiles(t, dir)
	_, err = Open(dir, Options{ReadOnly: true})
	if !errors.Is(err, ErrReadOnly) || !errors.Is(err, ErrReplayPending) || !strings.Contains(err.Error(), "fsck --repair") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("read-only open with a pending commit: %v", err)
	}
	if after := storeFiles(t, dir); after != before {
		t.Fatalf("the refused open changed the store:\nbefore\n%s\nafter\n%s", before, after)
	}
	for _, replayFirst := range []bool{false, true} {
		if replayFirst {
			// The read-only commands' way: replay, then read-only.
			ro, err := Open(dir, Options{ReadOnly: true, ReplayFirst: true})
			if err != nil {
				t.Fatalf("read-only open replaying first: %v", err)
			}
			d, _ = ro.Device("a")
			if got := mustRead(t, d, BlockSize, BlockSize); !bytes.Equal(got, block(1)) {
				t.Fatal("ReplayFirst did not apply the pending commit")
			}
			ro.Close()
			break
		}
		e = reopen(t, dir, nil, Options{})
		d, _ = e.Device("a")
		if got := mustRead(t, d, BlockSize, BlockSize); !bytes.Equal(got, block(1)) {
			t.Fatal("replay did not apply the pending commit")
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		// The same pending commit again, for ReplayFirst.
		if err := os.WriteFile(filepath.Join(dir, journalName), rec.encode(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open after the replay: %v", err)
	}
	defer ro.Close()
	if rep, err := ro.Fsck(false); err != nil || !rep.OK() {
		t.Fatalf("fsck: %+v %v", rep, err)
	}
}

// A read-only open that finds a lost map table (the page file cut short)
// keeps what it would fix in memory: Close commits nothing and the store's
// files are unchanged (old: the close tried to journal the fix through the
// read-only journal and failed the store).
func TestReadOnlyLostTableWritesNothing(t *testing.T) {
	dir, e := newStore(t, Options{})
	d, _ := e.CreateDevice("a", 64*BlockSize)
	writeBlocks(t, d, 0, block(1), block(2))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, pagesName), mapPageSize+100); err != nil { // inside the table
		t.Fatal(err)
	}
	before := storeFiles(t, dir)
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	d, _ = ro.Device("a")
	if _, err := d.ReadAt(make([]byte, BlockSize), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read under a lost table: %v, want ErrCorrupt", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if p := ro.failed.Load(); p != nil {
		t.Fatalf("the read-only store failed at close: %v", *p)
	}
	if after := storeFiles(t, dir); after != before {
		t.Fatalf("the read-only open changed the store:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// A store nothing has written to yet opens read-only (list and stats right
// after init; old: "index: open .../index: no such file or directory").
func TestReadOnlyOpenOfNewStore(t *testing.T) {
	dir := t.TempDir()
	if err := Create(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	e, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of a new store: %v", err)
	}
	if _, err := e.Stats(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// A Create cut short by a crash before its superblock (an index and a page
// file, the latter torn) does not stop the next Create.
func TestCreateAfterCutShortCreate(t *testing.T) {
	dir := t.TempDir()
	if err := Create(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, superblockName))
	if err := os.WriteFile(filepath.Join(dir, pagesName), []byte("BHPA"), 0o600); err != nil { // torn header
		t.Fatal(err)
	}
	if err := Create(dir, Options{}); err != nil {
		t.Fatalf("create again: %v", err)
	}
	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
}
