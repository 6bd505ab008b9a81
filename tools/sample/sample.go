// Package sample generates deterministic disk images that look, to a
// deduplicating store, like a family of VM images: zero regions, blocks
// shared by every image (the operating system), blocks repeated inside an
// image, and blocks unique to each image (its own data).
//
// Concurrency: Write is a plain function; it holds no shared state.
package sample

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
)

const blockSize = 4096

// Spec describes one image of a family.
type Spec struct {
	Size   int64   // bytes, a multiple of 4096
	Family uint64  // images of one family share their base blocks
	Member uint64  // which member of the family
	Zero   float64 // share of zero blocks
	Own    float64 // share of blocks unique to this member
}

// Write creates path with the image's content.
func Write(path string, s Spec) error {
	if s.Size <= 0 || s.Size%blockSize != 0 {
		return fmt.Errorf("sample: size %d is not a positive multiple of %d", s.Size, blockSize)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	blocks := s.Size / blockSize
	// The layout (which block is zero, base or own) depends on the family,
	// so members line up like installs of one OS; the choice of own blocks
	// depends on the member.
	layout := rand.New(rand.NewPCG(s.Family, 1))
	own := rand.New(rand.NewPCG(s.Family, 1000+s.Member))
	buf := make([]byte, blockSize)
	for b := range blocks {
		// Draw every layout value for every block, so the layout stream
		// stays the same whatever this member's own draws are.
		kind := layout.Float64()
		repeat := layout.IntN(8) == 0 && b > 0
		earlier := layout.Int64N(max(b, 1))
		ownDraw := own.Float64()
		switch {
		case kind < s.Zero:
			clear(buf)
		case ownDraw < s.Own:
			fillBlock(buf, s.Family<<40|s.Member<<32|uint64(b)|1<<63)
		default:
			// Base blocks; one in eight repeats an earlier one (files
			// stored twice, padding patterns).
			id := uint64(b)
			if repeat {
				id = uint64(earlier)
			}
			fillBlock(buf, s.Family<<40|id)
		}
		if _, err := w.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fillBlock(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
}
