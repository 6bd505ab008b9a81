package replica

import (
	"encoding/binary"

	"github.com/pierrec/lz4/v4"
)

// A BLOCKS payload carries an offer's wanted blocks, in offer order, as
// one LZ4 block (or raw when LZ4 does not make it smaller).

const (
	codecRaw = 0
	codecLZ4 = 1
)

// blockCodec compresses BLOCKS payloads; it keeps its buffers.
type blockCodec struct {
	c   lz4.Compressor
	out []byte
	// raw sends every payload as it is (SendOptions.NoCompress).
	raw bool
}

// encode returns the payload for data (valid until the next call).
func (bc *blockCodec) encode(data []byte) []byte {
	need := 5 + lz4.CompressBlockBound(len(data))
	if cap(bc.out) < need {
		bc.out = make([]byte, need)
	}
	out := bc.out[:need]
	binary.LittleEndian.PutUint32(out[1:], uint32(len(data)))
	if bc.raw {
		out[0] = codecRaw
		return append(out[:5], data...)
	}
	n, err := bc.c.CompressBlock(data, out[5:])
	if err != nil || n == 0 || n >= len(data) {
		out[0] = codecRaw
		return append(out[:5], data...)
	}
	out[0] = codecLZ4
	return out[:5+n]
}

// decodeBlocks expands a payload that must hold exactly n blocks into
// dst (grown as needed) and returns it.
func decodeBlocks(p []byte, n int, dst []byte) ([]byte, error) {
	if len(p) < 5 {
		return dst, protoErr("BLOCKS message truncated")
	}
	raw := int(binary.LittleEndian.Uint32(p[1:]))
	if raw != n*blockSize {
		return dst, protoErr("BLOCKS holds %d bytes, %d blocks were wanted", raw, n)
	}
	if cap(dst) < raw {
		dst = make([]byte, raw)
	}
	dst = dst[:raw]
	switch p[0] {
	case codecRaw:
		if len(p)-5 != raw {
			return dst, protoErr("raw BLOCKS of %d bytes, want %d", len(p)-5, raw)
		}
		copy(dst, p[5:])
	case codecLZ4:
		m, err := lz4.UncompressBlock(p[5:], dst)
		if err != nil || m != raw {
			return dst, corruptErr("BLOCKS do not decompress")
		}
	default:
		return dst, protoErr("BLOCKS codec %d", p[0])
	}
	return dst, nil
}
