package replica

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"blockhash/engine"
	"blockhash/index"
)

// SendOptions say what to send.
type SendOptions struct {
	// Snapshot is the snapshot sent, "dev@snap". (Send a snapshot, not a
	// device being written: the caller takes one.)
	Snapshot string
	// Base, if set, is a snapshot name of the same device that the
	// receiver also holds (same GUID): only the changes since it travel.
	// BaseAuto picks the newest snapshot both sides hold (a full stream
	// if there is none).
	Base     string
	BaseAuto bool
	// Force asks the receiver to replace a device that exists (full) or
	// to discard its changes since the base.
	Force bool
	// NoCompress sends blocks as they are (BLOCKS payloads raw), for a
	// link faster than LZ4 compresses on one core, where compressing
	// only costs CPU (on this project's machine LZ4 ran at about 400
	// MB/s a core: links of 10 Gbit/s and more).
	NoCompress bool
	// Window is how many offers may await their answer (default 8).
	Window int
	Log    zerolog.Logger
}

// Send sends o.Snapshot from e to a receiver reading w and answering on
// r. It returns once the receiver confirmed the replica is current.
func Send(e *engine.Engine, o SendOptions, r io.Reader, w io.Writer) (Stats, error) {
	s := &sender{e: e, o: o, fr: newFrameReader(r), fw: newFrameWriter(w)}
	start := time.Now()
	err := s.run()
	if err != nil {
		// Tell the receiver why (it keeps what it has for a rerun).
		var re *remoteError
		if !errors.As(err, &re) {
			s.wmu.Lock()
			tellError(s.fw, err)
			s.wmu.Unlock()
		}
	}
	s.st.WireOut, s.st.WireIn = s.fw.n, s.fr.n
	s.st.Seconds = time.Since(start).Seconds()
	return s.st, err
}

type sender struct {
	e  *engine.Engine
	o  SendOptions
	fr *frameReader
	// wmu serializes frames: offers from run, blocks from answers.
	wmu sync.Mutex
	fw  *frameWriter
	st  Stats
	dev *engine.Device
}

type remoteError struct{ msg string }

func (r *remoteError) Error() string { return "the receiver: " + r.msg }
func (r *remoteError) Unwrap() error { return ErrRemote }

// expect reads the next frame, which must be of type want (or an error
// the other side sent).
func expect(fr *frameReader, want byte, what string) ([]byte, error) {
	typ, p, err := fr.read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("waiting for %s: %w", what, err)
	}
	if typ == tError {
		return nil, &remoteError{msg: string(p)}
	}
	if typ != want {
		return nil, protoErr("frame type %d where %s was due", typ, what)
	}
	return p, nil
}

func (s *sender) write(typ byte, p []byte, flush bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.fw.write(typ, p); err != nil {
		return err
	}
	if flush {
		return s.fw.flush()
	}
	return nil
}

func (s *sender) run() error {
	devName, snapName := engine.SplitName(s.o.Snapshot)
	if snapName == "" {
		return fmt.Errorf("%w: send a snapshot (dev@snap), not %s", engine.ErrInvalid, s.o.Snapshot)
	}
	dev, err := s.e.Device(s.o.Snapshot)
	if err != nil {
		return err
	}
	if err := dev.Replicable(); err != nil {
		return err
	}
	s.dev = dev
	s.st.Snapshot = s.o.Snapshot
	if err := s.write(tHello, hello{Version: version, Device: devName}.encode(), true); err != nil {
		return err
	}
	p, err := expect(s.fr, tInfo, "INFO")
	if err != nil {
		return err
	}
	in, err := decodeInfo(p)
	if err != nil {
		return err
	}
	if in.Version != version {
		return fmt.Errorf("%w: the receiver speaks version %d, this sender %d", ErrVersion, in.Version, version)
	}
	hash := uint8(s.e.Superblock().Hash)
	if in.Hash != hash {
		return fmt.Errorf("%w: the receiving store hashes with %s, this one with %s", engine.ErrInvalid,
			engine.HashAlg(in.Hash), engine.HashAlg(hash))
	}
	base, baseGUID, err := s.pickBase(devName, in.Snaps)
	if err != nil {
		return err
	}
	bg := begin{Size: uint64(dev.Size()), Hash: hash, GUID: dev.GUID(), BaseGUID: baseGUID, Snap: snapName}
	if s.o.Force {
		bg.Flags |= beginForce
	}
	if err := s.write(tBegin, bg.encode(), true); err != nil {
		return err
	}
	p, err = expect(s.fr, tReady, "READY")
	if err != nil {
		return err
	}
	if len(p) != 1 {
		return protoErr("READY of %d bytes", len(p))
	}
	s.st.Resumed = p[0] == 1
	var ranges []engine.Range
	if base != "" {
		s.st.Incremental, s.st.Base = true, base
		if ranges, err = s.e.Diff(base, s.o.Snapshot); err != nil {
			return err
		}
	} else {
		ranges = []engine.Range{{Start: 0, Blocks: uint64(dev.Size() / blockSize)}}
	}
	return s.stream(ranges)
}

// pickBase chooses the base snapshot from what the receiver holds.
func (s *sender) pickBase(dev string, remote []snapInfo) (string, [16]byte, error) {
	var zero [16]byte
	if s.o.Base == "" && !s.o.BaseAuto {
		return "", zero, nil
	}
	has := map[[16]byte]bool{}
	for _, r := range remote {
		if r.GUID != zero {
			has[r.GUID] = true
		}
	}
	local, err := s.e.Snapshots(dev)
	if err != nil {
		return "", zero, err
	}
	if s.o.Base != "" {
		for _, l := range local {
			if l.Name == s.o.Base {
				if l.GUID == zero || !has[l.GUID] {
					return "", zero, fmt.Errorf("%w: the receiver does not hold %s@%s (send a full stream)", engine.ErrNotFound, dev, s.o.Base)
				}
				return dev + "@" + l.Name, l.GUID, nil
			}
		}
		return "", zero, fmt.Errorf("%w: snapshot %s@%s", engine.ErrNotFound, dev, s.o.Base)
	}
	// Auto: the newest local snapshot older than the one sent that the
	// receiver holds.
	_, sent := engine.SplitName(s.o.Snapshot)
	for i := len(local) - 1; i >= 0; i-- {
		l := local[i]
		if l.Name != sent && l.GUID != zero && has[l.GUID] {
			return dev + "@" + l.Name, l.GUID, nil
		}
	}
	return "", zero, nil
}

// pending is an offer awaiting its WANT.
type pending struct {
	lbas []uint64 // the offer's blocks, in order
	keys []index.Key
}

// stream offers the ranges' maps and sends the blocks the receiver
// wants. Three goroutines: this one writes offers, one reads the
// receiver's answers, one sends the blocks wanted. At most Window offers
// are unfinished (sem), so the answer reader never waits on the others
// and the receiver's answers are always read (no deadlock, whatever the
// pipes buffer).
func (s *sender) stream(ranges []engine.Range) error {
	window := s.o.Window
	if window <= 0 {
		window = 8
	}
	inflight := make(chan pending, window)
	wants := make(chan wantMsg, window)
	sem := make(chan struct{}, window)
	stop := make(chan struct{})
	var once sync.Once
	fail := func() { once.Do(func() { close(stop) }) }
	readErr := make(chan error, 1)
	go func() {
		defer close(wants)
		for p := range inflight {
			idx, err := s.readWant(p)
			if err != nil {
				readErr <- err
				fail()
				return
			}
			wants <- wantMsg{p, idx}
		}
		readErr <- nil
	}()
	answers := make(chan answerResult, 1)
	go func() {
		a := s.answer(wants, sem)
		if a.err != nil {
			fail()
		}
		answers <- a
	}()
	err := s.offer(ranges, inflight, sem, stop)
	close(inflight)
	if errors.Is(err, errStopped) {
		err = nil // the goroutine that failed says why
	}
	if err != nil {
		return err // the other goroutines end when the stream does
	}
	a := <-answers
	if err := <-readErr; err != nil {
		return err
	}
	if a.err != nil {
		return a.err
	}
	s.st.DataBytes, s.st.RawDataBytes, s.st.BlocksSent = a.dataBytes, a.rawBytes, a.sent
	var e enc
	e.u64(s.st.BlocksScanned)
	if err := s.write(tEnd, e.b, true); err != nil {
		return err
	}
	p, err := expect(s.fr, tDone, "DONE")
	if err != nil {
		return err
	}
	dn, err := decodeDone(p)
	if err != nil {
		return err
	}
	s.st.BlocksLinked, s.st.BlocksZeroed = dn.Linked, dn.Zeroed
	return nil
}

// offer sends the ranges' maps, several ranges to an offer (up to
// maxOffer blocks or maxRuns runs), so scattered changes share round
// trips and BLOCKS frames.
func (s *sender) offer(ranges []engine.Range, inflight chan<- pending, sem chan<- struct{}, stop <-chan struct{}) error {
	var o offer
	var p pending
	total := 0
	flush := func() error {
		if len(o.Runs) == 0 {
			return nil
		}
		select {
		case sem <- struct{}{}:
		case <-stop:
			return errStopped // another goroutine failed: it reports why
		}
		var e enc
		o.encode(&e)
		s.st.MapBytes += int64(frameHeader + len(e.b) + frameTrail)
		if err := s.write(tOffer, e.b, true); err != nil {
			return err
		}
		inflight <- p // never full: sem bounds it
		o, p, total = offer{}, pending{}, 0
		return nil
	}
	for _, r := range ranges {
		for first := r.Start; first < r.Start+r.Blocks; {
			n := min(r.Start+r.Blocks-first, uint64(maxOffer-total))
			keys := make([]index.Key, n)
			if err := s.dev.Keys(first, keys); err != nil {
				return err
			}
			o.Runs = append(o.Runs, run{First: first, Keys: keys})
			for i, k := range keys {
				p.lbas = append(p.lbas, first+uint64(i))
				if !k.IsZero() {
					s.st.BlocksOffered++
				}
			}
			p.keys = append(p.keys, keys...)
			s.st.BlocksScanned += n
			total += int(n)
			first += n
			if total == maxOffer || len(o.Runs) == maxRuns {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// errStopped ends offer when another goroutine of the stream failed.
var errStopped = errors.New("stream stopped")

// readers bounds the concurrent reads of one BLOCKS frame's data.
const readers = 16

type wantMsg struct {
	p   pending
	idx []int
}

type answerResult struct {
	dataBytes, rawBytes int64
	sent                uint64
	err                 error
}

// readWant reads the receiver's answer to offer p.
func (s *sender) readWant(p pending) ([]int, error) {
	b, err := expect(s.fr, tWant, "WANT")
	if err != nil {
		return nil, err
	}
	return decodeWant(b, len(p.keys))
}

// compressors is how many answered offers' blocks are read and
// compressed at once: the next offer's while the last one's frame is
// written, so compressing does not wait for the receiver to take a frame
// (nor the receiver for the compressing).
const compressors = 2

// encoded is an answered offer's BLOCKS payload, ready to write.
type encoded struct {
	payload  []byte
	raw, n   int
	err      error
	buf      *codecBuf // handed back once the payload is written
	hasFrame bool
}

// codecBuf is one compressor's buffers: the blocks read and their
// compressed payload.
type codecBuf struct {
	codec blockCodec
	data  []byte
}

// answer sends the blocks of each answered offer, in order, then frees
// its slot. Offers' blocks are read and compressed by compressors
// goroutines, each into one of compressors+1 buffers, so at most that
// many payloads are in memory.
func (s *sender) answer(wants <-chan wantMsg, sem <-chan struct{}) (a answerResult) {
	type job struct {
		w    wantMsg
		done chan encoded
	}
	quit := make(chan struct{})
	jobs := make(chan job)
	order := make(chan job, compressors+1)
	free := make(chan *codecBuf, compressors+1)
	for range compressors + 1 {
		free <- &codecBuf{codec: blockCodec{raw: s.o.NoCompress}}
	}
	var wg sync.WaitGroup
	defer func() {
		close(quit)
		wg.Wait()
	}()
	wg.Go(func() { // hands the answers out, in order
		defer close(order)
		defer close(jobs)
		for {
			var w wantMsg
			select {
			case m, ok := <-wants:
				if !ok {
					return
				}
				w = m
			case <-quit: // (the reader of the answers may be stuck on the link)
				return
			}
			j := job{w: w, done: make(chan encoded, 1)}
			select {
			case order <- j:
			case <-quit:
				return
			}
			if len(w.idx) == 0 {
				j.done <- encoded{}
				continue
			}
			select {
			case jobs <- j:
			case <-quit:
				return
			}
		}
	})
	for range compressors {
		wg.Go(func() {
			for j := range jobs {
				var b *codecBuf
				select {
				case b = <-free:
				case <-quit:
					return
				}
				e := encoded{buf: b, hasFrame: true, n: len(j.w.idx)}
				e.payload, e.raw, e.err = s.encodeBlocks(j.w.p, j.w.idx, b)
				j.done <- e
			}
		})
	}
	for j := range order {
		e := <-j.done
		if e.err != nil {
			a.err = e.err
			return a
		}
		if e.hasFrame {
			a.dataBytes += int64(frameHeader + len(e.payload) + frameTrail)
			a.rawBytes += int64(e.raw)
			a.sent += uint64(e.n)
			if a.err = s.write(tBlocks, e.payload, true); a.err != nil {
				return a
			}
			free <- e.buf
		}
		<-sem
	}
	return a
}

// encodeBlocks reads the blocks idx of offer p into b and returns their
// BLOCKS payload (in b, valid until b is used again) and its raw size.
func (s *sender) encodeBlocks(p pending, idx []int, b *codecBuf) ([]byte, int, error) {
	n := len(idx) * blockSize
	if cap(b.data) < n {
		b.data = make([]byte, n)
	}
	data := b.data[:n]
	// Runs of consecutive blocks, read concurrently (scattered blocks
	// read one at a time would wait for the disk each time).
	type span struct{ i, j int }
	var runs []span
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && p.lbas[idx[j]] == p.lbas[idx[j-1]]+1 {
			j++
		}
		for _, k := range idx[i:j] {
			if p.keys[k].IsZero() {
				return nil, 0, protoErr("the receiver wants block %d, which reads as zeros", p.lbas[k])
			}
		}
		runs = append(runs, span{i, j})
		i = j
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan span)
	for range min(readers, len(runs)) {
		wg.Go(func() {
			for r := range next {
				off := int64(p.lbas[idx[r.i]]) * blockSize
				if _, err := s.dev.ReadAt(data[r.i*blockSize:r.j*blockSize], off); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, r := range runs {
		next <- r
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return b.codec.encode(data), n, nil
}
