package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"blockhash/blockstore"
)

// ErrMismatch means a read returned other bytes than the last write of that
// block: the figure measured wrong reads, so the bench fails.
var ErrMismatch = errors.New("bench: read back other data than was written")

// stamper makes the 4 KiB blocks of the random-write patterns and checks
// what the read patterns read back. A block is a fixed random block with
// its address, its generation and the stamper's tag stamped into its first
// 16 bytes: blocks of different (tag, lba, gen) differ, so every write of
// the unique pattern stores a new block. It is read-only after newStamper,
// so goroutines share it.
type stamper struct {
	tag  uint32
	base []byte
}

func newStamper(tag uint32) stamper {
	b := make([]byte, blockstore.BlockSize)
	r := rand.New(rand.NewPCG(3, uint64(tag)))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return stamper{tag: tag, base: b}
}

// fill writes block (lba, gen) into b (len(b) == BlockSize).
func (s stamper) fill(b []byte, lba uint64, gen uint32) {
	copy(b, s.base)
	binary.LittleEndian.PutUint64(b, lba)
	binary.LittleEndian.PutUint32(b[8:], gen)
	binary.LittleEndian.PutUint32(b[12:], s.tag)
}

// check returns ErrMismatch unless b is block (lba, gen); scratch is a
// BlockSize buffer it may overwrite.
func (s stamper) check(b, scratch []byte, lba uint64, gen uint32) error {
	s.fill(scratch, lba, gen)
	if bytes.Equal(b, scratch) {
		return nil
	}
	return fmt.Errorf("%w: block %d (want generation %d, tag %d; read lba %d, generation %d, tag %d)", ErrMismatch, lba, gen, s.tag,
		binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:]))
}
