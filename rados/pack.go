//go:build rados

package rados

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/ceph/go-ceph/rados"
)

// PackWriter fills one pack of one host: blocks are appended in batches,
// each batch one atomic write op (the data and, in the pack's omap, each
// block's key), and the pack is sealed once full or when its host stops.
// One goroutine uses a PackWriter at a time.
type PackWriter struct {
	c      *Conn
	id     PackID
	n      int   // blocks written
	max    int   // blocks it takes (PackBlocks; fewer in tests)
	sealed bool  // Seal succeeded
	failed error // an op whose outcome is unknown: the pack takes no more
}

// maxCreateTries bounds the search for a free pack name.
const maxCreateTries = 4096

// NewPack creates the first free pack of host at or after sequence seq
// (exclusive create: a name an earlier run took is skipped, never
// reused) and returns its writer.
func (c *Conn) NewPack(host uint16, seq uint64) (*PackWriter, error) {
	if host == 0 {
		return nil, fmt.Errorf("%w: host 0", ErrArg)
	}
	for range maxCreateTries {
		if seq > MaxSeq {
			break
		}
		id := PackID{Host: host, Seq: seq}
		err := c.io.Create(id.Object(), rados.CreateExclusive)
		if err == nil {
			return &PackWriter{c: c, id: id, max: PackBlocks}, nil
		}
		if errnoOf(err) != -errEEXIST {
			return nil, c.wrap("create "+id.Object(), err)
		}
		seq++
	}
	return nil, fmt.Errorf("%w: no free pack name for host %d near sequence %d", ErrExists, host, seq)
}

// ID is the pack's name.
func (p *PackWriter) ID() PackID { return p.id }

// Len is the number of blocks written.
func (p *PackWriter) Len() int { return p.n }

// Free is the number of blocks the pack can still take.
func (p *PackWriter) Free() int { return p.max - p.n }

// Append writes len(keys) blocks (data holds them back to back, BlockSize
// each) in one atomic op and returns their locations. All land or none
// do. After an error the pack takes no more appends (the op may or may
// not have landed): the caller seals it and opens a new one.
func (p *PackWriter) Append(keys [][]byte, data []byte) ([]Loc, error) {
	switch {
	case p.sealed:
		return nil, fmt.Errorf("%w: %s", ErrSealed, p.id)
	case p.failed != nil:
		return nil, fmt.Errorf("rados: %s failed earlier: %w", p.id, p.failed)
	case len(keys) == 0 || len(data) != len(keys)*BlockSize:
		return nil, fmt.Errorf("%w: %d keys for %d bytes", ErrArg, len(keys), len(data))
	case p.n+len(keys) > p.max:
		return nil, fmt.Errorf("%w: %s has room for %d blocks, not %d", ErrPackFull, p.id, p.Free(), len(keys))
	}
	locs := make([]Loc, len(keys))
	pairs := make(map[string][]byte, len(keys))
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("%w: key of %d bytes", ErrArg, len(k))
		}
		l, err := MakeLoc(p.id, p.n+i)
		if err != nil {
			return nil, err
		}
		locs[i] = l
		pairs[packOmapKey(p.n+i)] = k
	}
	op := rados.CreateWriteOp()
	defer op.Release()
	op.AssertExists()
	op.Write(data, uint64(p.n)*BlockSize)
	op.SetOmap(pairs)
	if err := op.Operate(p.c.io, p.id.Object(), rados.OperationNoFlag); err != nil {
		p.failed = err
		return nil, p.c.wrap("append to "+p.id.Object(), err)
	}
	p.n += len(keys)
	return locs, nil
}

// Seal marks the pack immutable (its xattr bh.seal holds the block
// count). Sealing twice is harmless. A pack whose last append failed is
// sealed with the blocks found in it.
func (p *PackWriter) Seal() error {
	if p.sealed {
		return nil
	}
	if p.failed != nil { // its last op may have landed: seal what is there
		if err := p.c.sealFound(p.id); err != nil {
			return err
		}
		p.sealed = true
		return nil
	}
	op := rados.CreateWriteOp()
	defer op.Release()
	op.AssertExists()
	op.SetXattr(sealXattr, binary.BigEndian.AppendUint16(nil, uint16(p.n)))
	if err := op.Operate(p.c.io, p.id.Object(), rados.OperationNoFlag); err != nil {
		return p.c.wrap("seal "+p.id.Object(), err)
	}
	p.sealed = true
	return nil
}

// PackState is what a pack holds, as found in the pool (for recovery after
// a crash and for fsck).
type PackState struct {
	Keys   map[int][]byte // block -> key, from the pack's omap
	Sealed bool
	Count  int   // the block count the seal records (Sealed only)
	Size   int64 // bytes of data
}

// ReadPackState reads a pack's keys and seal.
func (c *Conn) ReadPackState(id PackID) (PackState, error) {
	st, err := c.io.Stat(id.Object())
	if err != nil {
		return PackState{}, c.wrap("stat "+id.Object(), err)
	}
	s := PackState{Keys: map[int][]byte{}, Size: int64(st.Size)}
	kv, err := c.io.GetAllOmapValues(id.Object(), "", "", PackBlocks)
	if err != nil {
		return PackState{}, c.wrap("omap of "+id.Object(), err)
	}
	for k, v := range kv {
		i, err := strconv.ParseUint(k, 16, 16)
		if len(k) != 4 || err != nil || i >= PackBlocks || len(v) != KeySize {
			return PackState{}, fmt.Errorf("%w: %s: omap entry %q -> %d bytes", ErrBadValue, id, k, len(v))
		}
		s.Keys[int(i)] = v
	}
	buf := make([]byte, 2)
	n, err := c.io.GetXattr(id.Object(), sealXattr, buf)
	switch {
	case err == nil && n == 2:
		s.Sealed, s.Count = true, int(binary.BigEndian.Uint16(buf))
	case err == nil:
		return PackState{}, fmt.Errorf("%w: %s: seal of %d bytes", ErrBadValue, id, n)
	case errnoOf(err) == -errENODATA: // not sealed
	default:
		return PackState{}, c.wrap("seal of "+id.Object(), err)
	}
	return s, nil
}

// ReadBlock reads the block at l into p (BlockSize bytes).
func (c *Conn) ReadBlock(l Loc, p []byte) error {
	if len(p) != BlockSize {
		return fmt.Errorf("%w: buffer of %d bytes", ErrArg, len(p))
	}
	n, err := c.io.Read(l.Pack().Object(), p, l.Offset())
	if err != nil {
		return c.wrap("read "+l.String(), err)
	}
	if n != BlockSize {
		return fmt.Errorf("%w: %s: read %d bytes (no such block)", ErrBadValue, l, n)
	}
	return nil
}

// DeletePack removes a pack (garbage collection's sweep).
func (c *Conn) DeletePack(id PackID) error { return c.Delete(id.Object()) }
