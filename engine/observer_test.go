package engine

import (
	"maps"
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu      sync.Mutex // guards commits and syncs
	commits int
	syncs   map[string]int
}

func (r *recorder) Commit(d time.Duration) {
	r.mu.Lock()
	r.commits++
	r.mu.Unlock()
}

func (r *recorder) Sync(step string, d time.Duration) {
	r.mu.Lock()
	r.syncs[step]++
	r.mu.Unlock()
}

func (r *recorder) counts() (int, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commits, maps.Clone(r.syncs)
}

// The observer is told of each commit that writes a record, once, with
// each synced step; a flush with nothing to commit is not a commit; after
// SetObserver(nil) nothing is told.
func TestObserverSeesCommits(t *testing.T) {
	_, e := newStore(t, Options{})
	d, err := e.CreateDevice("a", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	r := &recorder{syncs: map[string]int{}}
	e.SetObserver(r)
	for i := range 3 {
		if _, err := d.WriteAt(block(uint64(i)), int64(i)*BlockSize); err != nil {
			t.Fatal(err)
		}
		if err := e.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(); err != nil { // nothing to commit
		t.Fatal(err)
	}
	commits, syncs := r.counts()
	if commits != 3 {
		t.Fatalf("%d commits observed, want 3", commits)
	}
	for _, step := range []string{SyncData, SyncJournal, SyncPages, SyncSlots, SyncIndex, SyncJournalReset} {
		if syncs[step] != 3 {
			t.Errorf("step %s observed %d times, want 3 (all: %v)", step, syncs[step], syncs)
		}
	}
	e.SetObserver(nil)
	if _, err := d.WriteAt(block(9), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.counts(); c != 3 {
		t.Fatalf("%d commits observed after SetObserver(nil), want 3", c)
	}
}
