package replica

import (
	"blockhash/index"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecodeFrames reads frames from arbitrary bytes and decodes each
// payload: nothing panics, and a frame that decodes re-encodes to the
// same message.
func FuzzDecodeFrames(f *testing.F) {
	for _, s := range [][]byte{
		frame(tHello, hello{Version: version, Device: "vm"}.encode()),
		frame(tInfo, info{Version: version, Hash: 1, Snaps: []snapInfo{{Name: "a"}}}.encode()),
		frame(tBegin, begin{Size: 4096, Snap: "s"}.encode()),
		frame(tWant, encodeWant([]bool{true, false, true})),
		frame(tDone, done{1, 2, 3}.encode()),
	} {
		f.Add(s)
	}
	var off enc
	offer{Runs: []run{{First: 1, Keys: []index.Key{{}, {CRC: 1}, {}}}, {First: 9, Keys: make([]index.Key, 2)}}}.encode(&off)
	f.Add(frame(tOffer, off.b))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b))
		for range 8 {
			typ, p, err := fr.read()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrProtocol) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			decodeAny(typ, p)
			switch typ {
			case tBegin:
				if bg, err := decodeBegin(p); err == nil && !bytes.Equal(bg.encode(), p) {
					t.Fatal("BEGIN does not re-encode to itself")
				}
			case tInfo:
				if in, err := decodeInfo(p); err == nil && !bytes.Equal(in.encode(), p) {
					t.Fatal("INFO does not re-encode to itself")
				}
			case tOffer:
				if o, err := decodeOffer(p); err == nil {
					var e enc
					o.encode(&e)
					if !bytes.Equal(e.b, p) {
						t.Fatal("OFFER does not re-encode to itself")
					}
				}
			}
		}
	})
}

// FuzzDecodePayloads decodes arbitrary payloads of every type.
func FuzzDecodePayloads(f *testing.F) {
	f.Add(byte(tOffer), []byte{1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 5})
	f.Add(byte(tBlocks), []byte{1, 0, 16, 0, 0, 0xff})
	f.Add(byte(tInfo), []byte{1, 0, 1, 1, 1, 0, 1, 0, 'a'})
	f.Fuzz(func(t *testing.T, typ byte, p []byte) {
		decodeAny(typ%(tStats+1), p)
	})
}
