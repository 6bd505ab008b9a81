package replica

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"blockhash/engine"
	"blockhash/index"
)

// ReceiveOptions say where a stream goes.
type ReceiveOptions struct {
	// Device is the device the stream makes current (created if new).
	Device string
	// Force replaces an existing device with a full stream, or discards
	// its changes since the base of an incremental one (the sender may
	// ask for it too).
	Force bool
	// FlushBytes and FlushEvery commit the received data every so many
	// bytes or so much time (default 64 MiB, 2 s), so that a rerun after
	// a crash carries on from there.
	FlushBytes int64
	FlushEvery time.Duration
	// Delete, if set, deletes an older replicated snapshot (else the
	// engine's DeleteDevice): a daemon refuses one it serves, which is
	// then kept.
	Delete func(name string) error
	// BeforeFinish, if set, runs after the last block is stored and
	// before the replica is made current; an error aborts the receive.
	BeforeFinish func() error
	// AfterFinish, if set, runs once the replica is current and before
	// the sender is told so (the daemon starts serving the device here
	// during a migration); an error is reported to the sender.
	AfterFinish func() error
	Log         zerolog.Logger
}

// Receive reads a stream from r, answering on w, into o.Device of e.
// Until the end the device keeps its old content. A stream cut short
// leaves what it stored for a rerun to reuse; a stream that breaks the
// protocol or fails a check changes nothing.
func Receive(e *engine.Engine, o ReceiveOptions, r io.Reader, w io.Writer) (Stats, error) {
	rc := &receiver{e: e, o: o, fr: newFrameReader(r), fw: newFrameWriter(w), want: map[index.Key][]uint64{}}
	start := time.Now()
	err := rc.run()
	if err != nil {
		var re *remoteError
		if !errors.As(err, &re) {
			tellError(rc.fw, err)
		}
		if rc.st != nil {
			if errors.Is(err, ErrProtocol) || errors.Is(err, engine.ErrCorrupt) || errors.Is(err, engine.ErrInvalid) {
				// A hostile or damaged stream: what it stored goes.
				if derr := rc.st.Abandon(); derr != nil {
					o.Log.Error().Err(derr).Msg("dropping the staging volume of a rejected stream failed")
				}
			} else if ferr := rc.st.Flush(); ferr != nil {
				o.Log.Error().Err(ferr).Msg("keeping what an interrupted receive stored failed")
			}
		}
	}
	rc.stats.WireOut, rc.stats.WireIn = rc.fw.n, rc.fr.n
	rc.stats.Seconds = time.Since(start).Seconds()
	return rc.stats, err
}

type receiver struct {
	e     *engine.Engine
	o     ReceiveOptions
	fr    *frameReader
	fw    *frameWriter
	st    *engine.Staging
	stats Stats
	// next is the first block the next offer may start at.
	next uint64
	// fifo holds, per offer answered and not yet sent, the blocks wanted.
	fifo [][]wanted
	// want maps a key asked for and not yet received to the other blocks
	// that hold it (linked once it is stored).
	want map[index.Key][]uint64
	// segKeys and linked are offer's buffers for a run's keys and which
	// of them linked.
	segKeys   []index.Key
	linked    []bool
	sinceSync int64
	lastSync  time.Time
	bg        begin
}

// autoPrefixes name the snapshots sync and migrate take; a receive of
// one deletes the device's older ones of the same kind (the new one is
// the base of the next transfer).
var autoPrefixes = []string{"sync-", "migrate-"}

func (rc *receiver) prune(bg begin) {
	for _, p := range autoPrefixes {
		if !strings.HasPrefix(bg.Snap, p) {
			continue
		}
		snaps, err := rc.e.Snapshots(rc.o.Device)
		if err != nil {
			return
		}
		for _, s := range snaps {
			if strings.HasPrefix(s.Name, p) && s.Name != bg.Snap {
				name := rc.o.Device + "@" + s.Name
				del := func(name string) error { return rc.e.DeleteDevice(name, engine.DeleteOptions{}) }
				if rc.o.Delete != nil {
					del = rc.o.Delete
				}
				if err := del(name); err != nil {
					rc.o.Log.Warn().Err(err).Str("snapshot", name).Msg("an older replicated snapshot is kept")
				}
			}
		}
	}
}

type wanted struct {
	lba uint64
	key index.Key
}

func (rc *receiver) run() error {
	p, err := expect(rc.fr, tHello, "HELLO")
	if err != nil {
		return err
	}
	h, err := decodeHello(p)
	if err != nil {
		return err
	}
	if h.Version != version {
		return fmt.Errorf("%w: the sender speaks version %d, this receiver %d", ErrVersion, h.Version, version)
	}
	if err := engine.ValidName(rc.o.Device); err != nil {
		return err
	}
	in := info{Version: version, Hash: uint8(rc.e.Superblock().Hash)}
	if rc.e.LinksByKey() {
		in.Flags |= infoLinks
	}
	if snaps, err := rc.e.Snapshots(rc.o.Device); err == nil {
		for _, s := range snaps {
			in.Snaps = append(in.Snaps, snapInfo{Name: s.Name, GUID: s.GUID})
		}
	} else if !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	if len(in.Snaps) > maxSnaps {
		in.Snaps = in.Snaps[len(in.Snaps)-maxSnaps:]
	}
	if err := rc.fw.write(tInfo, in.encode()); err != nil {
		return err
	}
	if err := rc.fw.flush(); err != nil {
		return err
	}
	p, err = expect(rc.fr, tBegin, "BEGIN")
	if err != nil {
		return err
	}
	bg, err := decodeBegin(p)
	if err != nil {
		return err
	}
	if bg.Hash != in.Hash {
		return fmt.Errorf("%w: the sending store hashes with %s, this one with %s", engine.ErrInvalid,
			engine.HashAlg(bg.Hash), engine.HashAlg(in.Hash))
	}
	if bg.Size > 1<<62 {
		return protoErr("device size %d", bg.Size)
	}
	spec := engine.ReceiveSpec{Device: rc.o.Device, Size: int64(bg.Size), Snap: bg.Snap, GUID: bg.GUID,
		BaseGUID: bg.BaseGUID, Force: rc.o.Force || bg.Flags&beginForce != 0}
	st, err := rc.e.BeginReceive(spec)
	if err != nil {
		return err
	}
	rc.st = st
	rc.bg = bg
	rc.lastSync = time.Now()
	rc.stats.Snapshot = rc.o.Device + "@" + bg.Snap
	rc.stats.Incremental = bg.BaseGUID != [16]byte{}
	rc.stats.Resumed = st.Resumed
	ready := []byte{0}
	if st.Resumed {
		ready[0] = 1
	}
	if err := rc.fw.write(tReady, ready); err != nil {
		return err
	}
	if err := rc.fw.flush(); err != nil {
		return err
	}
	return rc.loop()
}

func (rc *receiver) loop() error {
	var data []byte
	for {
		typ, p, err := rc.fr.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("the stream ended before its end: %w", err)
		}
		switch typ {
		case tOffer:
			o, err := decodeOffer(p)
			if err != nil {
				return err
			}
			rc.stats.MapBytes += int64(frameHeader + len(p) + frameTrail)
			if err := rc.offer(o); err != nil {
				return err
			}
		case tBlocks:
			if len(rc.fifo) == 0 {
				return protoErr("BLOCKS with no offer awaiting them")
			}
			ws := rc.fifo[0]
			rc.fifo = rc.fifo[1:]
			if data, err = decodeBlocks(p, len(ws), data); err != nil {
				return err
			}
			rc.stats.DataBytes += int64(frameHeader + len(p) + frameTrail)
			rc.stats.RawDataBytes += int64(len(data))
			if err := rc.store(ws, data); err != nil {
				return err
			}
		case tEnd:
			return rc.end(p, rc.bg)
		case tError:
			return &remoteError{msg: string(p)}
		default:
			return protoErr("frame type %d in the stream", typ)
		}
	}
}

// offer links what the store holds, zeroes what reads as zeros, and
// answers which blocks to send.
func (rc *receiver) offer(o offer) error {
	want := make([]bool, 0, o.blocks())
	var ws []wanted
	for _, r := range o.Runs {
		n := uint64(len(r.Keys))
		if r.First < rc.next || r.First+n > rc.st.Blocks() {
			return protoErr("OFFER of blocks %d+%d: out of order or past the device's %d blocks", r.First, n, rc.st.Blocks())
		}
		rc.next = r.First + n
		rc.stats.BlocksScanned += n
		for i := 0; i < len(r.Keys); i++ {
			lba := r.First + uint64(i)
			k := r.Keys[i]
			if k.IsZero() {
				j := i + 1
				for j < len(r.Keys) && r.Keys[j].IsZero() {
					j++
				}
				if err := rc.st.Zero(lba, uint64(j-i)); err != nil {
					return err
				}
				rc.stats.BlocksZeroed += uint64(j - i)
				want = append(want, make([]bool, j-i)...)
				i = j - 1
				continue
			}
			// A run of blocks with data: link those the store holds in
			// one call, then want the others (a key wanted already, by
			// this offer or an earlier one, travels once).
			j := i + 1
			for j < len(r.Keys) && !r.Keys[j].IsZero() {
				j++
			}
			seg := rc.segKeys[:0]
			for _, k := range r.Keys[i:j] {
				if _, ok := rc.want[k]; ok {
					k = index.Key{} // not linked: it joins the blocks awaiting its data
				}
				seg = append(seg, k)
			}
			rc.segKeys = seg
			rc.linked = slices.Grow(rc.linked[:0], len(seg))[:len(seg)]
			linked := rc.linked
			if err := rc.st.LinkRange(lba, seg, linked); err != nil {
				return err
			}
			for x, k := range r.Keys[i:j] {
				rc.stats.BlocksOffered++
				want = append(want, false)
				if linked[x] {
					rc.stats.BlocksLinked++
					continue
				}
				if others, ok := rc.want[k]; ok {
					rc.want[k] = append(others, lba+uint64(x))
					continue
				}
				want[len(want)-1] = true
				rc.want[k] = nil
				ws = append(ws, wanted{lba: lba + uint64(x), key: k})
			}
			i = j - 1
		}
	}
	if len(ws) > 0 { // the sender sends BLOCKS only for offers with wants
		rc.fifo = append(rc.fifo, ws)
	}
	if err := rc.fw.write(tWant, encodeWant(want)); err != nil {
		return err
	}
	return rc.fw.flush()
}

// store writes an offer's wanted blocks (each checked against its key),
// then links the other blocks that hold the same content.
func (rc *receiver) store(ws []wanted, data []byte) error {
	lbas := make([]uint64, len(ws))
	keys := make([]index.Key, len(ws))
	for i, w := range ws {
		lbas[i], keys[i] = w.lba, w.key
	}
	if err := rc.st.Write(lbas, data, keys); err != nil {
		return err
	}
	rc.stats.BlocksSent += uint64(len(ws))
	for i, w := range ws {
		for _, lba := range rc.want[w.key] {
			ok, err := rc.st.Link(lba, w.key)
			if err != nil {
				return err
			}
			if !ok { // not linkable after all (a damaged slot): write it
				if err := rc.st.Write([]uint64{lba}, data[i*blockSize:(i+1)*blockSize], []index.Key{w.key}); err != nil {
					return err
				}
			}
			rc.stats.BlocksLinked++
		}
		delete(rc.want, w.key)
	}
	rc.sinceSync += int64(len(data))
	limit, every := rc.o.FlushBytes, rc.o.FlushEvery
	if limit <= 0 {
		limit = 64 << 20
	}
	if every <= 0 {
		every = 2 * time.Second
	}
	if rc.sinceSync >= limit || time.Since(rc.lastSync) >= every {
		rc.sinceSync, rc.lastSync = 0, time.Now()
		return rc.st.Flush()
	}
	return nil
}

func (rc *receiver) end(p []byte, bg begin) error {
	d := dec{b: p}
	total := d.u64()
	if err := d.end("END"); err != nil {
		return err
	}
	if len(rc.fifo) != 0 || len(rc.want) != 0 {
		return protoErr("END with %d offers' blocks not sent", len(rc.fifo))
	}
	if total != rc.stats.BlocksScanned {
		return protoErr("END counts %d blocks, the offers %d", total, rc.stats.BlocksScanned)
	}
	if !rc.stats.Incremental && total != rc.st.Blocks() {
		return protoErr("a full stream of %d blocks for a device of %d", total, rc.st.Blocks())
	}
	if rc.o.BeforeFinish != nil {
		if err := rc.o.BeforeFinish(); err != nil {
			return err
		}
	}
	if err := rc.st.Finish(); err != nil {
		return err
	}
	rc.st = nil
	rc.prune(bg)
	if rc.o.AfterFinish != nil {
		if err := rc.o.AfterFinish(); err != nil {
			return err
		}
	}
	dn := done{Written: rc.stats.BlocksSent, Linked: rc.stats.BlocksLinked, Zeroed: rc.stats.BlocksZeroed}
	if err := rc.fw.write(tDone, dn.encode()); err != nil {
		return err
	}
	return rc.fw.flush()
}
