//go:build rados

package rados

import (
	"encoding/binary"
	"fmt"

	"github.com/ceph/go-ceph/rados"
)

// Store places one host's new blocks: it fills the host's packs one after
// another, sealing each when full, and after a restart (a crash included)
// seals the pack the last run left open, as found, before it writes. The
// pack a host writes is recorded in its host object (bh.host.<id>, omap
// "open") before the pack is created, so a restart always knows it. One
// goroutine (the host's writer) uses a Store at a time.
type Store struct {
	c    *Conn
	host uint16
	p    *PackWriter // the open pack; nil until the first Put
	next uint64      // the sequence the next pack is tried at
	max  int         // blocks per pack: PackBlocks (fewer in tests)
}

// hostObject is host id's object.
func hostObject(host uint16) string { return fmt.Sprintf("bh.host.%d", host) }

// omap key of the host object naming the open pack (8 bytes, big endian).
const openKey = "open"

// OpenStore opens host's block placement, sealing the pack an earlier run
// left open.
func (c *Conn) OpenStore(host uint16) (*Store, error) {
	if host == 0 {
		return nil, fmt.Errorf("%w: host 0", ErrArg)
	}
	s := &Store{c: c, host: host, max: PackBlocks}
	kv, err := c.io.GetOmapValues(hostObject(host), "", openKey, 1)
	if err != nil && errnoOf(err) != -errENOENT {
		return nil, c.wrap("read "+hostObject(host), err)
	}
	v, ok := kv[openKey]
	if !ok {
		return s, nil
	}
	if len(v) != 8 {
		return nil, fmt.Errorf("%w: %s: open pack of %d bytes", ErrBadValue, hostObject(host), len(v))
	}
	id := PackID{Host: host, Seq: binary.BigEndian.Uint64(v)}
	s.next = id.Seq + 1
	if err := c.sealFound(id); err != nil {
		return nil, err
	}
	return s, nil
}

// sealFound seals a pack an earlier run left open with the blocks it
// holds: each append was one atomic op of data and keys, so the data
// size and the keys agree; if they do not, the pack is reported, not
// sealed. A pack that was recorded but never created is nothing to seal.
func (c *Conn) sealFound(id PackID) error {
	st, err := c.ReadPackState(id)
	if errnoOf(err) == -errENOENT {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Sealed {
		return nil
	}
	n := len(st.Keys)
	if st.Size != int64(n)*BlockSize {
		return fmt.Errorf("%w: %s holds %d bytes but %d keys", ErrBadValue, id, st.Size, n)
	}
	for i := range n {
		if _, ok := st.Keys[i]; !ok {
			return fmt.Errorf("%w: %s: %d keys but none for block %d", ErrBadValue, id, n, i)
		}
	}
	p := &PackWriter{c: c, id: id, n: n, max: PackBlocks}
	return p.Seal()
}

// roll seals the open pack and opens the next: the new pack's name is
// recorded in the host object first, then the pack is created
// (exclusive; a taken name is skipped).
func (s *Store) roll() error {
	if s.p != nil {
		if err := s.p.Seal(); err != nil {
			return err
		}
		s.p = nil
	}
	for range maxCreateTries {
		id := PackID{Host: s.host, Seq: s.next}
		if id.Seq > MaxSeq {
			break
		}
		s.next++
		op := rados.CreateWriteOp()
		op.SetOmap(map[string][]byte{openKey: binary.BigEndian.AppendUint64(nil, id.Seq)})
		err := op.Operate(s.c.io, hostObject(s.host), rados.OperationNoFlag)
		op.Release()
		if err != nil {
			return s.c.wrap("record open pack in "+hostObject(s.host), err)
		}
		err = s.c.io.Create(id.Object(), rados.CreateExclusive)
		if err == nil {
			s.p = &PackWriter{c: s.c, id: id, max: s.max}
			return nil
		}
		if errnoOf(err) != -errEEXIST {
			return s.c.wrap("create "+id.Object(), err)
		}
	}
	return fmt.Errorf("%w: no free pack name for host %d", ErrExists, s.host)
}

// Put stores blocks (data holds len(keys) blocks back to back) and
// returns their locations, durable when Put returns. A pack's remaining
// room takes what fits; the rest goes to the next pack. After an error
// the open pack takes nothing more (its last op may or may not have
// landed): the next Put seals it and opens another.
func (s *Store) Put(keys [][]byte, data []byte) ([]Loc, error) {
	if len(keys) == 0 || len(data) != len(keys)*BlockSize {
		return nil, fmt.Errorf("%w: %d keys for %d bytes", ErrArg, len(keys), len(data))
	}
	locs := make([]Loc, 0, len(keys))
	for len(keys) > 0 {
		if s.p == nil || s.p.Free() == 0 || s.p.failed != nil {
			if err := s.roll(); err != nil {
				return nil, err
			}
		}
		n := min(len(keys), s.p.Free())
		l, err := s.p.Append(keys[:n], data[:n*BlockSize])
		if err != nil {
			return nil, err
		}
		locs = append(locs, l...)
		keys, data = keys[n:], data[n*BlockSize:]
		// A full pack is sealed now, not at the next Put: only sealed
		// packs are GC's candidates, and a host may not write again
		// for long. (A failed seal is retried by the next roll.)
		if s.p.Free() == 0 && s.p.Seal() == nil {
			s.p = nil
		}
	}
	return locs, nil
}

// Host is the store's host id.
func (s *Store) Host() uint16 { return s.host }

// Close seals the open pack.
func (s *Store) Close() error {
	if s.p == nil {
		return nil
	}
	err := s.p.Seal()
	s.p = nil
	return err
}
