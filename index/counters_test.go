package index

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lookupKinds fills an index so that each kind of answer has keys: in
// the pending overlay, primed in the cache, only on disk, and unknown
// (answered by the filter). It returns one key of each, by kind.
func lookupKinds(t testing.TB, ix *Index) map[string]Key {
	t.Helper()
	ix.Insert(key(1), 1)
	ix.Insert(key(2), 2)
	ix.Seal()
	if err := ix.Apply([]Op{{Key: key(1), Slot: 1}, {Key: key(2), Slot: 2}}); err != nil {
		t.Fatal(err)
	}
	if !ix.Prime(ix.PrimeToken(), []Entry{{key(2), 2}}) {
		t.Fatal("prime refused")
	}
	ix.Insert(key(3), 3)
	return map[string]Key{"disk": key(1), "cache": key(2), "overlay": key(3), "filter": key(4)}
}

// Lookup counts where it was answered without the index's exclusive lock:
// with a reader holding ix.mu shared (as a concurrent Lookup or Stats
// does), every kind of lookup still completes. A Lookup that took ix.mu
// exclusively to count would wait for the reader forever.
func TestLookupCountsWithoutExclusiveLock(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	keys := lookupKinds(t, ix)
	before := ix.Stats()
	ix.mu.RLock()
	done := make(chan error, 1)
	go func() {
		for _, kind := range []string{"overlay", "filter", "cache", "disk"} {
			if _, err := ix.Lookup(keys[kind]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		ix.mu.RUnlock()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		ix.mu.RUnlock()
		<-done
		t.Fatal("Lookup waited for the index's exclusive lock while a reader held it shared")
	}
	after := ix.Stats()
	want := Stats{Overlay: 1, FilterMiss: 1, CacheHits: 1, DiskReads: 1, DiskHits: 1}
	got := Stats{Overlay: after.Overlay - before.Overlay, FilterMiss: after.FilterMiss - before.FilterMiss,
		CacheHits: after.CacheHits - before.CacheHits, DiskReads: after.DiskReads - before.DiskReads,
		DiskHits: after.DiskHits - before.DiskHits}
	if got != want {
		t.Fatalf("counters moved by %+v, want %+v", got, want)
	}
}

// Lookups in parallel, with Stats read meanwhile, count every answer
// exactly (run under -race: the counters are atomics, read without a
// lock).
func TestLookupCountersParallel(t *testing.T) {
	ix := open(t, t.TempDir())
	defer ix.Close()
	keys := lookupKinds(t, ix)
	const workers, rounds = 8, 500
	var stop atomic.Bool
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		for !stop.Load() {
			_ = ix.Stats()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				for _, kind := range []string{"overlay", "filter", "disk"} {
					if _, err := ix.Lookup(keys[kind]); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	reader.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := ix.Stats()
	n := uint64(workers * rounds)
	if s.Overlay != n || s.FilterMiss != n || s.DiskReads != n || s.DiskHits != n || s.CacheHits != 0 {
		t.Fatalf("stats %+v after %d lookups of each kind", s, n)
	}
}

// BenchmarkLookupParallel looks up keys answered in memory (the filter's
// "new", the overlay, the cache) from every core: the counting of each
// answer is on this path.
func BenchmarkLookupParallel(b *testing.B) {
	for _, kind := range []string{"filter", "overlay", "cache"} {
		b.Run(kind, func(b *testing.B) {
			ix, err := Open(b.TempDir(), Options{CacheEntries: 64})
			if err != nil {
				b.Fatal(err)
			}
			defer ix.Close()
			k := lookupKinds(b, ix)[kind]
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := ix.Lookup(k); err != nil {
						panic(fmt.Sprint(err))
					}
				}
			})
		})
	}
}
