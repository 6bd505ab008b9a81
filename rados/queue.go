//go:build rados

package rados

import (
	"sync"
)

// InsertQueue holds a host's new index entries until a shard has enough
// of them to be worth an op (design.md 4.1 step 4: ops, not keys, are
// what an OSD runs out of). The host's own lookups see queued entries
// (Pending); Flush sends them and returns the races lost, which the
// caller merges: its maps name the winner's copy instead of its own. It
// is safe for concurrent use.
type InsertQueue struct {
	x *Index
	// mu guards byShard and pending; never held across I/O.
	mu      sync.Mutex
	byShard map[uint32][]queued
	pending map[string]Loc
}

type queued struct {
	key []byte
	loc Loc
}

// Lost is a queued entry whose key another writer indexed first.
type Lost struct {
	Key    []byte
	Mine   Loc // the copy this host stored, now garbage once unmapped
	Winner Loc // the copy the index names
}

// NewInsertQueue returns an empty queue in front of x.
func (x *Index) NewInsertQueue() *InsertQueue {
	return &InsertQueue{x: x, byShard: map[uint32][]queued{}, pending: map[string]Loc{}}
}

// Add queues key -> loc. A key already queued keeps its first location
// (the caller found it with Pending and did not store it again).
func (q *InsertQueue) Add(key []byte, loc Loc) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[string(key)]; ok {
		return
	}
	k := append([]byte(nil), key...)
	q.pending[string(k)] = loc
	s := shardOf(k, q.x.shards)
	q.byShard[s] = append(q.byShard[s], queued{k, loc})
}

// Pending returns the queued location of key, or zero.
func (q *InsertQueue) Pending(key []byte) Loc {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending[string(key)]
}

// Len is the number of queued entries.
func (q *InsertQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Flush inserts the queues of the shards holding at least minKeys
// entries (every shard with minKeys <= 1) and returns the races lost.
// Entries leave Pending only once inserted or lost; on an error they stay
// queued.
func (q *InsertQueue) Flush(minKeys int) ([]Lost, error) { return q.FlushIf(minKeys, nil) }

// FlushIf is Flush that drops, uninserted, the entries whose location
// keep refuses (nil keeps all): a host inserts only locations it still
// references, since one it dropped may be garbage collected by now.
func (q *InsertQueue) FlushIf(minKeys int, keep func(Loc) bool) ([]Lost, error) {
	q.mu.Lock()
	var keys [][]byte
	var locs []Loc
	for s, qs := range q.byShard {
		if len(qs) < max(1, minKeys) {
			continue
		}
		for _, e := range qs {
			if keep != nil && !keep(e.loc) {
				delete(q.pending, string(e.key))
				continue
			}
			keys, locs = append(keys, e.key), append(locs, e.loc)
		}
		delete(q.byShard, s)
	}
	q.mu.Unlock()
	if len(keys) == 0 {
		return nil, nil
	}
	got, ins, err := q.x.PutIfAbsent(keys, locs)
	if err != nil {
		back := map[uint32][]queued{}
		for i, k := range keys {
			s := shardOf(k, q.x.shards)
			back[s] = append(back[s], queued{k, locs[i]})
		}
		q.mu.Lock() // back in the queue, in front of what came meanwhile
		for s, qs := range back {
			q.byShard[s] = append(qs, q.byShard[s]...)
		}
		q.mu.Unlock()
		return nil, err
	}
	var lost []Lost
	q.mu.Lock()
	for i, k := range keys {
		delete(q.pending, string(k))
		if !ins[i] {
			lost = append(lost, Lost{Key: k, Mine: locs[i], Winner: got[i]})
		}
	}
	q.mu.Unlock()
	return lost, nil
}
