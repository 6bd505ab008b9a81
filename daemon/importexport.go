package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"blockhash/engine"
)

// Creating, checking, importing and exporting while the daemon runs (the
// CLI's create, fsck, import and export go through it; the store is
// locked to other processes). The other devices keep serving.
//
// An export reads a snapshot, a device not served, or one served
// read-only; a device served writable is refused (export a snapshot of
// it: its content is then one point in time). The first answer carries
// the volume's size; the raw bytes follow, in order, and the connection
// closes (a stream short of the size is a failed export).
//
// An import writes a device that is not served (refused for a served one:
// stop serving it with del --keep-data), created at the image's size
// (rounded up to whole blocks) when missing. The first answer says the
// device is ready; the client then sends the raw bytes in frames
// (frames.go), ended by an end frame; the last answer is the error or the
// figures. A stream that ends without its end frame was cut short (the
// client failed or died): the import fails. As offline, a
// stream that ends early, runs past the size, ends within a sector or
// fails is an error, and a device the import created is deleted again;
// an existing device keeps what was written.
//
// A volume being imported or exported is busy: not served, rolled back,
// deleted or received into until the stream ends.

// ioChunk is the unit an import or export reads and writes; an import
// writes ioWorkers chunks at once, so hashing uses every core.
const (
	ioChunk   = 1 << 20
	ioWorkers = 4
)

// busyVolume counts the streams on one volume (imports: one at most).
type busyVolume struct {
	op string // "imported", "exported"
	n  int
}

// busyLocked refuses an operation (what: "serve it") on volume name while
// an import or export streams it. The caller holds d.mu.
func (d *Daemon) busyLocked(name, what string) error {
	if b, ok := d.busy[name]; ok {
		return fmt.Errorf("%w: %s is being %s: wait for that to end before you %s", ErrInUse, name, b.op, what)
	}
	return nil
}

// release ends one stream on volume name.
func (d *Daemon) release(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.busy[name]; b.n > 1 {
		b.n--
		d.busy[name] = b
	} else {
		delete(d.busy, name)
	}
}

// track registers the connection of an import or export, which
// closeStreams closes; false if Serve is stopping (then c is closed).
func (d *Daemon) track(c net.Conn) bool {
	d.streamMu.Lock()
	defer d.streamMu.Unlock()
	if d.streamsClosed {
		c.Close()
		return false
	}
	if d.streams == nil {
		d.streams = map[net.Conn]struct{}{}
	}
	d.streams[c] = struct{}{}
	return true
}

func (d *Daemon) untrack(c net.Conn) {
	d.streamMu.Lock()
	defer d.streamMu.Unlock()
	delete(d.streams, c)
}

// closeStreams ends every import and export (an import fails as if its
// client went away) and any started after.
func (d *Daemon) closeStreams() {
	d.streamMu.Lock()
	defer d.streamMu.Unlock()
	d.streamsClosed = true
	for c := range d.streams {
		c.Close()
	}
}

// Create creates device r.Name of r.Size bytes (not served).
func (d *Daemon) Create(r Request) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, err := d.eng.CreateDevice(r.Name, r.Size, engine.CreateOptions{Domain: r.Domain})
	if err != nil {
		return 0, err
	}
	return dev.Size(), nil
}

// Fsck checks the store on a committed state (the devices' writers wait
// while it runs). A repair needs the store to itself: it is refused.
func (d *Daemon) Fsck(r Request) (*engine.FsckReport, error) {
	if r.Repair {
		return nil, fmt.Errorf("%w: fsck --repair needs the store to itself: stop the daemon first, then run it", ErrInUse)
	}
	rep, err := d.eng.Fsck(false)
	if err != nil {
		return nil, err
	}
	return &rep, nil
}

// answer writes one Response line; a failure is logged.
func (d *Daemon) answer(c net.Conn, r Request, resp Response) error {
	if resp.Error != "" {
		d.log.Warn().Str("op", r.Op).Str("name", r.Name).Str("error", resp.Error).Msg("request failed")
	}
	return json.NewEncoder(c).Encode(resp)
}

// exportConn streams volume r.Name to c.
func (d *Daemon) exportConn(c net.Conn, r Request) {
	c.SetDeadline(time.Time{}) // a transfer takes as long as it takes
	if !d.track(c) {
		return
	}
	defer d.untrack(c)
	dev, err := d.exportSource(r.Name)
	if err != nil {
		d.answer(c, r, Response{Error: err.Error()})
		return
	}
	// Released before the connection closes: the client waits for the
	// close, so a command after it finds the volume free.
	defer d.release(r.Name)
	if err := d.answer(c, r, Response{Size: dev.Size()}); err != nil {
		return
	}
	start := time.Now()
	log := d.log.With().Str("op", r.Op).Str("name", r.Name).Logger()
	buf := make([]byte, ioChunk)
	for off := int64(0); off < dev.Size(); off += ioChunk {
		b := buf[:min(ioChunk, dev.Size()-off)]
		if _, err := dev.ReadAt(b, off); err != nil {
			log.Error().Err(err).Int64("offset", off).Msg("export failed")
			return
		}
		if _, err := c.Write(b); err != nil {
			log.Warn().Err(err).Int64("offset", off).Msg("export ended: the client went away")
			return
		}
	}
	log.Info().Int64("bytes", dev.Size()).Float64("seconds", time.Since(start).Seconds()).Msg("export done")
}

// exportSource finds volume name for an export and marks it busy.
func (d *Daemon) exportSource(name string) (*engine.Device, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: export needs a device or snapshot", ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dv, ok := d.devs[name]; ok && !dv.ReadOnly {
		return nil, fmt.Errorf("%w: %s is served writable, so its content changes while it is read: export a snapshot of it (blockhash snapshot %s SNAP, then blockhash export %s@SNAP ...)",
			ErrInUse, name, name, name)
	}
	b, ok := d.busy[name]
	if ok && b.op != "exported" {
		return nil, d.busyLocked(name, "export it")
	}
	dev, err := d.eng.Device(name)
	if err != nil {
		return nil, err
	}
	d.busy[name] = busyVolume{op: "exported", n: b.n + 1}
	return dev, nil
}

// importConn writes the stream on c into device r.Name.
func (d *Daemon) importConn(c net.Conn, r Request) {
	c.SetDeadline(time.Time{})
	if !d.track(c) {
		return
	}
	defer d.untrack(c)
	if r.From == "" {
		r.From = "the stream"
	}
	dev, created, err := d.importTarget(r)
	if err != nil {
		d.answer(c, r, Response{Error: err.Error()})
		return
	}
	// Released before the last answer: a command after it finds the
	// device free.
	released := false
	release := func() {
		if !released {
			released = true
			d.release(r.Name)
		}
	}
	defer release()
	log := d.log.With().Str("op", r.Op).Str("name", r.Name).Logger()
	fail := func(err error) {
		if created {
			if derr := d.eng.DeleteDevice(r.Name); derr != nil {
				err = fmt.Errorf("%w (and deleting the new device %s failed: %v)", err, r.Name, derr)
			} else {
				err = fmt.Errorf("%w (the new device %s was deleted again)", err, r.Name)
			}
		} else if ferr := dev.Flush(); ferr != nil { // what was written stays, as offline
			err = errors.Join(err, ferr)
		}
		log.Error().Err(err).Msg("import failed")
		release()
		d.answer(c, r, Response{Error: err.Error()})
	}
	if err := d.answer(c, r, Response{Size: dev.Size()}); err != nil {
		fail(err)
		return
	}
	start := time.Now()
	n, err := importCopy(c, dev, r)
	if err == nil {
		err = dev.Flush()
	}
	if err != nil {
		fail(err)
		return
	}
	log.Info().Int64("bytes", n).Float64("seconds", time.Since(start).Seconds()).Msg("import done")
	release()
	d.answer(c, r, Response{Size: n, Devices: []DeviceInfo{{ID: -1, Name: r.Name, Size: dev.Size(), Stats: dev.Stats()}}})
}

// importTarget finds (or creates) device r.Name for an import, refused
// while served, and marks it busy.
func (d *Daemon) importTarget(r Request) (dev *engine.Device, created bool, err error) {
	if err := engine.ValidName(r.Name); err != nil {
		return nil, false, err
	}
	if r.Size < 0 {
		return nil, false, fmt.Errorf("%w: size %d", ErrInvalid, r.Size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.inUseLocked(r.Name, "import into it"); err != nil {
		return nil, false, err
	}
	dev, err = d.eng.Device(r.Name)
	if errors.Is(err, engine.ErrNotFound) {
		if r.Size == 0 {
			return nil, false, fmt.Errorf("device %s does not exist: an import from standard input creates it only with --size (its size must be known before it is written)", r.Name)
		}
		dev, err = d.eng.CreateDevice(r.Name, (r.Size+engine.BlockSize-1)/engine.BlockSize*engine.BlockSize, engine.CreateOptions{Domain: r.Domain})
		created = err == nil
	} else if err == nil {
		err = dev.InDomain(r.Domain)
	}
	if err != nil {
		return nil, false, err
	}
	if r.Size > dev.Size() {
		err = fmt.Errorf("%s (%s) is larger than device %s (%s)", r.From, HumanSize(r.Size), r.Name, HumanSize(dev.Size()))
		if created {
			if derr := d.eng.DeleteDevice(r.Name); derr != nil {
				err = fmt.Errorf("%w (and deleting the new device %s failed: %v)", err, r.Name, derr)
			}
		}
		return nil, false, err
	}
	d.busy[r.Name] = busyVolume{op: "imported", n: 1}
	return dev, created, nil
}

// importCopy writes the stream on c into dev, up to r.Size bytes (or the
// device's size when 0), and checks it ends there: the checks of the
// offline import of standard input. A last partial block is padded with
// zeros. It returns the bytes read.
// importDevice is what an import writes into: an engine.Device, or a
// device of a RADOS pool (pooldaemon.go).
type importDevice interface {
	WriteAt(p []byte, off int64) (int, error)
	Size() int64
}

func importCopy(c net.Conn, dev importDevice, r Request) (int64, error) {
	limit := dev.Size()
	if r.Size > 0 {
		limit = r.Size
	}
	sizeName := "its size"
	if r.From == "standard input" {
		sizeName = "--size"
	}
	fr := &frameReader{r: c}
	w := newChunkWriter(dev, r.Sparse)
	var off int64
	var rerr error
	for off < limit && w.failed() == nil {
		buf := w.buffer()
		n, err := io.ReadFull(fr, buf[:min(ioChunk, limit-off)])
		if n > 0 {
			pad := min((n+engine.BlockSize-1)/engine.BlockSize*engine.BlockSize, len(buf))
			clear(buf[n:pad])
			w.write(buf[:pad], off)
			off += int64(n)
		} else {
			w.put(buf)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("%w after %d bytes of %s", err, off, r.From)
			break
		}
	}
	if err := errors.Join(rerr, w.wait()); err != nil {
		return off, err
	}
	switch {
	case off%engine.SectorSize != 0:
		return off, fmt.Errorf("%s ended after %d bytes, not a multiple of 512 (truncated?)", r.From, off)
	case r.Size > 0 && off < r.Size:
		return off, fmt.Errorf("%s ended after %d bytes, short of %s %d (truncated?)", r.From, off, sizeName, r.Size)
	case off == 0:
		return off, fmt.Errorf("%s is empty", r.From)
	}
	// The stream must end at the limit.
	n, err := io.ReadFull(fr, make([]byte, 1))
	if n == 0 && err != nil && !errors.Is(err, io.EOF) {
		return off, fmt.Errorf("%w after %d bytes of %s", err, off, r.From)
	}
	if n > 0 {
		if r.Size > 0 {
			return off, fmt.Errorf("%s holds more than %s %d bytes", r.From, sizeName, r.Size)
		}
		return off, fmt.Errorf("%s is larger than device %s (%s)", r.From, r.Name, HumanSize(dev.Size()))
	}
	return off, nil
}

// chunkWriter writes an import's chunks into a device on ioWorkers
// goroutines, with ioWorkers+1 buffers; it stops writing at the first
// error.
type chunkWriter struct {
	dev    importDevice
	sparse bool // skip all-zero chunks
	free   chan []byte
	work   chan chunk
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error // guarded by mu: the first write error
}

type chunk struct {
	buf []byte
	off int64
}

func newChunkWriter(dev importDevice, sparse bool) *chunkWriter {
	w := &chunkWriter{dev: dev, sparse: sparse, free: make(chan []byte, ioWorkers+1), work: make(chan chunk)}
	for range ioWorkers + 1 {
		w.free <- make([]byte, ioChunk)
	}
	for range ioWorkers {
		w.wg.Go(w.run)
	}
	return w
}

func (w *chunkWriter) run() {
	for c := range w.work {
		if w.failed() == nil && (!w.sparse || !isZero(c.buf)) {
			if _, err := w.dev.WriteAt(c.buf, c.off); err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = err
				}
				w.mu.Unlock()
			}
		}
		w.put(c.buf)
	}
}

// buffer returns a free buffer of ioChunk bytes (waiting for one).
func (w *chunkWriter) buffer() []byte { return <-w.free }

// put hands a buffer back.
func (w *chunkWriter) put(b []byte) { w.free <- b[:cap(b)] }

// write queues buf (a buffer from buffer) for writing at off.
func (w *chunkWriter) write(buf []byte, off int64) { w.work <- chunk{buf, off} }

func (w *chunkWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// wait writes what is queued and returns the first error.
func (w *chunkWriter) wait() error {
	close(w.work)
	w.wg.Wait()
	return w.failed()
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// HumanSize formats a byte count for people: 1.5 GiB (the CLI's figures
// and the daemon's messages alike).
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
