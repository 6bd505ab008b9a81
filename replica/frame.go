package replica

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"time"
)

// A frame on the wire:
//
//	0 1 type | 1 4 payload length (little endian) | 5 .. payload |
//	4 CRC-32C of type, length and payload
//
// A payload is at most maxPayload bytes.

// Frame types.
const (
	tHello  = 1 // S→R: magic, version, device
	tInfo   = 2 // R→S: version, hash, flags, snapshots
	tBegin  = 3 // S→R: size, snapshot, GUIDs, flags
	tReady  = 4 // R→S: resumed
	tOffer  = 5 // S→R: a range of the map
	tWant   = 6 // R→S: which of an offer's blocks to send
	tBlocks = 7 // S→R: the wanted blocks, compressed
	tEnd    = 8 // S→R: the stream is complete
	tDone   = 9 // R→S: the replica is current
	tError  = 10
	// tStats ends a stream a daemon ran for a local client (relay.go):
	// the daemon's Stats and error, never sent to the other store.
	tStats = 11
)

const (
	frameHeader = 5
	frameTrail  = 4
	// maxPayload bounds a frame: an offer of maxOffer blocks' keys, or
	// their data (an incompressible BLOCKS frame is stored raw), with
	// room for headers.
	maxPayload = maxOffer*blockSize + 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameWriter writes frames to a buffered stream.
type frameWriter struct {
	w     *bufio.Writer
	n     int64 // bytes written
	trail [frameTrail]byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 256<<10)}
}

// write writes one frame (not flushed).
func (fw *frameWriter) write(typ byte, payload []byte) error {
	var h [frameHeader]byte
	h[0] = typ
	binary.LittleEndian.PutUint32(h[1:], uint32(len(payload)))
	c := crc32.Update(0, castagnoli, h[:])
	c = crc32.Update(c, castagnoli, payload)
	binary.LittleEndian.PutUint32(fw.trail[:], c)
	if _, err := fw.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := fw.w.Write(payload); err != nil {
		return err
	}
	_, err := fw.w.Write(fw.trail[:])
	fw.n += int64(frameHeader + len(payload) + frameTrail)
	return err
}

func (fw *frameWriter) flush() error { return fw.w.Flush() }

// frameReader reads frames, checking each.
type frameReader struct {
	r   *bufio.Reader
	n   int64 // bytes read
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// read returns the next frame. Its payload is valid until the next read.
// A stream that ends between frames is io.EOF; anywhere else it is
// io.ErrUnexpectedEOF.
func (fr *frameReader) read() (byte, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(h[1:])
	if h[0] == 0 || h[0] > tStats {
		return 0, nil, corruptErr("unknown frame type %d", h[0])
	}
	if n > maxPayload {
		return 0, nil, corruptErr("frame of %d bytes (at most %d)", n, maxPayload)
	}
	if cap(fr.buf) < int(n)+frameTrail {
		fr.buf = make([]byte, int(n)+frameTrail)
	}
	b := fr.buf[:int(n)+frameTrail]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	fr.n += int64(frameHeader) + int64(len(b))
	c := crc32.Update(0, castagnoli, h[:])
	c = crc32.Update(c, castagnoli, b[:n])
	if c != binary.LittleEndian.Uint32(b[n:]) {
		return 0, nil, corruptErr("frame checksum mismatch")
	}
	return h[0], b[:n], nil
}

// tellError sends err to the other side as an ERROR frame, waiting at
// most errorGrace: a peer that does not read (it may be sending) must not
// hold this side up; the write ends when the caller closes the stream.
func tellError(fw *frameWriter, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		msg := err.Error()
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		if fw.write(tError, []byte(msg)) == nil {
			fw.flush()
		}
	}()
	select {
	case <-done:
	case <-time.After(errorGrace):
	}
}

const errorGrace = 2 * time.Second
