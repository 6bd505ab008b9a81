package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// An import's bytes travel in frames (a 4-byte big-endian length, then
// that many bytes, at most maxFrame), ended by an empty frame: a stream
// whose sender failed or died ends without it, and is told from one that
// ended where its image did.

// maxFrame bounds a frame's length.
const maxFrame = 1 << 20

// ErrCutShort means an import's stream ended without its end frame (the
// client failed or went away).
var ErrCutShort = errors.New("daemon: the import stream was cut short")

// FrameWriter writes an import's stream: Write frames its bytes, Close
// writes the end frame (it does not close the underlying writer).
type FrameWriter struct{ w io.Writer }

// NewFrameWriter returns a FrameWriter on w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

func (f *FrameWriter) Write(p []byte) (int, error) {
	var done int
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], uint32(n))
		if _, err := f.w.Write(h[:]); err != nil {
			return done, err
		}
		if _, err := f.w.Write(p[:n]); err != nil {
			return done, err
		}
		done += n
		p = p[n:]
	}
	return done, nil
}

// Close ends the stream.
func (f *FrameWriter) Close() error {
	_, err := f.w.Write(make([]byte, 4))
	return err
}

// frameReader reads the bytes of a framed stream: io.EOF after the end
// frame, ErrCutShort if the stream ends before it.
type frameReader struct {
	r    io.Reader
	left int  // bytes of the current frame not yet read
	done bool // the end frame was read
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.done {
		return 0, io.EOF
	}
	if f.left == 0 {
		var h [4]byte
		if _, err := io.ReadFull(f.r, h[:]); err != nil {
			return 0, cutShort(err)
		}
		n := binary.BigEndian.Uint32(h[:])
		if n == 0 {
			f.done = true
			return 0, io.EOF
		}
		if n > maxFrame {
			return 0, fmt.Errorf("%w: a frame of %d bytes (at most %d)", ErrInvalid, n, maxFrame)
		}
		f.left = int(n)
	}
	n, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= n
	if err != nil && (f.left > 0 || !errors.Is(err, io.EOF)) {
		return n, cutShort(err)
	}
	return n, nil
}

// cutShort names the end of a stream before its end frame.
func cutShort(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrCutShort
	}
	return fmt.Errorf("%w: %w", ErrCutShort, err)
}
