//go:build rados

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"blockhash/pool"
	"blockhash/ublk"
)

// PoolOptions configure a PoolDaemon.
type PoolOptions struct {
	Pool     pool.Options
	Socket   string
	Exporter Exporter // nil: the kernel's ublk driver
	Logger   zerolog.Logger
	// GCEvery runs a garbage collection led by this host that often
	// (0: only when asked, by blockhash gc).
	GCEvery time.Duration
	// MaxLive is the compaction threshold of the periodic collection.
	MaxLive float64
}

// PoolDaemon serves devices of a store shared by hosts in a RADOS pool
// (package pool): one daemon per host, every host naming the same pool.
// It answers ping, add, del, list, stats, fsck, scrub, gc and fence.
// Unlike Daemon it keeps no state file: the pool is the state, and a
// device is served where it is added. On Close it stops its kernel
// devices and lets every lease go (flushed), so that other hosts can
// take its devices at once.
//
// mu guards devs; no lock is held across a device's I/O.
type PoolDaemon struct {
	o    PoolOptions
	log  zerolog.Logger
	p    *pool.Pool
	exp  Exporter
	srv  *server
	mu   sync.Mutex
	devs map[string]*poolDevice
	stop chan struct{}
	wg   sync.WaitGroup
}

type poolDevice struct {
	servedDevice
	dev  *pool.Device
	exp  Export
	gate *gate
}

// OpenPool joins the pool as this host.
func OpenPool(o PoolOptions) (*PoolDaemon, error) {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	o.Pool.Logger = o.Logger
	exp := o.Exporter
	if exp == nil {
		var err error
		if exp, err = NewKernelExporter(o.Logger); err != nil {
			return nil, err
		}
	}
	p, err := pool.Open(o.Pool)
	if err != nil {
		exp.Close()
		return nil, err
	}
	d := &PoolDaemon{o: o, log: o.Logger, p: p, exp: exp, devs: map[string]*poolDevice{}, stop: make(chan struct{})}
	if o.GCEvery > 0 {
		d.wg.Add(1)
		go d.gcLoop()
	}
	return d, nil
}

// Pool is the daemon's pool handle.
func (d *PoolDaemon) Pool() *pool.Pool { return d.p }

func (d *PoolDaemon) gcLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.o.GCEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			st, err := d.p.GC(d.o.MaxLive)
			if err != nil {
				d.log.Warn().Err(err).Msg("garbage collection")
				continue
			}
			d.log.Info().Int("dead", st.Dead).Int("packs_deleted", st.PacksDeleted).Int("compacted", st.Compacted).Msg("garbage collected")
		}
	}
}

// Listen opens the control socket.
func (d *PoolDaemon) Listen() error {
	s, err := listen(d.o.Socket)
	if err != nil {
		return err
	}
	d.srv = s
	return nil
}

// Serve answers requests until ctx is done.
func (d *PoolDaemon) Serve(ctx context.Context) error {
	return d.srv.serve(ctx, d.handle, func() {})
}

func (d *PoolDaemon) handle(c net.Conn) {
	defer c.Close()
	r, ok := readRequest(c)
	if !ok {
		return
	}
	switch r.Op {
	case "import":
		d.importConn(c, r)
		return
	case "export":
		d.exportConn(c, r)
		return
	}
	resp := d.do(r)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	json.NewEncoder(c).Encode(resp)
}

func (d *PoolDaemon) do(r Request) Response {
	var resp Response
	var err error
	switch r.Op {
	case "ping":
		resp.Store = "rados"
	case "add":
		var i DeviceInfo
		if i, err = d.Add(r); err == nil {
			resp.Devices = []DeviceInfo{i}
		}
	case "del":
		resp.Devices, err = d.Del(r)
	case "list":
		resp.Devices, err = d.List()
	case "stats", "fsck":
		var rep pool.Report
		if rep, err = d.p.Check(); err == nil {
			resp.Pool = &rep
			resp.Devices, err = d.List()
		}
	case "scrub":
		var rep pool.ScrubReport
		if rep, err = d.p.Scrub(); err == nil {
			resp.PoolScrub = &rep
		}
	case "gc":
		var st pool.GCStats
		if st, err = d.p.GC(r.MaxLive); err == nil {
			resp.GC = &st
		}
	case "fence":
		err = d.p.FenceHost(r.Name)
	default:
		err = fmt.Errorf("%w: %q is not served by a daemon on a RADOS pool", ErrInvalid, r.Op)
	}
	if err != nil {
		d.log.Warn().Str("op", r.Op).Err(err).Msg("request failed")
		resp.Error = err.Error()
	} else if r.Op != "list" && r.Op != "stats" && r.Op != "ping" && r.Op != "fsck" {
		d.log.Info().Str("op", r.Op).Str("name", r.Name).Int("id", r.ID).Msg("request done")
	}
	return resp
}

// Add serves a device of the pool on this host (created first with a
// size if missing). If no host holds it, this host takes its lease now;
// if another does, its first write here takes it (a hand-over).
func (d *PoolDaemon) Add(r Request) (DeviceInfo, error) {
	s := servedDevice{Name: r.Name, ID: r.ID, Queues: r.Queues, Depth: r.Depth, LBS: r.LBS, ReadOnly: r.ReadOnly}
	s, err := s.defaulted()
	if err != nil {
		return DeviceInfo{}, err
	}
	if isSnapshot(r.Name) || r.Domain != "" {
		return DeviceInfo{}, fmt.Errorf("%w: snapshots and dedup domains are not served from a RADOS pool yet", ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dv, ok := d.devs[r.Name]; ok {
		return DeviceInfo{}, fmt.Errorf("%w: %s is /dev/ublkb%d", ErrServed, r.Name, dv.ID)
	}
	for _, dv := range d.devs {
		if r.ID >= 0 && dv.ID == r.ID {
			return DeviceInfo{}, fmt.Errorf("%w: id %d is %s", ErrServed, r.ID, dv.Name)
		}
	}
	dev, err := d.p.Open(r.Name)
	created := false
	switch {
	case errors.Is(err, pool.ErrNotFound):
		if r.Size == 0 {
			return DeviceInfo{}, fmt.Errorf("%w: device %s does not exist: give --size to create it", ErrInvalid, r.Name)
		}
		if r.Size%int64(s.LBS) != 0 || r.Size%pool.BlockSize != 0 {
			return DeviceInfo{}, fmt.Errorf("%w: size %d is not a multiple of %d", ErrInvalid, r.Size, pool.BlockSize)
		}
		if err := d.p.Create(r.Name, r.Size); err != nil {
			return DeviceInfo{}, err
		}
		created = true
		if dev, err = d.p.Open(r.Name); err != nil {
			return DeviceInfo{}, err
		}
	case err != nil:
		return DeviceInfo{}, err
	case r.Size != 0 && r.Size != dev.Size():
		return DeviceInfo{}, fmt.Errorf("%w: device %s exists with size %d (a pool device does not change size)", ErrInvalid, r.Name, dev.Size())
	}
	undo := func() {
		if created {
			if err := d.p.Delete(r.Name); err != nil {
				d.log.Error().Err(err).Str("device", r.Name).Msg("undo create")
			}
		} else {
			dev.Close()
		}
	}
	if !s.ReadOnly {
		if _, err := dev.TakeIfFree(); err != nil {
			undo()
			return DeviceInfo{}, err
		}
	}
	dv := &poolDevice{servedDevice: s, dev: dev, gate: &gate{}}
	be := newGuestBackend(dev, dv.gate, s.Name, s.LBS, s.ReadOnly, d.log)
	ex, err := d.exp.Export(ublk.Config{ID: s.ID, Queues: s.Queues, Depth: s.Depth, Size: dev.Size(), LogicalBlockSize: s.LBS, ReadOnly: s.ReadOnly}, be)
	if err != nil {
		undo()
		return DeviceInfo{}, err
	}
	dv.exp, dv.ID = ex, ex.ID()
	d.devs[r.Name] = dv
	d.log.Info().Str("device", r.Name).Str("path", ex.BlockPath()).Bool("holder", dev.Held()).Msg("serving device")
	return d.info(dv), nil
}

func (d *PoolDaemon) info(dv *poolDevice) DeviceInfo {
	i := DeviceInfo{ID: dv.ID, Name: dv.Name, Size: dv.dev.Size(), State: "running", Queues: dv.Queues, Depth: dv.Depth,
		LBS: dv.LBS, ReadOnly: dv.ReadOnly, Path: dv.exp.BlockPath()}
	select {
	case <-dv.exp.Done():
		i.State = "stopped"
	default:
	}
	if dv.dev.Held() {
		i.Host = d.p.HostName()
	}
	return i
}

// Del stops serving devices (by name, id or all) and, unless KeepData,
// deletes them from the pool.
func (d *PoolDaemon) Del(r Request) ([]DeviceInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var targets []*poolDevice
	for _, dv := range d.devs {
		if r.All || (r.Name != "" && dv.Name == r.Name) || (r.ID >= 0 && dv.ID == r.ID) {
			targets = append(targets, dv)
		}
	}
	if len(targets) == 0 && r.Name != "" && !r.KeepData {
		// not served here: delete it from the pool
		if err := d.p.Delete(r.Name); err != nil {
			return nil, err
		}
		return []DeviceInfo{{Name: r.Name, ID: -1}}, nil
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: no such device served here", ErrNotServed)
	}
	var out []DeviceInfo
	for _, dv := range targets {
		i := d.info(dv)
		if err := dv.exp.Stop(); err != nil {
			return out, err
		}
		var err error
		if r.KeepData {
			err = dv.dev.Close()
		} else {
			err = d.p.Delete(dv.Name)
		}
		delete(d.devs, dv.Name)
		if err != nil {
			return out, err
		}
		out = append(out, i)
	}
	return out, nil
}

// List lists every device of the pool: the ones served here with their
// kernel devices, the others with the host that holds them.
func (d *PoolDaemon) List() ([]DeviceInfo, error) {
	all, err := d.p.List()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DeviceInfo, 0, len(all))
	for _, a := range all {
		if dv, ok := d.devs[a.Name]; ok {
			i := d.info(dv)
			i.Host = a.Holder
			out = append(out, i)
			continue
		}
		state := "idle" // no host holds it
		if a.Holder != "" {
			state = "elsewhere" // another host serves it
		}
		out = append(out, DeviceInfo{ID: -1, Name: a.Name, Size: a.Size, State: state, Host: a.Holder})
	}
	return out, nil
}

// Close stops every kernel device, lets every lease go and leaves the
// pool.
func (d *PoolDaemon) Close() error {
	close(d.stop)
	d.wg.Wait()
	d.mu.Lock()
	var first error
	for name, dv := range d.devs {
		if err := dv.exp.Stop(); err != nil && first == nil {
			first = err
		}
		delete(d.devs, name)
	}
	d.mu.Unlock()
	if err := d.p.Close(); err != nil && first == nil {
		first = err
	}
	if err := d.exp.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// importConn writes the stream on c into pool device r.Name (created
// with r.Size if missing): the daemon's own writes, which take the
// device's lease like a guest's.
func (d *PoolDaemon) importConn(c net.Conn, r Request) {
	c.SetDeadline(time.Time{})
	answer := func(resp Response) {
		if resp.Error != "" {
			d.log.Warn().Str("op", r.Op).Str("name", r.Name).Str("error", resp.Error).Msg("request failed")
		}
		json.NewEncoder(c).Encode(resp)
	}
	if r.From == "" {
		r.From = "the stream"
	}
	d.mu.Lock()
	_, served := d.devs[r.Name]
	d.mu.Unlock()
	if served {
		answer(Response{Error: fmt.Sprintf("%v: %s is served here: import into a device that is not", ErrInUse, r.Name)})
		return
	}
	dev, err := d.p.Open(r.Name)
	if errors.Is(err, pool.ErrNotFound) && r.Size > 0 {
		size := (r.Size + pool.BlockSize - 1) / pool.BlockSize * pool.BlockSize
		if err = d.p.Create(r.Name, size); err == nil {
			dev, err = d.p.Open(r.Name)
		}
	}
	if err != nil {
		answer(Response{Error: err.Error()})
		return
	}
	if err := json.NewEncoder(c).Encode(Response{Size: dev.Size()}); err != nil {
		dev.Close()
		return
	}
	start := time.Now()
	n, err := importCopy(c, dev, r)
	if err == nil {
		err = dev.Flush()
	}
	// Let go before the last answer: a command after it (on any host)
	// finds the device free.
	if cerr := dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		answer(Response{Error: err.Error()})
		return
	}
	d.log.Info().Str("op", r.Op).Str("name", r.Name).Int64("bytes", n).Float64("seconds", time.Since(start).Seconds()).Msg("import done")
	answer(Response{Size: n, Devices: []DeviceInfo{{ID: -1, Name: r.Name, Size: dev.Size(), Host: d.p.HostName()}}})
}

// exportConn streams pool device r.Name to c, as the pool's copy of its
// map says, or this host's map if it holds it.
func (d *PoolDaemon) exportConn(c net.Conn, r Request) {
	c.SetDeadline(time.Time{})
	dev, err := d.p.Open(r.Name)
	if err != nil {
		json.NewEncoder(c).Encode(Response{Error: err.Error()})
		return
	}
	d.mu.Lock()
	_, served := d.devs[r.Name]
	d.mu.Unlock()
	if !served {
		defer dev.Close()
	}
	if err := json.NewEncoder(c).Encode(Response{Size: dev.Size()}); err != nil {
		return
	}
	buf := make([]byte, ioChunk)
	for off := int64(0); off < dev.Size(); off += ioChunk {
		b := buf[:min(ioChunk, dev.Size()-off)]
		if _, err := dev.ReadAt(b, off); err != nil {
			d.log.Error().Err(err).Str("name", r.Name).Int64("offset", off).Msg("export failed")
			return
		}
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}
