//go:build rados

package pool

import (
	"fmt"
	"strconv"
	"strings"

	"blockhash/rados"
)

// Check reads the whole pool (see Inspect).
func (p *Pool) Check() (Report, error) { return Inspect(p.c) }

// Inspect reads the whole pool and checks it, changing nothing: every
// pack's data, keys and seal agree; every index entry names a block
// holding its key; every device map entry is sound, within its device
// and names a block holding its key; every map shard belongs to a
// device; the live hosts' published references name blocks. It needs no
// host of its own (an offline stats or fsck).
func Inspect(c *rados.Conn) (Report, error) {
	var r Report
	b, err := c.Read(storeObject)
	if err != nil {
		return r, fmt.Errorf("%w: %w", ErrNoStore, err)
	}
	hdr, err := decodeStoreHeader(b)
	if err != nil {
		return r, err
	}
	hosts, err := readHosts(c)
	if err != nil {
		return r, err
	}
	var live []uint16
	for id, h := range hosts {
		r.Hosts = append(r.Hosts, fmt.Sprintf("%s (%d): %s", h.Name, id, h.State))
		if h.State == "live" {
			live = append(live, id)
		}
	}
	devs, err := list(c)
	if err != nil {
		return r, err
	}
	byID := map[uint64]DeviceHeader{}
	for _, d := range devs {
		h, err := readHeader(c, d.Name)
		if err != nil {
			return r, err
		}
		byID[h.ID] = h
		r.Devices++
		r.LogicalBytes += h.Size
	}
	mapped := map[rados.Loc][]byte{}
	problems := []string{}
	err = eachMapEntry(c, func(shard string, blk uint64, e Entry) error {
		id, s, ok := parseShard(shard)
		h, known := byID[id]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: not a map shard name", shard))
		case !known:
			problems = append(problems, fmt.Sprintf("%s: map shard of no device", shard))
		case (s*ShardBlocks+blk)*BlockSize >= uint64(h.Size):
			problems = append(problems, fmt.Sprintf("device %s: entry for block %d past its end", h.Name, s*ShardBlocks+blk))
		}
		r.MappedBlocks++
		if prev, ok := mapped[rados.Loc(e.Loc)]; ok && string(prev) != string(e.Key[:]) {
			problems = append(problems, fmt.Sprintf("%v is named with two keys", rados.Loc(e.Loc)))
		}
		mapped[rados.Loc(e.Loc)] = e.Key[:]
		return nil
	})
	if err != nil {
		return r, err
	}
	r.LiveBlocks = len(mapped)
	x, err := c.NewIndex(hdr.IndexShards)
	if err != nil {
		return r, err
	}
	cr, err := c.CheckMapped(x, live, mapped)
	if err != nil {
		return r, err
	}
	r.StoredBlocks, r.Contents, r.Packs, r.OpenPacks, r.IndexEntries, r.Garbage = cr.Blocks, cr.Contents, cr.Packs, cr.Open, cr.IndexEntries, cr.Garbage
	r.Problems = append(problems, cr.Problems...)
	return r, nil
}

func parseShard(oid string) (id, shard uint64, ok bool) {
	rest, ok := strings.CutPrefix(oid, mapPrefix)
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(rest, ".")
	id, err1 := strconv.ParseUint(a, 16, 64)
	shard, err2 := strconv.ParseUint(b, 10, 64)
	return id, shard, ok && err1 == nil && err2 == nil
}

// Scrub scrubs the pool (see Scrub).
func (p *Pool) Scrub() (ScrubReport, error) { return Scrub(p.c) }

// Scrub reads every mapped block of every device (the pool's copies of
// the maps) and checks it against its whole key (SHA-256 and CRC-32C).
// It changes nothing.
func Scrub(c *rados.Conn) (ScrubReport, error) {
	var r ScrubReport
	devs, err := list(c)
	if err != nil {
		return r, err
	}
	names := map[uint64]string{}
	for _, d := range devs {
		h, err := readHeader(c, d.Name)
		if err != nil {
			return r, err
		}
		names[h.ID] = h.Name
	}
	buf := make([]byte, BlockSize)
	err = eachMapEntry(c, func(shard string, blk uint64, e Entry) error {
		id, s, _ := parseShard(shard)
		r.Blocks++
		where := fmt.Sprintf("%s block %d at %v", names[id], s*ShardBlocks+blk, rados.Loc(e.Loc))
		if err := c.ReadBlocks(rados.Loc(e.Loc), buf); err != nil {
			if len(r.Damaged) < 1000 {
				r.Damaged = append(r.Damaged, where+": "+err.Error())
			}
			return nil
		}
		r.Bytes += BlockSize
		if k := blockKey(buf); k != e.Key {
			if len(r.Damaged) < 1000 {
				r.Damaged = append(r.Damaged, where+": data does not hash to its key")
			}
		}
		return nil
	})
	return r, err
}
