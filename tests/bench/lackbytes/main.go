// Command lackbytes is the yardstick for the replication figures: given an
// image and the images a receiver already holds, it counts the distinct
// non-zero 4 KiB blocks the receiver lacks and what they cost compressed
// the way the replication protocol compresses them (replica/blocks.go: the
// blocks one offer wants, in device order, as one LZ4 block, raw when LZ4
// does not make it smaller; an offer covers 4096 blocks).
//
//	lackbytes IMAGE [HAVE...]
//
// It prints one JSON object. It reads each image once, sequentially, and
// keeps one SHA-256 per distinct block in memory.
package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pierrec/lz4/v4"
)

const (
	blockSize  = 4096
	offerSpan  = 4096 // blocks per offer (replica's maxOffer)
	payloadHdr = 5    // codec byte and raw length before each BLOCKS payload
)

type result struct {
	Image           string `json:"image"`
	Blocks          int64  `json:"blocks"`
	ZeroBlocks      int64  `json:"zero_blocks"`
	LackingBlocks   int64  `json:"lacking_blocks"`
	LackingRawBytes int64  `json:"lacking_raw_bytes"`
	// LackingLZ4Bytes is the compressed payload, LZ4 header bytes included.
	LackingLZ4Bytes int64 `json:"lacking_lz4_bytes"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lackbytes IMAGE [HAVE...]")
		os.Exit(2)
	}
	r, err := measure(os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "lackbytes:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

type key [sha256.Size]byte

// eachBlock calls fn for every block of the image at path, in order (a
// short last block is padded with zeros, as a device of whole blocks).
func eachBlock(path string, fn func(b []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, blockSize)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			clear(buf[n:])
			if err := fn(buf); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func measure(image string, have []string) (result, error) {
	known := make(map[key]struct{})
	for _, h := range have {
		if err := eachBlock(h, func(b []byte) error {
			known[sha256.Sum256(b)] = struct{}{}
			return nil
		}); err != nil {
			return result{}, err
		}
	}
	res := result{Image: image}
	var c lz4.Compressor
	batch := make([]byte, 0, offerSpan*blockSize)
	out := make([]byte, lz4.CompressBlockBound(offerSpan*blockSize))
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := c.CompressBlock(batch, out)
		if err != nil {
			return err
		}
		if n == 0 || n >= len(batch) {
			n = len(batch)
		}
		res.LackingLZ4Bytes += int64(payloadHdr + n)
		batch = batch[:0]
		return nil
	}
	err := eachBlock(image, func(b []byte) error {
		if res.Blocks%offerSpan == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		res.Blocks++
		if isZero(b) {
			res.ZeroBlocks++
			return nil
		}
		k := sha256.Sum256(b)
		if _, ok := known[k]; ok {
			return nil
		}
		known[k] = struct{}{}
		res.LackingBlocks++
		res.LackingRawBytes += blockSize
		batch = append(batch, b...)
		return nil
	})
	if err == nil {
		err = flush()
	}
	return res, err
}
