//go:build rados

package rados

import (
	"fmt"
	"sync"

	"github.com/ceph/go-ceph/rados"

	"blockhash/blockstore"
)

// Blocks is blockstore.Blocks on the pool for one host: Put fills the
// host's packs (Store), Get reads a block and its key in one op, Sync has
// nothing to do (RADOS acknowledges only durable writes), Drop leaves the
// location to garbage collection, which removes a block only when no
// published reference names it (design.md section 5). It is safe for
// concurrent use: puts are serialised (one host writes one pack at a
// time), gets run in parallel.
type Blocks struct {
	c    *Conn
	host uint16
	// mu guards st; held across a pack append, the host's one writer.
	mu sync.Mutex
	st *Store
}

var _ blockstore.Blocks = (*Blocks)(nil)

// OpenBlocks opens host's Blocks (sealing a pack a dead run left open).
func (c *Conn) OpenBlocks(host uint16) (*Blocks, error) {
	st, err := c.OpenStore(host)
	if err != nil {
		return nil, err
	}
	return &Blocks{c: c, host: host, st: st}, nil
}

// Put implements blockstore.Blocks.
func (b *Blocks) Put(tags [][blockstore.TagSize]byte, data []byte) ([]blockstore.Loc, error) {
	keys := make([][]byte, len(tags))
	for i := range tags {
		keys[i] = tags[i][:]
	}
	b.mu.Lock()
	locs, err := b.st.Put(keys, data)
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]blockstore.Loc, len(locs))
	for i, l := range locs {
		out[i] = blockstore.Loc(l)
	}
	return out, nil
}

// Get implements blockstore.Blocks: the block's bytes and its key from
// the pack's omap, in one read op.
func (b *Blocks) Get(loc blockstore.Loc, p []byte) ([blockstore.TagSize]byte, error) {
	var tag [blockstore.TagSize]byte
	l := Loc(loc)
	if l == 0 || l.Pack().Host == 0 {
		return tag, fmt.Errorf("%w: %d", blockstore.ErrNoBlock, loc)
	}
	if len(p) != BlockSize {
		return tag, fmt.Errorf("%w: buffer of %d bytes", ErrArg, len(p))
	}
	op := rados.CreateReadOp()
	defer op.Release()
	rd := op.Read(l.Offset(), p)
	kv := op.GetOmapValuesByKeys([]string{packOmapKey(l.Block())})
	if err := op.Operate(b.c.io, l.Pack().Object(), rados.OperationNoFlag); err != nil {
		if errnoOf(err) == -errENOENT {
			return tag, fmt.Errorf("%w: %s (no such pack)", blockstore.ErrNoBlock, l)
		}
		return tag, b.c.wrap("read "+l.String(), err)
	}
	if rd.BytesRead != BlockSize {
		return tag, fmt.Errorf("%w: %s (past the pack's end)", blockstore.ErrNoBlock, l)
	}
	e, err := kv.Next()
	if err != nil {
		return tag, b.c.wrap("read "+l.String(), err)
	}
	if e == nil {
		return tag, fmt.Errorf("%w: %s has data but no key", ErrBadValue, l)
	}
	if len(e.Value) != KeySize {
		return tag, fmt.Errorf("%w: %s: key of %d bytes", ErrBadValue, l, len(e.Value))
	}
	copy(tag[:], e.Value)
	return tag, nil
}

// Drop implements blockstore.Blocks. Nothing is written: garbage
// collection finds locations no published reference names. A location
// that cannot be a block is ErrNoBlock.
func (b *Blocks) Drop(locs []blockstore.Loc) error {
	for _, loc := range locs {
		if l := Loc(loc); l == 0 || l.Pack().Host == 0 {
			return fmt.Errorf("%w: %d", blockstore.ErrNoBlock, loc)
		}
	}
	return nil
}

// Sync implements blockstore.Blocks: every Put that returned is durable.
func (b *Blocks) Sync() error { return nil }

// Close seals the open pack. The Conn stays open.
func (b *Blocks) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st.Close()
}

// Placement is the host's pack placement for Compact: each Put takes
// the Blocks' lock for itself only.
func (b *Blocks) Placement() Placement { return lockedStore{b} }

type lockedStore struct{ b *Blocks }

func (l lockedStore) Host() uint16 { return l.b.host }

func (l lockedStore) Put(keys [][]byte, data []byte) ([]Loc, error) {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	return l.b.st.Put(keys, data)
}
