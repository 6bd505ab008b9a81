//go:build rados

package rados

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// GCStats says what one collection did.
type GCStats struct {
	Round        uint64 // the second round of the collection
	Candidates   int    // blocks of sealed packs no host referenced in the first round
	Resurrected  int    // candidates referenced again by the second round (re-indexed)
	Dead         int    // blocks no host can name any more
	PacksDeleted int    // packs all of whose blocks were dead
}

// Collect runs one garbage collection over the pool (design.md section
// 5) for the live hosts: round r (every host publishes its references and
// acknowledges), the index entries of unreferenced blocks in sealed packs
// removed (only where they still name that block), round r+1, and the
// packs whose blocks are all still unreferenced deleted; a block
// referenced again in r+1 (a dedup hit taken before its entry went) gets
// its entry back. Safety rests on the order of the rounds, not on time.
// Hosts that do not acknowledge a round are ErrUnacked, and nothing is
// deleted: they must be fenced first. One leader runs Collect at a time
// (a second one is ErrRaced).
func (c *Conn) Collect(x *Index, hosts []uint16, timeout time.Duration) (GCStats, error) {
	var st GCStats
	r, err := c.round(hosts, timeout)
	if err != nil {
		return st, err
	}
	live, err := c.liveSet(hosts, r)
	if err != nil {
		return st, err
	}
	type cand struct {
		key []byte
		loc Loc
	}
	var cands []cand
	packBlocks := map[PackID]int{} // sealed packs: their block count
	packs, err := c.packs()
	if err != nil {
		return st, err
	}
	for _, id := range packs {
		ps, err := c.ReadPackState(id)
		if err != nil {
			return st, err
		}
		if !ps.Sealed {
			continue // an open pack: its host writes it, never a candidate
		}
		packBlocks[id] = len(ps.Keys)
		for i, k := range ps.Keys {
			l, err := MakeLoc(id, i)
			if err != nil {
				return st, err
			}
			if !live[l] {
				cands = append(cands, cand{k, l})
			}
		}
	}
	st.Candidates = len(cands)
	if len(cands) > 0 {
		keys, locs := make([][]byte, len(cands)), make([]Loc, len(cands))
		for i, cd := range cands {
			keys[i], locs[i] = cd.key, cd.loc
		}
		if err := x.RemoveIf(keys, locs); err != nil {
			return st, err
		}
	}
	// Every lookup from now on misses the removed entries; round r+1
	// collects every location obtained before.
	if st.Round, err = c.round(hosts, timeout); err != nil {
		return st, err
	}
	live, err = c.liveSet(hosts, st.Round)
	if err != nil {
		return st, err
	}
	var backKeys [][]byte
	var backLocs []Loc
	deadIn := map[PackID]int{}
	for _, cd := range cands {
		if live[cd.loc] {
			backKeys, backLocs = append(backKeys, cd.key), append(backLocs, cd.loc)
			continue
		}
		deadIn[cd.loc.Pack()]++
	}
	st.Resurrected = len(backKeys)
	st.Dead = len(cands) - len(backKeys)
	if len(backKeys) > 0 {
		if _, _, err := x.PutIfAbsent(backKeys, backLocs); err != nil {
			return st, err
		}
	}
	for id, n := range packBlocks {
		if deadIn[id] == n {
			if err := c.DeletePack(id); err != nil {
				return st, err
			}
			st.PacksDeleted++
			// its forwards, if compaction moved its blocks: every host
			// follows them by now (none references the pack)
			fk := make([]string, n)
			for i := range n {
				l, _ := MakeLoc(id, i)
				fk[i] = fwdKey(l)
			}
			if n > 0 {
				if err := c.io.RmOmapKeys(gcObject, fk); err != nil && errnoOf(err) != -errENOENT {
					return st, c.wrap("remove forwards", err)
				}
			}
		}
	}
	return st, nil
}

// round begins the next GC round and checks every host acknowledged it.
func (c *Conn) round(hosts []uint16, timeout time.Duration) (uint64, error) {
	cur, err := c.Round()
	if err != nil {
		return 0, err
	}
	r, err := c.BeginRound(cur, timeout)
	if err != nil {
		return 0, err
	}
	un, err := c.Unacked(r, hosts)
	if err != nil {
		return 0, err
	}
	if len(un) > 0 {
		return 0, fmt.Errorf("%w: round %d: hosts %v", ErrUnacked, r, un)
	}
	return r, nil
}

// liveSet is the union of the hosts' references published for round r
// and the targets of compaction's forwards (compact.go).
func (c *Conn) liveSet(hosts []uint16, r uint64) (map[Loc]bool, error) {
	fwd, err := c.Forwards()
	if err != nil {
		return nil, err
	}
	live := map[Loc]bool{}
	if c.liveExtra != nil {
		if live, err = c.liveExtra(); err != nil {
			return nil, err
		}
	}
	for _, nw := range fwd {
		live[nw] = true
	}
	for _, h := range hosts {
		refs, err := c.readRefs(h, r)
		if err != nil {
			return nil, err
		}
		for l := range refs {
			live[l] = true
		}
	}
	return live, nil
}

// SetLiveExtra makes every collection and compaction this Conn leads
// count the locations f returns as live, besides the hosts' published
// references; f runs after every host acknowledged the round. Set it
// before the first collection.
func (c *Conn) SetLiveExtra(f func() (map[Loc]bool, error)) { c.liveExtra = f }

// packs lists every pack in the pool's namespace.
func (c *Conn) packs() ([]PackID, error) {
	var out []PackID
	var bad error
	err := c.io.ListObjects(func(oid string) {
		rest, ok := strings.CutPrefix(oid, "bh.pack.")
		if !ok {
			return
		}
		hs, ss, ok := strings.Cut(rest, ".")
		h, err1 := strconv.ParseUint(hs, 10, 16)
		s, err2 := strconv.ParseUint(ss, 10, 64)
		if !ok || err1 != nil || err2 != nil || h == 0 || s > MaxSeq {
			bad = fmt.Errorf("%w: object %q is no pack name", ErrBadValue, oid)
			return
		}
		out = append(out, PackID{Host: uint16(h), Seq: s})
	})
	if err != nil {
		return nil, c.wrap("list packs", err)
	}
	return out, bad
}
