package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	blk := func(c byte) []byte { return bytes.Repeat([]byte{c}, blockSize) }
	zero := make([]byte, blockSize)
	write := func(name string, blocks ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(blocks, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	have := write("have", blk('a'), blk('b'))
	// a and b are held; c twice counts once; d once; two zero blocks; a
	// short tail "e" is padded to a block.
	img := write("img", blk('a'), blk('c'), zero, blk('c'), blk('b'), blk('d'), zero, []byte("e"))
	r, err := measure(img, []string{have})
	if err != nil {
		t.Fatal(err)
	}
	want := result{Image: img, Blocks: 8, ZeroBlocks: 2, LackingBlocks: 3, LackingRawBytes: 3 * blockSize}
	got := r
	got.LackingLZ4Bytes = 0
	if got != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	// Three compressible blocks in one offer: one small LZ4 payload.
	if r.LackingLZ4Bytes <= payloadHdr || r.LackingLZ4Bytes >= 3*blockSize {
		t.Fatalf("lz4 bytes %d", r.LackingLZ4Bytes)
	}
	// Without anything held, every distinct non-zero block lacks.
	r, err = measure(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.LackingBlocks != 5 {
		t.Fatalf("lacking %d, want 5", r.LackingBlocks)
	}
}
