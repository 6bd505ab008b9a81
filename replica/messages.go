package replica

import (
	"encoding/binary"

	"blockhash/index"
)

// The messages and their payloads (little endian):
//
//	HELLO  4 "BHRP" | 2 version | 2 n | n device name
//	INFO   2 version | 1 hash (engine.HashAlg) | 1 flags (bit 0: links
//	       by key) | 2 count | count × (2 n | n name | 16 GUID)
//	BEGIN  8 size | 1 hash | 1 flags (bit 0: force) | 16 GUID | 16 base
//	       GUID (zeros: a full stream) | 2 n | n snapshot name
//	READY  1 resumed
//	OFFER  2 runs | per run: 8 first block | 4 count | ceil(count/8)
//	       bitmap (bit set: the block holds data) | 36 key per set bit,
//	       in order; runs ascending, not overlapping, at most maxOffer
//	       blocks in all
//	WANT   4 the offer's blocks | ceil(blocks/8) bitmap over the offer's
//	       blocks in order (bit set: send the block)
//	BLOCKS 1 codec (0 raw, 1 LZ4 block) | 4 raw length | data
//	END    8 blocks offered in all
//	DONE   8 blocks written | 8 blocks linked | 8 blocks zeroed
//	ERROR  the message
//
// An offer names every block of its runs: a clear bit is a block that
// reads as zeros. Several runs in one offer carry scattered changes (an
// incremental stream's ranges) in one round trip.

const (
	version   = 1
	blockSize = 4096
	keySize   = index.KeySize
	// maxOffer is the most blocks one offer covers (16 MiB of device).
	maxOffer = 4096
	// maxRuns bounds an offer's runs.
	maxRuns  = 1024
	maxSnaps = 4096
)

var helloMagic = [4]byte{'B', 'H', 'R', 'P'}

const (
	infoLinks  = 1 << 0
	beginForce = 1 << 0
)

type hello struct {
	Version uint16
	Device  string
}

type snapInfo struct {
	Name string
	GUID [16]byte
}

type info struct {
	Version uint16
	Hash    uint8
	Flags   uint8
	Snaps   []snapInfo
}

type begin struct {
	Size     uint64
	Hash     uint8
	Flags    uint8
	GUID     [16]byte
	BaseGUID [16]byte
	Snap     string
}

type offer struct {
	Runs []run
}

// run is a range of blocks of an offer; zero keys read as zeros.
type run struct {
	First uint64
	Keys  []index.Key
}

// blocks is the number of blocks the offer covers.
func (o offer) blocks() int {
	n := 0
	for _, r := range o.Runs {
		n += len(r.Keys)
	}
	return n
}

type done struct {
	Written, Linked, Zeroed uint64
}

// enc appends to a payload.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *enc) raw(v []byte) { e.b = append(e.b, v...) }
func (e *enc) str(s string) { e.u16(uint16(len(s))); e.b = append(e.b, s...) }

// dec reads a payload; the first short read sets bad, and every later
// read returns zeros.
type dec struct {
	b   []byte
	bad bool
}

func (d *dec) take(n int) []byte {
	if d.bad || n < 0 || len(d.b) < n {
		d.bad = true
		return make([]byte, max(n, 0))
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *dec) u8() uint8   { return d.take(1)[0] }
func (d *dec) u16() uint16 { return binary.LittleEndian.Uint16(d.take(2)) }
func (d *dec) u32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *dec) u64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }
func (d *dec) str() string { return string(d.take(int(d.u16()))) }

// end reports a payload read whole and no more.
func (d *dec) end(what string) error {
	if d.bad {
		return protoErr("%s message truncated", what)
	}
	if len(d.b) != 0 {
		return protoErr("%s message has %d bytes too many", what, len(d.b))
	}
	return nil
}

func (h hello) encode() []byte {
	var e enc
	e.raw(helloMagic[:])
	e.u16(h.Version)
	e.str(h.Device)
	return e.b
}

func decodeHello(b []byte) (hello, error) {
	d := dec{b: b}
	var h hello
	if [4]byte(d.take(4)) != helloMagic {
		return h, protoErr("not a blockhash replication stream")
	}
	h.Version = d.u16()
	h.Device = d.str()
	return h, d.end("HELLO")
}

func (in info) encode() []byte {
	var e enc
	e.u16(in.Version)
	e.u8(in.Hash)
	e.u8(in.Flags)
	e.u16(uint16(len(in.Snaps)))
	for _, s := range in.Snaps {
		e.str(s.Name)
		e.raw(s.GUID[:])
	}
	return e.b
}

func decodeInfo(b []byte) (info, error) {
	d := dec{b: b}
	var in info
	in.Version = d.u16()
	in.Hash = d.u8()
	in.Flags = d.u8()
	n := int(d.u16())
	if n > maxSnaps {
		return in, protoErr("INFO lists %d snapshots", n)
	}
	for range n {
		if d.bad {
			break
		}
		s := snapInfo{Name: d.str()}
		s.GUID = [16]byte(d.take(16))
		in.Snaps = append(in.Snaps, s)
	}
	return in, d.end("INFO")
}

func (bg begin) encode() []byte {
	var e enc
	e.u64(bg.Size)
	e.u8(bg.Hash)
	e.u8(bg.Flags)
	e.raw(bg.GUID[:])
	e.raw(bg.BaseGUID[:])
	e.str(bg.Snap)
	return e.b
}

func decodeBegin(b []byte) (begin, error) {
	d := dec{b: b}
	var bg begin
	bg.Size = d.u64()
	bg.Hash = d.u8()
	bg.Flags = d.u8()
	bg.GUID = [16]byte(d.take(16))
	bg.BaseGUID = [16]byte(d.take(16))
	bg.Snap = d.str()
	return bg, d.end("BEGIN")
}

func (o offer) encode(e *enc) {
	e.u16(uint16(len(o.Runs)))
	var kb [keySize]byte
	for _, r := range o.Runs {
		e.u64(r.First)
		e.u32(uint32(len(r.Keys)))
		bm := make([]byte, (len(r.Keys)+7)/8)
		for i, k := range r.Keys {
			if !k.IsZero() {
				bm[i/8] |= 1 << (i % 8)
			}
		}
		e.raw(bm)
		for _, k := range r.Keys {
			if !k.IsZero() {
				k.Encode(kb[:])
				e.raw(kb[:])
			}
		}
	}
}

// decodeOffer decodes an offer. Its runs are checked for order and size;
// the device's bounds are the receiver's to check.
func decodeOffer(b []byte) (offer, error) {
	d := dec{b: b}
	var o offer
	nr := int(d.u16())
	if d.bad {
		return o, d.end("OFFER")
	}
	if nr == 0 || nr > maxRuns {
		return o, protoErr("OFFER of %d runs (1 to %d)", nr, maxRuns)
	}
	total := 0
	var next uint64
	for ri := range nr {
		first := d.u64()
		count := int(d.u32())
		if d.bad {
			break
		}
		if count == 0 || count > maxOffer-total {
			return o, protoErr("OFFER run of %d blocks (the offer may hold %d more)", count, maxOffer-total)
		}
		if ri > 0 && first < next || first+uint64(count) < first {
			return o, protoErr("OFFER runs out of order or overlapping")
		}
		total += count
		next = first + uint64(count)
		bm := d.take((count + 7) / 8)
		keys := make([]index.Key, count)
		for i := range keys {
			if d.bad || bm[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			k, ok := index.DecodeKey(d.take(keySize))
			if !ok || k.IsZero() {
				if !d.bad {
					return o, protoErr("OFFER holds an invalid key")
				}
				continue
			}
			keys[i] = k
		}
		if count%8 != 0 && !d.bad && bm[len(bm)-1]>>(count%8) != 0 {
			return o, protoErr("OFFER bitmap has bits past its count")
		}
		o.Runs = append(o.Runs, run{First: first, Keys: keys})
	}
	return o, d.end("OFFER")
}

// encodeWant encodes which of an offer's blocks to send.
func encodeWant(want []bool) []byte {
	var e enc
	e.u32(uint32(len(want)))
	bm := make([]byte, (len(want)+7)/8)
	for i, w := range want {
		if w {
			bm[i/8] |= 1 << (i % 8)
		}
	}
	e.raw(bm)
	return e.b
}

// decodeWant decodes a WANT for an offer of n blocks; it returns the
// indexes wanted.
func decodeWant(b []byte, n int) ([]int, error) {
	d := dec{b: b}
	c := d.u32()
	if !d.bad && int(c) != n {
		return nil, protoErr("WANT for %d blocks, the offer had %d", c, n)
	}
	bm := d.take((n + 7) / 8)
	if err := d.end("WANT"); err != nil {
		return nil, err
	}
	var out []int
	for i := range n {
		if bm[i/8]&(1<<(i%8)) != 0 {
			out = append(out, i)
		}
	}
	if n%8 != 0 && bm[len(bm)-1]>>(n%8) != 0 {
		return nil, protoErr("WANT bitmap has bits past its count")
	}
	return out, nil
}

func (dn done) encode() []byte {
	var e enc
	e.u64(dn.Written)
	e.u64(dn.Linked)
	e.u64(dn.Zeroed)
	return e.b
}

func decodeDone(b []byte) (done, error) {
	d := dec{b: b}
	dn := done{Written: d.u64(), Linked: d.u64(), Zeroed: d.u64()}
	return dn, d.end("DONE")
}
