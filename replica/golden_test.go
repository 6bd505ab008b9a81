package replica

import (
	"bytes"
	"testing"

	"blockhash/goldenfile"
	"blockhash/index"
)

// golden checks b against testdata/name.
func golden(t *testing.T, name string, b []byte) {
	t.Helper()
	goldenfile.Check(t, name, b, "a wire format change raises the protocol version")
}

func frame(typ byte, payload []byte) []byte {
	var b bytes.Buffer
	fw := newFrameWriter(&b)
	fw.write(typ, payload)
	fw.flush()
	return b.Bytes()
}

func goldenKey(seed byte) index.Key {
	k := index.Key{CRC: 0x01020304 + uint32(seed)}
	for i := range k.Sum {
		k.Sum[i] = byte(i) + seed
	}
	return k
}

func TestGoldenWire(t *testing.T) {
	g := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	var off enc
	offer{Runs: []run{
		{First: 4096, Keys: []index.Key{goldenKey(1), {}, {}, goldenKey(2), {}, {}, {}, {}, {}, goldenKey(1)}},
		{First: 9000, Keys: []index.Key{goldenKey(3)}},
	}}.encode(&off)
	var codec blockCodec
	blocks := bytes.Repeat([]byte("blockhash"), 2*blockSize/9+1)[:2*blockSize]
	var end enc
	end.u64(12345)
	var stats bytes.Buffer
	WriteStats(&stats, Stats{WireOut: 1, BlocksSent: 2, Snapshot: "vm@s"}, nil)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"hello.golden", frame(tHello, hello{Version: version, Device: "vm-disk.1"}.encode())},
		{"info.golden", frame(tInfo, info{Version: version, Hash: 1, Flags: infoLinks, Snaps: []snapInfo{{"s1", g}, {"sync-1", [16]byte{}}}}.encode())},
		{"begin.golden", frame(tBegin, begin{Size: 1 << 30, Hash: 1, Flags: beginForce, GUID: g, BaseGUID: [16]byte{0xff}, Snap: "s2"}.encode())},
		{"ready.golden", frame(tReady, []byte{1})},
		{"offer.golden", frame(tOffer, off.b)},
		{"want.golden", frame(tWant, encodeWant([]bool{true, false, false, true, false, false, false, false, false, false, true}))},
		{"blocks-lz4.golden", frame(tBlocks, codec.encode(blocks))},
		{"end.golden", frame(tEnd, end.b)},
		{"done.golden", frame(tDone, done{Written: 1, Linked: 2, Zeroed: 3}.encode())},
		{"error.golden", frame(tError, []byte("no space"))},
		{"stats.golden", stats.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden(t, tc.name, tc.b)
			// The decoders read the golden bytes back.
			fr := newFrameReader(bytes.NewReader(tc.b))
			typ, p, err := fr.read()
			if err != nil {
				t.Fatal(err)
			}
			if err := decodeAny(typ, p); err != nil {
				t.Fatalf("type %d: %v", typ, err)
			}
		})
	}
	// BLOCKS decode to what was encoded.
	fr := newFrameReader(bytes.NewReader(frame(tBlocks, codec.encode(blocks))))
	_, p, _ := fr.read()
	got, err := decodeBlocks(p, 2, nil)
	if err != nil || !bytes.Equal(got, blocks) || p[0] != codecLZ4 {
		t.Fatalf("blocks round trip: %v (codec %d)", err, p[0])
	}
}

// decodeAny decodes a payload of any type (tests and fuzzing).
func decodeAny(typ byte, p []byte) error {
	var err error
	switch typ {
	case tHello:
		_, err = decodeHello(p)
	case tInfo:
		_, err = decodeInfo(p)
	case tBegin:
		_, err = decodeBegin(p)
	case tOffer:
		var o offer
		if o, err = decodeOffer(p); err == nil {
			_, err = decodeWant(encodeWant(make([]bool, o.blocks())), o.blocks())
		}
	case tWant:
		if len(p) >= 4 {
			_, err = decodeWant(p, int(uint32(p[0])|uint32(p[1])<<8|uint32(p[2])<<16|uint32(p[3])<<24)%(maxOffer+1))
		}
	case tBlocks:
		n := 0
		if len(p) >= 5 {
			n = int(uint32(p[1])|uint32(p[2])<<8|uint32(p[3])<<16|uint32(p[4])<<24) / blockSize
		}
		if n <= maxOffer {
			_, err = decodeBlocks(p, n, nil)
		}
	case tDone:
		_, err = decodeDone(p)
	}
	return err
}
