//go:build rados

package rados

import (
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/ceph/go-ceph/rados"
)

// Index is the content index: key -> Loc in the omaps of a fixed number
// of shard objects (a power of two, fixed when the store is made). It is
// safe for concurrent use.
type Index struct {
	c      *Conn
	shards uint32
}

// maxShardOps bounds the shard operations one call runs at once.
const maxShardOps = 8

// maxPutRetries bounds PutIfAbsent's retries of one shard batch; each
// retry follows a refusal that named at least one key now present, so the
// bound is reached only if other writers keep removing and inserting the
// same keys.
const maxPutRetries = 64

// NewIndex returns the index of shards shards.
func (c *Conn) NewIndex(shards uint32) (*Index, error) {
	if shards == 0 || shards&(shards-1) != 0 {
		return nil, fmt.Errorf("%w: %d index shards (want a power of two)", ErrArg, shards)
	}
	return &Index{c: c, shards: shards}, nil
}

// batch is one shard's part of a call: positions in the caller's slices.
type batch struct {
	shard uint32
	pos   []int
}

// split groups positions by shard, at most cmpomapMaxKeys per batch, and
// checks key sizes.
func (x *Index) split(keys [][]byte) ([]batch, error) {
	by := map[uint32][]int{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("%w: key of %d bytes", ErrArg, len(k))
		}
		s := shardOf(k, x.shards)
		by[s] = append(by[s], i)
	}
	var out []batch
	for s, pos := range by {
		for len(pos) > 0 {
			n := min(len(pos), cmpomapMaxKeys)
			out = append(out, batch{shard: s, pos: pos[:n]})
			pos = pos[n:]
		}
	}
	return out, nil
}

// each runs f on every batch, maxShardOps at a time, and returns the
// first error.
func each(bs []batch, f func(batch) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards errs
		errs error
		sem  = make(chan struct{}, maxShardOps)
	)
	for _, b := range bs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(b); err != nil {
				mu.Lock()
				if errs == nil {
					errs = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// PutIfAbsent inserts key -> loc for every key the index does not hold
// and returns, for each key, the location the index holds afterwards:
// locs[i] where it was inserted (inserted[i] true), another writer's
// location where the key was there first. Each shard's insert is one
// atomic op (cmpomap.cmp_vals asserting every key absent, then omap_set):
// of two hosts inserting the same key at once, exactly one wins. A key
// repeated in one call is inserted at its first position only; the
// repeats get what the first got.
func (x *Index) PutIfAbsent(keys [][]byte, locs []Loc) (got []Loc, inserted []bool, err error) {
	if len(keys) != len(locs) {
		return nil, nil, fmt.Errorf("%w: %d keys, %d locations", ErrArg, len(keys), len(locs))
	}
	first := make(map[string]int, len(keys))
	distinct := make([][]byte, 0, len(keys))
	at := make([]int, 0, len(keys)) // distinct[j] is keys[at[j]]
	for i, k := range keys {
		if locs[i] == 0 {
			return nil, nil, fmt.Errorf("%w: location zero", ErrArg)
		}
		if _, ok := first[string(k)]; !ok {
			first[string(k)] = i
			distinct = append(distinct, k)
			at = append(at, i)
		}
	}
	bs, err := x.split(distinct)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bs {
		for j, p := range b.pos {
			b.pos[j] = at[p]
		}
	}
	got = make([]Loc, len(keys))
	inserted = make([]bool, len(keys))
	err = each(bs, func(b batch) error { return x.putShard(b, keys, locs, got, inserted) })
	if err != nil {
		return nil, nil, err
	}
	for i, k := range keys {
		if f := first[string(k)]; f != i {
			got[i] = got[f]
		}
	}
	return got, inserted, nil
}

// putShard is PutIfAbsent for one batch of distinct keys; it writes got
// and inserted at the batch's positions only.
func (x *Index) putShard(b batch, keys [][]byte, locs []Loc, got []Loc, inserted []bool) error {
	oid := shardObject(b.shard)
	todo := b.pos
	done := false
	for try := 0; try < maxPutRetries && !done; try++ {
		absent := make(map[string][]byte, len(todo))
		pairs := make(map[string][]byte, len(todo))
		for _, i := range todo {
			absent[ikey(keys[i])] = nil
			pairs[ikey(keys[i])] = encodeIndexValue(locs[i])
		}
		op := rados.CreateWriteOp()
		op.Create(rados.CreateIdempotent) // the shard's first insert makes it
		op.Exec("cmpomap", "cmp_vals", encodeCmpOmap(cmpModeString, cmpOpEQ, absent, withDefault, nil))
		op.SetOmap(pairs)
		err := op.Operate(x.c.io, oid, rados.OperationNoFlag)
		op.Release()
		if err == nil {
			for _, i := range todo {
				got[i], inserted[i] = locs[i], true
			}
			done = true
			continue
		}
		if errnoOf(err) != -errECANCELED {
			return x.c.wrap("insert into "+oid, err)
		}
		// Some keys are there: theirs win; retry with the rest.
		found, err := x.get(oid, todo, keys)
		if err != nil {
			return err
		}
		rest := todo[:0:0]
		for _, i := range todo {
			if l, ok := found[ikey(keys[i])]; ok {
				got[i] = l
			} else {
				rest = append(rest, i)
			}
		}
		todo = rest
		done = len(todo) == 0
	}
	if !done {
		return fmt.Errorf("rados: insert into %s: still refused after %d tries", oid, maxPutRetries)
	}
	return nil
}

// get reads the values of keys[pos] from shard object oid: present keys
// only.
func (x *Index) get(oid string, pos []int, keys [][]byte) (map[string]Loc, error) {
	names := make([]string, len(pos))
	for j, i := range pos {
		names[j] = ikey(keys[i])
	}
	op := rados.CreateReadOp()
	defer op.Release()
	step := op.GetOmapValuesByKeys(names)
	if err := op.Operate(x.c.io, oid, rados.OperationNoFlag); err != nil {
		if errnoOf(err) == -errENOENT { // the shard was never written
			return map[string]Loc{}, nil
		}
		return nil, x.c.wrap("read "+oid, err)
	}
	out := make(map[string]Loc, len(pos))
	for {
		kv, err := step.Next()
		if err != nil {
			return nil, x.c.wrap("read "+oid, err)
		}
		if kv == nil {
			break
		}
		l, err := decodeIndexValue(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", oid, err)
		}
		out[kv.Key] = l
	}
	return out, nil
}

// Lookup returns each key's location, zero where the index has none.
func (x *Index) Lookup(keys [][]byte) ([]Loc, error) {
	bs, err := x.split(keys)
	if err != nil {
		return nil, err
	}
	out := make([]Loc, len(keys))
	err = each(bs, func(b batch) error {
		found, err := x.get(shardObject(b.shard), b.pos, keys)
		if err != nil {
			return err
		}
		for _, i := range b.pos {
			out[i] = found[ikey(keys[i])]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveIf removes each key whose entry still names locs[i] (garbage
// collection's unindex step: an entry another writer changed stays). A
// key given more than once (two copies of one content) is removed if its
// entry names any of its locations.
func (x *Index) RemoveIf(keys [][]byte, locs []Loc) error {
	if len(keys) != len(locs) {
		return fmt.Errorf("%w: %d keys, %d locations", ErrArg, len(keys), len(locs))
	}
	// One cmp_rm_keys compares one value per key: repeats go to later
	// layers, each of distinct keys.
	var layers [][]int
	seen := map[string]int{} // key -> layers it is in so far
	for i, k := range keys {
		n := seen[string(k)]
		seen[string(k)] = n + 1
		if n == len(layers) {
			layers = append(layers, nil)
		}
		layers[n] = append(layers[n], i)
	}
	for _, pos := range layers {
		lk, ll := make([][]byte, len(pos)), make([]Loc, len(pos))
		for j, i := range pos {
			lk[j], ll[j] = keys[i], locs[i]
		}
		if err := x.removeDistinct(lk, ll); err != nil {
			return err
		}
	}
	return nil
}

// removeDistinct is RemoveIf for distinct keys.
func (x *Index) removeDistinct(keys [][]byte, locs []Loc) error {
	bs, err := x.split(keys)
	if err != nil {
		return err
	}
	return each(bs, func(b batch) error {
		vals := make(map[string][]byte, len(b.pos))
		for _, i := range b.pos {
			vals[ikey(keys[i])] = encodeIndexValue(locs[i])
		}
		oid := shardObject(b.shard)
		op := rados.CreateWriteOp()
		defer op.Release()
		op.Exec("cmpomap", "cmp_rm_keys", encodeCmpOmap(cmpModeString, cmpOpEQ, vals, noDefault, nil))
		if err := op.Operate(x.c.io, oid, rados.OperationNoFlag); err != nil && errnoOf(err) != -errENOENT {
			return x.c.wrap("remove from "+oid, err)
		}
		return nil
	})
}

// ikey is a content key's omap key in an index shard: hex. Omap keys
// must hold no NUL byte: librados' listing resumes after a key given as a
// C string, so a binary key with a NUL would end or repeat a listing
// (seen: a listing of 9,766 map entries stopped at 1,000).
func ikey(k []byte) string { return hex.EncodeToString(k) }
