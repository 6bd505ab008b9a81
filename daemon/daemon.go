package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"blockhash/blockstore"
	"blockhash/engine"
	"blockhash/ublk"
)

// lockWait is how long Open waits for a store held by another process.
const lockWait = 10 * time.Second

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/blockhash/blockhash.sock"

// Options configure a Daemon.
type Options struct {
	Store    string
	Socket   string
	Exporter Exporter // nil: the kernel's ublk driver
	Engine   engine.Options
	Logger   zerolog.Logger
	// QueueProcs raises GOMAXPROCS by one for each queue of the devices
	// served (above its value at Open): a ublk queue thread holds a P
	// while it waits in io_uring_enter, so without it many queues would
	// leave the engine's I/O goroutines too few Ps.
	QueueProcs bool
	// StopDevices makes Close remove the kernel devices. By default Close
	// leaves them in place (quiesced, their I/O held by the kernel) for
	// the next daemon to take over, so guests ride through a restart.
	StopDevices bool
}

// Daemon owns a store and serves its devices.
type Daemon struct {
	o   Options
	log zerolog.Logger
	eng *engine.Engine
	exp Exporter

	baseProcs int // GOMAXPROCS at Open (QueueProcs)

	// mu guards devs, offline, busy and the state file.
	mu   sync.Mutex
	devs map[string]*device
	// busy are the volumes an import or export is streaming
	// (importexport.go): not served, rolled back or deleted meanwhile.
	busy map[string]busyVolume

	// streamMu guards streams, the connections of running imports and
	// exports, and streamsClosed: closed when Serve stops, so a client
	// that stalls does not hold up the shutdown.
	streamMu      sync.Mutex
	streams       map[net.Conn]struct{}
	streamsClosed bool
	// offline are served devices whose maps the store could not open
	// (damaged): kept in the state file, their kernel devices left as they
	// are (I/O waits), until fsck --repair brings them back and the daemon
	// restarts.
	offline []servedDevice

	srv *server

	// metrics are the Prometheus metrics (metrics.go), msrv their HTTP
	// server (ListenMetrics; nil: not served).
	metrics *metrics
	msrv    *metricsServer

	// scrubMu guards scrubStop, the cancel of the running scrub (scrub.go).
	scrubMu   sync.Mutex
	scrubStop context.CancelFunc
}

type device struct {
	servedDevice
	dev  *engine.Device
	exp  Export // nil when not running
	gate *gate  // holds the device's I/O while paused (switchover.go); kept across restarts of exp
}

func (d *device) running() bool {
	if d.exp == nil {
		return false
	}
	select {
	case <-d.exp.Done():
		return false
	default:
		return true
	}
}

// Open opens the store, connects to the kernel's ublk driver and brings
// back every device served before.
func Open(o Options) (*Daemon, error) {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	o.Engine.Logger = o.Logger
	// A daemon must start on a full file system (its devices' guests are
	// waiting): it may take the store's reserve to open (engine/reserve.go).
	o.Engine.FreeingSpace = true
	// A short-lived command (list, stats) may hold the store for a moment.
	var eng *engine.Engine
	var err error
	for deadline := time.Now().Add(lockWait); ; time.Sleep(100 * time.Millisecond) {
		eng, err = engine.Open(o.Store, o.Engine)
		if err == nil || !errors.Is(err, blockstore.ErrLocked) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	exp := o.Exporter
	if exp == nil {
		if exp, err = NewKernelExporter(o.Logger); err != nil {
			eng.Close()
			return nil, err
		}
	}
	d := &Daemon{o: o, log: o.Logger, eng: eng, exp: exp, devs: map[string]*device{}, busy: map[string]busyVolume{}, baseProcs: runtime.GOMAXPROCS(0),
		metrics: newMetrics(eng)}
	eng.SetObserver(d.metrics)
	if err := d.restore(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) restore() error {
	list, err := loadState(d.o.Store)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range list {
		dev, err := d.eng.Device(s.Name)
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			d.log.Error().Str("device", s.Name).Int("id", s.ID).Err(err).
				Msg("served device is offline (its map is damaged): its kernel device is left waiting; run blockhash fsck --repair, then restart the daemon")
			d.offline = append(d.offline, s)
			continue
		}
		if err != nil {
			d.log.Warn().Str("device", s.Name).Err(err).Msg("served device is gone from the store; forgetting it")
			if present, err := d.claim(s.ID, -1, 0); err != nil {
				d.log.Error().Str("device", s.Name).Int("id", s.ID).Err(err).Msg("kernel device left alone")
			} else if present {
				d.exp.Delete(s.ID)
			}
			continue
		}
		dv := &device{servedDevice: s, dev: dev, gate: &gate{}}
		d.devs[s.Name] = dv
		if err := d.startLocked(dv, true); err != nil {
			d.log.Error().Str("device", s.Name).Int("id", s.ID).Err(err).Msg("cannot bring the device back; it stays listed as stopped (blockhash recover -n ID)")
		}
	}
	return d.changedLocked()
}

// startLocked serves dv: by user recovery if its kernel device survived
// (the previous daemon stopped or was killed), else by creating it afresh.
// A kernel device with its number that is not ours (claim) is left alone:
// the error says why.
func (d *Daemon) startLocked(dv *device, allowRecover bool) error {
	be := newGuestBackend(dv.dev, dv.gate, dv.Name, dv.LBS, dv.ReadOnly, d.log)
	be.m = d.metrics.device(dv.Name)
	present := false
	if allowRecover {
		var err error
		if present, err = d.claim(dv.ID, dv.dev.Size(), dv.LBS); err != nil {
			return err
		}
	}
	if present {
		ex, err := d.exp.Recover(dv.ID, be)
		if err == nil {
			dv.exp = ex
			d.log.Info().Str("device", dv.Name).Str("path", ex.BlockPath()).Msg("recovered device")
			return nil
		}
		d.log.Warn().Str("device", dv.Name).Int("id", dv.ID).Err(err).Msg("user recovery failed; re-creating the device")
		if err := d.exp.Delete(dv.ID); err != nil && !errors.Is(err, ublk.ErrNoDevice) {
			return fmt.Errorf("remove stale /dev/ublkb%d: %w", dv.ID, err)
		}
	}
	ex, err := d.exp.Export(ublk.Config{ID: dv.ID, Queues: dv.Queues, Depth: dv.Depth,
		Size: dv.dev.Size(), LogicalBlockSize: dv.LBS, ReadOnly: dv.ReadOnly}, be)
	if err != nil {
		return err
	}
	dv.exp, dv.ID = ex, ex.ID()
	d.log.Info().Str("device", dv.Name).Str("path", ex.BlockPath()).Msg("serving device")
	return nil
}

// changedLocked follows every change to the served devices: it saves the
// state file and, with QueueProcs, sizes GOMAXPROCS to the queues served.
func (d *Daemon) changedLocked() error {
	list := make([]servedDevice, 0, len(d.devs)+len(d.offline))
	list = append(list, d.offline...)
	queues := 0
	for _, dv := range d.devs {
		list = append(list, dv.servedDevice)
		if dv.running() {
			queues += dv.Queues
		}
	}
	if d.o.QueueProcs && runtime.GOMAXPROCS(0) != d.baseProcs+queues {
		runtime.GOMAXPROCS(d.baseProcs + queues)
	}
	return saveState(d.o.Store, list)
}

// Add serves a device of the store, creating it when it does not exist,
// read-only with r.ReadOnly. A snapshot ("dev@snap") is always served
// read-only (r.ReadOnly is implied), and never created by Add.
func (d *Daemon) Add(r Request) (DeviceInfo, error) {
	if r.Size < 0 {
		return DeviceInfo{}, fmt.Errorf("%w: size %d", ErrInvalid, r.Size)
	}
	s := servedDevice{Name: r.Name, ID: r.ID, Queues: r.Queues, Depth: r.Depth, LBS: r.LBS,
		ReadOnly: r.ReadOnly || isSnapshot(r.Name)}
	s, err := s.defaulted()
	if err != nil {
		return DeviceInfo{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dv, ok := d.devs[r.Name]; ok {
		return DeviceInfo{}, fmt.Errorf("%w: %s is /dev/ublkb%d", ErrServed, r.Name, dv.ID)
	}
	if err := d.busyLocked(r.Name, "serve it"); err != nil {
		return DeviceInfo{}, err
	}
	for _, dv := range d.devs {
		if r.ID >= 0 && dv.ID == r.ID {
			return DeviceInfo{}, fmt.Errorf("%w: id %d is %s", ErrServed, r.ID, dv.Name)
		}
	}
	dev, err := d.eng.Device(r.Name)
	created := false
	switch {
	case errors.Is(err, engine.ErrNotFound) && isSnapshot(r.Name):
		dev, snap := engine.SplitName(r.Name)
		return DeviceInfo{}, fmt.Errorf("%w: snapshot %s does not exist (take it with: blockhash snapshot %s %s)", ErrInvalid, r.Name, dev, snap)
	case errors.Is(err, engine.ErrNotFound):
		if r.Size == 0 {
			return DeviceInfo{}, fmt.Errorf("%w: device %s does not exist: give --size to create it", ErrInvalid, r.Name)
		}
		if r.Size%int64(s.LBS) != 0 {
			return DeviceInfo{}, fmt.Errorf("%w: size %d is not a multiple of the logical block size %d", ErrInvalid, r.Size, s.LBS)
		}
		if dev, err = d.eng.CreateDevice(r.Name, r.Size, engine.CreateOptions{Domain: r.Domain}); err != nil {
			return DeviceInfo{}, err
		}
		created = true
	case err != nil:
		return DeviceInfo{}, err
	case dev.InDomain(r.Domain) != nil:
		return DeviceInfo{}, dev.InDomain(r.Domain)
	case r.Size != 0 && r.Size < dev.Size():
		return DeviceInfo{}, fmt.Errorf("%w: device %s exists with size %d: a device does not shrink (to %d)", ErrInvalid, r.Name, dev.Size(), r.Size)
	case r.Size > dev.Size():
		// Growing is a map extension (one commit) before the kernel
		// device is made with the new size.
		if r.Size%int64(s.LBS) != 0 {
			return DeviceInfo{}, fmt.Errorf("%w: size %d is not a multiple of the logical block size %d", ErrInvalid, r.Size, s.LBS)
		}
		old := dev.Size()
		if err := d.eng.Grow(r.Name, r.Size); err != nil {
			return DeviceInfo{}, err
		}
		d.log.Info().Str("device", r.Name).Int64("from", old).Int64("to", r.Size).Msg("device grown")
	}
	undo := func() {
		if created {
			if err := d.eng.DeleteDevice(r.Name); err != nil {
				d.log.Error().Err(err).Str("device", r.Name).Msg("undo create")
			}
		}
	}
	dv := &device{servedDevice: s, dev: dev, gate: &gate{}}
	if err := d.startLocked(dv, false); err != nil {
		d.metrics.forget(r.Name)
		undo()
		return DeviceInfo{}, err
	}
	d.devs[r.Name] = dv
	if err := d.changedLocked(); err != nil {
		dv.exp.Stop()
		delete(d.devs, r.Name)
		d.metrics.forget(r.Name)
		undo()
		return DeviceInfo{}, err
	}
	return dv.info(), nil
}

func (dv *device) info() DeviceInfo {
	i := DeviceInfo{ID: dv.ID, Name: dv.Name, Size: dv.dev.Size(), State: "stopped",
		Queues: dv.Queues, Depth: dv.Depth, LBS: dv.LBS, ReadOnly: dv.ReadOnly, Paused: dv.gate.paused(), Stats: dv.dev.Stats()}
	if dv.exp != nil {
		i.Path = dv.exp.BlockPath()
	}
	if dv.running() {
		i.State = "running"
	}
	return i
}

// Del stops serving devices (by name, id or all) and, unless keepData,
// deletes them from the store.
func (d *Daemon) Del(r Request) ([]DeviceInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var targets []*device
	for _, dv := range d.devs {
		if r.All || (r.Name != "" && dv.Name == r.Name) || (r.Name == "" && r.ID >= 0 && dv.ID == r.ID) {
			targets = append(targets, dv)
		}
	}
	if len(targets) == 0 {
		if r.All {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %s", ErrNotServed, describe(r))
	}
	if !r.KeepData {
		// Refused before anything stops: a device with snapshots is
		// deleted only on purpose (blockhash delete --recursive).
		for _, dv := range targets {
			if err := d.busyLocked(dv.Name, "delete it"); err != nil {
				return nil, err
			}
			if snaps := d.snapshotsOf(dv.Name); len(snaps) > 0 {
				return nil, fmt.Errorf("%w: device %s has snapshots (%s): stop serving it with blockhash del %s --keep-data, then delete it with blockhash delete %s --recursive",
					ErrInUse, dv.Name, strings.Join(snaps, ", "), dv.Name, dv.Name)
			}
		}
	}
	var done []DeviceInfo
	for _, dv := range targets {
		info := dv.info()
		// A paused device's held requests fail (EIO) instead of holding up
		// the stop (the kernel drains them first), and no pause can begin.
		dv.gate.close()
		if dv.exp != nil {
			if err := dv.exp.Stop(); err != nil {
				return done, fmt.Errorf("stop %s: %w", dv.Name, err)
			}
		} else if present, err := d.claim(dv.ID, dv.dev.Size(), 0); err != nil {
			d.log.Error().Str("device", dv.Name).Int("id", dv.ID).Err(err).Msg("kernel device left alone")
		} else if present {
			d.exp.Delete(dv.ID)
		}
		if err := d.eng.Flush(); err != nil {
			return done, err
		}
		delete(d.devs, dv.Name)
		d.metrics.forget(dv.Name)
		if !r.KeepData {
			if err := d.eng.DeleteDevice(dv.Name); err != nil {
				d.changedLocked()
				return done, err
			}
		}
		info.State = "removed"
		info.Path = ""
		done = append(done, info)
	}
	return done, d.changedLocked()
}

func describe(r Request) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("id %d", r.ID)
}

// Recover serves again a listed device that is not running, taking its
// kernel device over if it still exists.
func (d *Daemon) Recover(id int) (DeviceInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dv := range d.devs {
		if dv.ID != id {
			continue
		}
		if dv.running() {
			return dv.info(), fmt.Errorf("%w: %s (/dev/ublkb%d) is running", ErrServed, dv.Name, id)
		}
		dv.exp = nil
		if err := d.startLocked(dv, true); err != nil {
			return dv.info(), err
		}
		return dv.info(), d.changedLocked()
	}
	return DeviceInfo{}, fmt.Errorf("%w: id %d", ErrNotServed, id)
}

// List describes the served devices, by id.
func (d *Daemon) List() []DeviceInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DeviceInfo, 0, len(d.devs))
	for _, dv := range d.devs {
		out = append(out, dv.info())
	}
	for _, s := range d.offline {
		out = append(out, DeviceInfo{ID: s.ID, Name: s.Name, State: "offline", Queues: s.Queues, Depth: s.Depth, LBS: s.LBS, ReadOnly: s.ReadOnly})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stats is the store's figures.
func (d *Daemon) Stats() (engine.Stats, error) { return d.eng.Stats() }

// Close stops serving. Every device stops taking requests and waits for
// the ones its backend is serving; then the store is flushed and closed,
// so every write completed to a guest is durable. The kernel devices stay
// (their new requests wait in the kernel, and the ones whose completion
// was not committed are requeued) and the next daemon takes them over by
// user recovery, unless Options.StopDevices: then they are removed. The
// list of served devices is kept either way, so the next daemon brings
// them back.
func (d *Daemon) Close() error {
	if d.srv != nil {
		d.srv.close()
	}
	if d.msrv != nil {
		d.msrv.close() // before the store closes: no scrape reads it after
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, dv := range d.devs {
		// Held requests go on to the store (still open): the stop and the
		// abandon below wait for them, and what they write is flushed.
		dv.gate.resume()
		if dv.exp == nil {
			continue
		}
		if d.o.StopDevices {
			if err := dv.exp.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", dv.Name, err))
			}
		} else if err := dv.exp.Abandon(); err != nil {
			errs = append(errs, fmt.Errorf("leave %s: %w", dv.Name, err))
		}
	}
	errs = append(errs, d.eng.Close(), d.exp.Close())
	return errors.Join(errs...)
}
