//go:build rados

package rados

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// Forwards: when compaction copies a live block out of a partly dead
// pack, bh.gc's omap gets "fwd.<old Loc, 16 hex digits>" -> new Loc (8
// bytes, big endian). Hosts re-point their maps from old to new before
// they publish a round (Remap); a forward's target counts as referenced
// until the old pack is deleted, which happens, as for any pack, once no
// host references any of its blocks for two rounds; its forwards go with
// it.
const fwdPrefix = "fwd."

func fwdKey(l Loc) string { return fmt.Sprintf("%s%016x", fwdPrefix, uint64(l)) }

// Forwards reads every forward old -> new.
func (c *Conn) Forwards() (map[Loc]Loc, error) {
	kv, err := c.io.GetAllOmapValues(gcObject, "", fwdPrefix, 1000)
	if err != nil {
		if errnoOf(err) == -errENOENT {
			return map[Loc]Loc{}, nil
		}
		return nil, c.wrap("read forwards", err)
	}
	out := make(map[Loc]Loc, len(kv))
	for k, v := range kv {
		old, err := strconv.ParseUint(k[len(fwdPrefix):], 16, 64)
		if err != nil || len(v) != 8 {
			return nil, fmt.Errorf("%w: %s: forward %q", ErrBadValue, gcObject, k)
		}
		out[Loc(old)] = Loc(binary.BigEndian.Uint64(v))
	}
	return out, nil
}

// Move changes each key's entry from old[i] to new[i] where it still
// names old[i] (compaction moved the block); an entry that changed
// meanwhile stays. Each shard batch is one atomic op (cmpomap.cmp_vals
// asserting every old value, then omap_set); a refused batch is retried
// key by key.
func (x *Index) Move(keys [][]byte, old, new []Loc) error {
	if len(keys) != len(old) || len(keys) != len(new) {
		return fmt.Errorf("%w: %d keys, %d old, %d new", ErrArg, len(keys), len(old), len(new))
	}
	bs, err := x.split(keys)
	if err != nil {
		return err
	}
	return each(bs, func(b batch) error {
		try := func(pos []int) (bool, error) {
			cmp := make(map[string][]byte, len(pos))
			set := make(map[string][]byte, len(pos))
			for _, i := range pos {
				cmp[ikey(keys[i])] = encodeIndexValue(old[i])
				set[ikey(keys[i])] = encodeIndexValue(new[i])
			}
			op := rados.CreateWriteOp()
			defer op.Release()
			op.Exec("cmpomap", "cmp_vals", encodeCmpOmap(cmpModeString, cmpOpEQ, cmp, absentDefault, nil))
			op.SetOmap(set)
			err := op.Operate(x.c.io, shardObject(b.shard), rados.OperationNoFlag)
			if e := errnoOf(err); e == -errECANCELED || e == -errENOENT {
				return false, nil
			}
			if err != nil {
				return false, x.c.wrap("move entries in "+shardObject(b.shard), err)
			}
			return true, nil
		}
		ok, err := try(b.pos)
		if err != nil || ok || len(b.pos) == 1 {
			return err
		}
		for _, i := range b.pos {
			if _, err := try([]int{i}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Placement is where compaction copies live blocks: the leader's packs
// (a Store, or a Blocks' Placement, which takes the Blocks' lock per Put
// only: held across Compact's rounds, a host writing meanwhile could
// not acknowledge them).
type Placement interface {
	Host() uint16
	Put(keys [][]byte, data []byte) ([]Loc, error)
}

// CompactStats says what Compact did.
type CompactStats struct {
	Packs  int // partly dead packs whose live blocks were copied
	Copied int // blocks copied
}

// Compact copies the live blocks of sealed packs with dead blocks and at
// most maxLive of them live (1: every pack with a dead block) into packs
// of st (the leader's own host), moves
// their index entries and records forwards; the old packs then die by
// the normal collection once every host re-pointed its maps (Remap). It
// begins a round of its own, so every host's references are current.
func (c *Conn) Compact(x *Index, hosts []uint16, st Placement, maxLive float64, timeout time.Duration) (CompactStats, error) {
	var cs CompactStats
	r, err := c.round(hosts, timeout)
	if err != nil {
		return cs, err
	}
	live, err := c.liveSet(hosts, r)
	if err != nil {
		return cs, err
	}
	fwd, err := c.Forwards()
	if err != nil {
		return cs, err
	}
	packs, err := c.packs()
	if err != nil {
		return cs, err
	}
	for _, id := range packs {
		ps, err := c.ReadPackState(id)
		if err != nil {
			return cs, err
		}
		if !ps.Sealed || len(ps.Keys) == 0 || id.Host == st.Host() {
			continue // open, empty (collection deletes it), or the leader's own
		}
		var keys [][]byte
		var olds []Loc
		for i, k := range ps.Keys {
			l, _ := MakeLoc(id, i)
			if live[l] {
				if _, done := fwd[l]; !done {
					keys, olds = append(keys, k), append(olds, l)
				}
			}
		}
		if len(keys) == 0 || len(keys) == len(ps.Keys) || float64(len(keys)) > maxLive*float64(len(ps.Keys)) {
			continue // all dead (collection's), all live, or live enough
		}
		data := make([]byte, len(keys)*BlockSize)
		for i, l := range olds {
			if err := c.ReadBlock(l, data[i*BlockSize:(i+1)*BlockSize]); err != nil {
				return cs, err
			}
		}
		news, err := st.Put(keys, data)
		if err != nil {
			return cs, err
		}
		// forwards first: from here on the copies count as referenced
		set := make(map[string][]byte, len(olds))
		for i, l := range olds {
			set[fwdKey(l)] = binary.BigEndian.AppendUint64(nil, uint64(news[i]))
		}
		if err := c.io.SetOmap(gcObject, set); err != nil {
			return cs, c.wrap("record forwards", err)
		}
		if err := x.Move(keys, olds, news); err != nil {
			return cs, err
		}
		cs.Packs++
		cs.Copied += len(keys)
	}
	return cs, nil
}

// Remap re-points a host's references along the forwards: for each
// location it holds that was moved, it adds the new one and drops the
// old, as many times as it held it, and returns the moves for the
// caller's maps. A host calls it before Publish in its round answer.
func (r *Refs) Remap() (map[Loc]Loc, error) {
	fwd, err := r.c.Forwards()
	if err != nil {
		return nil, err
	}
	moved := map[Loc]Loc{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for old, n := range r.n {
		if nw, ok := fwd[old]; ok {
			r.n[nw] += n
			delete(r.n, old)
			moved[old] = nw
		}
	}
	return moved, nil
}
