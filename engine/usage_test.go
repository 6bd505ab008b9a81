package engine

import (
	"fmt"
	"testing"
)

// usageFigures is one volume's data, unique, shared and used blocks.
type usageFigures struct{ data, unique, shared, used uint64 }

// checkUsage compares the per-volume figures of Stats with want (every
// listed volume, and no other).
func checkUsage(t *testing.T, e *Engine, step string, want map[string]usageFigures) {
	t.Helper()
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]usageFigures{}
	for _, d := range st.Devices {
		got[d.Name] = usageFigures{d.DataBlocks, d.UniqueBlocks, d.SharedBlocks, d.UsedBlocks}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: {data unique shared used} per volume\n got %v\nwant %v", step, got, want)
	}
}

// A volume's unique blocks are the data blocks whose stored block only it
// references; its shared blocks the rest: two devices with blocks in
// common, a duplicate inside one device, a snapshot, writes after it, a
// clone written on its own. The figures are the same before the changes
// are committed (the walk reads the maps' uncommitted changes) and after,
// and after a reopen.
func TestUniqueSharedBlocks(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(map[bool]string{false: "uncommitted", true: "committed"}[flush], func(t *testing.T) {
			testUniqueShared(t, flush)
		})
	}
}

func testUniqueShared(t *testing.T, flush bool) {
	dir, e := newStore(t, Options{CommitInterval: -1})
	a, err := e.CreateDevice("a", 64*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.CreateDevice("b", 64*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	// a: 1 2 3 4 100 100 200; b: 200 300 1.
	writeBlocks(t, a, 0, block(1), block(2), block(3), block(4), block(100), block(100), block(200))
	writeBlocks(t, b, 0, block(200), block(300), block(1))
	steps := []struct {
		name string
		do   func()
		want map[string]usageFigures
	}{
		{"two devices", func() {}, map[string]usageFigures{
			// a's 2, 3, 4 and both 100s are its own; 1 and 200 are b's too.
			"a": {7, 5, 2, 0},
			"b": {3, 1, 2, 0},
		}},
		{"a snapshot", func() {
			if err := e.Snapshot("a", "s"); err != nil {
				t.Fatal(err)
			}
		}, map[string]usageFigures{
			"a": {7, 0, 7, 0}, "a@s": {7, 0, 7, 0}, "b": {3, 1, 2, 0},
		}},
		{"a written after the snapshot", func() {
			writeBlocks(t, a, 3, block(400)) // 4 is the snapshot's alone now
		}, map[string]usageFigures{
			"a": {7, 1, 6, 0}, "a@s": {7, 1, 6, 1}, "b": {3, 1, 2, 0},
		}},
		{"a clone of the snapshot", func() {
			if err := e.Clone("a@s", "c"); err != nil {
				t.Fatal(err)
			}
		}, map[string]usageFigures{
			"a": {7, 1, 6, 0}, "a@s": {7, 0, 7, 0}, "b": {3, 1, 2, 0}, "c": {7, 0, 7, 0},
		}},
		{"the clone written", func() {
			c, err := e.Device("c")
			if err != nil {
				t.Fatal(err)
			}
			// 2 again (a's and the snapshot's too), and 500, its own.
			writeBlocks(t, c, 10, block(2), block(500))
		}, map[string]usageFigures{
			"a": {7, 1, 6, 0}, "a@s": {7, 0, 7, 0}, "b": {3, 1, 2, 0}, "c": {9, 1, 8, 0},
		}},
		{"b deleted", func() {
			if err := e.DeleteDevice("b"); err != nil {
				t.Fatal(err)
			}
		}, map[string]usageFigures{
			// 1 is a's, the snapshot's and the clone's still; 200 too.
			"a": {7, 1, 6, 0}, "a@s": {7, 0, 7, 0}, "c": {9, 1, 8, 0},
		}},
	}
	var last map[string]usageFigures
	for _, s := range steps {
		s.do()
		if flush {
			if err := e.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		checkUsage(t, e, s.name, s.want)
		fsckOK(t, e)
		last = s.want
	}
	e = reopen(t, dir, e, Options{CommitInterval: -1})
	defer e.Close()
	checkUsage(t, e, "after a reopen", last)
}
