package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Frame kinds, server to client.
const (
	frameStdout byte = 1
	frameStderr byte = 2
	frameExit   byte = 3
)

// maxFrame bounds a frame's payload; bigger writes are split.
const maxFrame = 64 << 10

// errBadFrame is returned for a frame the client cannot decode.
var errBadFrame = errors.New("rsh: bad frame")

// frameWriter writes frames to the connection; mu guards w so that frames of
// the stdout and stderr goroutines never interleave.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// write sends p as frames of the given kind.
func (f *frameWriter) write(kind byte, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		if err := f.frame(kind, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (f *frameWriter) frame(kind byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := f.w.Write(p)
	return err
}

// exit sends the exit frame.
func (f *frameWriter) exit(status int) error {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(int32(status)))
	return f.frame(frameExit, p[:])
}

// streamWriter adapts one output stream of the command to frames.
type streamWriter struct {
	f    *frameWriter
	kind byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.f.write(s.kind, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readFrame reads one frame into buf (grown as needed) and returns its kind
// and payload.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes", errBadFrame, n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	switch hdr[0] {
	case frameStdout, frameStderr:
	case frameExit:
		if n != 4 {
			return 0, nil, fmt.Errorf("%w: exit frame of %d bytes", errBadFrame, n)
		}
	default:
		return 0, nil, fmt.Errorf("%w: kind %d", errBadFrame, hdr[0])
	}
	return hdr[0], buf, nil
}
