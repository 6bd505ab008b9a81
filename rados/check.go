//go:build rados

package rados

import (
	"encoding/hex"
	"fmt"
)

// CheckReport is what Check found in the pool.
type CheckReport struct {
	Packs        int // pack objects
	Open         int // of them not sealed
	Blocks       int // blocks in packs
	Contents     int // distinct keys among them
	IndexEntries int
	Referenced   int // distinct locations the hosts' published references name
	Garbage      int // blocks no published reference names (GC's to take)
	Problems     []string
}

// maxProblems bounds the problems a report lists (the counts go on).
const maxProblems = 100

func (r *CheckReport) problem(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check reads the whole pool and reports: every pack's data, keys and
// seal agree; every index entry names a block that holds its key (none
// dangles); every location a host's published references name holds a
// block. It changes nothing. Run it with the hosts quiet (between
// collections) for exact garbage counts; the problems it reports are
// problems at any time, except a reference published for a pack deleted
// since (a host's list is as old as its last round).
func (c *Conn) Check(x *Index, hosts []uint16) (CheckReport, error) {
	return c.CheckMapped(x, hosts, nil)
}

// CheckMapped is Check that also checks mapped, the locations the pool's
// device maps name with the key each expects there: each must be a block
// holding that key. They count as referenced.
func (c *Conn) CheckMapped(x *Index, hosts []uint16, mapped map[Loc][]byte) (CheckReport, error) {
	var r CheckReport
	packs, err := c.packs()
	if err != nil {
		return r, err
	}
	states := make(map[PackID]PackState, len(packs))
	keys := map[string]bool{}
	for _, id := range packs {
		st, err := c.ReadPackState(id)
		if err != nil {
			return r, err
		}
		states[id] = st
		r.Packs++
		r.Blocks += len(st.Keys)
		if !st.Sealed {
			r.Open++
		} else if st.Count != len(st.Keys) {
			r.problem("%v: sealed with %d blocks but holds %d keys", id, st.Count, len(st.Keys))
		}
		if st.Size != int64(len(st.Keys))*BlockSize {
			r.problem("%v: %d bytes of data for %d keys", id, st.Size, len(st.Keys))
		}
		for i := range len(st.Keys) {
			if k, ok := st.Keys[i]; !ok {
				r.problem("%v: no key for block %d of %d", id, i, len(st.Keys))
			} else {
				keys[string(k)] = true
			}
		}
	}
	r.Contents = len(keys)
	for sh := range x.shards {
		kv, err := c.io.GetAllOmapValues(shardObject(sh), "", "", 1000)
		if err != nil {
			if errnoOf(err) == -errENOENT {
				continue
			}
			return r, c.wrap("read "+shardObject(sh), err)
		}
		for hk, v := range kv {
			r.IndexEntries++
			kb, err := hex.DecodeString(hk)
			if err != nil || len(kb) != KeySize {
				r.problem("%s: key %q is not a content key", shardObject(sh), hk)
				continue
			}
			k := string(kb)
			l, err := decodeIndexValue(v)
			if err != nil {
				r.problem("%s: %v", shardObject(sh), err)
				continue
			}
			if shardOf([]byte(k), x.shards) != sh {
				r.problem("%s: key %x belongs in shard %d", shardObject(sh), k[:4], shardOf([]byte(k), x.shards))
			}
			st, ok := states[l.Pack()]
			if got, has := st.Keys[l.Block()]; !ok || !has || string(got) != k {
				r.problem("index entry %x names %v, which does not hold it", k[:4], l)
			}
		}
	}
	referenced := map[Loc]bool{}
	for _, h := range hosts {
		refs, err := c.readRefs(h, 0)
		if errnoOf(err) == -errENOENT {
			continue // a host that has answered no round published nothing
		}
		if err != nil {
			return r, err
		}
		for l := range refs {
			referenced[l] = true
			st, ok := states[l.Pack()]
			if _, has := st.Keys[l.Block()]; !ok || !has {
				r.problem("host %d references %v, which holds no block", h, l)
			}
		}
	}
	for l, k := range mapped {
		referenced[l] = true
		st, ok := states[l.Pack()]
		if got, has := st.Keys[l.Block()]; !ok || !has {
			r.problem("a device map names %v, which holds no block", l)
		} else if string(got) != string(k) {
			r.problem("a device map names %v for key %x, which holds key %x", l, k[:4], got[:4])
		}
	}
	r.Referenced = len(referenced)
	for id, st := range states {
		for i := range st.Keys {
			if l, _ := MakeLoc(id, i); !referenced[l] {
				r.Garbage++
			}
		}
	}
	return r, nil
}
