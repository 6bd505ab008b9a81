package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"blockhash/engine"
)

const bs = blockSize

func newEngine(t testing.TB) (string, *engine.Engine) {
	t.Helper()
	dir := t.TempDir()
	o := engine.Options{ExtentSize: 1024 * bs, CommitInterval: -1}
	if err := engine.Create(dir, o); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return dir, e
}

func reopen(t *testing.T, dir string, e *engine.Engine) *engine.Engine {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(dir, engine.Options{CommitInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// block returns a random block, the same for the same seed.
func block(seed uint64) []byte {
	b := make([]byte, bs)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := 0; i < bs; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// image builds n blocks: zero where seed(i) is 0, else block(seed(i)).
func image(n int, seed func(i int) uint64) []byte {
	img := make([]byte, n*bs)
	for i := range n {
		if s := seed(i); s != 0 {
			copy(img[i*bs:], block(s))
		}
	}
	return img
}

func put(t *testing.T, e *engine.Engine, name string, img []byte) *engine.Device {
	t.Helper()
	d, err := e.Device(name)
	if errors.Is(err, engine.ErrNotFound) {
		d, err = e.CreateDevice(name, int64(len(img)))
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	return d
}

func content(t *testing.T, e *engine.Engine, name string) []byte {
	t.Helper()
	d, err := e.Device(name)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, d.Size())
	if _, err := d.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func fsckOK(t *testing.T, e *engine.Engine) {
	t.Helper()
	rep, err := e.Fsck(false)
	if err != nil || !rep.OK() {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
}

// transfer runs a sender and a receiver over two pipes; rec, if set,
// records what the sender wrote.
func transfer(t testing.TB, a *engine.Engine, so SendOptions, b *engine.Engine, ro ReceiveOptions, rec *bytes.Buffer) (Stats, Stats, error, error) {
	t.Helper()
	s2r, s2w := io.Pipe()
	r2r, r2w := io.Pipe()
	var sw io.Writer = s2w
	if rec != nil {
		sw = io.MultiWriter(s2w, rec)
	}
	type res struct {
		st  Stats
		err error
	}
	done := make(chan res, 1)
	go func() {
		st, err := Receive(b, ro, s2r, r2w)
		r2w.Close()
		s2r.Close()
		done <- res{st, err}
	}()
	sst, serr := Send(a, so, r2r, sw)
	s2w.Close()
	r2r.Close()
	r := <-done
	return sst, r.st, serr, r.err
}

func TestSendFullIncrementalAndSibling(t *testing.T) {
	_, a := newEngine(t)
	bdir, b := newEngine(t)
	const n = 3000
	img := image(n, func(i int) uint64 {
		switch {
		case i%10 == 9:
			return 0 // holes
		case i%50 == 7:
			return 1 // a block repeated through the image
		}
		return uint64(i + 10)
	})
	put(t, a, "vm", img)
	if err := a.Snapshot("vm", "s1"); err != nil {
		t.Fatal(err)
	}
	// B holds a sibling: the first half of the image, and blocks of its own.
	sib := image(n, func(i int) uint64 {
		if i < n/2 {
			return uint64(i + 10)
		}
		return uint64(i + 1e6)
	})
	put(t, b, "sibling", sib)

	sst, rst, serr, rerr := transfer(t, a, SendOptions{Snapshot: "vm@s1"}, b, ReceiveOptions{Device: "vm"}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("send %v, receive %v", serr, rerr)
	}
	if !bytes.Equal(content(t, b, "vm"), img) {
		t.Fatal("replica differs")
	}
	// What travelled: the blocks of the second half B lacked, once each.
	var lack int
	seen := map[uint64]bool{}
	for i := n / 2; i < n; i++ {
		if i%10 != 9 && i%50 != 7 && !seen[uint64(i)] {
			lack++
		}
	}
	if int(sst.BlocksSent) != lack+1 || // +1: the repeated block, once
		rst.BlocksSent != sst.BlocksSent {
		t.Fatalf("sent %d blocks (receiver says %d), want %d", sst.BlocksSent, rst.BlocksSent, lack)
	}
	if sst.BlocksZeroed != n/10 || sst.BlocksScanned != n {
		t.Fatalf("stats %+v", sst)
	}
	if sst.WireOut != rst.WireIn || sst.WireIn != rst.WireOut {
		t.Fatalf("wire counts disagree: %+v / %+v", sst, rst)
	}
	if sst.MapBytes > n*bs/100 {
		t.Fatalf("map %d bytes for %d bytes of device", sst.MapBytes, n*bs)
	}
	fsckOK(t, b)

	// Incremental: 1% of the blocks change; BaseAuto finds s1 on both.
	dev, _ := a.Device("vm")
	for i := 0; i < n; i += 100 {
		if _, err := dev.WriteAt(block(uint64(5e6+i)), int64(i)*bs); err != nil {
			t.Fatal(err)
		}
	}
	if err := dev.WriteZeroes(1*bs, bs); err != nil {
		t.Fatal(err)
	}
	if err := a.Snapshot("vm", "s2"); err != nil {
		t.Fatal(err)
	}
	sst, _, serr, rerr = transfer(t, a, SendOptions{Snapshot: "vm@s2", BaseAuto: true}, b, ReceiveOptions{Device: "vm"}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("incremental: send %v, receive %v", serr, rerr)
	}
	if !sst.Incremental || sst.Base != "vm@s1" || sst.BlocksSent != n/100 || sst.BlocksScanned > 2*85*(n/100+1) {
		t.Fatalf("incremental stats %+v", sst)
	}
	want := content(t, a, "vm@s2")
	if !bytes.Equal(content(t, b, "vm"), want) || !bytes.Equal(content(t, b, "vm@s2"), want) {
		t.Fatal("incremental replica differs")
	}
	if !bytes.Equal(content(t, b, "vm@s1"), img) {
		t.Fatal("the replica's base snapshot changed")
	}
	b = reopen(t, bdir, b)
	if !bytes.Equal(content(t, b, "vm"), want) {
		t.Fatal("replica differs after reopen")
	}
	fsckOK(t, b)
	// Sending s2 again: the receiver has it.
	if _, _, serr, rerr = transfer(t, a, SendOptions{Snapshot: "vm@s2", BaseAuto: true}, b, ReceiveOptions{Device: "vm"}, nil); !errors.Is(rerr, engine.ErrExists) || !errors.Is(serr, ErrRemote) {
		t.Fatalf("resend: send %v, receive %v", serr, rerr)
	}
}

// TestHostileStreams replays a recorded stream with damage into a fresh
// store: every variant is refused and leaves the store as it was.
func TestHostileStreams(t *testing.T) {
	_, a := newEngine(t)
	const n = 600
	img := image(n, func(i int) uint64 { return uint64(i%300 + 1) })
	put(t, a, "vm", img)
	if err := a.Snapshot("vm", "s1"); err != nil {
		t.Fatal(err)
	}
	_, b := newEngine(t)
	var rec bytes.Buffer
	if _, _, serr, rerr := transfer(t, a, SendOptions{Snapshot: "vm@s1"}, b, ReceiveOptions{Device: "vm"}, &rec); serr != nil || rerr != nil {
		t.Fatal(serr, rerr)
	}
	good := rec.Bytes()
	// The recording replays into an empty store (its answers are the same).
	_, c := newEngine(t)
	if _, err := Receive(c, ReceiveOptions{Device: "vm"}, bytes.NewReader(good), io.Discard); err != nil {
		t.Fatalf("replay of the good stream: %v", err)
	}
	if !bytes.Equal(content(t, c, "vm"), img) {
		t.Fatal("replayed replica differs")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type variant struct {
		name string
		b    []byte
		want error // the error kind, where one is certain
	}
	var vs []variant
	for range 40 {
		bad := bytes.Clone(good)
		i := rng.IntN(len(bad))
		bad[i] ^= byte(1 + rng.IntN(255))
		vs = append(vs, variant{"flip", bad, nil})
	}
	for range 20 {
		vs = append(vs, variant{"truncate", good[:rng.IntN(len(good))], nil})
	}
	vs = append(vs, variant{"empty", nil, nil}, variant{"garbage", bytes.Repeat([]byte{0xff}, 4096), nil})
	// Well-framed (valid CRCs) but hostile: a block that is not what its
	// key says, an offer past the device's end, offers out of order, a
	// frame longer than any message.
	vs = append(vs,
		variant{"wrong block", reframe(t, good, func(typ byte, p []byte) []byte {
			if typ == tBlocks {
				raw, err := decodeBlocks(p, int(binary.LittleEndian.Uint32(p[1:]))/bs, nil)
				if err != nil {
					t.Fatal(err)
				}
				raw[100] ^= 1
				var c blockCodec
				return bytes.Clone(c.encode(raw))
			}
			return p
		}), engine.ErrCorrupt},
		variant{"offer past the end", reframe(t, good, func(typ byte, p []byte) []byte {
			if typ == tOffer {
				p = bytes.Clone(p)
				binary.LittleEndian.PutUint64(p, n-1)
			}
			return p
		}), ErrProtocol},
		variant{"offer repeated", func() []byte {
			fr := newFrameReader(bytes.NewReader(good))
			var out bytes.Buffer
			fw := newFrameWriter(&out)
			for {
				typ, p, err := fr.read()
				if err != nil {
					break
				}
				fw.write(typ, p)
				if typ == tOffer {
					fw.write(typ, p)
				}
			}
			fw.flush()
			return out.Bytes()
		}(), ErrProtocol},
		variant{"huge frame", append(bytes.Clone(good[:len(frame(tHello, hello{Version: version, Device: "vm"}.encode()))]), 5, 0xff, 0xff, 0xff, 0x7f), ErrProtocol},
	)
	for _, v := range vs {
		_, c := newEngine(t)
		other := image(10, func(i int) uint64 { return uint64(i + 1e6) }) // nothing the stream holds
		put(t, c, "other", other)
		before := c.Devices()
		_, err := Receive(c, ReceiveOptions{Device: "vm"}, bytes.NewReader(v.b), io.Discard)
		if err == nil {
			t.Fatalf("%s: a damaged stream was accepted", v.name)
		}
		if v.want != nil && !errors.Is(err, v.want) {
			t.Fatalf("%s: %v, want %v", v.name, err, v.want)
		}
		if got := c.Devices(); len(got) != len(before) {
			t.Fatalf("%s: devices %v after a refused stream (%v)", v.name, got, err)
		}
		if !bytes.Equal(content(t, c, "other"), other) {
			t.Fatalf("%s: another device changed", v.name)
		}
		fsckOK(t, c)
		c.Close()
	}
}

// TestResumeAfterCut cuts a transfer part way; the rerun resumes and sends
// only what the first attempt did not store.
func TestResumeAfterCut(t *testing.T) {
	_, a := newEngine(t)
	bdir, b := newEngine(t)
	const n = 4 * maxOffer
	img := image(n, func(i int) uint64 { return uint64(i + 1) })
	put(t, a, "vm", img)
	if err := a.Snapshot("vm", "s1"); err != nil {
		t.Fatal(err)
	}
	// Cut the sender's stream after about half the data.
	cutTransfer(t, a, "vm@s1", b, n*bs/2)
	if _, err := b.Device("vm"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("a cut first transfer left a device: %v", err)
	}
	b = reopen(t, bdir, b) // and a crash between
	sst, _, serr, rerr := transfer(t, a, SendOptions{Snapshot: "vm@s1"}, b, ReceiveOptions{Device: "vm"}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("rerun: send %v, receive %v", serr, rerr)
	}
	if !sst.Resumed || sst.BlocksSent > n*3/4 {
		t.Fatalf("rerun did not resume: %+v", sst)
	}
	if !bytes.Equal(content(t, b, "vm"), img) {
		t.Fatal("replica differs")
	}
	fsckOK(t, b)
}

// reframe decodes a recorded stream and writes it again with edit
// applied to each payload (the CRCs made right again).
func reframe(t *testing.T, stream []byte, edit func(typ byte, p []byte) []byte) []byte {
	t.Helper()
	fr := newFrameReader(bytes.NewReader(stream))
	var out bytes.Buffer
	fw := newFrameWriter(&out)
	for {
		typ, p, err := fr.read()
		if err != nil {
			break
		}
		if err := fw.write(typ, edit(typ, p)); err != nil {
			t.Fatal(err)
		}
	}
	fw.flush()
	return out.Bytes()
}

// TestRerunWithNewSnapshotReusesWhatArrived: a sync cut short, then rerun
// with a new snapshot (as sync takes one each time), sends only what the
// first run did not store (regression: the first run's staging volume was
// dropped before the second began, and everything travelled again).
func TestRerunWithNewSnapshotReusesWhatArrived(t *testing.T) {
	_, a := newEngine(t)
	_, b := newEngine(t)
	const n = 4 * maxOffer
	img := image(n, func(i int) uint64 { return uint64(i + 1) })
	put(t, a, "vm", img)
	if err := a.Snapshot("vm", "s1"); err != nil {
		t.Fatal(err)
	}
	cutTransfer(t, a, "vm@s1", b, n*bs*3/4)
	if err := a.Snapshot("vm", "s2"); err != nil {
		t.Fatal(err)
	}
	st, _, serr, rerr := transfer(t, a, SendOptions{Snapshot: "vm@s2"}, b, ReceiveOptions{Device: "vm"}, nil)
	if serr != nil || rerr != nil {
		t.Fatalf("rerun: send %v, receive %v", serr, rerr)
	}
	if st.BlocksSent > n/2 || st.BlocksLinked < n/2 {
		t.Fatalf("the rerun sent %d of %d blocks (linked %d): what the first run stored travelled again", st.BlocksSent, n, st.BlocksLinked)
	}
	if !bytes.Equal(content(t, b, "vm"), img) {
		t.Fatal("replica differs")
	}
	if r := b.Receiving(); len(r) != 0 {
		t.Fatalf("staging volumes left after the rerun: %+v", r)
	}
	fsckOK(t, b)
}

// cutTransfer sends snap from a to device "vm" of b and cuts the stream
// after left bytes: both sides must fail.
func cutTransfer(t *testing.T, a *engine.Engine, snap string, b *engine.Engine, left int) {
	t.Helper()
	s2r, s2w := io.Pipe()
	r2r, r2w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := Receive(b, ReceiveOptions{Device: "vm", FlushBytes: 1 << 20}, s2r, r2w)
		r2w.Close()
		done <- err
	}()
	_, serr := Send(a, SendOptions{Snapshot: snap}, r2r, &cutWriter{w: s2w, left: left})
	s2w.Close()
	r2r.Close()
	if rerr := <-done; serr == nil || rerr == nil {
		t.Fatalf("cut transfer: send %v, receive %v", serr, rerr)
	}
}

type cutWriter struct {
	w    io.WriteCloser
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		c.w.Close()
		return 0, io.ErrClosedPipe
	}
	if len(p) > c.left {
		n, _ := c.w.Write(p[:c.left])
		c.left = 0
		c.w.Close()
		return n, io.ErrClosedPipe
	}
	c.left -= len(p)
	return c.w.Write(p)
}

// TestSenderStopsOnABadWant: a receiver that wants every block of every
// offer, holes included, while several offers are being read and
// compressed at once: the sender ends with a protocol error (it never
// sends a hole as data) and returns, its goroutines with it, whatever
// is still in flight.
func TestSenderStopsOnABadWant(t *testing.T) {
	_, a := newEngine(t)
	const n = 6 * maxOffer
	img := image(n, func(i int) uint64 {
		if i == 5*maxOffer+3 {
			return 0 // one hole, in the sixth offer
		}
		return uint64(i + 1)
	})
	put(t, a, "vm", img)
	if err := a.Snapshot("vm", "s1"); err != nil {
		t.Fatal(err)
	}
	s2r, s2w := io.Pipe()
	r2r, r2w := io.Pipe()
	go func() { // the hostile receiver
		defer r2w.Close()
		fr, fw := newFrameReader(s2r), newFrameWriter(r2w)
		reply := func(typ byte, p []byte) bool {
			return fw.write(typ, p) == nil && fw.flush() == nil
		}
		for {
			typ, p, err := fr.read()
			if err != nil {
				return
			}
			switch typ {
			case tHello:
				if !reply(tInfo, info{Version: version, Hash: uint8(a.Superblock().Hash)}.encode()) {
					return
				}
			case tBegin:
				if !reply(tReady, []byte{0}) {
					return
				}
			case tOffer:
				o, err := decodeOffer(p)
				if err != nil {
					return
				}
				want := make([]bool, o.blocks())
				for i := range want {
					want[i] = true
				}
				if !reply(tWant, encodeWant(want)) {
					return
				}
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Send(a, SendOptions{Snapshot: "vm@s1"}, r2r, s2w)
		s2w.Close()
		r2r.Close()
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("send to a receiver wanting a hole: %v, want ErrProtocol", err)
		}
	case <-time.After(2 * time.Minute): // a hang, not a speed
		t.Fatal("the sender did not return")
	}
}

// NoCompress sends every BLOCKS payload raw; the replica is the same, and
// the default compresses a compressible image.
func TestNoCompress(t *testing.T) {
	img := bytes.Repeat([]byte("compressible block content "), 64*4096/27+1)[:64*4096]
	for i := 0; i < len(img); i += 4096 {
		img[i] = byte(i / 4096) // distinct blocks
	}
	for _, raw := range []bool{false, true} {
		_, a := newEngine(t)
		_, b := newEngine(t)
		put(t, a, "vm", img)
		if err := a.Snapshot("vm", "s"); err != nil {
			t.Fatal(err)
		}
		var rec bytes.Buffer
		ss, _, se, re := transfer(t, a, SendOptions{Snapshot: "vm@s", NoCompress: raw}, b, ReceiveOptions{Device: "vm"}, &rec)
		if se != nil || re != nil {
			t.Fatalf("raw %v: send %v, receive %v", raw, se, re)
		}
		if !bytes.Equal(content(t, b, "vm"), img) {
			t.Fatalf("raw %v: the replica differs", raw)
		}
		codecs := map[byte]int{}
		reframe(t, rec.Bytes(), func(typ byte, p []byte) []byte {
			if typ == tBlocks {
				codecs[p[0]]++
			}
			return p
		})
		want := codecLZ4
		if raw {
			want = codecRaw
		}
		if len(codecs) != 1 || codecs[byte(want)] == 0 {
			t.Fatalf("raw %v: BLOCKS codecs %v, want only %d", raw, codecs, want)
		}
		if raw && ss.WireOut < int64(len(img)) || !raw && ss.WireOut > int64(len(img))/2 {
			t.Fatalf("raw %v: %d bytes on the wire for %d", raw, ss.WireOut, len(img))
		}
		fsckOK(t, b)
	}
}
